//! The `tollgate` command's subcommands that are not the operator itself.

pub mod evaluate;
