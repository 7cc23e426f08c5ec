pub mod config;
pub mod db;
pub mod error;
pub mod grading;
pub mod job;
