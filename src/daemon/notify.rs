//! systemd readiness and watchdog messages (`sd_notify`), through the sd-notify crate.
//!
//! Without `NOTIFY_SOCKET` (not started by systemd) every function here does nothing.
//! - [`ready`]: the daemon calls it once after its first discovery attempt, also when
//!   PostgreSQL is down (the daemon waits for it rather than failing); later calls only
//!   update the status line.
//! - [`watchdog`]: called from the daemon's own loop, so a wedged loop (not an unreachable
//!   PostgreSQL) makes systemd restart the service. [`watchdog_interval`] says how often
//!   (half of `WatchdogSec`), or None when the watchdog is off.
//! - [`stopping`] when a shutdown starts; [`reloading`] / [`reloaded`] around SIGHUP.
//! - [`status`]: the one-line summary (`STATUS=98 databases ticking, 2 failing`, issue #6),
//!   sent by `main` when it changes; [`ready`] and [`reloaded`] repeat the latest one.
//!
//! Send errors are logged at debug and otherwise ignored: a missing or full socket must
//! never stop the daemon.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sd_notify::NotifyState;

static READY_SENT: AtomicBool = AtomicBool::new(false);
/// The latest status line, repeated with READY=1 so a reload does not blank it.
static LAST_STATUS: Mutex<String> = Mutex::new(String::new());

fn remember(status: &str) {
    let mut s = LAST_STATUS.lock().unwrap_or_else(|p| p.into_inner());
    s.clear();
    s.push_str(status);
}

fn last_status() -> String {
    LAST_STATUS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
}

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!(error = %e, "sd_notify failed");
    }
}

/// Tells systemd the daemon is up (`READY=1`) with a status line. Idempotent.
pub fn ready(status: &str) {
    remember(status);
    if READY_SENT.swap(true, Ordering::SeqCst) {
        send(&[NotifyState::Status(status)]);
    } else {
        send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }
}

/// Whether [`ready`] has been called.
pub fn is_ready() -> bool {
    READY_SENT.load(Ordering::SeqCst)
}

/// Updates the status line shown by `systemctl status`.
pub fn status(status: &str) {
    remember(status);
    send(&[NotifyState::Status(status)]);
}

/// Keep-alive ping (`WATCHDOG=1`).
pub fn watchdog() {
    send(&[NotifyState::Watchdog]);
}

/// How often to call [`watchdog`]: half the interval systemd set, None when it set none
/// (or set it for another process).
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().map(|d| d / 2)
}

/// Shutdown has started (`STOPPING=1`).
pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// A reload has started (`RELOADING=1` with the monotonic timestamp systemd wants).
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(ts) => send(&[NotifyState::Reloading, ts]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

/// A reload has finished (`READY=1` again, as systemd expects after `RELOADING=1`), with
/// the latest status line.
pub fn reloaded() {
    let status = last_status();
    if status.is_empty() {
        send(&[NotifyState::Ready]);
    } else {
        send(&[NotifyState::Ready, NotifyState::Status(&status)]);
    }
}
