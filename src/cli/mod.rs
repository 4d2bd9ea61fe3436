pub mod commands;
pub mod decide;
pub mod error;
pub mod identity;
pub mod pause;
pub mod status;
pub mod unpause;
