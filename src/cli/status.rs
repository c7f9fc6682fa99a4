//! `pgqd status [QUEUE] [--all] [--check …]`: the overview pgqadm's `status` printed —
//! per queue its rotation and ticker settings, ticker lag, event rate and events since
//! the last tick; per consumer its lag, last-seen age and pending events — for one
//! database or every pgq database of the cluster; and a Nagios-style check.
//!
//! Figures come straight from `pgq.get_queue_info` and `pgq.get_consumer_info`, so they
//! are the SQL functions' own numbers (intervals converted to seconds).

use std::time::Duration;

use serde_json::{Value, json};

use super::common::{self, ConnArgs, Db, Error, Format, fmt_secs, or_dash};
use crate::conn;

/// Nagios: all thresholds kept.
pub const EXIT_OK: u8 = 0;
/// Nagios: a warning threshold exceeded.
pub const EXIT_WARNING: u8 = 1;
/// Nagios: a critical threshold exceeded. Not a usage error here.
pub const EXIT_CRITICAL: u8 = 2;
/// Nagios: the check could not run (connection, usage, unknown queue).
pub const EXIT_UNKNOWN: u8 = 3;

/// Arguments of `pgqd status`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Only this queue (and its consumers).
    pub queue: Option<String>,
    /// Every database of the cluster that has schema pgq (listed through the database
    /// the connection options name).
    #[arg(long)]
    pub all: bool,
    /// Output format (ignored with --check, which prints one line).
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    /// Monitoring mode: one summary line; exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
    #[arg(long)]
    pub check: bool,
    /// --check: warn when a consumer's lag is above this (e.g. 60s).
    #[arg(long, value_parser = common::parse_duration, value_name = "DURATION")]
    pub max_lag: Option<Duration>,
    /// --check: critical lag (default twice --max-lag).
    #[arg(long, value_parser = common::parse_duration, value_name = "DURATION")]
    pub critical_lag: Option<Duration>,
    /// --check: warn when a consumer has more pending events than this.
    #[arg(long, value_name = "N")]
    pub max_pending: Option<i64>,
    /// --check: critical pending events (default twice --max-pending).
    #[arg(long, value_name = "N")]
    pub critical_pending: Option<i64>,
    /// --check: warn when a consumer was last seen longer ago than this.
    #[arg(long, value_parser = common::parse_duration, value_name = "DURATION")]
    pub max_last_seen: Option<Duration>,
    /// --check: critical last-seen age (default twice --max-last-seen).
    #[arg(long, value_parser = common::parse_duration, value_name = "DURATION")]
    pub critical_last_seen: Option<Duration>,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// One row of `pgq.get_queue_info`.
#[derive(Debug, Clone)]
pub struct QueueRow {
    /// queue_name.
    pub name: String,
    /// queue_ntables.
    pub ntables: i32,
    /// queue_cur_table.
    pub cur_table: i32,
    /// queue_rotation_period in seconds.
    pub rotation_period: f64,
    /// queue_switch_time, ISO 8601 UTC.
    pub switch_time: Option<String>,
    /// queue_external_ticker.
    pub external_ticker: bool,
    /// queue_ticker_paused.
    pub ticker_paused: bool,
    /// queue_ticker_max_count.
    pub ticker_max_count: i32,
    /// queue_ticker_max_lag in seconds.
    pub ticker_max_lag: f64,
    /// queue_ticker_idle_period in seconds.
    pub ticker_idle_period: f64,
    /// ticker_lag in seconds.
    pub ticker_lag: Option<f64>,
    /// ev_per_sec.
    pub ev_per_sec: Option<f64>,
    /// ev_new: event ids used since the newest tick.
    pub ev_new: Option<i64>,
    /// last_tick_id.
    pub last_tick_id: Option<i64>,
}

/// One row of `pgq.get_consumer_info`.
#[derive(Debug, Clone)]
pub struct ConsumerRow {
    /// queue_name.
    pub queue: String,
    /// consumer_name.
    pub name: String,
    /// lag in seconds (NULL for coop subconsumers).
    pub lag: Option<f64>,
    /// last_seen in seconds.
    pub last_seen: Option<f64>,
    /// last_tick.
    pub last_tick: Option<i64>,
    /// current_batch.
    pub current_batch: Option<i64>,
    /// next_tick.
    pub next_tick: Option<i64>,
    /// pending_events.
    pub pending_events: Option<i64>,
}

/// What one database reported.
#[derive(Debug, Clone)]
pub struct DbStatus {
    /// Database name.
    pub database: String,
    /// `pgq.version()`.
    pub pgq_version: String,
    /// Queues, by name.
    pub queues: Vec<QueueRow>,
    /// Consumers, by queue and name.
    pub consumers: Vec<ConsumerRow>,
    /// Queues whose ticks come from another cluster's txid history (a restored
    /// database, see `crate::restore`); empty when healthy.
    pub restored: Vec<crate::restore::RestoredQueue>,
}

const QUEUE_SQL: &str = concat!(
    "select queue_name, queue_ntables, queue_cur_table, ",
    "extract(epoch from queue_rotation_period)::float8, ",
    crate::iso_utc!("queue_switch_time"),
    ", queue_external_ticker, queue_ticker_paused, queue_ticker_max_count, ",
    "extract(epoch from queue_ticker_max_lag)::float8, ",
    "extract(epoch from queue_ticker_idle_period)::float8, ",
    "extract(epoch from ticker_lag)::float8, ev_per_sec, ev_new, last_tick_id ",
    "from pgq.get_queue_info($1::text)"
);

const CONSUMER_SQL: &str = "select queue_name, consumer_name, \
     extract(epoch from lag)::float8, extract(epoch from last_seen)::float8, \
     last_tick, current_batch, next_tick, pending_events \
     from pgq.get_consumer_info($1::text, null::text)";

/// Reads one database's status (`queue` None = every queue).
pub async fn collect(db: &Db, queue: Option<&str>) -> Result<DbStatus, Error> {
    let version: String = db
        .client
        .query_one(crate::sql::PROBE_VERSION, &[])
        .await
        .map_err(db.err("select pgq.version()", "USAGE on schema pgq"))?
        .get(0);
    let queues = db
        .client
        .query(QUEUE_SQL, &[&queue])
        .await
        .map_err(db.err("reading pgq.get_queue_info", "USAGE on schema pgq"))?
        .iter()
        .map(|r| QueueRow {
            name: r.get(0),
            ntables: r.get(1),
            cur_table: r.get(2),
            rotation_period: r.get(3),
            switch_time: r.get(4),
            external_ticker: r.get(5),
            ticker_paused: r.get(6),
            ticker_max_count: r.get(7),
            ticker_max_lag: r.get(8),
            ticker_idle_period: r.get(9),
            ticker_lag: r.get(10),
            ev_per_sec: r.get(11),
            ev_new: r.get(12),
            last_tick_id: r.get(13),
        })
        .collect();
    let consumers = db
        .client
        .query(CONSUMER_SQL, &[&queue])
        .await
        .map_err(db.err("reading pgq.get_consumer_info", "USAGE on schema pgq"))?
        .iter()
        .map(|r| ConsumerRow {
            queue: r.get(0),
            name: r.get(1),
            lag: r.get(2),
            last_seen: r.get(3),
            last_tick: r.get(4),
            current_batch: r.get(5),
            next_tick: r.get(6),
            pending_events: r.get(7),
        })
        .collect();
    let restored = crate::restore::restored_queues(&db.client)
        .await
        .map_err(db.err("checking the tick snapshots", "USAGE on schema pgq"))?;
    Ok(DbStatus {
        database: db.name.clone(),
        pgq_version: version,
        queues,
        consumers,
        restored,
    })
}

/// The databases to report on: the one connected to, or with `--all` every database
/// that accepts connections, is not a template, and has schema pgq (as the daemon's
/// discovery sees them).
async fn gather(a: &Args) -> Result<Vec<DbStatus>, Error> {
    if let Some(q) = &a.queue {
        common::check_name("queue", q)?;
    }
    let first = Db::open(&a.conn).await?;
    if !a.all {
        if let Some(q) = &a.queue {
            first.require_queue(q).await?;
        } else {
            first.require_pgq().await?;
        }
        return Ok(vec![collect(&first, a.queue.as_deref()).await?]);
    }
    let names: Vec<String> = first
        .client
        .query(crate::sql::LIST_DATABASES, &[])
        .await
        .map_err(first.err("listing the databases", "CONNECT"))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut out = Vec::new();
    for name in names {
        // The database name goes into the connection parameters, never into SQL.
        let target = conn::config_from(&a.conn.connstr, Some(&name))?;
        let db = if name == first.name {
            None
        } else {
            match Db::open_target(&target).await {
                Ok(db) => Some(db),
                // A database we may not connect to is not ours to report on.
                Err(Error::Conn(_)) => continue,
                Err(e) => return Err(e),
            }
        };
        let db = db.as_ref().unwrap_or(&first);
        if !db.has_pgq().await? {
            continue;
        }
        out.push(collect(db, a.queue.as_deref()).await?);
    }
    Ok(out)
}

/// Runs `status`: the overview, or the check.
pub async fn run(a: &Args) -> Result<u8, Error> {
    if a.check {
        return Ok(run_check(a).await);
    }
    let all = gather(a).await?;
    match a.format {
        Format::Json => common::print_json(&json!({
            "databases": all.iter().map(to_json).collect::<Vec<_>>()
        })),
        Format::Table => {
            if all.is_empty() {
                println!("no database with schema pgq found");
            }
            for (i, s) in all.iter().enumerate() {
                if i > 0 {
                    println!();
                }
                print!("{}", render(s));
            }
        }
    }
    Ok(0)
}

fn to_json(s: &DbStatus) -> Value {
    json!({
        "database": s.database,
        "pgq_version": s.pgq_version,
        "restored_queues": s.restored.iter().map(|q| q.name.clone()).collect::<Vec<_>>(),
        "queues": s.queues.iter().map(|q| json!({
            "queue_name": q.name,
            "ntables": q.ntables,
            "cur_table": q.cur_table,
            "rotation_period_secs": q.rotation_period,
            "switch_time": q.switch_time,
            "external_ticker": q.external_ticker,
            "ticker_paused": q.ticker_paused,
            "ticker_max_count": q.ticker_max_count,
            "ticker_max_lag_secs": q.ticker_max_lag,
            "ticker_idle_period_secs": q.ticker_idle_period,
            "ticker_lag_secs": q.ticker_lag,
            "ev_per_sec": q.ev_per_sec,
            "ev_new": q.ev_new,
            "last_tick_id": q.last_tick_id,
        })).collect::<Vec<_>>(),
        "consumers": s.consumers.iter().map(|c| json!({
            "queue_name": c.queue,
            "consumer_name": c.name,
            "lag_secs": c.lag,
            "last_seen_secs": c.last_seen,
            "last_tick": c.last_tick,
            "current_batch": c.current_batch,
            "next_tick": c.next_tick,
            "pending_events": c.pending_events,
        })).collect::<Vec<_>>(),
    })
}

/// The table form: a heading line, the queues, the consumers; about 70 columns wide with
/// names of ordinary length.
pub fn render(s: &DbStatus) -> String {
    let mut out = format!(
        "database {} (pgq {}): {} queue(s), {} consumer(s)\n\n",
        s.database,
        s.pgq_version,
        s.queues.len(),
        s.consumers.len()
    );
    if !s.restored.is_empty() {
        out.push_str(&format!(
            "ERROR: {}\n\n",
            crate::restore::explain(&s.database, &s.restored)
        ));
    }
    if s.queues.is_empty() {
        out.push_str("no queues\n");
        return out;
    }
    let rows: Vec<Vec<String>> = s
        .queues
        .iter()
        .map(|q| {
            let ticker = if q.external_ticker {
                "external".to_string()
            } else {
                format!(
                    "{}/{}/{}{}",
                    q.ticker_max_count,
                    fmt_secs(q.ticker_max_lag),
                    fmt_secs(q.ticker_idle_period),
                    if q.ticker_paused { " paused" } else { "" }
                )
            };
            vec![
                q.name.clone(),
                format!("{}x{}", q.ntables, fmt_secs(q.rotation_period)),
                ticker,
                or_dash(q.ticker_lag.map(fmt_secs)),
                or_dash(q.ev_per_sec.map(|r| format!("{r:.1}"))),
                or_dash(q.ev_new),
                or_dash(q.last_tick_id),
            ]
        })
        .collect();
    out.push_str(&common::table(
        &[
            "QUEUE",
            "ROTATION",
            "TICKER(count/lag/idle)",
            "TICK LAG",
            "EV/S",
            "NEW EV",
            "TICK",
        ],
        &rows,
        &[3, 4, 5, 6],
    ));
    out.push('\n');
    if s.consumers.is_empty() {
        out.push_str("no consumers\n");
        return out;
    }
    let rows: Vec<Vec<String>> = s
        .consumers
        .iter()
        .map(|c| {
            vec![
                c.queue.clone(),
                c.name.clone(),
                or_dash(c.lag.map(fmt_secs)),
                or_dash(c.last_seen.map(fmt_secs)),
                or_dash(c.pending_events),
                or_dash(c.current_batch),
            ]
        })
        .collect();
    out.push_str(&common::table(
        &["QUEUE", "CONSUMER", "LAG", "LAST SEEN", "PENDING", "BATCH"],
        &rows,
        &[2, 3, 4, 5],
    ));
    out
}

/// Warning and critical levels for one figure.
#[derive(Debug, Clone, Copy)]
struct Limit {
    warn: f64,
    crit: f64,
}

impl Limit {
    fn new(warn: Option<f64>, crit: Option<f64>) -> Option<Limit> {
        match (warn, crit) {
            (None, None) => None,
            (Some(w), c) => Some(Limit {
                warn: w,
                crit: c.unwrap_or(w * 2.0),
            }),
            (None, Some(c)) => Some(Limit { warn: c, crit: c }),
        }
    }

    /// 0 OK, 1 WARNING, 2 CRITICAL: strictly above the level.
    fn level(&self, v: f64) -> u8 {
        if v > self.crit {
            EXIT_CRITICAL
        } else if v > self.warn {
            EXIT_WARNING
        } else {
            EXIT_OK
        }
    }
}

/// The outcome of `status --check`: exit code and the summary line.
pub fn evaluate(all: &[DbStatus], a: &Args) -> Result<(u8, String), String> {
    let secs = |d: Option<Duration>| d.map(|d| d.as_secs_f64());
    let lag = Limit::new(secs(a.max_lag), secs(a.critical_lag));
    let pending = Limit::new(
        a.max_pending.map(|n| n as f64),
        a.critical_pending.map(|n| n as f64),
    );
    let seen = Limit::new(secs(a.max_last_seen), secs(a.critical_last_seen));
    if lag.is_none() && pending.is_none() && seen.is_none() {
        return Err(
            "--check needs at least one threshold: --max-lag, --max-pending or --max-last-seen"
                .into(),
        );
    }
    let mut worst = EXIT_OK;
    let mut problems: Vec<(u8, String)> = Vec::new();
    let (mut max_lag, mut max_pend, mut n) = (0f64, 0i64, 0usize);
    for s in all {
        if !s.restored.is_empty() {
            worst = EXIT_CRITICAL;
            let names: Vec<&str> = s.restored.iter().map(|q| q.name.as_str()).collect();
            problems.push((
                EXIT_CRITICAL,
                format!(
                    "{} restored from another cluster, queue(s) {} cannot tick (pgqd repair-restore)",
                    s.database,
                    names.join(",")
                ),
            ));
        }
        for c in &s.consumers {
            n += 1;
            let who = format!("{}/{}/{}", s.database, c.queue, c.name);
            max_lag = max_lag.max(c.lag.unwrap_or(0.0));
            max_pend = max_pend.max(c.pending_events.unwrap_or(0));
            let figures = [
                (lag, c.lag, "lag", true),
                (
                    pending,
                    c.pending_events.map(|p| p as f64),
                    "pending",
                    false,
                ),
                (seen, c.last_seen, "last seen", true),
            ];
            for (limit, value, what, is_time) in figures {
                let (Some(l), Some(v)) = (limit, value) else {
                    continue;
                };
                let level = l.level(v);
                if level > EXIT_OK {
                    worst = worst.max(level);
                    let show = |x: f64| if is_time { fmt_secs(x) } else { format!("{x}") };
                    let bound = if level == EXIT_CRITICAL {
                        l.crit
                    } else {
                        l.warn
                    };
                    problems.push((level, format!("{who} {what} {} > {}", show(v), show(bound))));
                }
            }
        }
    }
    problems.sort_by_key(|p| std::cmp::Reverse(p.0));
    let word = match worst {
        EXIT_OK => "OK",
        EXIT_WARNING => "WARNING",
        _ => "CRITICAL",
    };
    let mut detail = if problems.is_empty() {
        format!("{n} consumer(s) in {} database(s) within limits", all.len())
    } else {
        let shown: Vec<&str> = problems.iter().take(3).map(|p| p.1.as_str()).collect();
        let more = problems.len().saturating_sub(3);
        format!(
            "{}{}",
            shown.join("; "),
            if more > 0 {
                format!("; and {more} more")
            } else {
                String::new()
            }
        )
    };
    detail.push_str(&format!(
        " | max_lag={max_lag:.3}s;{};{} max_pending={max_pend};{};{}",
        lag.map(|l| format!("{}", l.warn)).unwrap_or_default(),
        lag.map(|l| format!("{}", l.crit)).unwrap_or_default(),
        pending.map(|l| format!("{}", l.warn)).unwrap_or_default(),
        pending.map(|l| format!("{}", l.crit)).unwrap_or_default(),
    ));
    Ok((worst, format!("PGQ {word} - {detail}")))
}

/// `--check`: never returns an error; every failure becomes UNKNOWN (exit 3).
async fn run_check(a: &Args) -> u8 {
    let result = match gather(a).await {
        Ok(all) => evaluate(&all, a),
        Err(e) => Err(e.to_string()),
    };
    match result {
        Ok((code, line)) => {
            println!("{line}");
            code
        }
        Err(msg) => {
            println!("PGQ UNKNOWN - {msg}");
            EXIT_UNKNOWN
        }
    }
}
