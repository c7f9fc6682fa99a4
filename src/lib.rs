//! pgqd: the PgQ queue system for PostgreSQL as one async daemon plus a plain-SQL schema.
//!
//! Layout:
//! - [`schema`]: the SQL components (`sql/`) embedded in install order, and their version;
//! - [`conn`]: connecting like libpq (connection strings, `PG*` variables, defaults);
//! - [`pgerr`]: describing server errors by SQLSTATE for logs and messages;
//! - [`cli`]: subcommands that act on a database and exit (`install`, …).

pub mod cli;
pub mod config;
pub mod conn;
pub mod daemon;
pub mod logging;
pub mod pgerr;
pub mod schema;
pub mod sql;
