//! One module per command group of spec/cli.md.

pub mod deploy;
