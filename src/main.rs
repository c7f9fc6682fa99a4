//! The `pgqd` binary: parses the command line and wires the library together (STYLE R1).
//!
//! Grammar: `pgqd [OPTIONS] [CONFIG]` runs the daemon in the foreground with CONFIG
//! (`pgqd.toml`, or the C pgqd's `pgqd.ini`: told apart by extension, else by content);
//! `pgqd --config FILE` is the same (needed when the file is named like a subcommand);
//! `pgqd SUBCOMMAND …` runs a command and exits (`pgqd cascade …` groups the cascade's
//! commands and its worker). The C pgqd's flags work as before: `-s`/`-k`/`-r` signal the
//! running instance found through the pidfile, `-d` daemonizes.
//!
//! Exit codes: 0 clean stop, 1 runtime failure, 2 usage or config error.
//!
//! Order of a daemon start: load config → (`-d`: fork, before any thread exists) →
//! logging → pidfile → runtime → signal task → `daemon::run_with` until a signal.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};
use nix::sys::signal::Signal;
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;

use pgqd::cli::install::{self, InstallArgs};
use pgqd::config::{self, Config, LogFormat};
use pgqd::daemon::{self, notify, pidfile, signals};
use pgqd::logging;
use pgqd::tools::{self, ToolArgs};

const EXIT_OK: u8 = 0;
const EXIT_FAILURE: u8 = 1;
const EXIT_USAGE: u8 = 2;

#[derive(Parser, Debug)]
#[command(
    name = "pgqd",
    about = "PgQ ticker daemon and tools",
    disable_version_flag = true,
    args_conflicts_with_subcommands = true,
    after_help = "Exit codes: 0 clean stop, 1 runtime failure, 2 usage or config error.\n\
                  Examples:\n  pgqd /etc/pgqd.ini\n  pgqd --check-config /etc/pgqd.toml\n  \
                  pgqd -r /etc/pgqd.ini   (reload the running daemon)"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Config file (.toml, or the C pgqd's .ini) of the daemon to run or signal.
    #[arg(value_name = "CONFIG")]
    config_pos: Option<PathBuf>,
    /// Config file, for names that look like a subcommand.
    #[arg(long = "config", value_name = "FILE", conflicts_with = "config_pos")]
    config: Option<PathBuf>,
    /// More log output (-v debug, -vv trace).
    #[arg(short, long, action = ArgAction::Count)]
    verbose: u8,
    /// Less log output (-q warnings and errors, -qq errors only).
    #[arg(short, long, action = ArgAction::Count)]
    quiet: u8,
    /// Print the version and exit.
    #[arg(short = 'V', long = "version")]
    version: bool,
    /// Log line format (overrides log_format).
    #[arg(long, value_enum, value_name = "FORMAT")]
    log_format: Option<LogFormatArg>,
    /// Validate a config file and exit: 0 valid, 2 invalid.
    #[arg(long, value_name = "FILE")]
    check_config: Option<PathBuf>,
    /// Stop the running daemon gracefully (SIGINT to the pidfile's process).
    #[arg(short = 's', group = "signal")]
    stop: bool,
    /// Stop the running daemon at once (SIGQUIT to the pidfile's process).
    #[arg(short = 'k', group = "signal")]
    kill: bool,
    /// Reload the running daemon's config (SIGHUP to the pidfile's process).
    #[arg(short = 'r', group = "signal")]
    reload: bool,
    /// Run in the background (needs pidfile and logfile in the config).
    #[arg(short = 'd', long = "daemon", conflicts_with = "signal")]
    daemonize: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum LogFormatArg {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Install or upgrade the SQL components in one database.
    ///
    /// Example: pgqd install --dbname app --component pgq
    Install(InstallCmd),
    /// The admin commands of issue #5 (`create`, `status`, `tail`, …): `pgqd::cli`.
    #[command(flatten)]
    Admin(pgqd::cli::Command),
    /// Queue mover: copy every event of a queue to a queue in another database, exactly once.
    ///
    /// Runs in the foreground until SIGINT/SIGTERM finishes the batch in hand (-d: in the
    /// background). CONFIG is TOML: source, queue, consumer, target, and target_queue
    /// (default: the same name); the other keys are in the README, "The tools". The
    /// target needs pgq_ext (pgqd install --component ext).
    ///
    /// Example: pgqd mover /etc/pgqd/mover.toml
    Mover(ToolArgs),
    /// Queue splitter: route events to target queues by table name (ev_extra1).
    ///
    /// CONFIG is TOML: source, queue, consumer, target, and include / exclude (table
    /// patterns, `*` at the end matches a prefix) and a [routes] table (table = queue;
    /// default: the queue named like the table). Runs like pgqd mover.
    ///
    /// Example: pgqd splitter /etc/pgqd/splitter.toml
    Splitter(ToolArgs),
    /// Table dispatcher: logutriga/jsontriga inserts into a (partitioned) target table.
    ///
    /// CONFIG is TOML: source, queue, consumer, target, dest_table, and optionally fields,
    /// part_field with part_period (day or month: partitions created on demand). Updates
    /// and deletes are not applied. Runs like pgqd mover.
    ///
    /// Example: pgqd dispatcher /etc/pgqd/archive.toml
    Dispatcher(ToolArgs),
    /// Cascading queues: create root/branch/leaf nodes, status, takeover, the worker.
    ///
    /// Example: pgqd cascade status --queue events --db "dbname=app"
    #[command(subcommand)]
    Cascade(pgqd::cascade::cli::CascadeCmd),
    /// Table replication through a cascaded queue: add-table, copy, tables, compare,
    /// repair, worker (issue #11).
    ///
    /// Example: pgqd replica tables --dbname app_copy --queue orders_q
    #[command(subcommand)]
    Replica(pgqd::replica::cli::ReplicaCommand),
}

/// Connection options shared by the commands that act on one database.
#[derive(Args, Debug)]
struct ConnOpts {
    /// libpq connection string (key=value or URL); PG* variables fill the rest.
    #[arg(long, short = 'c', default_value = "")]
    connstr: String,
    /// Database name (overrides the connection string and PGDATABASE).
    #[arg(long, short = 'd')]
    dbname: Option<String>,
}

#[derive(Args, Debug)]
struct InstallCmd {
    /// Components to install, comma-separated: pgq, ext, coop, triggers, node, replica.
    #[arg(long, value_delimiter = ',', default_value = "pgq")]
    component: Vec<String>,
    #[command(flatten)]
    conn: ConnOpts,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            let usage = pgqd::cli::usage_exit_code(&std::env::args().collect::<Vec<_>>());
            return ExitCode::from(if e.use_stderr() { usage } else { EXIT_OK });
        }
    };
    if cli.version {
        println!("pgqd {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    if let Some(path) = &cli.check_config {
        return ExitCode::from(check_config(path));
    }
    match cli.command {
        Some(Command::Install(cmd)) => ExitCode::from(run_install(cmd)),
        Some(Command::Admin(cmd)) => ExitCode::from(pgqd::cli::run(&cmd)),
        Some(Command::Mover(a)) => ExitCode::from(tools::main(tools::Kind::Mover, &a, daemonize)),
        Some(Command::Splitter(a)) => {
            ExitCode::from(tools::main(tools::Kind::Splitter, &a, daemonize))
        }
        Some(Command::Dispatcher(a)) => {
            ExitCode::from(tools::main(tools::Kind::Dispatcher, &a, daemonize))
        }
        Some(Command::Cascade(cmd)) => ExitCode::from(pgqd::cascade::cli::run(&cmd)),
        Some(Command::Replica(cmd)) => ExitCode::from(pgqd::replica::cli::run(&cmd)),
        None => ExitCode::from(run_daemon_cli(&cli)),
    }
}

fn check_config(path: &Path) -> u8 {
    match config::load(path) {
        Ok(cfg) => {
            for w in config::perms::warnings(path, &cfg) {
                eprintln!("pgqd: warning: {w}");
            }
            println!("{}: ok", path.display());
            EXIT_OK
        }
        Err(e) => {
            eprintln!("pgqd: {e}");
            EXIT_USAGE
        }
    }
}

fn run_install(cmd: InstallCmd) -> u8 {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pgqd: cannot start the async runtime: {e}");
            return EXIT_FAILURE;
        }
    };
    let args = InstallArgs {
        components: cmd.component,
        connstr: cmd.conn.connstr,
        dbname: cmd.conn.dbname,
    };
    match rt.block_on(install::run(&args)) {
        Ok(lines) => {
            for l in lines {
                println!("{l}");
            }
            EXIT_OK
        }
        Err(e) => {
            eprintln!("pgqd install: {e}");
            e.exit_code()
        }
    }
}

/// Makes a path absolute against the start directory, so it survives `-d`'s `chdir /`.
fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// The daemon and the C flags that signal it.
fn run_daemon_cli(cli: &Cli) -> u8 {
    let Some(path) = cli.config.as_ref().or(cli.config_pos.as_ref()) else {
        eprintln!("pgqd: a config file is required (pgqd [OPTIONS] CONFIG); see pgqd --help");
        return EXIT_USAGE;
    };
    let path = absolute(path);
    let mut cfg = match config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("pgqd: {e}");
            return EXIT_USAGE;
        }
    };
    cfg.logfile = cfg.logfile.as_deref().map(absolute);
    cfg.pidfile = cfg.pidfile.as_deref().map(absolute);
    let signal = if cli.stop {
        Some(Signal::SIGINT)
    } else if cli.kill {
        Some(Signal::SIGQUIT)
    } else if cli.reload {
        Some(Signal::SIGHUP)
    } else {
        None
    };
    if let Some(sig) = signal {
        return signal_running(&cfg, sig);
    }
    if let Some(f) = cli.log_format {
        cfg.log_format = match f {
            LogFormatArg::Text => LogFormat::Text,
            LogFormatArg::Json => LogFormat::Json,
        };
    }
    if cli.daemonize {
        if cfg.pidfile.is_none() || cfg.logfile.is_none() {
            eprintln!(
                "pgqd: -d needs both pidfile and logfile in {}",
                path.display()
            );
            return EXIT_USAGE;
        }
        // Refuse here, while the terminal still sees the message.
        if let Some(pf) = &cfg.pidfile
            && let Ok(Some(pid)) = pidfile::read_pid(pf)
            && pidfile::alive(pid)
        {
            eprintln!(
                "pgqd: pidfile {} exists, another instance running? (pid {pid})",
                pf.display()
            );
            return EXIT_FAILURE;
        }
        match daemonize() {
            Ok(true) => {}
            Ok(false) => return EXIT_OK, // the parent: the child carries on
            Err(e) => {
                eprintln!("pgqd: cannot daemonize: {e}");
                return EXIT_FAILURE;
            }
        }
    }
    run_daemon(path, cfg, cli.verbose, cli.quiet)
}

/// `-s`/`-k`/`-r`: signal the instance named in the pidfile.
fn signal_running(cfg: &Config, sig: Signal) -> u8 {
    let Some(pf) = &cfg.pidfile else {
        eprintln!("pgqd: no pidfile configured");
        return EXIT_USAGE;
    };
    match pidfile::send_signal(pf, sig) {
        Ok(pid) => {
            println!("{sig} sent to pid {pid}");
            EXIT_OK
        }
        Err(e) => {
            eprintln!("pgqd: {e}");
            EXIT_FAILURE
        }
    }
}

/// Classic double fork. Returns Ok(false) in the original process (which should exit 0)
/// and Ok(true) in the daemon. Must run before any thread exists (no runtime yet).
fn daemonize() -> nix::Result<bool> {
    use nix::unistd::{ForkResult, fork, setsid};
    // SAFETY: no other threads exist yet (the runtime starts after this), so the child
    // may continue to run arbitrary code.
    match unsafe { fork() }? {
        ForkResult::Parent { .. } => return Ok(false),
        ForkResult::Child => {}
    }
    setsid()?;
    // SAFETY: as above; still single-threaded.
    match unsafe { fork() }? {
        ForkResult::Parent { .. } => {
            // The intermediate process exits at once, without running destructors.
            // SAFETY: _exit is async-signal-safe and ends only this process.
            unsafe { nix::libc::_exit(0) }
        }
        ForkResult::Child => {}
    }
    nix::unistd::chdir("/")?;
    let null = nix::fcntl::open(
        "/dev/null",
        nix::fcntl::OFlag::O_RDWR,
        nix::sys::stat::Mode::empty(),
    )?;
    nix::unistd::dup2_stdin(&null)?;
    nix::unistd::dup2_stdout(&null)?;
    nix::unistd::dup2_stderr(&null)?;
    Ok(true)
}

fn run_daemon(path: PathBuf, cfg: Config, verbose: u8, quiet: u8) -> u8 {
    let log = match logging::init(&logging::LogOptions {
        format: cfg.log_format,
        level: logging::effective_level(cfg.log_level, verbose, quiet),
        logfile: cfg.logfile.clone(),
        syslog: cfg
            .syslog
            .then(|| (cfg.syslog_ident.clone(), cfg.syslog_facility.clone())),
    }) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("pgqd: {e}");
            return EXIT_FAILURE;
        }
    };
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        config = %path.display(),
        "starting pgqd"
    );
    tracing::info!(settings = %cfg.summary(), "effective config");
    for w in config::perms::warnings(&path, &cfg) {
        tracing::warn!("{w}");
    }
    // From the moment the pidfile names us, `pgqd -s` may signal us: hold the stop and
    // reload signals until their handlers exist (serve), or an early SIGTERM would kill the
    // process outright and leave the pidfile behind.
    let held = stop_signals();
    if let Err(e) = nix::sys::signal::pthread_sigmask(
        nix::sys::signal::SigmaskHow::SIG_BLOCK,
        Some(&held),
        None,
    ) {
        tracing::warn!(error = %e, "cannot hold signals during start-up");
    }
    let pid_guard = match &cfg.pidfile {
        Some(p) => match pidfile::Pidfile::create(p) {
            Ok(g) => Some(g),
            Err(e) => {
                tracing::error!(error = %e, "cannot write the pidfile");
                eprintln!("pgqd: {e}");
                return EXIT_FAILURE;
            }
        },
        None => None,
    };
    // One thread: the daemon waits on the network almost all the time, and a single-threaded
    // runtime saves the cross-thread wake-ups of every 10 ms poll and the idle workers'
    // memory (issue #7: CPU and RSS targets).
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return EXIT_FAILURE;
        }
    };
    let code = rt.block_on(serve(path, cfg, log));
    // Tasks still blocked (a connection stuck in the kernel) must not hold the exit.
    rt.shutdown_timeout(Duration::from_millis(500));
    drop(pid_guard);
    tracing::info!(exit_code = code, "pgqd stopped");
    code
}

/// The signals `pgqd -s/-k/-r`, systemd and a terminal send.
fn stop_signals() -> nix::sys::signal::SigSet {
    use nix::sys::signal::Signal;
    let mut set = nix::sys::signal::SigSet::empty();
    for s in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
    ] {
        set.add(s);
    }
    set
}

/// Runs the daemon with its signal task, readiness and watchdog, until it stops.
async fn serve(path: PathBuf, cfg: Config, log: logging::LogHandle) -> u8 {
    let signals = match signals::register() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot install signal handlers");
            return EXIT_FAILURE;
        }
    };
    // Handlers are in place: deliver what arrived meanwhile (this is the runtime's only
    // worker thread, the one that held them).
    let _ = nix::sys::signal::pthread_sigmask(
        nix::sys::signal::SigmaskHow::SIG_UNBLOCK,
        Some(&stop_signals()),
        None,
    );
    let cfg = Arc::new(cfg);
    let (cfg_tx, cfg_rx) = watch::channel(cfg.clone());
    let latest = cfg_tx.subscribe();
    let token = CancellationToken::new();
    let now = CancellationToken::new();
    let sig_handle = signals.handle();
    tokio::spawn(signals::run(
        signals,
        signals::Control {
            config_path: path,
            current: cfg,
            cfg_tx,
            log,
            token: token.clone(),
            now: now.clone(),
        },
    ));

    let (ready_tx, ready_rx) = oneshot::channel();
    let (beat_tx, beat_rx) = watch::channel(Instant::now());
    let metrics = Arc::new(daemon::metrics::Metrics::new());
    tokio::spawn(status_line(ready_rx, metrics.clone(), token.clone()));
    if let Some(every) = notify::watchdog_interval() {
        tokio::spawn(watchdog(every, beat_rx, token.clone()));
    }
    let hooks = daemon::Hooks {
        ready: Some(ready_tx),
        heartbeat: Some(beat_tx),
        metrics: Some(metrics),
        ..daemon::Hooks::default()
    };

    let run = daemon::run_with(cfg_rx, token.clone(), hooks);
    tokio::pin!(run);
    // Backstop: the daemon bounds its own shutdown by shutdown_timeout; if it still has
    // not returned a little after that, give up on it.
    let backstop = async {
        token.cancelled().await;
        let limit = latest.borrow().shutdown_timeout + Duration::from_secs(5);
        tokio::time::sleep(limit).await;
    };
    let code = tokio::select! {
        r = &mut run => match r {
            Ok(()) => EXIT_OK,
            Err(e) => {
                tracing::error!(error = %e, "daemon failed");
                EXIT_FAILURE
            }
        },
        _ = now.cancelled() => EXIT_OK,
        _ = backstop => {
            tracing::error!("daemon did not stop within shutdown_timeout");
            EXIT_FAILURE
        }
    };
    notify::stopping();
    sig_handle.close();
    code
}

/// READY=1 after the first discovery, then systemd's STATUS= line ("98 databases ticking,
/// 2 failing") whenever it changes, checked once a second.
async fn status_line(
    ready: oneshot::Receiver<()>,
    metrics: Arc<daemon::metrics::Metrics>,
    token: CancellationToken,
) {
    tokio::select! {
        r = ready => if r.is_err() { return },
        _ = token.cancelled() => return,
    }
    tracing::info!("first discovery done, ready");
    let mut last = metrics.summary();
    notify::ready(&last);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = token.cancelled() => return,
        }
        let now = metrics.summary();
        if now != last {
            notify::status(&now);
            last = now;
        }
    }
}

/// Pings the systemd watchdog while the daemon's loop is alive (its heartbeat is fresh).
/// An unreachable PostgreSQL does not stop the heartbeat, so it never triggers a restart.
async fn watchdog(every: Duration, beat: watch::Receiver<Instant>, token: CancellationToken) {
    let stale_after = (every * 2).max(daemon::HEARTBEAT_INTERVAL * 3);
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = token.cancelled() => return,
        }
        let age = beat.borrow().elapsed();
        if age <= stale_after {
            notify::watchdog();
        } else {
            tracing::warn!(
                since = %humantime::format_duration(age),
                "daemon loop has not reported for a while; withholding the watchdog ping"
            );
        }
    }
}

/// The man pages in `docs/man/` (shipped by the Debian package) are rendered from [`Cli`]
/// by `clap_mangen`, so they cannot drift from `--help`: this test fails while a
/// committed page differs from what the clap definition renders now. A test rather than
/// a generator binary or a build step: nothing extra is built or shipped, the packaging
/// script needs no Rust step of its own, and every CI run checks it.
/// `UPDATE_MANPAGES=1 cargo test --bin pgqd man_pages` rewrites the pages.
#[cfg(test)]
mod man_pages {
    use std::collections::BTreeMap;
    use std::fs;
    use std::path::Path;

    use clap::CommandFactory;

    use super::Cli;

    /// Sections of pgqd(8) that clap does not know: where the packaged files live.
    const PGQD_8_TAIL: &str = r#".SH FILES
.TP
/etc/pgqd.ini
Config of the packaged systemd unit, in the C pgqd's format; the same keys in TOML are
read from a file named *.toml. Check it with \fBpgqd \-\-check\-config /etc/pgqd.ini\fR.
.TP
/lib/systemd/system/pgqd.service
The unit: runs as postgres, reports readiness to systemd, reloads the config on
\fBsystemctl reload pgqd\fR; log lines go to the journal (\fBjournalctl \-u pgqd\fR).
.TP
/etc/logrotate.d/pgqd
Rotates /var/log/pgqd/*.log, for a config that sets logfile there.
.TP
/usr/share/doc/pgqd\-rs/examples/pgqd.toml
Every config key with its meaning, commented out at its default.
.SH "SEE ALSO"
\fBsystemctl\fR(1), \fBjournalctl\fR(1), \fBlogrotate\fR(8)
"#;

    /// Every page: file name → contents (pgqd.8 and one per visible subcommand).
    fn render() -> BTreeMap<String, Vec<u8>> {
        fn add(cmd: &clap::Command, pages: &mut BTreeMap<String, Vec<u8>>) {
            for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
                add(sub, pages);
            }
            let man = clap_mangen::Man::new(cmd.clone())
                .section("8")
                .source("pgqd")
                .manual("System Administration");
            let mut page = Vec::new();
            man.render(&mut page).expect("render to memory");
            if cmd.get_name() == "pgqd" {
                page.extend_from_slice(PGQD_8_TAIL.as_bytes());
            }
            pages.insert(man.get_filename(), page);
        }
        let mut cmd = Cli::command().disable_help_subcommand(true);
        cmd.build();
        let mut pages = BTreeMap::new();
        add(&cmd, &mut pages);
        pages
    }

    #[test]
    fn man_pages_are_current() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/man");
        let pages = render();
        assert!(pages.contains_key("pgqd.8") && pages.contains_key("pgqd-install.8"));
        let update = std::env::var_os("UPDATE_MANPAGES").is_some();
        let mut stale = Vec::new();
        for (name, page) in &pages {
            let path = dir.join(name);
            if fs::read(&path).ok().as_deref() != Some(page.as_slice()) {
                stale.push(name.clone());
                if update {
                    fs::create_dir_all(&dir).expect("create docs/man");
                    fs::write(&path, page).expect("write a man page");
                }
            }
        }
        // A page of a command that no longer exists.
        for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".8") && !pages.contains_key(&name) {
                stale.push(name);
                if update {
                    fs::remove_file(entry.path()).expect("remove a stale man page");
                }
            }
        }
        assert!(
            update || stale.is_empty(),
            "man pages in docs/man differ from the clap definition: {stale:?}; \
             regenerate with UPDATE_MANPAGES=1 cargo test --bin pgqd man_pages"
        );
    }
}
