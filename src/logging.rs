//! Logging setup for the daemon: tracing-subscriber with text or JSON lines, a level
//! from the config moved by `-v`/`-q`, written to stderr or to the `logfile` (appended;
//! reopened on SIGHUP, so logrotate can move it away), and optionally to syslog.
//!
//! Called once by `main.rs` before the runtime starts; the signal task keeps the returned
//! [`LogHandle`] to reopen the file. `PGQD_LOG` (an `EnvFilter` directive such as
//! `pgqd=debug,tokio_postgres=info`) overrides the level for debugging.
//!
//! syslog goes through libc's `syslog(3)` (nix): info and above (the C pgqd's "LOG and
//! above"), with the configured ident and facility, one line per event.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogFormat, LogLevel};

/// Environment variable with an `EnvFilter` directive that overrides the level.
pub const FILTER_VAR: &str = "PGQD_LOG";

/// Errors from setting up logging.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The log file cannot be opened.
    #[error("cannot open log file {}: {source}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A global subscriber was already set.
    #[error("logging already initialised")]
    AlreadySet,
    /// syslog could not be set up.
    #[error("syslog: {0}")]
    Syslog(String),
}

/// What to log, where and how.
#[derive(Debug, Clone)]
pub struct LogOptions {
    /// Line format.
    pub format: LogFormat,
    /// Effective level (after `-v`/`-q`).
    pub level: LogLevel,
    /// Log file; None: stderr.
    pub logfile: Option<PathBuf>,
    /// syslog ident and facility, when syslog is on.
    pub syslog: Option<(String, String)>,
}

/// The level after `-v` (each one step more verbose) and `-q` (each one step quieter).
pub fn effective_level(base: LogLevel, verbose: u8, quiet: u8) -> LogLevel {
    let order = [
        LogLevel::Error,
        LogLevel::Warn,
        LogLevel::Info,
        LogLevel::Debug,
        LogLevel::Trace,
    ];
    let i =
        order.iter().position(|l| *l == base).unwrap_or(2) as i32 + verbose as i32 - quiet as i32;
    order[i.clamp(0, 4) as usize]
}

fn directive(level: LogLevel) -> &'static str {
    match level {
        LogLevel::Error => "error",
        LogLevel::Warn => "warn",
        LogLevel::Info => "info",
        LogLevel::Debug => "debug",
        LogLevel::Trace => "trace",
    }
}

/// A log file that can be reopened by path while writers keep using it.
#[derive(Debug)]
struct Reopenable {
    path: Mutex<PathBuf>,
    file: Mutex<File>,
}

fn open_append(path: &Path) -> Result<File, Error> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|source| Error::Open {
            path: path.to_path_buf(),
            source,
        })
}

/// Writer for one event: holds the file lock so lines never interleave.
struct FileWriter<'a>(std::sync::MutexGuard<'a, File>);

impl Write for FileWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

#[derive(Clone, Debug)]
struct SharedFile(Arc<Reopenable>);

impl<'a> MakeWriter<'a> for SharedFile {
    type Writer = FileWriter<'a>;
    fn make_writer(&'a self) -> Self::Writer {
        // A poisoned lock only means a writer panicked mid-line; keep logging.
        FileWriter(self.0.file.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Handle kept by the signal task to reopen the log file after logrotate.
#[derive(Clone, Debug, Default)]
pub struct LogHandle {
    file: Option<Arc<Reopenable>>,
}

impl LogHandle {
    /// Reopens the log file, at `new_path` if given (a reloaded config may move it).
    /// Without a log file (stderr) this does nothing.
    pub fn reopen(&self, new_path: Option<&Path>) -> Result<(), Error> {
        let Some(r) = &self.file else {
            return Ok(());
        };
        let mut path = r.path.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(p) = new_path {
            *path = p.to_path_buf();
        }
        let f = open_append(&path)?;
        *r.file.lock().unwrap_or_else(|p| p.into_inner()) = f;
        Ok(())
    }

    /// Whether logs go to a file.
    pub fn has_file(&self) -> bool {
        self.file.is_some()
    }
}

/// Installs the global subscriber.
pub fn init(opts: &LogOptions) -> Result<LogHandle, Error> {
    let filter = std::env::var(FILTER_VAR)
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| EnvFilter::new(directive(opts.level)));
    let mut handle = LogHandle::default();
    let mut layers: Vec<Box<dyn Layer<tracing_subscriber::Registry> + Send + Sync>> = Vec::new();
    let json = opts.format == LogFormat::Json;
    match &opts.logfile {
        Some(path) => {
            let r = Arc::new(Reopenable {
                file: Mutex::new(open_append(path)?),
                path: Mutex::new(path.clone()),
            });
            handle.file = Some(r.clone());
            let w = SharedFile(r);
            let l = tracing_subscriber::fmt::layer()
                .with_writer(w)
                .with_ansi(false);
            layers.push(if json { l.json().boxed() } else { l.boxed() });
        }
        None => {
            let l = tracing_subscriber::fmt::layer()
                .with_writer(io::stderr)
                .with_ansi(false);
            layers.push(if json { l.json().boxed() } else { l.boxed() });
        }
    }
    if let Some((ident, facility)) = &opts.syslog {
        layers.push(SyslogLayer::open(ident, facility)?.boxed());
    }
    tracing_subscriber::registry()
        .with(layers)
        .with(filter)
        .try_init()
        .map_err(|_| Error::AlreadySet)?;
    Ok(handle)
}

/// Sends info and higher to syslog(3).
struct SyslogLayer {
    facility: nix::syslog::Facility,
}

impl SyslogLayer {
    fn open(ident: &str, facility: &str) -> Result<SyslogLayer, Error> {
        use nix::syslog::{Facility as F, LogFlags};
        let facility = match facility {
            "auth" => F::LOG_AUTH,
            // nix has no LOG_AUTHPRIV; auth is the nearest facility.
            "authpriv" => F::LOG_AUTH,
            "daemon" => F::LOG_DAEMON,
            "user" => F::LOG_USER,
            "local0" => F::LOG_LOCAL0,
            "local1" => F::LOG_LOCAL1,
            "local2" => F::LOG_LOCAL2,
            "local3" => F::LOG_LOCAL3,
            "local4" => F::LOG_LOCAL4,
            "local5" => F::LOG_LOCAL5,
            "local6" => F::LOG_LOCAL6,
            "local7" => F::LOG_LOCAL7,
            other => return Err(Error::Syslog(format!("unknown facility {other:?}"))),
        };
        let ident = std::ffi::CString::new(ident)
            .map_err(|_| Error::Syslog("syslog_ident contains a NUL byte".into()))?;
        // openlog keeps the pointer: the ident must live for the rest of the process.
        let ident: &'static std::ffi::CStr = Box::leak(ident.into_boxed_c_str());
        nix::syslog::openlog(Some(ident), LogFlags::LOG_PID, facility)
            .map_err(|e| Error::Syslog(e.to_string()))?;
        Ok(SyslogLayer { facility })
    }
}

/// Collects an event's message and fields into one line.
#[derive(Default)]
struct LineVisitor(String);

impl tracing::field::Visit for LineVisitor {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write as _;
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
}

impl<S: Subscriber> Layer<S> for SyslogLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        use nix::syslog::{Priority, Severity};
        let level = *event.metadata().level();
        let sev = match level {
            Level::ERROR => Severity::LOG_ERR,
            Level::WARN => Severity::LOG_WARNING,
            Level::INFO => Severity::LOG_INFO,
            _ => return,
        };
        let mut v = LineVisitor::default();
        event.record(&mut v);
        let _ = nix::syslog::syslog(Priority::new(sev, self.facility), v.0.as_str());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbosity_moves_the_level() {
        assert_eq!(effective_level(LogLevel::Info, 0, 0), LogLevel::Info);
        assert_eq!(effective_level(LogLevel::Info, 1, 0), LogLevel::Debug);
        assert_eq!(effective_level(LogLevel::Info, 5, 0), LogLevel::Trace);
        assert_eq!(effective_level(LogLevel::Info, 0, 1), LogLevel::Warn);
        assert_eq!(effective_level(LogLevel::Warn, 0, 9), LogLevel::Error);
    }

    #[test]
    fn reopen_follows_a_moved_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pgqd.log");
        let r = Arc::new(Reopenable {
            file: Mutex::new(open_append(&path).unwrap()),
            path: Mutex::new(path.clone()),
        });
        let w = SharedFile(r.clone());
        let h = LogHandle { file: Some(r) };
        writeln!(w.make_writer(), "one").unwrap();
        std::fs::rename(&path, dir.path().join("pgqd.log.1")).unwrap();
        writeln!(w.make_writer(), "two").unwrap();
        h.reopen(None).unwrap();
        writeln!(w.make_writer(), "three").unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("pgqd.log.1")).unwrap(),
            "one\ntwo\n"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "three\n");
    }
}
