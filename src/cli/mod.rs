//! Subcommands of the `pgqd` binary that act on a database and exit (R15: one file per
//! command, plain enum dispatch in `main.rs`).

pub mod install;
