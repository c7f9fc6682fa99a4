//! pgqd: the PgQ queue system for PostgreSQL as one async daemon plus a plain-SQL schema.
//!
//! Layout:
//! - [`schema`]: the SQL components (`sql/`) embedded in install order, and their version;
//! - [`config`]: the daemon's typed configuration, read from TOML or the C pgqd's INI;
//! - [`conn`]: connecting like libpq (connection strings, `PG*` variables, `.pgpass`, TLS);
//! - [`pgerr`]: describing server errors by SQLSTATE for logs and messages;
//! - [`sql`]: every statement the daemon sends, as named constants;
//! - [`restore`]: recognising and repairing a database restored into another cluster;
//! - [`daemon`]: the long-running part. Data flows one way: discovery lists databases →
//!   the supervisor starts or stops one task per database → each task runs its ticker,
//!   maintenance and retry lanes in turn on one connection from the broker; signals turn
//!   into reload/shutdown intents; counters feed the stats line;
//! - [`http`]: `/metrics`, `/healthz`, `/readyz` when `metrics_listen` is set; the figures
//!   come from `daemon::metrics`, which the database tasks report into (the collector lane
//!   `daemon::collect` reads queue and consumer figures every `stats_period`);
//! - [`logging`]: text or JSON log lines to stderr, a reopenable logfile, or syslog;
//! - [`consumer`]: the consumer library (plain, remote, serial, coop) the tools are built on;
//! - [`tools`]: `pgqd mover`, `splitter`, `dispatcher`: remote consumers run like the daemon;
//! - [`cascade`]: cascading queues (pgq_node) and table replication on top (issue #11);
//! - [`replica`]: londiste-style table replication through a cascaded queue (capture, copy, apply, compare);
//! - [`cli`]: subcommands that act on a database and exit (`install`, `migrate`, `status`, …).

pub mod cascade;
pub mod cli;
pub mod config;
pub mod conn;
pub mod consumer;
pub mod daemon;
pub mod http;
pub mod logging;
pub mod pgerr;
pub mod replica;
pub mod restore;
pub mod schema;
pub mod sql;
pub mod tools;
