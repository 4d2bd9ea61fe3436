//! Logs, metrics, health and the HTTP listeners: how Tollgate explains itself
//! and how it faces its clients.

mod listener;
mod logging;
mod metrics;
mod server;
mod throttle;

pub use listener::{BodyTimeout, Limits, is_body_timeout, serve};
pub use logging::{LogFormat, init_logging};
pub use metrics::{Leading, Metrics, labels};
pub use server::routes;
pub use throttle::Throttle;
