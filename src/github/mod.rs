//! Tollgate's only door to GitHub: App authentication, the review callback,
//! checks, run state, pacing, and (in `webhook`) the webhook receiver.
//!
//! Requests are built from owner/repo/run id on the configured API base and sent
//! through octocrab with a relative path: octocrab attaches credentials only to
//! requests for its own base, so a token can never leave for another host.

mod app;
mod checks;
mod client;
mod credentials;
mod error;
mod hook_deliveries;
mod limiter;
mod redact;
mod response;
mod review;
pub mod webhook;

pub use client::{Auth, GitHub, GitHubConfig, split_repository};
pub use credentials::{CredentialError, GitHubFlags, read_secret};
pub use error::GitHubError;
pub use hook_deliveries::{FailedDeliveries, HookDelivery, next_cursor};
pub use limiter::Turn;
pub use response::{Class, classify};
pub use review::{CommentOutcome, Pace, ReviewOutcome, RunState, RunTarget};
