//! Reader for `pgqd.toml`: a flat table of keys (no sections), read with serde into a raw
//! struct that denies unknown fields and keeps each value's span, so every error names
//! the file, the line and the key. Values are checked against their key's type later, in
//! [`super::build`], the same code path as INI values.

use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;
use toml::Spanned;

use super::{Entry, Error, Origin, RawValue};

/// A TOML value of one of the shapes a key may take; which shape fits which key is
/// decided in [`super::build`].
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum TomlValue {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<String>),
}

impl From<TomlValue> for RawValue {
    fn from(v: TomlValue) -> RawValue {
        match v {
            TomlValue::Bool(b) => RawValue::Bool(b),
            TomlValue::Int(i) => RawValue::Int(i),
            TomlValue::Float(f) => RawValue::Float(f),
            TomlValue::Str(s) => RawValue::Str(s),
            TomlValue::List(l) => RawValue::List(l),
        }
    }
}

/// Declares the raw struct with one optional spanned field per key, and its conversion to
/// entries, from one list of names (kept equal to [`super::KEYS`] by a test).
macro_rules! raw_toml {
    ($($key:ident),* $(,)?) => {
        /// The file as written: every field optional, unknown fields denied.
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct RawToml {
            $(#[serde(default)] $key: Option<Spanned<TomlValue>>,)*
        }

        impl RawToml {
            const NAMES: &'static [&'static str] = &[$(stringify!($key)),*];

            fn into_entries(self, text: &str, file: &Arc<Path>) -> Vec<Entry> {
                let mut out = Vec::new();
                $(
                    if let Some(v) = self.$key {
                        let line = line_of(text, v.span().start);
                        out.push(Entry {
                            key: stringify!($key).to_string(),
                            value: v.into_inner().into(),
                            origin: Origin { file: file.clone(), line },
                        });
                    }
                )*
                // Keep the file's order, so errors come in reading order.
                out.sort_by_key(|e| e.origin.line);
                out
            }
        }
    };
}

raw_toml!(
    base_connstr,
    initial_database,
    database_list,
    check_period,
    ticker_period,
    maint_period,
    retry_period,
    stats_period,
    connection_lifetime,
    logfile,
    pidfile,
    syslog,
    syslog_ident,
    syslog_facility,
    shutdown_timeout,
    statement_timeout,
    lock_timeout,
    log_format,
    log_level,
    application_name,
    connection_budget,
    reconnect_max_delay,
    metrics_listen,
    consumer_lag_warning,
    consumer_unregister_after,
);

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Parses `text` (read from `path`) into entries.
pub fn parse(text: &str, path: &Path) -> Result<Vec<Entry>, Error> {
    let file: Arc<Path> = Arc::from(path);
    match ::toml::from_str::<RawToml>(text) {
        Ok(raw) => Ok(raw.into_entries(text, &file)),
        Err(e) => {
            let span = e.span();
            let line = span.as_ref().map(|s| line_of(text, s.start)).unwrap_or(1);
            let origin = Origin { file, line };
            // For an unknown field the span covers the key itself: name it plainly
            // instead of serde's "expected one of <24 names>".
            let spanned = span
                .and_then(|s| text.get(s))
                .map(|s| s.trim().trim_matches('"').trim_matches('\''))
                .unwrap_or("");
            let is_key = !spanned.is_empty()
                && spanned
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.');
            if is_key && !RawToml::NAMES.contains(&spanned) {
                return Err(Error::UnknownKey {
                    origin,
                    key: spanned.to_string(),
                });
            }
            Err(Error::Syntax {
                origin,
                msg: e.message().trim().to_string(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, KEYS, build};
    use std::time::Duration;

    fn load(text: &str) -> Result<Config, Error> {
        let p = Path::new("/etc/pgqd.toml");
        build(&parse(text, p)?, p)
    }

    #[test]
    fn raw_struct_has_every_key() {
        assert_eq!(RawToml::NAMES, KEYS);
    }

    #[test]
    fn reads_typed_values() {
        let cfg = load(
            "base_connstr = \"host=/tmp\"\n\
             database_list = [\"a\", \"b\"]\n\
             ticker_period = \"500ms\"\n\
             maint_period = 90\n\
             retry_period = 2.5\n\
             syslog = true\n\
             connection_budget = 7\n\
             log_format = \"json\"\n",
        )
        .unwrap();
        assert_eq!(cfg.database_list, vec!["a", "b"]);
        assert_eq!(cfg.ticker_period, Duration::from_millis(500));
        assert_eq!(cfg.maint_period, Duration::from_secs(90));
        assert_eq!(cfg.retry_period, Duration::from_millis(2500));
        assert!(cfg.syslog);
        assert_eq!(cfg.connection_budget, 7);
    }

    #[test]
    fn empty_file_is_the_defaults() {
        assert_eq!(load("# nothing\n").unwrap(), Config::default());
    }

    #[test]
    fn unknown_key_names_line_and_key() {
        let err = load("ticker_period = 1\n\ntick_period = 2\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "/etc/pgqd.toml:3: unknown key \"tick_period\""
        );
    }

    #[test]
    fn bad_value_names_line_and_key() {
        let err = load("\nticker_period = \"soon\"\n").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("/etc/pgqd.toml:2: bad value for ticker_period:"),
            "{msg}"
        );
    }

    #[test]
    fn syntax_error_names_line() {
        let err = load("a = 1\nticker_period = = 2\n").unwrap_err();
        assert!(err.to_string().starts_with("/etc/pgqd.toml:2:"), "{err}");
        let err = load("ticker_period = 1\n[pgqd]\nx = 1\n").unwrap_err();
        assert!(err.to_string().contains("/etc/pgqd.toml:"), "{err}");
    }

    #[test]
    fn wrong_shape_is_an_error() {
        let err = load("syslog_ident = 3\n").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("/etc/pgqd.toml:1: bad value for syslog_ident"),
            "{err}"
        );
        assert!(load("ticker_period = 1979-05-27\n").is_err());
    }
}
