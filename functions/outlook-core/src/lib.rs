//! Domain logic and adapters of the Outlook integration, free of Lambda types.
//!
//! Each Lambda binary builds the clients it needs once per cold start (see `config` and `aws`)
//! and hands events to the plain async functions here.

pub mod api;
pub mod clients;
pub mod config;
pub mod connect;
pub mod graph;
pub mod health;
pub mod identity;
pub mod ids;
pub mod integration_status;
pub mod message;
pub mod model;
pub mod pages;
pub mod rules;
pub mod rules_exec;
pub mod services;
pub mod store;
pub mod sync;
pub mod telemetry;
pub mod tokens;
pub mod vault;
