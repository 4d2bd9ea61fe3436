//! Logs, metrics and health: how Tollgate explains itself.

mod logging;
mod metrics;
mod server;

pub use logging::{LogFormat, init_logging};
pub use metrics::{Metrics, labels};
pub use server::routes;
