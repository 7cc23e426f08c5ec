//! Test support shared by sqljudge's integration tests (`tests/api`) and benches:
//!
//! - [`app`]: `TestApp`, the real service on a free port with databases, sandbox roles and a
//!   Redis key prefix of its own;
//! - [`faults`]: a Redis of the test's own, a TCP proxy that hangs or cuts connections, a steady
//!   submission load and the invariants it must keep;
//! - [`clusters`]: PostgreSQL clusters of a test's own, to stop and start;
//! - [`bench`]: a client for an already running sqljudge, and percentile reports.
pub mod app;
pub mod bench;
pub mod clusters;
pub mod faults;
