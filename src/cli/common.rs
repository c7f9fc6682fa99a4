//! What every admin subcommand shares: the connection flags, `--format`, the error type
//! with its exit codes, the connection wrapper that turns server errors into messages an
//! operator can act on, and the small output helpers (aligned tables, compact durations).
//!
//! Called by the files next to this one (`create.rs`, `status.rs`, …). No SQL text here is
//! built from data: names always travel as bind parameters.

use std::time::Duration;

use clap::{Args, ValueEnum};
use tokio_postgres::Client;

use crate::conn;

/// Exit code for a runtime failure.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code for a usage error.
pub const EXIT_USAGE: u8 = 2;

/// Connection flags of every command that acts on one database, like `pgqd install`.
#[derive(Args, Debug, Clone, Default)]
pub struct ConnArgs {
    /// libpq connection string (key=value or URL); PG* variables and ~/.pgpass fill the rest.
    #[arg(long, short = 'c', default_value = "")]
    pub connstr: String,
    /// Database name (overrides the connection string and PGDATABASE).
    #[arg(long, short = 'd')]
    pub dbname: Option<String>,
}

/// Output format of the read commands.
#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Format {
    /// Aligned columns for people.
    #[default]
    Table,
    /// One JSON document (or one per line for `tail`) for scripts.
    Json,
}

/// Why an admin command failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad arguments: exit code 2.
    #[error("{0}")]
    Usage(String),
    /// Could not connect.
    #[error(transparent)]
    Conn(#[from] conn::Error),
    /// The database has no pgq schema.
    #[error("database {db:?} has no pgq schema (install it with: pgqd install --dbname {db:?})")]
    NoPgq {
        /// The database.
        db: String,
    },
    /// The queue does not exist.
    #[error(
        "no queue named {queue:?} in database {db:?} (pgqd status lists the queues; \
         pgqd create makes one)"
    )]
    UnknownQueue {
        /// The queue asked for.
        queue: String,
        /// The database.
        db: String,
    },
    /// The consumer is not subscribed to the queue.
    #[error(
        "consumer {consumer:?} is not registered on queue {queue:?} (pgqd status lists \
         the queue's consumers; pgqd register subscribes one)"
    )]
    NotRegistered {
        /// The queue.
        queue: String,
        /// The consumer asked for.
        consumer: String,
    },
    /// The role lacks a privilege; `needs` names the role (or ownership) that has it.
    #[error(
        "permission denied: role {user:?} may not {what}; that needs {needs} \
         (GRANT it to {user:?}, or connect as a role that has it)"
    )]
    Permission {
        /// What was attempted.
        what: String,
        /// The role or ownership needed.
        needs: String,
        /// The role we are connected as.
        user: String,
    },
    /// The database is not in a state where the command may act.
    #[error("{0}")]
    Refused(String),
    /// A runtime failure that is not a server error (a timeout, a broken pipe).
    #[error("{0}")]
    Failed(String),
    /// A statement failed; `what` says which.
    #[error("{what}: {}", crate::pgerr::describe(.source))]
    Sql {
        /// The step that failed.
        what: String,
        /// The server's error.
        #[source]
        source: tokio_postgres::Error,
    },
}

impl Error {
    /// The process exit code: 2 for usage errors (a bad connection string too), 1 for
    /// everything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) => EXIT_USAGE,
            // A connection string that cannot be parsed is a usage error, like a bad flag.
            Error::Conn(conn::Error::BadConnstr(_)) => EXIT_USAGE,
            _ => EXIT_FAILURE,
        }
    }
}

/// One connected database, with the names the error messages need.
pub struct Db {
    /// The connection.
    pub client: Client,
    /// `current_database()`.
    pub name: String,
    /// `current_user`.
    pub user: String,
}

/// The pgq role that may call each group of functions (see `sql/pgq/90_grants.sql`).
pub const ROLE_ADMIN: &str = "role pgq_admin";
/// Consumers' role.
pub const ROLE_READER: &str = "role pgq_reader";
/// Producers' role.
pub const ROLE_WRITER: &str = "role pgq_writer";

impl Db {
    /// Connects as libpq would (connection string, `PG*`, `.pgpass`).
    pub async fn open(args: &ConnArgs) -> Result<Db, Error> {
        let target = conn::config_from(&args.connstr, args.dbname.as_deref())?;
        Db::open_target(&target).await
    }

    /// Connects to an already resolved target.
    pub async fn open_target(target: &conn::Target) -> Result<Db, Error> {
        let client = conn::connect(target).await?;
        let row = client
            .query_one(
                "select pg_catalog.current_database()::text, current_user::text",
                &[],
            )
            .await
            .map_err(|source| Error::Sql {
                what: "reading the session".into(),
                source,
            })?;
        Ok(Db {
            client,
            name: row.get(0),
            user: row.get(1),
        })
    }

    /// Maps a failed statement: permission errors (42501) name the role `needs`.
    pub fn err<W: Into<String>>(
        &self,
        what: W,
        needs: &str,
    ) -> impl FnOnce(tokio_postgres::Error) -> Error + use<W> {
        let what = what.into();
        let needs = needs.to_string();
        let user = self.user.clone();
        move |source| {
            if crate::pgerr::sqlstate(&source) == Some("42501") {
                Error::Permission { what, needs, user }
            } else {
                Error::Sql { what, source }
            }
        }
    }

    /// Whether schema `pgq` exists here.
    pub async fn has_pgq(&self) -> Result<bool, Error> {
        Ok(self
            .client
            .query_one(crate::sql::PROBE_SCHEMA, &[])
            .await
            .map_err(self.err("looking for schema pgq", "nothing"))?
            .get(0))
    }

    /// Fails with [`Error::NoPgq`] when schema `pgq` is missing.
    pub async fn require_pgq(&self) -> Result<(), Error> {
        if self.has_pgq().await? {
            Ok(())
        } else {
            Err(Error::NoPgq {
                db: self.name.clone(),
            })
        }
    }

    /// Fails with [`Error::UnknownQueue`] unless `queue` exists (checks pgq first).
    pub async fn require_queue(&self, queue: &str) -> Result<(), Error> {
        self.require_pgq().await?;
        let found = self
            .client
            .query_opt(
                "select 1 from pgq.get_queue_info($1::text) limit 1",
                &[&queue],
            )
            .await
            .map_err(self.err("looking up the queue", "USAGE on schema pgq"))?;
        match found {
            Some(_) => Ok(()),
            None => Err(Error::UnknownQueue {
                queue: queue.to_string(),
                db: self.name.clone(),
            }),
        }
    }

    /// Whether `consumer` is subscribed to `queue`.
    pub async fn is_registered(&self, queue: &str, consumer: &str) -> Result<bool, Error> {
        Ok(self
            .client
            .query_opt(
                "select 1 from pgq.get_consumer_info($1::text, $2::text)",
                &[&queue, &consumer],
            )
            .await
            .map_err(self.err("looking up the consumer", "USAGE on schema pgq"))?
            .is_some())
    }
}

/// Refuses names pgq cannot hold: empty ones (they could only be mistakes on a command
/// line) and names with a NUL byte (PostgreSQL text cannot store it).
pub fn check_name(kind: &str, name: &str) -> Result<(), Error> {
    if name.is_empty() {
        return Err(Error::Usage(format!("the {kind} name must not be empty")));
    }
    if name.contains('\0') {
        return Err(Error::Usage(format!(
            "the {kind} name {name:?} contains a NUL byte, which PostgreSQL cannot store"
        )));
    }
    Ok(())
}

/// Parses a duration: humantime (`500ms`, `1m30s`) or plain seconds (`60`, `0.5`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if let Ok(secs) = t.parse::<f64>() {
        if !(secs.is_finite() && secs >= 0.0) {
            return Err(format!("invalid duration {s:?}: must be zero or more"));
        }
        // try_: a number of seconds too large for a Duration is an error, not a panic.
        return Duration::try_from_secs_f64(secs)
            .ok()
            .filter(|d| d.as_secs_f64() < 1e12)
            .ok_or_else(|| format!("invalid duration {s:?}: too large"));
    }
    let d = humantime::parse_duration(t).map_err(|e| format!("invalid duration {s:?}: {e}"))?;
    // Commands add it to an instant; beyond ~2^63 seconds that would overflow (a panic).
    if d.as_secs_f64() < 1e12 {
        Ok(d)
    } else {
        Err(format!("invalid duration {s:?}: too large"))
    }
}

/// A duration in seconds as a short human string: `850ms`, `4.2s`, `17s`, `5m12s`,
/// `3h05m`, `2d03h`. Negative values (clock skew) show with a minus sign.
pub fn fmt_secs(secs: f64) -> String {
    if secs < 0.0 {
        return format!("-{}", fmt_secs(-secs));
    }
    if secs < 1.0 {
        return format!("{}ms", (secs * 1000.0).round() as u64);
    }
    if secs < 10.0 && secs.fract() != 0.0 {
        return format!("{secs:.1}s");
    }
    let s = secs.round() as u64;
    // The larger unit, then the smaller one unless it is zero: 2h, 2h05m, 90s → 1m30s.
    let two = |big: u64, bu: &str, small: u64, su: &str| {
        if small == 0 {
            format!("{big}{bu}")
        } else {
            format!("{big}{bu}{small:02}{su}")
        }
    };
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => two(s / 60, "m", s % 60, "s"),
        3600..=86399 => two(s / 3600, "h", (s % 3600) / 60, "m"),
        _ => two(s / 86400, "d", (s % 86400) / 3600, "h"),
    }
}

/// An optional figure, or `-` when it is NULL.
pub fn or_dash<T: ToString>(v: Option<T>) -> String {
    v.map(|x| x.to_string()).unwrap_or_else(|| "-".into())
}

/// `s` with control characters (newlines, tabs, escape sequences) shown as `\n`,
/// `\u{1b}`…, so data cannot break a line-oriented layout or drive the terminal.
pub fn printable(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_string();
    }
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Renders rows under a header as aligned columns separated by two spaces. Columns
/// whose index is in `right` are right-aligned (numbers). Control characters in cells
/// are escaped so a hostile name cannot break the layout or the terminal.
pub fn table(header: &[&str], rows: &[Vec<String>], right: &[usize]) -> String {
    let clean = |s: &str| printable(s);
    let cells: Vec<Vec<String>> = std::iter::once(header.iter().map(|h| h.to_string()).collect())
        .chain(
            rows.iter()
                .map(|r| r.iter().map(|c| clean(c)).collect::<Vec<_>>()),
        )
        .collect();
    let mut width = vec![0usize; header.len()];
    for r in &cells {
        for (i, c) in r.iter().enumerate() {
            width[i] = width[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in &cells {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            let pad = width[i] - c.chars().count();
            let last = i + 1 == r.len();
            if right.contains(&i) {
                line.push_str(&" ".repeat(pad));
                line.push_str(c);
            } else {
                line.push_str(c);
                if !last {
                    line.push_str(&" ".repeat(pad));
                }
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Prints a JSON value, pretty, on stdout.
pub fn print_json(v: &serde_json::Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| "null".into())
    );
}

/// SQL that renders a timestamptz as ISO 8601 in UTC, independent of the session's
/// DateStyle and TimeZone (used inside the commands' fixed queries).
#[macro_export]
#[doc(hidden)]
macro_rules! iso_utc {
    ($col:literal) => {
        concat!(
            "pg_catalog.to_char(",
            $col,
            " at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
        )
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_format_compactly() {
        assert_eq!(fmt_secs(0.25), "250ms");
        assert_eq!(fmt_secs(4.24), "4.2s");
        assert_eq!(fmt_secs(17.4), "17s");
        assert_eq!(fmt_secs(312.0), "5m12s");
        assert_eq!(fmt_secs(3.0 * 3600.0 + 300.0), "3h05m");
        assert_eq!(fmt_secs(2.0 * 86400.0 + 3.0 * 3600.0), "2d03h");
        assert_eq!(fmt_secs(-2.5), "-2.5s");
        assert_eq!(fmt_secs(3.0), "3s");
        assert_eq!(fmt_secs(7200.0), "2h");
        assert_eq!(fmt_secs(60.0), "1m");
    }

    #[test]
    fn durations_parse_both_ways() {
        assert_eq!(parse_duration("60").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("0.5").unwrap(), Duration::from_millis(500));
        assert!(parse_duration("-1").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn tables_align_and_escape() {
        let t = table(
            &["NAME", "N"],
            &[
                vec!["a".into(), "1".into()],
                vec!["long\nname".into(), "100".into()],
            ],
            &[1],
        );
        assert_eq!(t, "NAME          N\na             1\nlong\\nname  100\n");
    }

    #[test]
    fn huge_durations_are_refused_not_a_panic() {
        assert!(parse_duration("1e30").is_err());
        assert!(parse_duration("99999999999999999999999h").is_err());
        assert!(parse_duration("NaN").is_err());
        assert!(parse_duration("18000000000000000000s").is_err());
        assert!(parse_duration("1e13").is_err());
        assert!(parse_duration("-1").is_err());
    }

    #[test]
    fn empty_names_are_refused() {
        assert_eq!(check_name("queue", "").unwrap_err().exit_code(), 2);
        assert!(check_name("queue", "x'; drop table x; --").is_ok());
    }
}
