//! The Kubernetes API server as every part of Tollgate meets it: which server
//! this is (for error messages people can act on), and whether it serves
//! Tollgate's CRDs at this binary's version.

pub mod crds;
pub mod server;

pub use crds::{CrdError, Installed, check_crds};
pub use server::Server;
