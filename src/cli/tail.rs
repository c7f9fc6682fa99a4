//! `pgqd tail QUEUE`: prints events as they arrive.
//!
//! It reads as a consumer of its own, `pgqd_tail_<pid>_<random>`, registered at the
//! queue's newest tick, so it never takes a batch from a real consumer; and it
//! unregisters on every way out it can see — `--batches`/`--timeout` reached, SIGINT,
//! SIGTERM, stdout closed, a failed statement — so it never leaves a subscription that
//! holds back rotation. Signals are registered before the consumer is, so there is no
//! window where Ctrl-C kills the process with the consumer still in place.

use std::hash::{BuildHasher, Hasher};
use std::io::Write;
use std::time::Duration;

use serde_json::json;
use tokio::signal::unix::{SignalKind, signal};

use super::common::{self, ConnArgs, Db, Error, Format, ROLE_READER};

/// How often an idle tail asks for the next batch.
const POLL: Duration = Duration::from_millis(200);

/// Arguments of `pgqd tail`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Queue to follow.
    pub queue: String,
    /// Stop after this many batches that held events.
    #[arg(long, value_name = "N")]
    pub batches: Option<u64>,
    /// Stop after this long (e.g. 30s).
    #[arg(long, value_parser = common::parse_duration, value_name = "DURATION")]
    pub timeout: Option<Duration>,
    /// Output format: aligned lines, or one JSON object per event and line.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// Why the loop ended.
enum Stop {
    Done,
    Signal(u8),
    Failed(Error),
}

/// A consumer name no one else uses: pid plus 32 random bits (std's hasher seed is
/// random per process; no extra dependency needed).
pub fn consumer_name() -> String {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    format!("pgqd_tail_{}_{:08x}", std::process::id(), h.finish() as u32)
}

/// Follows the queue until told to stop; returns 0, or 130/143 after SIGINT/SIGTERM.
pub async fn run(a: &Args) -> Result<u8, Error> {
    common::check_name("queue", &a.queue)?;
    let mut sigint =
        signal(SignalKind::interrupt()).map_err(|e| Error::Failed(format!("signals: {e}")))?;
    let mut sigterm =
        signal(SignalKind::terminate()).map_err(|e| Error::Failed(format!("signals: {e}")))?;
    let db = Db::open(&a.conn).await?;
    db.require_queue(&a.queue).await?;
    let me = consumer_name();
    db.client
        .execute("select pgq.register_consumer($1, $2)", &[&a.queue, &me])
        .await
        .map_err(db.err(
            format!("register a temporary consumer on queue {:?}", a.queue),
            ROLE_READER,
        ))?;
    eprintln!(
        "pgqd tail: following queue {:?} as consumer {me} (Ctrl-C to stop)",
        a.queue
    );
    let deadline = a.timeout.map(|t| tokio::time::Instant::now() + t);
    let stop = tokio::select! {
        s = follow(&db, a, &me) => s,
        _ = sigint.recv() => Stop::Signal(130),
        _ = sigterm.recv() => Stop::Signal(143),
        _ = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        } => Stop::Done,
    };
    // The statement `follow` was in may still be running; tokio-postgres answers
    // requests in order, so this waits behind it and then unregisters.
    let cleanup = db
        .client
        .execute("select pgq.unregister_consumer($1, $2)", &[&a.queue, &me])
        .await;
    if let Err(e) = cleanup {
        // Last resort: a fresh connection (the old one may be broken).
        let retry = async {
            let db2 = Db::open(&a.conn).await?;
            db2.client
                .execute("select pgq.unregister_consumer($1, $2)", &[&a.queue, &me])
                .await
                .map_err(db2.err("unregister the temporary consumer", ROLE_READER))
        };
        if let Err(e2) = retry.await {
            eprintln!(
                "pgqd tail: could not unregister consumer {me} ({}; then {e2}); remove it with: \
                 pgqd unregister {:?} {me}",
                crate::pgerr::describe(&e),
                a.queue
            );
        }
    }
    match stop {
        Stop::Done => Ok(0),
        Stop::Signal(code) => Ok(code),
        Stop::Failed(e) => Err(e),
    }
}

/// The loop: next batch, print its events, finish it; wait while there is none.
async fn follow(db: &Db, a: &Args, me: &str) -> Stop {
    let mut seen = 0u64;
    loop {
        let batch: Option<i64> = match db
            .client
            .query_one("select pgq.next_batch($1, $2)", &[&a.queue, &me])
            .await
        {
            Ok(r) => r.get(0),
            Err(e) => return Stop::Failed(db.err("pgq.next_batch", ROLE_READER)(e)),
        };
        let Some(id) = batch else {
            tokio::time::sleep(POLL).await;
            continue;
        };
        let rows = match db
            .client
            .query(
                concat!(
                    "select ev_id, ",
                    crate::iso_utc!("ev_time"),
                    ", ev_retry, ev_type, ev_data, ev_extra1, ev_extra2, ev_extra3, ",
                    "ev_extra4 from pgq.get_batch_events($1) order by ev_id"
                ),
                &[&id],
            )
            .await
        {
            Ok(r) => r,
            Err(e) => return Stop::Failed(db.err("pgq.get_batch_events", ROLE_READER)(e)),
        };
        let mut out = std::io::stdout().lock();
        let mut closed = false;
        for r in &rows {
            let (ev_id, time): (i64, Option<String>) = (r.get(0), r.get(1));
            let line = match a.format {
                Format::Json => json!({
                    "queue_name": a.queue,
                    "batch_id": id,
                    "ev_id": ev_id,
                    "ev_time": time,
                    "ev_retry": r.get::<_, Option<i32>>(2),
                    "ev_type": r.get::<_, Option<String>>(3),
                    "ev_data": r.get::<_, Option<String>>(4),
                    "ev_extra1": r.get::<_, Option<String>>(5),
                    "ev_extra2": r.get::<_, Option<String>>(6),
                    "ev_extra3": r.get::<_, Option<String>>(7),
                    "ev_extra4": r.get::<_, Option<String>>(8),
                })
                .to_string(),
                Format::Table => {
                    let extras: Vec<String> = (5..9)
                        .filter_map(|i| r.get::<_, Option<String>>(i))
                        .collect();
                    let mut s = format!(
                        "{ev_id}  {}  {}  {}",
                        common::or_dash(time),
                        common::or_dash(r.get::<_, Option<String>>(3)),
                        common::or_dash(r.get::<_, Option<String>>(4))
                    );
                    if !extras.is_empty() {
                        s.push_str(&format!("  [{}]", extras.join(", ")));
                    }
                    common::printable(&s)
                }
            };
            if writeln!(out, "{line}").is_err() {
                closed = true;
                break;
            }
        }
        let _ = out.flush();
        drop(out);
        if let Err(e) = db
            .client
            .execute("select pgq.finish_batch($1)", &[&id])
            .await
        {
            return Stop::Failed(db.err("pgq.finish_batch", ROLE_READER)(e));
        }
        if closed {
            // stdout went away (`pgqd tail q | head`): a normal way to stop.
            return Stop::Done;
        }
        if !rows.is_empty() {
            seen += 1;
            if a.batches.is_some_and(|n| seen >= n) {
                return Stop::Done;
            }
        }
    }
}
