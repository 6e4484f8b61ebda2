//! The controller: an HTTP API (axum on tokio) over the durable store, the optimizer and the
//! predictor's sample format. Writes need the bearer token; reads too unless configured open.
//! Binds to loopback by default; bodies are limited to 1 MiB and validated with errors that name
//! the field; an accepted write is committed to SQLite before the reply.
//!
//! Depends on everything below it; nothing depends on it.

pub mod agent;
pub mod client;
pub mod error;
pub mod http;
pub mod iterations;
pub mod loadtest;
pub mod plan;
pub mod profile;
pub mod runner;
pub mod slurm;
pub mod store;

pub use http::{router, serve, Config, MAX_BODY};
pub use store::{Store, StoreError};
