//! `pgqd <tool> --status CONFIG`: what an operator asks of a running tool, read from the
//! databases (so it works whichever host runs the tool): the consumer's position, lag and
//! pending events in the source (`pgq.get_consumer_info`), the last batch the target
//! applied (pgq_ext), the failed-events count, whether the pidfile's process lives and,
//! if it does, its last progress line (events/s; `<pidfile>.progress`).
//! Exit 0 when the consumer is registered, 1 otherwise or on a failure.

use super::{EXIT_FAILURE, EXIT_OK, Kind, ToolConfig};
use crate::conn;
use crate::consumer::failed::TableName;
use crate::daemon::pidfile;

const CONSUMER_INFO: &str = "select coalesce(extract(epoch from lag), 0)::float8, \
     coalesce(extract(epoch from last_seen), 0)::float8, last_tick, current_batch, pending_events \
     from pgq.get_consumer_info($1, $2)";
const LAST_BATCH: &str = "select last_batch_id from pgq_ext.completed_batch \
     where consumer_id = $1 and subconsumer_id = ''";
const HAS_TABLE: &str = "select pg_catalog.to_regclass($1) is not null";

/// Prints the status; returns the exit code.
pub fn print(kind: Kind, cfg: &ToolConfig) -> u8 {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pgqd {}: cannot start the async runtime: {e}", kind.name());
            return EXIT_FAILURE;
        }
    };
    match rt.block_on(lines(kind, cfg)) {
        Ok((lines, registered)) => {
            for l in lines {
                println!("{l}");
            }
            if registered { EXIT_OK } else { EXIT_FAILURE }
        }
        Err(e) => {
            eprintln!("pgqd {}: {e}", kind.name());
            EXIT_FAILURE
        }
    }
}

async fn lines(kind: Kind, cfg: &ToolConfig) -> Result<(Vec<String>, bool), String> {
    let mut out = vec![format!("tool: {}", kind.name())];
    let running = cfg
        .pidfile
        .as_deref()
        .and_then(|p| pidfile::read_pid(p).ok().flatten())
        .filter(|pid| pidfile::alive(*pid));
    out.push(match running {
        Some(pid) => format!("process: running (pid {pid})"),
        None => "process: not running".to_string(),
    });
    if running.is_some()
        && let Some(p) = cfg.pidfile.as_deref().and_then(read_progress)
    {
        out.push(p);
    }
    out.push(format!("queue: {}  consumer: {}", cfg.queue, cfg.consumer));
    let src = conn::config_from(&cfg.source, None).map_err(|e| e.to_string())?;
    let c = src.connect().await.map_err(|e| e.to_string())?;
    let rows = c
        .query(CONSUMER_INFO, &[&cfg.queue, &cfg.consumer])
        .await
        .map_err(|e| format!("source: {}", crate::pgerr::describe(&e)))?;
    let registered = match rows.first() {
        None => {
            out.push("consumer: not registered".into());
            false
        }
        Some(r) => {
            let g = |i| r.try_get::<_, Option<i64>>(i).ok().flatten();
            let f = |i| r.try_get::<_, f64>(i).unwrap_or(0.0);
            out.push(format!("lag: {:.1}s", f(0)));
            out.push(format!("last seen: {:.1}s ago", f(1)));
            out.push(format!(
                "last tick: {}",
                g(2).map_or("-".into(), |v| v.to_string())
            ));
            out.push(format!(
                "open batch: {}",
                g(3).map_or("none".into(), |v| v.to_string())
            ));
            out.push(format!(
                "pending events: {}",
                g(4).map_or("-".into(), |v| v.to_string())
            ));
            true
        }
    };
    let dst = conn::config_from(&cfg.target, None).map_err(|e| e.to_string())?;
    let d = dst.connect().await.map_err(|e| e.to_string())?;
    match d.query_opt(LAST_BATCH, &[&cfg.consumer]).await {
        Ok(Some(r)) => out.push(format!(
            "target last applied batch: {}",
            r.try_get::<_, Option<i64>>(0)
                .ok()
                .flatten()
                .map_or("-".into(), |v| v.to_string())
        )),
        Ok(None) => out.push("target last applied batch: none".into()),
        Err(e) => out.push(format!("target: {}", crate::pgerr::describe(&e))),
    }
    let table = cfg
        .failed_table
        .clone()
        .unwrap_or_else(|| crate::consumer::failed::DEFAULT_TABLE.to_string());
    if let Some(t) = TableName::parse(&table) {
        let exists: bool = d
            .query_one(HAS_TABLE, &[&t.quoted()])
            .await
            .map(|r| r.get(0))
            .unwrap_or(false);
        let n: i64 = if exists {
            let q = format!(
                "select count(*) from {} where queue_name = $1 and consumer_name = $2",
                t.quoted()
            );
            d.query_one(&q, &[&cfg.queue, &cfg.consumer])
                .await
                .map(|r| r.get(0))
                .unwrap_or(0)
        } else {
            0
        };
        out.push(format!("failed events: {n} (table {table})"));
    }
    Ok((out, registered))
}

/// The running tool's last progress line, from `<pidfile>.progress`.
fn read_progress(pidfile: &std::path::Path) -> Option<String> {
    let text = std::fs::read_to_string(super::progress_file(pidfile)).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let age = now.saturating_sub(v.get("at")?.as_u64()?);
    Some(format!(
        "throughput: {:.1} events/s, {} events in {} batches since start ({} retried, {} failed, {} skipped; {age}s ago)",
        v.get("events_per_sec")?.as_f64()?,
        v.get("events")?,
        v.get("batches")?,
        v.get("retried")?,
        v.get("failed")?,
        v.get("skipped")?,
    ))
}
