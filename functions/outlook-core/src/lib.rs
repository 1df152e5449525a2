//! Domain logic and adapters of the Outlook integration, free of Lambda types.
//!
//! Each Lambda binary builds the clients it needs once per cold start (see `config` and `aws`)
//! and hands events to the plain async functions here.

pub mod graph;
pub mod identity;
pub mod message;
pub mod rules;
pub mod clients;
pub mod config;
pub mod health;
pub mod ids;
pub mod model;
pub mod store;
pub mod telemetry;
pub mod vault;
pub mod pages;
pub mod connect;
pub mod sync;
pub mod api;
pub mod tokens;
pub mod services;
pub mod rules_exec;
