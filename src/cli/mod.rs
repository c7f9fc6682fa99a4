//! Subcommands of the `pgqd` binary that act on a database and exit (R15: one file per
//! command, plain enum dispatch).
//!
//! `install` is wired separately in `main.rs`; the admin commands of issue #5 (the old
//! pgqadm/qadmin: `create`, `status`, `tail`, …) are the variants of [`Command`], which
//! `main.rs` flattens into its grammar and hands to [`run`]. Each command file holds its
//! clap arguments, its `--help` text with an example, and an `async fn run` that returns
//! the process exit code or an [`Error`]. Shared pieces live in [`common`].

pub mod common;
pub mod config;
pub mod create;
pub mod drop;
pub mod insert;
pub mod install;
pub mod migrate;
pub mod pause;
pub mod register;
pub mod repair;
pub mod resume;
pub mod retry_queue;
pub mod status;
pub mod tail;
pub mod tick;
pub mod uninstall;
pub mod unregister;

use clap::Subcommand;

pub use common::{ConnArgs, Error, Format};

/// The admin commands. Doc comments are the `--help` texts (first line: the summary).
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Remove SQL components (schemas) from a database.
    ///
    /// Drops schema pgq (and pgq_ext, pgq_coop, pgq_node for those components) in one
    /// transaction. Refuses while queues hold unconsumed events (pending events of a
    /// consumer, events since the last tick, or events waiting in the retry queue)
    /// unless --force is given. The roles pgq_reader/pgq_writer/pgq_admin are
    /// cluster-wide and stay.
    ///
    /// Example: pgqd uninstall --dbname app --component coop,pgq
    Uninstall(uninstall::Args),
    /// Create a queue.
    ///
    /// Exits 0 also when the queue exists already (and says so), so scripts can run it
    /// again. Needs role pgq_admin.
    ///
    /// Example: pgqd create --dbname app orders
    Create(create::Args),
    /// Drop a queue with its events and ticks.
    ///
    /// Refuses while consumers are registered, unless --force (which unregisters them).
    /// Needs role pgq_admin.
    ///
    /// Example: pgqd drop --dbname app orders --force
    Drop(drop::Args),
    /// Show or change a queue's ticker and rotation settings.
    ///
    /// Without KEY=VALUE, shows the settings. With them, changes each through
    /// pgq.set_queue_config (in one transaction) and shows the result. Keys, with or
    /// without the queue_ prefix: ticker_max_count, ticker_max_lag, ticker_idle_period,
    /// rotation_period, ticker_paused, external_ticker. Values are PostgreSQL literals
    /// of the setting's type (500, '3 seconds', 2h, true). Needs role pgq_admin to change.
    ///
    /// Example: pgqd config --dbname app orders ticker_max_lag=5s rotation_period=1h
    Config(config::Args),
    /// Register a consumer on a queue.
    ///
    /// Starts after the queue's newest tick, or after tick --at TICK (which moves an
    /// existing subscription there). Needs role pgq_reader.
    ///
    /// Example: pgqd register --dbname app orders billing
    Register(register::Args),
    /// Unregister a consumer from a queue (its retry events go too).
    ///
    /// Needs role pgq_reader.
    ///
    /// Example: pgqd unregister --dbname app orders billing
    Unregister(unregister::Args),
    /// Queue and consumer overview, or a monitoring check with --check.
    ///
    /// Per queue: rotation (tables × period), ticker settings (max count / max lag /
    /// idle period), ticker lag, events per second, events since the last tick. Per
    /// consumer: lag, last seen, pending events, open batch. --all covers every database
    /// of the cluster that has schema pgq.
    ///
    /// With --check (for Nagios/Icinga): prints one summary line and exits 0 OK,
    /// 1 WARNING, 2 CRITICAL, 3 UNKNOWN. THIS IS THE ONE PLACE WHERE EXIT CODE 2 DOES
    /// NOT MEAN A USAGE ERROR: in --check mode usage errors and failures exit 3. A
    /// consumer is WARNING when its lag, pending events or last-seen age is above
    /// --max-lag / --max-pending / --max-last-seen, CRITICAL when above --critical-*
    /// (default: twice the warning threshold).
    ///
    /// Examples:
    ///   pgqd status --dbname app
    ///   pgqd status --all --format json
    ///   pgqd status --dbname app --check --max-lag 60s --max-pending 100000
    Status(status::Args),
    /// Ask for a tick now and wait until the running ticker makes it.
    ///
    /// Calls pgq.force_tick and polls the queue's last tick until it changes. It never
    /// makes a tick itself: without a running pgqd (or other ticker) it times out and
    /// exits 1. Needs role pgq_reader.
    ///
    /// Example: pgqd tick --dbname app orders --timeout 30s
    Tick(tick::Args),
    /// Pause a queue's ticker (no new ticks, so no new batches).
    ///
    /// Needs role pgq_admin.
    ///
    /// Example: pgqd pause --dbname app orders
    Pause(pause::Args),
    /// Resume a paused queue's ticker.
    ///
    /// Needs role pgq_admin.
    ///
    /// Example: pgqd resume --dbname app orders
    Resume(resume::Args),
    /// Insert an event and print its id.
    ///
    /// Needs role pgq_writer.
    ///
    /// Example: pgqd insert --dbname app orders order.created '{"id": 42}' --extra1 shop
    Insert(insert::Args),
    /// Inspect the retry queue: events consumers asked to see again later.
    ///
    /// Table: count and next due time per queue and consumer. JSON: the same summary and
    /// the events themselves (up to --limit). Needs role pgq_admin (the retry queue is
    /// not readable by others).
    ///
    /// Example: pgqd retry-queue --dbname app orders --format json
    RetryQueue(retry_queue::Args),
    /// Print events as they arrive, as a temporary consumer of their own.
    ///
    /// Registers a consumer named pgqd_tail_PID_RANDOM at the queue's newest tick,
    /// prints each batch's events, and unregisters on exit: after --batches non-empty
    /// batches, after --timeout, on SIGINT (exit 130) or SIGTERM (exit 143). It never
    /// shares a batch with a real consumer. Only SIGKILL can leave the consumer behind;
    /// remove it with pgqd unregister. Needs role pgq_reader.
    ///
    /// Example: pgqd tail --dbname app orders --format json
    Tail(tail::Args),
    /// Migrate a database from the C extension pgq 3.5 to this schema.
    ///
    /// In one transaction: releases the extension's tables, sequences and functions,
    /// drops the extension, and installs this schema over them (queues, ticks, consumer
    /// positions, open batches, events and retry events are kept; functions keep their
    /// OIDs, so user triggers on pgq.logutriga/sqltriga/jsontriga keep working).
    /// Refuses while pgq_node, pgq_coop or pgq_ext are installed as extensions. A
    /// database without the extension has nothing to migrate (exit 0). --dry-run does
    /// it all and rolls back.
    ///
    /// Example: pgqd migrate --dbname app --dry-run
    Migrate(migrate::Args),
    /// Repair the queues of a database restored from another cluster (dump or PITR).
    ///
    /// The daemon and pgqd status report such a database ("looks restored from another
    /// cluster"): its ticks carry snapshots from the old cluster's txid counter, which is
    /// ahead of this one, so pgq cannot tick. In one transaction this renumbers ticks and
    /// events into this cluster's txid history, keeping tick ids, consumer positions and
    /// open batches: every consumer then gets every event it had not read. Explains the
    /// plan first; --dry-run does it all and rolls back. Needs role pgq_admin.
    ///
    /// Example: pgqd repair-restore --dbname app --dry-run
    RepairRestore(repair::Args),
}

impl Command {
    /// The command's name as typed, for error messages.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Uninstall(_) => "uninstall",
            Command::Create(_) => "create",
            Command::Drop(_) => "drop",
            Command::Config(_) => "config",
            Command::Register(_) => "register",
            Command::Unregister(_) => "unregister",
            Command::Status(_) => "status",
            Command::Tick(_) => "tick",
            Command::Pause(_) => "pause",
            Command::Resume(_) => "resume",
            Command::Insert(_) => "insert",
            Command::RetryQueue(_) => "retry-queue",
            Command::Tail(_) => "tail",
            Command::Migrate(_) => "migrate",
            Command::RepairRestore(_) => "repair-restore",
        }
    }

    async fn dispatch(&self) -> Result<u8, Error> {
        match self {
            Command::Uninstall(a) => uninstall::run(a).await,
            Command::Create(a) => create::run(a).await,
            Command::Drop(a) => drop::run(a).await,
            Command::Config(a) => config::run(a).await,
            Command::Register(a) => register::run(a).await,
            Command::Unregister(a) => unregister::run(a).await,
            Command::Status(a) => status::run(a).await,
            Command::Tick(a) => tick::run(a).await,
            Command::Pause(a) => pause::run(a).await,
            Command::Resume(a) => resume::run(a).await,
            Command::Insert(a) => insert::run(a).await,
            Command::RetryQueue(a) => retry_queue::run(a).await,
            Command::Tail(a) => tail::run(a).await,
            Command::Migrate(a) => migrate::run(a).await,
            Command::RepairRestore(a) => repair::run(a).await,
        }
    }
}

/// Runs an admin command on a single-threaded runtime and returns the exit code; errors
/// are printed as `pgqd NAME: message` on stderr.
pub fn run(cmd: &Command) -> u8 {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pgqd: cannot start the async runtime: {e}");
            return common::EXIT_FAILURE;
        }
    };
    match rt.block_on(cmd.dispatch()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("pgqd {}: {e}", cmd.name());
            e.exit_code()
        }
    }
}

/// The exit code for a command line clap rejected: 2, except for `status --check`,
/// whose callers (monitoring) read 2 as CRITICAL, so it gets 3 (UNKNOWN).
pub fn usage_exit_code(args: &[String]) -> u8 {
    let status = args.iter().skip(1).any(|a| a == "status");
    let check = args.iter().any(|a| a == "--check");
    if status && check {
        status::EXIT_UNKNOWN
    } else {
        common::EXIT_USAGE
    }
}
