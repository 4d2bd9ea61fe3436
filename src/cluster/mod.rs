//! The Kubernetes API server as every part of Tollgate meets it (the
//! controllers and intake alike): which server this is, whether it serves
//! Tollgate's CRDs at this binary's version, the cap on requests in flight,
//! Events, and the workloads gates may require healthy.

pub mod api_limit;
pub mod crds;
pub mod events;
pub mod server;
pub mod status;
pub mod workloads;

pub use crds::{CrdError, Installed, check_crds};
pub use server::Server;
