//! The cascade worker's TOML config: one flat table, unknown keys refused (the toml
//! crate's errors name the line), durations as humantime strings. Read by
//! `pgqd cascade worker CONFIG` and by the admin commands that take `--config`.
//!
//! ```toml
//! queue_name = "events"                          # the cascaded queue
//! db = "host=/var/run/postgresql dbname=branch1" # this node's database
//! # optional, shown at their defaults:
//! node_name = "branch1"          # checked against the node's own name when set
//! poll_interval = "1s"           # idle wait between looks at the provider
//! error_delay = "5s"             # wait before a failed batch is tried again
//! local_wm_publish_period = "5m" # how often a node reports its watermark upstream
//! global_wm_publish_period = "5m"# root: how often the global watermark goes down
//! stats_period = "30s"           # progress line in the log
//! pidfile = "/run/pgqd/branch1.pid"
//! logfile = "/var/log/pgqd/branch1.log"
//! log_level = "info"
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::config::LogLevel;

/// The raw file, as serde reads it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkerConfig {
    queue_name: String,
    db: String,
    #[serde(default)]
    node_name: Option<String>,
    #[serde(default)]
    poll_interval: Option<String>,
    #[serde(default)]
    error_delay: Option<String>,
    #[serde(default)]
    local_wm_publish_period: Option<String>,
    #[serde(default)]
    global_wm_publish_period: Option<String>,
    #[serde(default)]
    stats_period: Option<String>,
    #[serde(default)]
    pidfile: Option<PathBuf>,
    #[serde(default)]
    logfile: Option<PathBuf>,
    #[serde(default)]
    log_level: Option<String>,
}

/// A checked worker config. [`WorkerConfig::new`] fills the defaults (for library use).
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerConfig {
    /// The cascaded queue.
    pub queue_name: String,
    /// This node's database (libpq connection string).
    pub db: String,
    /// When set, the node in `db` must carry this name.
    pub node_name: Option<String>,
    /// Longest idle wait. Default 1 s.
    pub poll_interval: Duration,
    /// Wait before a failed batch is tried again. Default 5 s.
    pub error_delay: Duration,
    /// How often the node's watermark is sent to its provider. Default 5 min (3.5's).
    pub local_wm_publish_period: Duration,
    /// Root: how often the global watermark is published. Default 5 min (3.5's).
    pub global_wm_publish_period: Duration,
    /// Progress line interval. Default 30 s.
    pub stats_period: Duration,
    /// Pidfile (needed by -d, -s, -k, -r).
    pub pidfile: Option<PathBuf>,
    /// Log file (stderr when unset).
    pub logfile: Option<PathBuf>,
    /// Log level.
    pub log_level: LogLevel,
    /// application_name of the worker's sessions.
    pub application_name: String,
}

impl WorkerConfig {
    /// A worker for `queue_name` on the node in `db`, with the defaults.
    pub fn new(queue_name: &str, db: &str) -> WorkerConfig {
        WorkerConfig {
            queue_name: queue_name.to_string(),
            db: db.to_string(),
            node_name: None,
            poll_interval: Duration::from_secs(1),
            error_delay: Duration::from_secs(5),
            local_wm_publish_period: Duration::from_secs(300),
            global_wm_publish_period: Duration::from_secs(300),
            stats_period: Duration::from_secs(30),
            pidfile: None,
            logfile: None,
            log_level: LogLevel::default(),
            application_name: "pgqd-cascade".to_string(),
        }
    }

    /// Reads and checks `path`; the error is one line for the operator.
    pub fn load(path: &Path) -> Result<WorkerConfig, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        WorkerConfig::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parses and checks the text of a config file.
    pub fn parse(text: &str) -> Result<WorkerConfig, String> {
        let raw: RawWorkerConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut c = WorkerConfig::new(&raw.queue_name, &raw.db);
        let dur = |key: &str, v: &Option<String>, into: &mut Duration| -> Result<(), String> {
            if let Some(s) = v {
                let d = humantime::parse_duration(s)
                    .map_err(|e| format!("{key}: bad duration {s:?}: {e}"))?;
                if d.is_zero() {
                    return Err(format!("{key} must be above 0"));
                }
                *into = d;
            }
            Ok(())
        };
        dur("poll_interval", &raw.poll_interval, &mut c.poll_interval)?;
        dur("error_delay", &raw.error_delay, &mut c.error_delay)?;
        dur(
            "local_wm_publish_period",
            &raw.local_wm_publish_period,
            &mut c.local_wm_publish_period,
        )?;
        dur(
            "global_wm_publish_period",
            &raw.global_wm_publish_period,
            &mut c.global_wm_publish_period,
        )?;
        dur("stats_period", &raw.stats_period, &mut c.stats_period)?;
        if let Some(l) = &raw.log_level {
            c.log_level = l.parse().map_err(|e| format!("log_level: {e}"))?;
        }
        c.node_name = raw.node_name;
        c.pidfile = raw.pidfile;
        c.logfile = raw.logfile;
        c.validate()?;
        Ok(c)
    }

    /// Checks what can be checked without a database.
    pub fn validate(&self) -> Result<(), String> {
        if self.queue_name.trim().is_empty() {
            return Err("queue_name is empty".into());
        }
        if self.db.trim().is_empty() {
            return Err("db is empty".into());
        }
        if self
            .node_name
            .as_deref()
            .is_some_and(|n| n.trim().is_empty())
        {
            return Err("node_name is empty".into());
        }
        crate::conn::parse_connstr(&self.db).map_err(|e| format!("db: {e}"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses() {
        let c = WorkerConfig::parse("queue_name = 'q'\ndb = 'dbname=x'\npoll_interval = '250ms'")
            .unwrap();
        assert_eq!(c.poll_interval, Duration::from_millis(250));
        assert_eq!(c.error_delay, Duration::from_secs(5));
        assert!(WorkerConfig::parse("queue_name = 'q'").is_err());
        assert!(WorkerConfig::parse("queue_name = 'q'\ndb = 'dbname=x'\nbogus = 1").is_err());
        assert!(
            WorkerConfig::parse("queue_name = 'q'\ndb = 'dbname=x'\nerror_delay = 'soon'").is_err()
        );
        assert!(
            WorkerConfig::parse("queue_name = 'q'\ndb = 'dbname=x'\npoll_interval = '0s'").is_err()
        );
        assert!(WorkerConfig::parse("queue_name = ''\ndb = 'dbname=x'").is_err());
        assert!(
            WorkerConfig::parse("queue_name = 'q'\ndb = 'dbname=x'\nlog_level = 'loud'").is_err()
        );
    }
}
