//! Test support: the in-process fake Kubernetes API and the fake GitHub.
pub mod github;
pub mod kube;
