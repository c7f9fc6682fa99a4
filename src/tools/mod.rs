//! The classic PgQ tools as `pgqd` subcommands, each a remote consumer
//! ([`crate::consumer`] with pgq_ext batch tracking in the target, so every batch is
//! applied exactly once) with its own handler:
//!
//! - [`mover`] (`pgqd mover`): every event to a queue in the target, keeping ev_type,
//!   ev_data, ev_extra1..4 and ev_time;
//! - [`splitter`] (`pgqd splitter`): each event to the target queue named after its table
//!   (ev_extra1), with include/exclude lists and explicit routes;
//! - [`dispatcher`] (`pgqd dispatcher`): logutriga/jsontriga insert events into a target
//!   table, optionally into daily or monthly partitions created on demand.
//!
//! They run like the daemon: foreground by default; `-d` daemonizes (pidfile and logfile
//! required), `-s` stops gracefully (SIGINT: the batch in hand is finished), `-k` stops at
//! once (SIGQUIT: the open transactions roll back), `-r` reopens the log file (SIGHUP);
//! `--status` prints the consumer's position, lag, pending events and failed events, and
//! the running tool's last progress line. Progress (events/s, lag) goes to the log every
//! `stats_period`, and, with a pidfile, to `<pidfile>.progress` for `--status`.
//!
//! Called by `main.rs`, which owns the fork ([`Daemonize`]): this module reuses the
//! daemon's pidfile and signal mapping.

pub mod config;
pub mod dispatcher;
pub mod mover;
pub mod splitter;
mod status;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::{ArgAction, Args};
use futures::StreamExt;
use nix::sys::signal::Signal;
use tokio_util::sync::CancellationToken;

use crate::config::LogFormat;
use crate::consumer::{Consumer, Handler, Progress};
use crate::daemon::{pidfile, signals};
use crate::logging::{self, LogHandle};

pub use config::{Kind, ToolConfig};

const EXIT_OK: u8 = 0;
const EXIT_FAILURE: u8 = 1;
const EXIT_USAGE: u8 = 2;

/// The fork of `-d`, owned by `main.rs` (it must run before any thread exists): Ok(false)
/// in the parent, which exits 0, Ok(true) in the daemon.
pub type Daemonize = fn() -> nix::Result<bool>;

/// The command line of every tool.
#[derive(Args, Debug)]
pub struct ToolArgs {
    /// The tool's TOML config file.
    #[arg(value_name = "CONFIG")]
    pub config: PathBuf,
    /// Run in the background (needs pidfile and logfile in the config).
    #[arg(short = 'd', long = "daemon", conflicts_with = "signal")]
    pub daemonize: bool,
    /// Stop the running tool gracefully: it finishes the batch in hand (SIGINT).
    #[arg(short = 's', group = "signal")]
    pub stop: bool,
    /// Stop the running tool at once; its open batch rolls back (SIGQUIT).
    #[arg(short = 'k', group = "signal")]
    pub kill: bool,
    /// Make the running tool reopen its log file (SIGHUP).
    #[arg(short = 'r', group = "signal")]
    pub reload: bool,
    /// Print the consumer's state (position, lag, pending and failed events) and exit.
    #[arg(long, group = "signal")]
    pub status: bool,
    /// More log output (-v debug, -vv trace).
    #[arg(short, long, action = ArgAction::Count)]
    pub verbose: u8,
    /// Less log output.
    #[arg(short, long, action = ArgAction::Count)]
    pub quiet: u8,
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Runs tool `kind` as the command line asks; returns the exit code (0 clean stop,
/// 1 runtime failure, 2 usage or config error).
pub fn main(kind: Kind, args: &ToolArgs, daemonize: Daemonize) -> u8 {
    let name = kind.name();
    let mut cfg = match ToolConfig::load(&args.config, kind) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("pgqd {name}: {e}");
            return EXIT_USAGE;
        }
    };
    cfg.pidfile = cfg.pidfile.as_deref().map(absolute);
    cfg.logfile = cfg.logfile.as_deref().map(absolute);
    let signal = if args.stop {
        Some(Signal::SIGINT)
    } else if args.kill {
        Some(Signal::SIGQUIT)
    } else if args.reload {
        Some(Signal::SIGHUP)
    } else {
        None
    };
    if let Some(sig) = signal {
        let Some(pf) = &cfg.pidfile else {
            eprintln!("pgqd {name}: no pidfile in {}", args.config.display());
            return EXIT_USAGE;
        };
        return match pidfile::send_signal(pf, sig) {
            Ok(pid) => {
                println!("{sig} sent to pid {pid}");
                EXIT_OK
            }
            Err(e) => {
                eprintln!("pgqd {name}: {e}");
                EXIT_FAILURE
            }
        };
    }
    if args.status {
        return status::print(kind, &cfg);
    }
    if args.daemonize {
        let (Some(pf), Some(_)) = (&cfg.pidfile, &cfg.logfile) else {
            eprintln!("pgqd {name}: -d needs both pidfile and logfile in the config");
            return EXIT_USAGE;
        };
        if let Ok(Some(pid)) = pidfile::read_pid(pf)
            && pidfile::alive(pid)
        {
            eprintln!(
                "pgqd {name}: pidfile {} exists, another instance running? (pid {pid})",
                pf.display()
            );
            return EXIT_FAILURE;
        }
        match daemonize() {
            Ok(true) => {}
            Ok(false) => return EXIT_OK,
            Err(e) => {
                eprintln!("pgqd {name}: cannot daemonize: {e}");
                return EXIT_FAILURE;
            }
        }
    }
    let log = match logging::init(&logging::LogOptions {
        format: LogFormat::Text,
        level: logging::effective_level(cfg.level(), args.verbose, args.quiet),
        logfile: cfg.logfile.clone(),
        syslog: None,
    }) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("pgqd {name}: {e}");
            return EXIT_FAILURE;
        }
    };
    let _pid = match &cfg.pidfile {
        Some(p) => match pidfile::Pidfile::create(p) {
            Ok(g) => Some(g),
            Err(e) => {
                tracing::error!(error = %e, "cannot write the pidfile");
                eprintln!("pgqd {name}: {e}");
                return EXIT_FAILURE;
            }
        },
        None => None,
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name(format!("pgqd-{name}"))
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return EXIT_FAILURE;
        }
    };
    rt.block_on(run(kind, cfg, log))
}

/// Runs the tool until a signal stops it.
async fn run(kind: Kind, cfg: ToolConfig, log: LogHandle) -> u8 {
    let stop = CancellationToken::new();
    let now = CancellationToken::new();
    let sigs = match signals::register() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot install signal handlers");
            return EXIT_FAILURE;
        }
    };
    let sig_handle = sigs.handle();
    tokio::spawn(signal_task(
        sigs,
        stop.clone(),
        now.clone(),
        log,
        cfg.logfile.clone(),
    ));
    let consumer = match Consumer::new(cfg.consumer_config()) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "bad config");
            return EXIT_USAGE;
        }
    };
    tracing::info!(
        tool = kind.name(), queue = %cfg.queue, consumer = %cfg.consumer,
        source = %crate::conn::mask_connstr(&cfg.source),
        target = %crate::conn::mask_connstr(&cfg.target),
        "starting"
    );
    tokio::spawn(report(
        consumer.progress(),
        cfg.stats_period(),
        cfg.pidfile.as_deref().map(progress_file),
        stop.clone(),
    ));
    let result = match kind {
        Kind::Mover => drive(&consumer, mover::Mover::new(&cfg), &stop, &now).await,
        Kind::Splitter => drive(&consumer, splitter::Splitter::new(&cfg), &stop, &now).await,
        Kind::Dispatcher => match dispatcher::Dispatcher::new(&cfg) {
            Ok(h) => drive(&consumer, h, &stop, &now).await,
            Err(e) => {
                tracing::error!(error = %e, "bad config");
                return EXIT_USAGE;
            }
        },
    };
    sig_handle.close();
    if let Some(pf) = &cfg.pidfile {
        let _ = std::fs::remove_file(progress_file(pf));
    }
    let p = consumer.progress().snapshot();
    match result {
        Ok(()) => {
            tracing::info!(
                batches = p.batches,
                events = p.events,
                failed = p.failed,
                "stopped"
            );
            EXIT_OK
        }
        Err(e) => {
            tracing::error!(error = %e, sqlstate = e.sqlstate(), "stopped by an error");
            EXIT_FAILURE
        }
    }
}

/// Runs the consumer; `now` abandons it (the open transactions roll back on the server
/// when the process exits).
async fn drive<H: Handler>(
    consumer: &Consumer,
    mut handler: H,
    stop: &CancellationToken,
    now: &CancellationToken,
) -> Result<(), crate::consumer::Error> {
    tokio::select! {
        r = consumer.run(&mut handler, stop) => r,
        _ = now.cancelled() => {
            tracing::warn!("stopping at once; the batch in hand rolls back");
            Ok(())
        }
    }
}

async fn signal_task(
    mut sigs: signal_hook_tokio::Signals,
    stop: CancellationToken,
    now: CancellationToken,
    log: LogHandle,
    logfile: Option<PathBuf>,
) {
    let mut shutting_down = false;
    while let Some(sig) = sigs.next().await {
        match signals::intent_for(sig, shutting_down) {
            Some(signals::Intent::Shutdown) => {
                tracing::info!("stop requested; finishing the batch in hand");
                shutting_down = true;
                stop.cancel();
            }
            Some(signals::Intent::ShutdownNow) => {
                stop.cancel();
                now.cancel();
            }
            Some(signals::Intent::Reload) => {
                // The config is not re-read: a tool's identity (queue, consumer, target)
                // must not change under a running batch. SIGHUP serves logrotate.
                if let Err(e) = log.reopen(logfile.as_deref()) {
                    tracing::error!(error = %e, "cannot reopen the log file");
                } else {
                    tracing::info!("log file reopened");
                }
            }
            None => {}
        }
    }
}

/// Where a tool with a pidfile leaves its last progress line for `--status`:
/// `<pidfile>.progress`, one JSON object.
pub fn progress_file(pidfile: &Path) -> PathBuf {
    let mut p = pidfile.as_os_str().to_owned();
    p.push(".progress");
    PathBuf::from(p)
}

/// Logs progress every `period` (events/s since the last line, lag, totals) and writes it
/// to `file` for `--status`.
async fn report(
    progress: std::sync::Arc<Progress>,
    period: Duration,
    file: Option<PathBuf>,
    stop: CancellationToken,
) {
    let mut last = progress.snapshot();
    let mut at = Instant::now();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(period) => {}
        }
        let p = progress.snapshot();
        let secs = at.elapsed().as_secs_f64().max(0.001);
        let rate = (p.events - last.events) as f64 / secs;
        tracing::info!(
            events_per_sec = format!("{rate:.1}"),
            lag = %humantime::format_duration(Duration::from_millis(p.lag_ms)),
            events = p.events, batches = p.batches,
            retried = p.retried, failed = p.failed, skipped = p.skipped,
            "progress"
        );
        if let Some(f) = &file {
            let unix = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let doc = serde_json::json!({
                "at": unix, "events_per_sec": rate, "lag_ms": p.lag_ms, "events": p.events,
                "batches": p.batches, "retried": p.retried, "failed": p.failed,
                "skipped": p.skipped,
            });
            // Written aside and renamed, so --status never reads half a file.
            let tmp = f.with_extension("progress.tmp");
            if let Err(e) =
                std::fs::write(&tmp, doc.to_string()).and_then(|_| std::fs::rename(&tmp, f))
            {
                tracing::debug!(error = %e, file = %f.display(), "cannot write the progress file");
            }
        }
        last = p;
        at = Instant::now();
    }
}
