//! The decision engine: pure functions over plain data and an explicit `now`.
//! No kube client, no HTTP, no clock reads, no randomness.

mod checks;

pub use checks::{CheckResults, CheckState, HealthResults, WorkloadHealth};
