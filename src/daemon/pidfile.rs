//! The pidfile: written at start, removed at exit, read by `pgqd -s/-k/-r` to signal the
//! running instance (the C pgqd's protocol).
//!
//! [`Pidfile::create`] refuses to start over a live instance ("pidfile exists, another
//! instance running?"), removes a stale file (its process is gone) with a warning, and
//! writes the file exclusively (`O_EXCL`) so two daemons starting at once cannot both
//! win. Dropping the guard removes the file if it still holds our pid.
//!
//! Callers: `main.rs` (create after daemonizing; [`send_signal`] for the signal flags).

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Errors around the pidfile.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Another live process holds the pidfile.
    #[error("pidfile {} exists, another instance running? (pid {pid})", path.display())]
    Running {
        /// The file.
        path: PathBuf,
        /// The live process.
        pid: i32,
    },
    /// The file cannot be read, written or removed.
    #[error("pidfile {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The pidfile's directory is missing or not writable.
    #[error(
        "cannot create pidfile {}: directory {} {why} ({source}); create it for the \
         daemon's user or set pidfile to a writable place",
        path.display(),
        dir.display()
    )]
    Dir {
        /// The file.
        path: PathBuf,
        /// Its directory.
        dir: PathBuf,
        /// What is wrong with the directory.
        why: &'static str,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// No process to signal: no file, no valid pid in it, or the process is gone.
    #[error("old process is not running ({reason})")]
    NotRunning {
        /// Why we think so.
        reason: String,
    },
    /// The signal could not be sent (e.g. permission).
    #[error("cannot send {signal} to pid {pid}: {source}")]
    Kill {
        /// The signal.
        signal: Signal,
        /// The process.
        pid: i32,
        /// The cause.
        #[source]
        source: nix::Error,
    },
}

/// Reads the pid from a pidfile (first line, trimmed).
pub fn read_pid(path: &Path) -> Result<Option<i32>, Error> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(s
            .lines()
            .next()
            .and_then(|l| l.trim().parse::<i32>().ok())
            .filter(|p| *p > 0)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Whether a process with this pid exists (EPERM counts as existing).
pub fn alive(pid: i32) -> bool {
    match kill(Pid::from_raw(pid), None) {
        Ok(()) => true,
        Err(nix::Error::EPERM) => true,
        Err(_) => false,
    }
}

/// Sends `signal` to the process named in the pidfile; returns its pid.
pub fn send_signal(path: &Path, signal: Signal) -> Result<i32, Error> {
    let pid = read_pid(path)?.ok_or_else(|| Error::NotRunning {
        reason: format!("no valid pid in {}", path.display()),
    })?;
    match kill(Pid::from_raw(pid), signal) {
        Ok(()) => Ok(pid),
        Err(nix::Error::ESRCH) => Err(Error::NotRunning {
            reason: format!("pid {pid} from {} does not exist", path.display()),
        }),
        Err(source) => Err(Error::Kill {
            signal,
            pid,
            source,
        }),
    }
}

/// The pidfile of this process; removed on drop.
#[derive(Debug)]
pub struct Pidfile {
    path: PathBuf,
    pid: i32,
}

impl Pidfile {
    /// Writes our pid to `path`, refusing if a live process already owns it.
    pub fn create(path: &Path) -> Result<Pidfile, Error> {
        let io_err = |source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        // A missing or unwritable directory is the usual mistake; say which and why.
        let create_err = |source: std::io::Error| {
            let dir = path.parent().unwrap_or(Path::new("."));
            let why = match source.kind() {
                std::io::ErrorKind::NotFound => "does not exist",
                std::io::ErrorKind::PermissionDenied => "is not writable by the daemon's user",
                _ => return io_err(source),
            };
            Error::Dir {
                path: path.to_path_buf(),
                dir: dir.to_path_buf(),
                why,
                source,
            }
        };
        let me = std::process::id() as i32;
        if let Some(pid) = read_pid(path)? {
            if pid != me && alive(pid) {
                return Err(Error::Running {
                    path: path.to_path_buf(),
                    pid,
                });
            }
            tracing::warn!(pidfile = %path.display(), pid, "stale pidfile, removing");
        }
        if path.exists() {
            std::fs::remove_file(path).map_err(io_err)?;
        }
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(create_err)?;
        writeln!(f, "{me}").map_err(io_err)?;
        f.sync_all().map_err(io_err)?;
        Ok(Pidfile {
            path: path.to_path_buf(),
            pid: me,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Pidfile {
    fn drop(&mut self) {
        // Only remove our own file: a second instance may have replaced a stale one.
        if let Ok(Some(pid)) = read_pid(&self.path)
            && pid == self.pid
        {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_write_and_remove() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pgqd.pid");
        let g = Pidfile::create(&p).unwrap();
        assert_eq!(read_pid(&p).unwrap(), Some(std::process::id() as i32));
        drop(g);
        assert!(!p.exists());
    }

    #[test]
    fn live_owner_blocks_and_stale_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pgqd.pid");
        // pid 1 is always alive.
        std::fs::write(&p, "1\n").unwrap();
        assert!(matches!(
            Pidfile::create(&p),
            Err(Error::Running { pid: 1, .. })
        ));
        // A pid that cannot exist (beyond pid_max) is stale.
        std::fs::write(&p, "2147483646\n").unwrap();
        let g = Pidfile::create(&p).unwrap();
        assert_eq!(read_pid(g.path()).unwrap(), Some(std::process::id() as i32));
    }

    #[test]
    fn signalling_without_process() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("none.pid");
        assert!(matches!(
            send_signal(&p, Signal::SIGHUP),
            Err(Error::NotRunning { .. })
        ));
        std::fs::write(&p, "2147483646\n").unwrap();
        assert!(matches!(
            send_signal(&p, Signal::SIGHUP),
            Err(Error::NotRunning { .. })
        ));
    }
}
