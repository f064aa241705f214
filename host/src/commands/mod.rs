//! The `lamina` subcommands.

pub mod build;
pub mod deploy;
pub mod migrate;
pub mod models;
pub mod up;
