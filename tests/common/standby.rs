//! A streaming-replication standby of a harness cluster, for the failover tests (issue #8).
//!
//! `pg_basebackup -R` copies the primary into `<primary dir>/standby` and the standby starts
//! on its own port in the primary's socket directory, so one multi-host connection string
//! reaches both: `host=DIR,DIR port=P1,P2`. Stopped (immediate) on drop; the directory goes
//! with the primary's.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::common::TestCluster;
use crate::common::pgqd_proc::{pg_ctl, server_bin};

/// A running (or stopped) standby of a [`TestCluster`].
pub struct Standby<'a> {
    primary: &'a TestCluster,
    /// Its data directory.
    pub data: PathBuf,
    /// Its port (unix socket in the primary's socket directory).
    pub port: u16,
    log: PathBuf,
    running: bool,
}

impl<'a> Standby<'a> {
    /// Base-backs-up `primary` and starts the copy as a hot standby on `port`.
    pub fn create(primary: &'a TestCluster, port: u16) -> Standby<'a> {
        let data = primary.dir.join("standby");
        let sock = primary.socket_dir.to_str().expect("utf-8 path");
        let out = server_bin(
            primary,
            "pg_basebackup",
            &[
                "-D",
                data.to_str().expect("utf-8 path"),
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
                "-h",
                sock,
                "-p",
                &primary.port.to_string(),
                "-U",
                "postgres",
            ],
        );
        assert!(
            out.status.success(),
            "pg_basebackup failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let conf = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf).expect("read standby conf");
        text.push_str(&format!("\nport = {port}\nhot_standby = on\n"));
        std::fs::write(&conf, text).expect("write standby conf");
        let mut s = Standby {
            primary,
            log: primary.dir.join("standby.log"),
            data,
            port,
            running: false,
        };
        s.start();
        s
    }

    /// Starts it (waits until it accepts connections).
    pub fn start(&mut self) {
        pg_ctl(self.primary, &self.data, &self.log, &["start"]);
        self.running = true;
    }

    /// `pg_ctl promote`, waiting until it is a primary.
    pub fn promote(&self) {
        pg_ctl(self.primary, &self.data, &self.log, &["promote"]);
    }

    /// Runs `sql` with psql on the standby; None when psql fails.
    pub fn try_psql(&self, db: &str, sql: &str) -> Option<String> {
        let psql = {
            let own = self.primary.bindir.join("psql");
            if own.exists() {
                own
            } else {
                PathBuf::from("psql")
            }
        };
        let out = Command::new(psql)
            .args(["-X", "-At", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(&self.primary.socket_dir)
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                db,
                "-c",
                sql,
            ])
            .stdin(Stdio::null())
            .output()
            .expect("run psql");
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim_end().to_string())
    }

    /// Like [`Standby::try_psql`]; panics on failure.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        self.try_psql(db, sql)
            .unwrap_or_else(|| panic!("psql on the standby failed: {sql}"))
    }

    /// The standby's server log.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Standby<'_> {
    fn drop(&mut self) {
        if self.running {
            let d = self.data.to_str().unwrap_or_default().to_string();
            let _ = server_bin(
                self.primary,
                "pg_ctl",
                &["-D", &d, "-w", "-m", "immediate", "stop"],
            );
        }
    }
}
