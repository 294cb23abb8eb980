//! The routes, one file per resource, each with its `routes()`.

pub mod dispatch;
pub mod executions;
pub mod health;
pub mod metrics;
pub mod openapi;
pub mod plugins;
pub mod token;
