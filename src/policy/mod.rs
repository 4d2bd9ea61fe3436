//! The decision engine: pure functions over plain data and an explicit `now`.
//! No kube client, no HTTP, no clock reads, no randomness.

pub mod analysis;
pub mod bounds;
mod checks;
pub mod conditions;
pub mod deadline;
pub mod deployment;
mod evaluate;
mod glob;
pub mod recovery;
pub mod report;
pub mod retention;
pub mod scope;
pub mod tenancy;
pub mod transition;
pub mod window;

pub use analysis::{Assessment, Reading};
pub use bounds::Bound;
pub use checks::{CheckResults, CheckState, HealthResults, WorkloadHealth, required_checks};
pub use evaluate::{EvalContext, Ruling, evaluate};
pub use glob::glob_match;
pub use recovery::PauseEval;
pub use tenancy::{IntakeGrant, Tenancy, TenancyRule};
pub use transition::Guard;
pub use window::ScheduleError;
