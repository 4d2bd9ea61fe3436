//! Tollgate: a Kubernetes operator that decides GitHub deployment protection rules.

pub mod api;
pub mod github;
pub mod policy;
