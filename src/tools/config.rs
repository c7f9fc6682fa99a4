//! The tools' TOML config: one flat table per file, unknown keys refused (the toml
//! crate's errors name the line). Keys common to every tool, then each tool's own; a key
//! of another tool is refused by [`ToolConfig::check`] so a mover config cannot be run
//! as a dispatcher by mistake.
//!
//! ```toml
//! source = "host=/var/run/postgresql dbname=app"   # where the queue is
//! queue = "events"
//! consumer = "events_to_archive"                   # consumer name in the source
//! target = "dbname=archive"                        # where the events go (needs pgq_ext)
//! # optional, shown at their defaults:
//! poll_interval = "1s"        # longest idle wait (NOTIFY pgqd_tick wakes earlier)
//! fetch_size = 0              # >0: read batches through a cursor in chunks of this many
//! max_retries = 5             # retries before an event goes to failed_table
//! retry_delay = "30s"
//! error_delay = "5s"          # wait before a failed batch is tried again
//! failed_table = "pgqd_failed_event"
//! stats_period = "30s"        # progress line in the log
//! pidfile = "/run/pgqd/mover.pid"    # needed by -d, -s, -k, -r
//! logfile = "/var/log/pgqd/mover.log" # needed by -d
//! log_level = "info"
//! # mover:      target_queue = "events"          (default: queue)
//! # splitter:   include = ["public.orders"], exclude = ["public.tmp_*"],
//! #             [routes] "public.orders" = "orders_q"   (default: the table name)
//! # dispatcher: dest_table = "public.orders_log", fields = ["id", "amount"],
//! #             part_field = "created_at", part_period = "day" | "month"
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::config::LogLevel;
use crate::consumer::ConsumerConfig;

/// Which tool runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Queue mover: every event to one queue in the target.
    Mover,
    /// Queue splitter: events to target queues by table name (ev_extra1).
    Splitter,
    /// Table dispatcher: trigger events into target tables.
    Dispatcher,
}

impl Kind {
    /// The subcommand name.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Mover => "mover",
            Kind::Splitter => "splitter",
            Kind::Dispatcher => "dispatcher",
        }
    }
}

/// Partition period of the table dispatcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PartPeriod {
    /// One partition per day: `<table>_YYYY_MM_DD`.
    Day,
    /// One partition per month: `<table>_YYYY_MM`.
    Month,
}

/// A tool's config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolConfig {
    /// Source connection string.
    pub source: String,
    /// Source queue.
    pub queue: String,
    /// Consumer name in the source.
    pub consumer: String,
    /// Target connection string.
    pub target: String,
    /// Longest idle wait.
    #[serde(default, with = "opt_duration")]
    pub poll_interval: Option<Duration>,
    /// Cursor chunk size (0: whole batches).
    #[serde(default)]
    pub fetch_size: u32,
    /// Retries before the failed table.
    #[serde(default)]
    pub max_retries: Option<u32>,
    /// Delay of an event retry.
    #[serde(default, with = "opt_duration")]
    pub retry_delay: Option<Duration>,
    /// Wait before retrying a failed batch.
    #[serde(default, with = "opt_duration")]
    pub error_delay: Option<Duration>,
    /// The failed-events table in the target.
    #[serde(default)]
    pub failed_table: Option<String>,
    /// Interval of the progress line.
    #[serde(default, with = "opt_duration")]
    pub stats_period: Option<Duration>,
    /// Pidfile.
    #[serde(default)]
    pub pidfile: Option<PathBuf>,
    /// Logfile (stderr when unset).
    #[serde(default)]
    pub logfile: Option<PathBuf>,
    /// Log level.
    #[serde(default)]
    pub log_level: Option<String>,
    /// Mover: the target queue (default: `queue`).
    #[serde(default)]
    pub target_queue: Option<String>,
    /// Splitter: tables to route (empty: all); `*` at the end matches a prefix.
    #[serde(default)]
    pub include: Vec<String>,
    /// Splitter: tables never routed.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Splitter: table → target queue (default: the table name itself).
    #[serde(default)]
    pub routes: BTreeMap<String, String>,
    /// Dispatcher: the base target table.
    #[serde(default)]
    pub dest_table: Option<String>,
    /// Dispatcher: the columns to copy (default: every column of the event the table has).
    #[serde(default)]
    pub fields: Vec<String>,
    /// Dispatcher: the event field that picks the partition.
    #[serde(default)]
    pub part_field: Option<String>,
    /// Dispatcher: day or month partitions.
    #[serde(default)]
    pub part_period: Option<PartPeriod>,
}

mod opt_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s)
            .map(Some)
            .map_err(|e| serde::de::Error::custom(format!("bad duration {s:?}: {e}")))
    }
}

impl ToolConfig {
    /// Reads and checks `path` for tool `kind`; the error is one line for the operator.
    pub fn load(path: &Path, kind: Kind) -> Result<ToolConfig, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let cfg: ToolConfig =
            toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        cfg.check(kind)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(cfg)
    }

    /// Refuses keys of other tools and missing keys of this one.
    pub fn check(&self, kind: Kind) -> Result<(), String> {
        let splitter =
            !self.include.is_empty() || !self.exclude.is_empty() || !self.routes.is_empty();
        let dispatcher = self.dest_table.is_some()
            || !self.fields.is_empty()
            || self.part_field.is_some()
            || self.part_period.is_some();
        let mover = self.target_queue.is_some();
        let foreign = match kind {
            Kind::Mover => splitter || dispatcher,
            Kind::Splitter => mover || dispatcher,
            Kind::Dispatcher => mover || splitter,
        };
        if foreign {
            return Err(format!("keys of another tool in a {} config", kind.name()));
        }
        if kind == Kind::Dispatcher {
            if self.dest_table.is_none() {
                return Err("dest_table is required".into());
            }
            if self.part_field.is_some() != self.part_period.is_some() {
                return Err("part_field and part_period go together".into());
            }
        }
        if let Some(l) = &self.log_level {
            l.parse::<LogLevel>()
                .map_err(|e| format!("log_level: {e}"))?;
        }
        self.consumer_config().validate().map_err(|e| e.to_string())
    }

    /// The consumer this tool runs: a remote consumer with pgq_ext batch tracking.
    pub fn consumer_config(&self) -> ConsumerConfig {
        let mut c = ConsumerConfig::new(&self.source, &self.queue, &self.consumer);
        c.target = Some(self.target.clone());
        if let Some(v) = self.poll_interval {
            c.poll_interval = v;
        }
        c.fetch_size = (self.fetch_size > 0).then_some(self.fetch_size);
        if let Some(v) = self.max_retries {
            c.max_retries = v;
        }
        if let Some(v) = self.retry_delay {
            c.retry_delay = v;
        }
        if let Some(v) = self.error_delay {
            c.error_delay = v;
        }
        if let Some(v) = &self.failed_table {
            c.failed_table = v.clone();
        }
        c.application_name = "pgqd-tool".into();
        c
    }

    /// The progress line's interval (30 s).
    pub fn stats_period(&self) -> Duration {
        self.stats_period.unwrap_or(Duration::from_secs(30))
    }

    /// The log level (info).
    pub fn level(&self) -> LogLevel {
        self.log_level
            .as_deref()
            .and_then(|l| l.parse().ok())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "source = 's'\nqueue = 'q'\nconsumer = 'c'\ntarget = 't'\n";

    fn parse(extra: &str, kind: Kind) -> Result<ToolConfig, String> {
        let cfg: ToolConfig =
            toml::from_str(&format!("{BASE}{extra}")).map_err(|e| e.to_string())?;
        cfg.check(kind).map(|_| cfg)
    }

    #[test]
    fn keys_belong_to_their_tool() {
        assert!(parse("target_queue = 'x'", Kind::Mover).is_ok());
        assert!(parse("target_queue = 'x'", Kind::Splitter).is_err());
        assert!(parse("include = ['a']", Kind::Mover).is_err());
        assert!(parse("dest_table = 'a'", Kind::Dispatcher).is_ok());
        assert!(parse("", Kind::Dispatcher).is_err());
        assert!(parse("dest_table = 'a'\npart_field = 'x'", Kind::Dispatcher).is_err());
        assert!(
            parse(
                "dest_table = 'a'\npart_field = 'x'\npart_period = 'week'",
                Kind::Dispatcher
            )
            .is_err()
        );
        assert!(parse("bogus = 1", Kind::Mover).is_err());
        assert!(parse("poll_interval = 'soon'", Kind::Mover).is_err());
        let c = parse("poll_interval = '250ms'\nfetch_size = 100", Kind::Mover).unwrap();
        let cc = c.consumer_config();
        assert_eq!(cc.poll_interval, Duration::from_millis(250));
        assert_eq!(cc.fetch_size, Some(100));
        assert_eq!(cc.target.as_deref(), Some("t"));
    }
}
