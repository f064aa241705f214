//! The `lamina` subcommands.

pub mod build;
pub mod deploy;
pub mod up;
