//! sqljudge: SQL practice and grading service.
pub mod actors;
pub mod auth;
pub mod cache;
pub mod catalog;
pub mod config;
pub mod db;
pub mod demo;
pub mod error;
pub mod grading;
pub mod http;
pub mod job;
pub mod leaderboard;
pub mod queue;
pub mod ratelimit;
pub mod sessions;
pub mod startup;
