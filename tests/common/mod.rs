//! Test harness: throwaway PostgreSQL clusters.
//!
//! A [`TestCluster`] runs `initdb` in a fresh temporary directory and starts a server that
//! listens only on a unix socket in that directory (no port clashes), with fsync off. When
//! the tests run as root (as CI does) every server binary runs as an unprivileged user
//! through `runuser`. Dropping the cluster stops the server and removes the directory, also
//! when the test panicked; clusters left behind by a killed test process are swept when the
//! next one starts. Nothing here is kept in a `static` (statics are never dropped).
//!
//! Inside a cluster, `pgq_template` is a template database (`IS_TEMPLATE`, so the daemon's
//! discovery skips it) holding our schema, built once per cluster and cloned per test
//! database.

#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

use tokio_postgres::{Client, NoTls};

pub mod fence;
pub mod golden;
pub mod netns;
pub mod pgqd_proc;
pub mod proxy;
pub mod standby;

/// Environment variable that keeps cluster directories after the test, for debugging.
const KEEP_VAR: &str = "PGQD_TEST_KEEP";
/// Directory-name prefix of every harness cluster, used by the sweep.
const DIR_PREFIX: &str = "pgqd-test-";

static SWEEP: Once = Once::new();

/// Options for [`TestCluster::start_with`].
#[derive(Debug, Clone, Default)]
pub struct ClusterOptions {
    /// Extra `postgresql.conf` lines.
    pub conf: Vec<String>,
    /// Extra `pg_hba.conf` lines, put before the default trust lines.
    pub hba: Vec<String>,
    /// Also listen on 127.0.0.1 on a free port.
    pub tcp: bool,
    /// Files written into the data directory before the server starts (name, contents),
    /// owned by the server's user with mode 0600: TLS certificates and keys, which `conf`
    /// can then name relative to the data directory (`ssl_cert_file = 'server.crt'`).
    pub data_files: Vec<(String, Vec<u8>)>,
}

/// A running throwaway cluster. Stopped and removed on drop.
pub struct TestCluster {
    /// The temporary directory holding `data/`, the socket and `server.log`.
    pub dir: PathBuf,
    /// The unix socket directory (same as `dir`).
    pub socket_dir: PathBuf,
    /// The server's port (the socket name includes it; on TCP too when enabled).
    pub port: u16,
    /// PostgreSQL binaries used.
    pub bindir: PathBuf,
    /// The OS user the server runs as when the tests run as root.
    run_as: Option<String>,
    template_ready: std::cell::Cell<bool>,
}

impl TestCluster {
    /// Starts a cluster with default options.
    pub fn start() -> TestCluster {
        TestCluster::start_with(ClusterOptions::default())
    }

    /// Starts a cluster; panics (failing the test) with the server log on failure.
    pub fn start_with(opts: ClusterOptions) -> TestCluster {
        SWEEP.call_once(sweep_leftovers);
        let bindir = bindir();
        let run_as = if nix::unistd::geteuid().is_root() {
            Some(std::env::var("PGQD_TEST_USER").unwrap_or_else(|_| "postgres".to_string()))
        } else {
            None
        };
        let dir = tempfile::Builder::new()
            .prefix(DIR_PREFIX)
            .tempdir()
            .expect("create cluster directory")
            .keep();
        fs::write(dir.join("owner.pid"), std::process::id().to_string()).expect("owner.pid");
        if let Some(user) = &run_as {
            let u = nix::unistd::User::from_name(user)
                .ok()
                .flatten()
                .unwrap_or_else(|| panic!("test user {user} does not exist (see .ci/run)"));
            nix::unistd::chown(&dir, Some(u.uid), Some(u.gid)).expect("chown cluster dir");
        }
        let port = if opts.tcp { free_port() } else { 5432 };
        let mut c = TestCluster {
            socket_dir: dir.clone(),
            dir,
            port,
            bindir,
            run_as,
            template_ready: std::cell::Cell::new(false),
        };
        let data = c.dir.join("data");
        c.run_checked(
            "initdb",
            &[
                "-N",
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-locale",
                "-D",
                data.to_str().expect("utf-8 path"),
            ],
        );
        let mut conf = vec![
            format!(
                "listen_addresses = '{}'",
                if opts.tcp { "127.0.0.1" } else { "" }
            ),
            format!("unix_socket_directories = '{}'", c.dir.display()),
            format!("port = {port}"),
            "fsync = off".into(),
            "synchronous_commit = off".into(),
            "full_page_writes = off".into(),
            "max_connections = 300".into(),
            "log_min_messages = warning".into(),
            "log_line_prefix = '%m [%p] %d '".into(),
        ];
        conf.extend(opts.conf.iter().cloned());
        for (name, bytes) in &opts.data_files {
            use std::os::unix::fs::PermissionsExt;
            let path = data.join(name);
            fs::write(&path, bytes).expect("write data file");
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).expect("chmod data file");
            if let Some(user) = &c.run_as {
                let u = nix::unistd::User::from_name(user)
                    .ok()
                    .flatten()
                    .expect("server user exists");
                nix::unistd::chown(&path, Some(u.uid), Some(u.gid)).expect("chown data file");
            }
        }
        append(&data.join("postgresql.conf"), &conf.join("\n"));
        if !opts.hba.is_empty() {
            let hba = data.join("pg_hba.conf");
            let old = fs::read_to_string(&hba).expect("read pg_hba.conf");
            fs::write(&hba, format!("{}\n{old}", opts.hba.join("\n"))).expect("write pg_hba.conf");
        }
        c.pg_ctl_start();
        c.port = port;
        c
    }

    /// libpq connection string for `db` over the unix socket.
    pub fn connstr(&self, db: &str) -> String {
        format!(
            "host={} port={} user=postgres dbname={db}",
            self.socket_dir.display(),
            self.port
        )
    }

    /// tokio-postgres config for `db`.
    pub fn config(&self, db: &str) -> tokio_postgres::Config {
        let mut cfg = tokio_postgres::Config::new();
        cfg.host_path(&self.socket_dir)
            .port(self.port)
            .user("postgres")
            .dbname(db);
        cfg
    }

    /// Opens a client connection to `db`, driving it on a spawned task.
    pub async fn connect(&self, db: &str) -> Client {
        let (client, conn) =
            self.config(db).connect(NoTls).await.unwrap_or_else(|e| {
                panic!("connect to {db}: {e}; log: {}", self.log_path().display())
            });
        tokio::spawn(async move {
            let _ = conn.await;
        });
        client
    }

    /// Runs `psql -X -At -v ON_ERROR_STOP=1 -c sql`, panics on failure, returns stdout.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = self.psql_output(db, &["-At", "-v", "ON_ERROR_STOP=1", "-c", sql]);
        if !out.status.success() {
            panic!(
                "psql on {db} failed: {}\nsql: {sql}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        String::from_utf8_lossy(&out.stdout).trim_end().to_string()
    }

    /// psql against `db` with the harness's fixed settings (no psqlrc, UTC, ISO dates).
    fn psql_command(&self, db: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(psql_bin(&self.bindir));
        cmd.arg("-X")
            .arg("-h")
            .arg(&self.socket_dir)
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-U")
            .arg("postgres")
            .arg("-d")
            .arg(db)
            .args(args)
            .env("PGTZ", "UTC")
            .env("PGDATESTYLE", "ISO, MDY")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs psql with the given extra arguments and returns its raw output.
    pub fn psql_output(&self, db: &str, args: &[&str]) -> Output {
        self.psql_command(db, args).output().expect("run psql")
    }

    /// Runs a SQL file in one transaction, stopping at the first error; panics with
    /// psql's message when it fails.
    pub fn psql_file(&self, db: &str, path: &Path) {
        let file = path.to_str().expect("utf-8 path");
        let out = self.psql_output(db, &["-q", "-1", "-v", "ON_ERROR_STOP=1", "-f", file]);
        assert!(
            out.status.success(),
            "running {file} in {db} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Runs psql with stdout and stderr into one stream, in the order psql wrote them, as
    /// pg_regress shows errors among the echoed statements.
    pub fn psql_merged(&self, db: &str, args: &[&str]) -> String {
        let path = self.dir.join(format!("psql-{db}.out"));
        let file = fs::File::create(&path).expect("create psql output file");
        self.psql_command(db, args)
            .stdout(Stdio::from(file.try_clone().expect("clone file handle")))
            .stderr(Stdio::from(file))
            .status()
            .expect("run psql");
        let out = fs::read_to_string(&path).expect("read psql output");
        let _ = fs::remove_file(&path);
        out
    }

    /// Creates an empty database.
    pub fn create_db(&self, name: &str) {
        self.psql("postgres", &format!("create database \"{name}\""));
    }

    /// Creates a database holding our pgq schema, cloned from `pgq_template`.
    pub fn create_pgq_db(&self, name: &str) {
        self.ensure_template();
        self.psql(
            "postgres",
            &format!("create database \"{name}\" template pgq_template"),
        );
    }

    /// Creates a database with the real pgq 3.5 extension (the oracle).
    pub fn create_ext_db(&self, name: &str) {
        self.create_db(name);
        self.psql(name, "create extension pgq");
    }

    /// Whether the real pgq extension is installed on this machine.
    pub fn has_real_pgq(&self) -> bool {
        let share = Command::new(self.bindir.join("pg_config"))
            .arg("--sharedir")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
        share.is_some_and(|s| Path::new(&s).join("extension/pgq.control").exists())
    }

    /// Builds `pgq_template` once: our schema installed from the embedded files.
    pub fn ensure_template(&self) {
        if self.template_ready.get() {
            return;
        }
        self.create_db("pgq_template");
        install_schema(self, "pgq_template", &["pgq"]);
        self.psql("postgres", "alter database pgq_template is_template true");
        self.template_ready.set(true);
    }

    /// Path of the server log, printed when something fails.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    /// Restarts the server (fast mode).
    pub fn restart(&self) {
        self.pg_ctl(&["-m", "fast", "stop"]);
        self.pg_ctl_start();
    }

    /// Stops the server (fast mode) without removing anything.
    pub fn stop(&self) {
        self.pg_ctl(&["-m", "fast", "stop"]);
    }

    /// Starts a stopped server again.
    pub fn start_again(&self) {
        self.pg_ctl_start();
    }

    /// Runs a server tool (`pg_resetwal`, `pg_controldata`, …) as the server's user;
    /// panics with its output on failure, returns stdout.
    pub fn server_tool(&self, bin: &str, args: &[&str]) -> String {
        let out = self.run(bin, args);
        assert!(
            out.status.success(),
            "{bin} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn pg_ctl_start(&self) {
        let data = self.dir.join("data");
        let log = self.log_path();
        let out = self.run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().expect("utf-8"),
                "-l",
                log.to_str().expect("utf-8"),
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
        if !out.status.success() {
            panic!(
                "pg_ctl start failed: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                fs::read_to_string(&log).unwrap_or_default()
            );
        }
    }

    fn pg_ctl(&self, args: &[&str]) -> Output {
        let data = self.dir.join("data");
        let mut all = vec!["-D", data.to_str().expect("utf-8"), "-w"];
        all.extend_from_slice(args);
        self.run("pg_ctl", &all)
    }

    fn run_checked(&self, bin: &str, args: &[&str]) {
        let out = self.run(bin, args);
        if !out.status.success() {
            panic!(
                "{bin} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// Runs a server binary, as the unprivileged user when we are root.
    fn run(&self, bin: &str, args: &[&str]) -> Output {
        run_server_bin(&self.bindir, self.run_as.as_deref(), bin, args)
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        let _ = self.pg_ctl(&["-m", "immediate", "stop"]);
        if std::thread::panicking() {
            eprintln!(
                "test cluster at {} (server log {})",
                self.dir.display(),
                self.log_path().display()
            );
            if let Ok(log) = fs::read_to_string(self.log_path()) {
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                for l in tail.iter().rev() {
                    eprintln!("  | {l}");
                }
            }
        }
        if std::env::var_os(KEEP_VAR).is_none() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

fn run_server_bin(bindir: &Path, run_as: Option<&str>, bin: &str, args: &[&str]) -> Output {
    let path = bindir.join(bin);
    let mut cmd = match run_as {
        Some(user) => {
            let mut c = Command::new("runuser");
            c.arg("-u").arg(user).arg("--").arg(&path);
            c
        }
        None => Command::new(&path),
    };
    cmd.args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e}", path.display()))
}

/// Installs components into `db` with `psql -1 -f`, file by file as a DBA would.
pub fn install_schema(c: &TestCluster, db: &str, comps: &[&str]) {
    for comp in pgqd::schema::components()
        .iter()
        .filter(|k| comps.contains(&k.name))
    {
        let sql = pgqd::schema::component_sql(comp);
        let path = c.dir.join(format!("install-{}.sql", comp.dir));
        fs::write(&path, sql).expect("write install file");
        c.psql_file(db, &path);
    }
}

/// The PostgreSQL binaries: `PG_BINDIR`, else `pg_config --bindir`, else the highest
/// `/usr/lib/postgresql/*/bin`.
pub fn bindir() -> PathBuf {
    if let Some(d) = std::env::var_os("PG_BINDIR") {
        return PathBuf::from(d);
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if p.join("initdb").exists() {
            return p;
        }
    }
    let mut majors: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| {
                    let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
                    let b = e.path().join("bin");
                    b.join("initdb").exists().then_some((v, b))
                })
                .collect()
        })
        .unwrap_or_default();
    majors.sort();
    majors
        .pop()
        .map(|(_, p)| p)
        .expect("no PostgreSQL binaries: set PG_BINDIR or install postgresql")
}

/// psql: the one in `bindir` if there is one, else Debian's on PATH (the npm server
/// tarballs for other majors carry no psql).
fn psql_bin(bindir: &Path) -> PathBuf {
    let own = bindir.join("psql");
    if own.exists() {
        own
    } else {
        PathBuf::from("psql")
    }
}

fn append(path: &Path, text: &str) {
    let mut old = fs::read_to_string(path).expect("read conf");
    old.push('\n');
    old.push_str(text);
    old.push('\n');
    fs::write(path, old).expect("write conf");
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

/// Stops and removes clusters whose owning test process is gone (killed by a timeout,
/// SIGKILL, or a crash before Drop ran).
fn sweep_leftovers() {
    let Ok(rd) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in rd.filter_map(|e| e.ok()) {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with(DIR_PREFIX) {
            continue;
        }
        let dir = e.path();
        let owner: Option<i32> = fs::read_to_string(dir.join("owner.pid"))
            .ok()
            .and_then(|s| s.trim().parse().ok());
        let alive = owner.is_some_and(|pid| {
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
        });
        if alive {
            continue;
        }
        if let Some(pm) = fs::read_to_string(dir.join("data/postmaster.pid"))
            .ok()
            .and_then(|s| s.lines().next().and_then(|l| l.trim().parse::<i32>().ok()))
        {
            // SIGQUIT is an immediate shutdown for the postmaster.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pm),
                nix::sys::signal::Signal::SIGQUIT,
            );
        }
        let _ = fs::remove_dir_all(&dir);
    }
}

/// Polls `check` until it returns `Some`, or panics after `timeout` with `what`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `check` every 50 ms until it returns `Some`, or panics after `timeout` with
/// `what`: the blocking twin of [`wait_for`], for tests that drive child processes.
pub fn wait_until<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// [`wait_until`] for a condition without a value.
pub fn wait_until_true(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    wait_until(what, timeout, || check().then_some(()))
}

/// Waits for a child process to exit; kills it and panics after `timeout`.
pub fn wait_exit(child: &mut Child, timeout: Duration) -> ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            return s;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("child process did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
