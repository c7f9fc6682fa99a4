//! `pgqd replica worker CONFIG`: the cascade worker of one node with the replication
//! [`Applier`] as its batch handler. The config is the cascade worker's TOML (queue,
//! `db`, periods, logging); logging, the pidfile and signals are handled as in
//! `pgqd cascade worker`: SIGINT/SIGTERM finish the batch in hand, a second one stops at
//! once (the batch rolls back), SIGHUP reopens the log file.

use std::path::Path;

use super::Applier;

/// Runs the worker until a signal stops it; returns the exit code.
pub fn run(path: &Path) -> u8 {
    crate::cascade::cli::run_worker_process(
        "pgqd replica worker",
        path,
        0,
        0,
        Applier::new,
        |applier| {
            let s = &applier.stats;
            tracing::info!(
                batches = s.batches,
                applied = s.applied,
                skipped = s.skipped,
                missing_rows = s.missing_rows,
                "replication worker stopped"
            );
        },
    )
}
