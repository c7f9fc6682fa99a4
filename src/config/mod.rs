//! The daemon's typed configuration: every key, its default, and its meaning.
//!
//! Files are read raw (TOML in [`toml`], the C pgqd's INI in [`ini`]) into a list of
//! [`Entry`]s, each remembering the file and line it came from; [`build`] validates them
//! into [`Config`], the only form the rest of the daemon ever sees (STYLE R7). Key names
//! follow the C pgqd's ini where it has one, so an existing `/etc/pgqd.ini` carries over.
//! This module owns the whole key table ([`KEYS`]), including keys that later features read;
//! `config/pgqd.toml` documents every one of them (a unit test keeps the two in step).
//!
//! Callers: `main.rs` (start, `--check-config`), the signal task (reload on SIGHUP).

pub mod ini;
pub mod perms;
pub mod toml;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
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

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!("expected \"text\" or \"json\", got {s:?}")),
        }
    }
}

/// The base log level (before `-v`/`-q` move it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Warnings and errors.
    Warn,
    /// State changes (the default).
    #[default]
    Info,
    /// Every tick and round.
    Debug,
    /// Everything, including each statement.
    Trace,
}

impl std::str::FromStr for LogLevel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "error" => LogLevel::Error,
            "warn" | "warning" => LogLevel::Warn,
            "info" => LogLevel::Info,
            "debug" => LogLevel::Debug,
            "trace" => LogLevel::Trace,
            _ => return Err(format!("expected error|warn|info|debug|trace, got {s:?}")),
        })
    }
}

/// The syslog facilities the C pgqd accepts.
pub const SYSLOG_FACILITIES: &[&str] = &[
    "auth", "authpriv", "daemon", "user", "local0", "local1", "local2", "local3", "local4",
    "local5", "local6", "local7",
];

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
    /// Interval of the stats log line; zero disables it.
    pub stats_period: Duration,
    /// Maximum age of a database connection before it is replaced.
    pub connection_lifetime: Duration,
    /// Append log lines to this file (reopened on SIGHUP).
    pub logfile: Option<PathBuf>,
    /// Write the process id here; needed for `-d` and for `-s`/`-k`/`-r`.
    pub pidfile: Option<PathBuf>,
    /// Also log to syslog (info and above).
    pub syslog: bool,
    /// syslog identity.
    pub syslog_ident: String,
    /// syslog facility name, one of [`SYSLOG_FACILITIES`].
    pub syslog_facility: String,
    // ---- ours ----
    /// How long a graceful stop waits for statements in flight.
    pub shutdown_timeout: Duration,
    /// `statement_timeout` set on every daemon connection (zero: none).
    pub statement_timeout: Duration,
    /// `lock_timeout` set on every daemon connection (zero: none).
    pub lock_timeout: Duration,
    /// Log format.
    pub log_format: LogFormat,
    /// Base log level; `-v` and `-q` move it.
    pub log_level: LogLevel,
    /// `application_name` of every daemon connection, unless the connstr or PGAPPNAME set one.
    pub application_name: String,
    /// Most connections the daemon holds at once across all databases (0: no limit, one
    /// per database); quiet databases are evicted to stay within it (issue #7).
    pub connection_budget: u32,
    /// Longest wait between reconnect attempts (capped exponential backoff).
    pub reconnect_max_delay: Duration,
    /// Address of the metrics/health HTTP endpoint; None disables it (issue #6).
    pub metrics_listen: Option<SocketAddr>,
    /// Warn when a consumer lags behind its queue by more than this; zero: never (issue #8).
    pub consumer_lag_warning: Duration,
    /// Unregister a consumer that lags behind its queue by more than this; zero: never
    /// (opt-in policy of issue #8; the warning logs what is needed to re-register it).
    pub consumer_unregister_after: Duration,
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
            log_level: LogLevel::Info,
            application_name: "pgqd".into(),
            connection_budget: 128,
            reconnect_max_delay: Duration::from_secs(10),
            metrics_listen: None,
            consumer_lag_warning: Duration::ZERO,
            consumer_unregister_after: Duration::ZERO,
        }
    }
}

/// Every key the config files accept, in the order of `config/pgqd.toml`.
pub const KEYS: &[&str] = &[
    "base_connstr",
    "initial_database",
    "database_list",
    "check_period",
    "ticker_period",
    "maint_period",
    "retry_period",
    "stats_period",
    "connection_lifetime",
    "logfile",
    "pidfile",
    "syslog",
    "syslog_ident",
    "syslog_facility",
    "shutdown_timeout",
    "statement_timeout",
    "lock_timeout",
    "log_format",
    "log_level",
    "application_name",
    "connection_budget",
    "reconnect_max_delay",
    "metrics_listen",
    "consumer_lag_warning",
    "consumer_unregister_after",
];

/// Where a setting was read: file and 1-based line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The file (an `%include`d file for INI entries that came from one).
    pub file: Arc<Path>,
    /// 1-based line number.
    pub line: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// A value as written in a file, before it is checked against its key's type.
#[derive(Debug, Clone, PartialEq)]
pub enum RawValue {
    /// A string (every INI value is one).
    Str(String),
    /// A TOML integer.
    Int(i64),
    /// A TOML float.
    Float(f64),
    /// A TOML boolean.
    Bool(bool),
    /// A TOML array of strings (`database_list`).
    List(Vec<String>),
}

/// One `key = value` read from a file.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The key as written.
    pub key: String,
    /// Its value.
    pub value: RawValue,
    /// Where it was written.
    pub origin: Origin,
}

/// Errors from reading or validating a config file. Messages name the file and line,
/// and never repeat the value of `base_connstr` (it may hold a password).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file cannot be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML / INI.
    #[error("{origin}: {msg}")]
    Syntax {
        /// Where.
        origin: Origin,
        /// What is wrong.
        msg: String,
    },
    /// A key that pgqd does not know.
    #[error("{origin}: unknown key {key:?}")]
    UnknownKey {
        /// Where.
        origin: Origin,
        /// The key.
        key: String,
    },
    /// A known key with a value of the wrong type or out of range.
    #[error("{origin}: bad value for {key}: {msg}")]
    BadValue {
        /// Where.
        origin: Origin,
        /// The key.
        key: String,
        /// What is wrong.
        msg: String,
    },
    /// A rule between keys, or of the whole file, is broken.
    #[error("{}: {msg}", path.display())]
    Invalid {
        /// The top-level file.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
}

/// The two file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Our `pgqd.toml`.
    Toml,
    /// The C pgqd's `pgqd.ini`.
    Ini,
}

impl Format {
    /// Decides the format: by extension (`.toml`; `.ini`/`.conf`), else by content (a file
    /// whose first meaningful line is `[pgqd]` or `%include` is INI, anything else TOML).
    pub fn detect(path: &Path, text: &str) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some("toml") => return Format::Toml,
            Some("ini") | Some("conf") => return Format::Ini,
            _ => {}
        }
        let first = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'));
        match first {
            Some(l) if l.starts_with("[pgqd]") || l.starts_with("%include") => Format::Ini,
            Some(l) if l.starts_with(';') => Format::Ini,
            _ => Format::Toml,
        }
    }
}

/// Reads, parses and validates a config file of either format.
pub fn load(path: &Path) -> Result<Config, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let entries = match Format::detect(path, &text) {
        Format::Toml => toml::parse(&text, path)?,
        Format::Ini => ini::parse(&text, path)?,
    };
    build(&entries, path)
}

/// Validates entries into a [`Config`], starting from the defaults; a key given twice
/// (possible in INI) takes its last value, as in the C pgqd.
pub fn build(entries: &[Entry], path: &Path) -> Result<Config, Error> {
    let mut cfg = Config::default();
    for e in entries {
        apply(&mut cfg, e)?;
    }
    validate(&cfg, path)?;
    Ok(cfg)
}

/// Sets one key. The one place that knows each key's type.
fn apply(cfg: &mut Config, e: &Entry) -> Result<(), Error> {
    let bad = |msg: String| Error::BadValue {
        origin: e.origin.clone(),
        key: e.key.clone(),
        msg,
    };
    let v = &e.value;
    match e.key.as_str() {
        "base_connstr" => {
            let s = string(v).map_err(bad)?;
            // Check the syntax now, so a typo fails at start and not at the first connect.
            // The error never contains the value (it may hold a password).
            crate::conn::parse_connstr(&s).map_err(|err| bad(err.to_string()))?;
            cfg.base_connstr = s;
        }
        "initial_database" => {
            cfg.initial_database = nonempty(string(v).map_err(bad)?).map_err(bad)?
        }
        "database_list" => cfg.database_list = list(v).map_err(bad)?,
        "check_period" => cfg.check_period = positive(duration(v).map_err(bad)?).map_err(bad)?,
        "ticker_period" => cfg.ticker_period = positive(duration(v).map_err(bad)?).map_err(bad)?,
        "maint_period" => cfg.maint_period = positive(duration(v).map_err(bad)?).map_err(bad)?,
        "retry_period" => cfg.retry_period = positive(duration(v).map_err(bad)?).map_err(bad)?,
        "stats_period" => cfg.stats_period = duration(v).map_err(bad)?,
        "connection_lifetime" => cfg.connection_lifetime = duration(v).map_err(bad)?,
        "logfile" => cfg.logfile = path_opt(v).map_err(bad)?,
        "pidfile" => cfg.pidfile = path_opt(v).map_err(bad)?,
        "syslog" => cfg.syslog = boolean(v).map_err(bad)?,
        "syslog_ident" => cfg.syslog_ident = nonempty(string(v).map_err(bad)?).map_err(bad)?,
        "syslog_facility" => {
            let s = string(v).map_err(bad)?;
            if !SYSLOG_FACILITIES.contains(&s.as_str()) {
                return Err(bad(format!(
                    "expected one of {}, got {s:?}",
                    SYSLOG_FACILITIES.join(", ")
                )));
            }
            cfg.syslog_facility = s;
        }
        "shutdown_timeout" => cfg.shutdown_timeout = duration(v).map_err(bad)?,
        "statement_timeout" => cfg.statement_timeout = duration(v).map_err(bad)?,
        "lock_timeout" => cfg.lock_timeout = duration(v).map_err(bad)?,
        "log_format" => cfg.log_format = string(v).map_err(bad)?.parse().map_err(bad)?,
        "log_level" => cfg.log_level = string(v).map_err(bad)?.parse().map_err(bad)?,
        "application_name" => cfg.application_name = string(v).map_err(bad)?,
        "connection_budget" => {
            let n = integer(v).map_err(bad)?;
            cfg.connection_budget = u32::try_from(n)
                .map_err(|_| bad(format!("expected 0 to {}, got {n}", u32::MAX)))?;
        }
        "reconnect_max_delay" => {
            cfg.reconnect_max_delay = positive(duration(v).map_err(bad)?).map_err(bad)?
        }
        "metrics_listen" => {
            let s = string(v).map_err(bad)?;
            cfg.metrics_listen = if s.trim().is_empty() {
                None
            } else {
                Some(s.trim().parse().map_err(|_| {
                    bad(format!(
                        "expected an address such as 127.0.0.1:8432, got {s:?}"
                    ))
                })?)
            };
        }
        "consumer_lag_warning" => cfg.consumer_lag_warning = duration(v).map_err(bad)?,
        "consumer_unregister_after" => cfg.consumer_unregister_after = duration(v).map_err(bad)?,
        _ => {
            return Err(Error::UnknownKey {
                origin: e.origin.clone(),
                key: e.key.clone(),
            });
        }
    }
    Ok(())
}

/// Rules between keys.
fn validate(cfg: &Config, path: &Path) -> Result<(), Error> {
    let invalid = |msg: String| Error::Invalid {
        path: path.to_path_buf(),
        msg,
    };
    if cfg.database_list.iter().any(|d| d.is_empty()) {
        return Err(invalid("database_list has an empty name".into()));
    }
    if let (Some(l), Some(p)) = (&cfg.logfile, &cfg.pidfile)
        && l == p
    {
        return Err(invalid("logfile and pidfile are the same file".into()));
    }
    // The whole connection setup as the daemon will build it (values of keywords such as
    // port or sslmode), so --check-config and a reload catch what the syntax check cannot.
    // Errors name the keyword, never a value.
    crate::conn::daemon_target(cfg, &cfg.initial_database)
        .map_err(|e| invalid(format!("base_connstr: {e}")))?;
    Ok(())
}

fn type_name(v: &RawValue) -> &'static str {
    match v {
        RawValue::Str(_) => "a string",
        RawValue::Int(_) => "an integer",
        RawValue::Float(_) => "a float",
        RawValue::Bool(_) => "a boolean",
        RawValue::List(_) => "an array",
    }
}

fn string(v: &RawValue) -> Result<String, String> {
    match v {
        RawValue::Str(s) => Ok(s.clone()),
        other => Err(format!("expected a string, got {}", type_name(other))),
    }
}

fn nonempty(s: String) -> Result<String, String> {
    if s.trim().is_empty() {
        Err("must not be empty".into())
    } else {
        Ok(s)
    }
}

/// A list of names: a TOML array, or a comma-separated string as in the C pgqd.
fn list(v: &RawValue) -> Result<Vec<String>, String> {
    let items: Vec<String> = match v {
        RawValue::List(l) => l.iter().map(|s| s.trim().to_string()).collect(),
        RawValue::Str(s) if s.trim().is_empty() => return Ok(Vec::new()),
        RawValue::Str(s) => s.split(',').map(|s| s.trim().to_string()).collect(),
        other => {
            return Err(format!(
                "expected a list of names, got {}",
                type_name(other)
            ));
        }
    };
    if items.iter().any(String::is_empty) {
        return Err("empty database name in the list".into());
    }
    Ok(items)
}

/// A duration: a humantime string (`"500ms"`, `"2m"`), or plain seconds as a number or a
/// numeric string (`60`, `0.5`, `"60"`: the C pgqd's form).
pub fn duration(v: &RawValue) -> Result<Duration, String> {
    let secs = |f: f64| -> Result<Duration, String> {
        if f.is_finite() && (0.0..1e12).contains(&f) {
            Ok(Duration::from_secs_f64(f))
        } else {
            Err(format!(
                "expected a non-negative number of seconds, got {f}"
            ))
        }
    };
    match v {
        RawValue::Int(i) => secs(*i as f64),
        RawValue::Float(f) => secs(*f),
        RawValue::Str(s) => {
            let s = s.trim();
            if let Ok(f) = s.parse::<f64>() {
                return secs(f);
            }
            let d = humantime::parse_duration(s).map_err(|e| {
                format!(
                    "expected seconds or a duration such as \"500ms\" or \"2m\", got {s:?} ({e})"
                )
            })?;
            // The same bound as for plain seconds: the daemon adds periods to instants,
            // and a period of more than ~2^63 seconds would overflow one (a panic).
            if d.as_secs_f64() < 1e12 {
                Ok(d)
            } else {
                Err(format!("{s:?} is too long (the limit is 1e12 seconds)"))
            }
        }
        other => Err(format!("expected a duration, got {}", type_name(other))),
    }
}

fn positive(d: Duration) -> Result<Duration, String> {
    if d.is_zero() {
        Err("must be greater than zero".into())
    } else {
        Ok(d)
    }
}

fn boolean(v: &RawValue) -> Result<bool, String> {
    match v {
        RawValue::Bool(b) => Ok(*b),
        RawValue::Int(0) => Ok(false),
        RawValue::Int(1) => Ok(true),
        RawValue::Str(s) => match s.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "on" | "yes" => Ok(true),
            "0" | "false" | "off" | "no" => Ok(false),
            _ => Err(format!("expected a boolean (0/1, true/false), got {s:?}")),
        },
        other => Err(format!("expected a boolean, got {}", type_name(other))),
    }
}

fn integer(v: &RawValue) -> Result<i64, String> {
    match v {
        RawValue::Int(i) => Ok(*i),
        RawValue::Str(s) => s
            .trim()
            .parse()
            .map_err(|_| format!("expected an integer, got {s:?}")),
        other => Err(format!("expected an integer, got {}", type_name(other))),
    }
}

/// A file path; empty means none. A leading `~` or `~user` is expanded like the C pgqd.
fn path_opt(v: &RawValue) -> Result<Option<PathBuf>, String> {
    let s = string(v)?;
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    Ok(Some(expand_tilde(s)?))
}

/// Expands `~/x` (HOME, else the user database) and `~user/x`.
pub fn expand_tilde(s: &str) -> Result<PathBuf, String> {
    let Some(rest) = s.strip_prefix('~') else {
        return Ok(PathBuf::from(s));
    };
    let (user, tail) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, ""),
    };
    let home = if user.is_empty() {
        match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
            Some(h) => PathBuf::from(h),
            None => nix::unistd::User::from_uid(nix::unistd::geteuid())
                .ok()
                .flatten()
                .map(|u| u.dir)
                .ok_or_else(|| "cannot find the home directory for ~".to_string())?,
        }
    } else {
        nix::unistd::User::from_name(user)
            .ok()
            .flatten()
            .map(|u| u.dir)
            .ok_or_else(|| format!("unknown user in ~{user}"))?
    };
    Ok(if tail.is_empty() {
        home
    } else {
        home.join(tail)
    })
}

impl Config {
    /// `key = value` lines of the effective config for the startup log, with any password
    /// in `base_connstr` masked (R8).
    pub fn summary(&self) -> String {
        let d = |d: &Duration| humantime::format_duration(*d).to_string();
        let p = |p: &Option<PathBuf>| {
            p.as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        };
        format!(
            "base_connstr={:?} initial_database={:?} database_list={:?} check_period={} \
             ticker_period={} maint_period={} retry_period={} stats_period={} \
             connection_lifetime={} logfile={:?} pidfile={:?} syslog={} syslog_ident={:?} \
             syslog_facility={} shutdown_timeout={} statement_timeout={} lock_timeout={} \
             log_format={:?} log_level={:?} application_name={:?} connection_budget={} \
             reconnect_max_delay={} metrics_listen={} consumer_lag_warning={} \
             consumer_unregister_after={}",
            crate::conn::mask_connstr(&self.base_connstr),
            self.initial_database,
            self.database_list.join(","),
            d(&self.check_period),
            d(&self.ticker_period),
            d(&self.maint_period),
            d(&self.retry_period),
            d(&self.stats_period),
            d(&self.connection_lifetime),
            p(&self.logfile),
            p(&self.pidfile),
            self.syslog,
            self.syslog_ident,
            self.syslog_facility,
            d(&self.shutdown_timeout),
            d(&self.statement_timeout),
            d(&self.lock_timeout),
            self.log_format,
            self.log_level,
            self.application_name,
            self.connection_budget,
            d(&self.reconnect_max_delay),
            self.metrics_listen
                .map(|a| a.to_string())
                .unwrap_or_default(),
            d(&self.consumer_lag_warning),
            d(&self.consumer_unregister_after),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, value: RawValue) -> Entry {
        Entry {
            key: key.into(),
            value,
            origin: Origin {
                file: Arc::from(Path::new("t.toml")),
                line: 7,
            },
        }
    }

    fn s(v: &str) -> RawValue {
        RawValue::Str(v.into())
    }

    #[test]
    fn durations_accept_humantime_and_plain_seconds() {
        assert_eq!(duration(&s("500ms")), Ok(Duration::from_millis(500)));
        assert_eq!(duration(&s("2m")), Ok(Duration::from_secs(120)));
        assert_eq!(duration(&s("1.5")), Ok(Duration::from_millis(1500)));
        assert_eq!(duration(&RawValue::Int(60)), Ok(Duration::from_secs(60)));
        assert_eq!(
            duration(&RawValue::Float(0.25)),
            Ok(Duration::from_millis(250))
        );
        assert!(duration(&s("-1")).is_err());
        assert!(duration(&RawValue::Int(-3)).is_err());
        assert!(duration(&s("5 parsecs")).is_err());
        assert!(duration(&RawValue::Bool(true)).is_err());
    }

    #[test]
    fn every_key_is_accepted() {
        let mut cfg = Config::default();
        for k in KEYS {
            let v = match *k {
                "database_list" => s("a, b"),
                "syslog" => s("1"),
                "syslog_facility" => s("local3"),
                "log_format" => s("json"),
                "log_level" => s("debug"),
                "connection_budget" => s("5"),
                "metrics_listen" => s("127.0.0.1:8432"),
                "base_connstr" => s("host=/tmp"),
                k if k.ends_with("_period")
                    || k.ends_with("_timeout")
                    || k.ends_with("_lifetime")
                    || k.ends_with("_delay")
                    || k.ends_with("_warning")
                    || k.ends_with("_after") =>
                {
                    s("3s")
                }
                _ => s("x"),
            };
            apply(&mut cfg, &entry(k, v)).unwrap_or_else(|e| panic!("{k}: {e}"));
        }
        assert_eq!(cfg.database_list, vec!["a", "b"]);
        assert_eq!(cfg.log_format, LogFormat::Json);
        assert_eq!(cfg.ticker_period, Duration::from_secs(3));
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let err = apply(&mut Config::default(), &entry("tick_period", s("1"))).unwrap_err();
        assert_eq!(err.to_string(), "t.toml:7: unknown key \"tick_period\"");
    }

    #[test]
    fn bad_values_are_rejected_with_key() {
        let cases = [
            ("ticker_period", s("0")),
            ("ticker_period", s("soon")),
            ("syslog", s("maybe")),
            ("syslog_facility", s("kern")),
            ("log_format", s("xml")),
            ("connection_budget", RawValue::Int(-1)),
            ("metrics_listen", s("localhost")),
            ("initial_database", s("")),
            ("database_list", s("a,,b")),
            ("application_name", RawValue::Int(3)),
        ];
        for (k, v) in cases {
            let err = apply(&mut Config::default(), &entry(k, v.clone()))
                .expect_err(&format!("{k} = {v:?} accepted"));
            let msg = err.to_string();
            assert!(
                msg.starts_with(&format!("t.toml:7: bad value for {k}:")),
                "{msg}"
            );
        }
    }

    #[test]
    fn bad_connstr_error_hides_password() {
        let err = apply(
            &mut Config::default(),
            &entry("base_connstr", s("password=hunter2 host='unterminated")),
        )
        .unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn detects_format() {
        assert_eq!(Format::detect(Path::new("a.toml"), "[pgqd]"), Format::Toml);
        assert_eq!(Format::detect(Path::new("a.ini"), ""), Format::Ini);
        assert_eq!(
            Format::detect(Path::new("pgqd"), "# c\n\n[pgqd]\nlogfile = x\n"),
            Format::Ini
        );
        assert_eq!(
            Format::detect(Path::new("pgqd"), "# c\nticker_period = \"1s\"\n"),
            Format::Toml
        );
    }

    #[test]
    fn summary_masks_password() {
        let cfg = Config {
            base_connstr: "host=h password=hunter2".into(),
            ..Config::default()
        };
        assert!(!cfg.summary().contains("hunter2"));
    }

    #[test]
    fn tilde_expands_to_home() {
        let home = std::env::var("HOME").unwrap_or_default();
        if !home.is_empty() {
            assert_eq!(
                expand_tilde("~/x.log").unwrap(),
                Path::new(&home).join("x.log")
            );
        }
        assert_eq!(expand_tilde("/a/b").unwrap(), Path::new("/a/b"));
    }

    #[test]
    fn shipped_file_documents_every_key_at_its_default() {
        let text = include_str!("../../config/pgqd.toml");
        for k in KEYS {
            assert!(
                text.lines().any(|l| l.starts_with(&format!("# {k} = "))),
                "config/pgqd.toml does not document {k}"
            );
        }
        // Uncommenting every key gives the defaults.
        let uncommented: String = text
            .lines()
            .filter_map(|l| l.strip_prefix("# "))
            .filter(|l| KEYS.iter().any(|k| l.starts_with(&format!("{k} = "))))
            .map(|l| format!("{l}\n"))
            .collect();
        let entries = toml::parse(&uncommented, Path::new("pgqd.toml")).unwrap();
        assert_eq!(entries.len(), KEYS.len());
        assert_eq!(
            build(&entries, Path::new("pgqd.toml")).unwrap(),
            Config::default()
        );
    }
}
