//! The one signal task (STYLE R5): turns signals into intents and carries them out, so
//! no other code sees a signal number.
//!
//! | signal | intent |
//! |---|---|
//! | SIGHUP | [`Intent::Reload`]: re-read the config file; if it is invalid keep the running config and log why, else send it on the watch channel; reopen the log file (logrotate) |
//! | SIGTERM, SIGINT (first) | [`Intent::Shutdown`]: cancel the daemon's token; it finishes statements in flight within `shutdown_timeout` |
//! | SIGTERM, SIGINT (again) | [`Intent::ShutdownNow`] |
//! | SIGQUIT (`pgqd -k`) | [`Intent::ShutdownNow`]: stop at once, abandoning statements in flight |
//!
//! Called by `main.rs`, which awaits the daemon and the `now` token side by side.

use std::path::PathBuf;
use std::sync::Arc;

use futures::StreamExt;
use signal_hook::consts::signal::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};
use signal_hook_tokio::Signals;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::{self, Config};
use crate::daemon::notify;
use crate::logging::LogHandle;

/// What a signal asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Intent {
    /// Re-read the config and reopen the log file.
    Reload,
    /// Stop gracefully.
    Shutdown,
    /// Stop at once.
    ShutdownNow,
}

/// Maps a signal to its intent; `shutting_down` is whether a graceful stop was already
/// asked for (a second SIGTERM/SIGINT escalates).
pub fn intent_for(signal: i32, shutting_down: bool) -> Option<Intent> {
    match signal {
        SIGHUP => Some(Intent::Reload),
        SIGTERM | SIGINT if shutting_down => Some(Intent::ShutdownNow),
        SIGTERM | SIGINT => Some(Intent::Shutdown),
        SIGQUIT => Some(Intent::ShutdownNow),
        _ => None,
    }
}

/// Registers the handlers. Call inside the runtime, before the daemon starts, so no
/// early signal kills the process with the default action.
pub fn register() -> std::io::Result<Signals> {
    Signals::new([SIGHUP, SIGTERM, SIGINT, SIGQUIT])
}

/// Everything the signal task acts on.
pub struct Control {
    /// The config file to re-read on SIGHUP.
    pub config_path: PathBuf,
    /// The running config.
    pub current: Arc<Config>,
    /// Where reloaded configs go.
    pub cfg_tx: watch::Sender<Arc<Config>>,
    /// The log file to reopen.
    pub log: LogHandle,
    /// Cancelled on the first SIGTERM/SIGINT: the daemon's graceful stop.
    pub token: CancellationToken,
    /// Cancelled on ShutdownNow.
    pub now: CancellationToken,
}

/// Runs until the `now` token is cancelled or the signal stream ends.
pub async fn run(mut signals: Signals, mut ctl: Control) {
    let mut shutting_down = false;
    while let Some(sig) = signals.next().await {
        let Some(intent) = intent_for(sig, shutting_down) else {
            continue;
        };
        match intent {
            Intent::Reload => ctl.reload(),
            Intent::Shutdown => {
                shutting_down = true;
                tracing::info!(
                    signal = signal_name(sig),
                    timeout = %humantime::format_duration(ctl.current.shutdown_timeout),
                    "shutdown requested"
                );
                notify::stopping();
                ctl.token.cancel();
            }
            Intent::ShutdownNow => {
                tracing::warn!(
                    signal = signal_name(sig),
                    "immediate shutdown requested; statements in flight are abandoned"
                );
                notify::stopping();
                ctl.token.cancel();
                ctl.now.cancel();
                break;
            }
        }
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        SIGHUP => "SIGHUP",
        SIGTERM => "SIGTERM",
        SIGINT => "SIGINT",
        SIGQUIT => "SIGQUIT",
        _ => "?",
    }
}

impl Control {
    /// SIGHUP: reopen the log file, re-read the config, apply it if valid.
    pub fn reload(&mut self) {
        notify::reloading();
        let path = self.config_path.clone();
        match config::load(&path) {
            Err(e) => {
                // Reopen anyway: logrotate sends SIGHUP whatever the config says.
                if let Err(le) = self.log.reopen(None) {
                    eprintln!("pgqd: {le}");
                }
                tracing::error!(
                    config = %path.display(),
                    error = %e,
                    "config reload failed; keeping the running config"
                );
            }
            Ok(new) => {
                if let Err(le) = self.log.reopen(new.logfile.as_deref()) {
                    // Keep writing to the old file handle; say so where it can be seen.
                    eprintln!("pgqd: {le}");
                    tracing::error!(error = %le, "cannot reopen the log file");
                }
                for key in restart_only_changes(&self.current, &new) {
                    tracing::warn!(key, "changed setting takes effect only after a restart");
                }
                if *self.current == new {
                    tracing::info!(config = %path.display(), "config reloaded, unchanged");
                } else {
                    let new = Arc::new(new);
                    self.current = new.clone();
                    // Receivers gone means the daemon is stopping; nothing to apply.
                    let _ = self.cfg_tx.send(new);
                    tracing::info!(config = %path.display(), "config reloaded");
                }
            }
        }
        notify::reloaded();
    }
}

/// Keys whose change a reload cannot apply (read once at start).
pub fn restart_only_changes(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut v = Vec::new();
    if old.pidfile != new.pidfile {
        v.push("pidfile");
    }
    if old.log_format != new.log_format {
        v.push("log_format");
    }
    if old.log_level != new.log_level {
        v.push("log_level");
    }
    if old.syslog != new.syslog
        || old.syslog_ident != new.syslog_ident
        || old.syslog_facility != new.syslog_facility
    {
        v.push("syslog");
    }
    if old.logfile.is_none() != new.logfile.is_none() {
        v.push("logfile");
    }
    if old.metrics_listen != new.metrics_listen {
        v.push("metrics_listen");
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn signals_map_to_intents() {
        assert_eq!(intent_for(SIGHUP, false), Some(Intent::Reload));
        assert_eq!(intent_for(SIGTERM, false), Some(Intent::Shutdown));
        assert_eq!(intent_for(SIGINT, false), Some(Intent::Shutdown));
        assert_eq!(intent_for(SIGTERM, true), Some(Intent::ShutdownNow));
        assert_eq!(intent_for(SIGINT, true), Some(Intent::ShutdownNow));
        assert_eq!(intent_for(SIGQUIT, false), Some(Intent::ShutdownNow));
        assert_eq!(intent_for(SIGHUP, true), Some(Intent::Reload));
    }

    fn control(path: PathBuf) -> (Control, watch::Receiver<Arc<Config>>) {
        let cur = Arc::new(Config::default());
        let (tx, rx) = watch::channel(cur.clone());
        (
            Control {
                config_path: path,
                current: cur,
                cfg_tx: tx,
                log: LogHandle::default(),
                token: CancellationToken::new(),
                now: CancellationToken::new(),
            },
            rx,
        )
    }

    #[test]
    fn valid_reload_is_sent_invalid_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pgqd.toml");
        std::fs::write(&p, "ticker_period = \"250ms\"\n").unwrap();
        let (mut ctl, mut rx) = control(p.clone());
        ctl.reload();
        assert!(rx.has_changed().unwrap());
        assert_eq!(
            rx.borrow_and_update().ticker_period,
            Duration::from_millis(250)
        );
        std::fs::write(&p, "ticker_period = \"nonsense\"\n").unwrap();
        ctl.reload();
        assert!(!rx.has_changed().unwrap());
        assert_eq!(ctl.current.ticker_period, Duration::from_millis(250));
    }

    #[test]
    fn restart_only_keys_are_named() {
        let a = Config::default();
        let b = Config {
            pidfile: Some("/x".into()),
            ticker_period: Duration::from_secs(5),
            ..Config::default()
        };
        assert_eq!(restart_only_changes(&a, &b), vec!["pidfile"]);
    }
}
