//! Tollgate: a Kubernetes operator that decides GitHub deployment protection rules.

pub mod api;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod controller;
pub mod github;
pub mod operator;
pub mod policy;
pub mod prometheus;
pub mod telemetry;
