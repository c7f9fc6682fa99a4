//! `pgqd replica worker CONFIG`: the cascade worker of one node with the replication
//! [`Applier`] as its batch handler. The config is the cascade worker's TOML (queue,
//! `db`, periods, logging); logging, the pidfile and signals are handled as in
//! `pgqd cascade worker`: SIGINT/SIGTERM finish the batch in hand, a second one stops at
//! once (the batch rolls back), SIGHUP reopens the log file.

use std::path::Path;

use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::cascade::{WorkerConfig, run_worker};
use crate::config::LogFormat;
use crate::daemon::signals;
use crate::logging;

use super::Applier;

/// Runs the worker until a signal stops it; returns the exit code.
pub fn run(path: &Path) -> u8 {
    let cfg = match WorkerConfig::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("pgqd replica worker: {e}");
            return 2;
        }
    };
    let log = match logging::init(&logging::LogOptions {
        format: LogFormat::Text,
        level: cfg.log_level,
        logfile: cfg.logfile.clone(),
        syslog: None,
    }) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("pgqd replica worker: {e}");
            return 1;
        }
    };
    let _pid = match &cfg.pidfile {
        Some(p) => match crate::daemon::pidfile::Pidfile::create(p) {
            Ok(g) => Some(g),
            Err(e) => {
                eprintln!("pgqd replica worker: {e}");
                return 1;
            }
        },
        None => None,
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("pgqd-replica")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pgqd replica worker: cannot start the async runtime: {e}");
            return 1;
        }
    };
    rt.block_on(async move {
        let stop = CancellationToken::new();
        let now = CancellationToken::new();
        let mut sigs = match signals::register() {
            Ok(s) => s,
            Err(e) => {
                eprintln!("pgqd replica worker: cannot install signal handlers: {e}");
                return 1;
            }
        };
        let handle = sigs.handle();
        let (s2, n2, logfile) = (stop.clone(), now.clone(), cfg.logfile.clone());
        tokio::spawn(async move {
            let mut shutting_down = false;
            while let Some(sig) = sigs.next().await {
                match signals::intent_for(sig, shutting_down) {
                    Some(signals::Intent::Shutdown) => {
                        tracing::info!("stop requested; finishing the batch in hand");
                        shutting_down = true;
                        s2.cancel();
                    }
                    Some(signals::Intent::ShutdownNow) => {
                        s2.cancel();
                        n2.cancel();
                    }
                    Some(signals::Intent::Reload) => {
                        if let Err(e) = log.reopen(logfile.as_deref()) {
                            tracing::error!(error = %e, "cannot reopen the log file");
                        }
                    }
                    None => {}
                }
            }
        });
        tracing::info!(queue = %cfg.queue_name, db = %crate::conn::mask_connstr(&cfg.db), "replication worker starting");
        let mut applier = Applier::new();
        let r = tokio::select! {
            r = run_worker(&cfg, &mut applier, &stop) => r,
            _ = now.cancelled() => {
                tracing::warn!("stopping at once; the batch in hand rolls back");
                Ok(())
            }
        };
        handle.close();
        let s = applier.stats;
        tracing::info!(batches = s.batches, applied = s.applied, skipped = s.skipped, missing_rows = s.missing_rows, "replication worker stopped");
        match r {
            Ok(()) => 0,
            Err(e) => {
                tracing::error!(error = %e, sqlstate = e.sqlstate(), "worker stopped by an error");
                eprintln!("pgqd replica worker: {e}");
                e.exit_code()
            }
        }
    })
}
