//! The `tollgate` command's subcommands that are not the operator itself.

mod args;
pub mod commands;
pub mod decide;
pub mod doctor;
pub mod error;
pub mod evaluate;
pub mod identity;
pub mod pause;
pub mod status;
pub mod unpause;
