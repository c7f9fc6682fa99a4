//! The daemon's typed configuration: every key, its default, and its meaning.
//!
//! Files are read raw (TOML in `toml.rs`, the C pgqd's INI in `ini.rs`) and validated into
//! [`Config`]; the rest of the daemon only ever sees this validated form. Key names follow
//! the C pgqd's ini where it has one, so an existing `/etc/pgqd.ini` carries over.
//! This module owns the whole key table, including keys that later features read.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Validated daemon configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    // ---- keys of the C pgqd ----
    /// libpq connection string without dbname; empty means libpq defaults and `PG*`.
    pub base_connstr: String,
    /// Database used to list the cluster's databases (never held open if it is a template).
    pub initial_database: String,
    /// Databases to serve; empty means discover every database that allows connections.
    pub database_list: Vec<String>,
    /// How often to re-list databases and re-probe those without pgq.
    pub check_period: Duration,
    /// The longest a due tick may wait.
    pub ticker_period: Duration,
    /// Pause between maintenance rounds per database.
    pub maint_period: Duration,
    /// Pause between retry-queue flushes per database.
    pub retry_period: Duration,
    /// Interval of the stats log line.
    pub stats_period: Duration,
    /// Maximum age of a database connection before it is replaced.
    pub connection_lifetime: Duration,
    /// Append log lines to this file (reopened on SIGHUP).
    pub logfile: Option<PathBuf>,
    /// Write the process id here; needed for `-d` and for `-s`/`-k`/`-r`.
    pub pidfile: Option<PathBuf>,
    /// Also log to syslog.
    pub syslog: bool,
    /// syslog identity.
    pub syslog_ident: String,
    /// syslog facility name.
    pub syslog_facility: String,
    // ---- ours ----
    /// How long a graceful stop waits for statements in flight.
    pub shutdown_timeout: Duration,
    /// `statement_timeout` set on every daemon connection.
    pub statement_timeout: Duration,
    /// `lock_timeout` set on every daemon connection.
    pub lock_timeout: Duration,
    /// Log format.
    pub log_format: LogFormat,
    /// `application_name` of every daemon connection.
    pub application_name: String,
    /// Most connections the daemon holds at once across all databases (0: one per database).
    pub connection_budget: u32,
    /// Address of the metrics/health HTTP endpoint; None disables it.
    pub metrics_listen: Option<SocketAddr>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            base_connstr: String::new(),
            initial_database: "template1".into(),
            database_list: Vec::new(),
            check_period: Duration::from_secs(60),
            ticker_period: Duration::from_secs(1),
            maint_period: Duration::from_secs(120),
            retry_period: Duration::from_secs(30),
            stats_period: Duration::from_secs(30),
            connection_lifetime: Duration::from_secs(3600),
            logfile: None,
            pidfile: None,
            syslog: false,
            syslog_ident: "pgqd".into(),
            syslog_facility: "daemon".into(),
            shutdown_timeout: Duration::from_secs(10),
            statement_timeout: Duration::from_secs(300),
            lock_timeout: Duration::from_secs(10),
            log_format: LogFormat::Text,
            application_name: "pgqd".into(),
            connection_budget: 0,
            metrics_listen: None,
        }
    }
}
