//! `pgqd cascade <command>`: the cascade's admin commands and its worker, parsed with
//! clap and run on a small runtime. `main.rs` only forwards the parsed [`CascadeCmd`]
//! to [`run`] and exits with its code: 0 done, 1 runtime failure (a node unreachable, a
//! worker that did not confirm), 2 bad input (unknown node, wrong node type, bad config).
//!
//! Every admin command starts at one node: `--db CONNSTR` and `--queue NAME`, or
//! `--config FILE` (the worker's TOML: `queue_name`, `db`, `node_name`), flags winning.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Args, Subcommand};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::admin::{Admin, CreateNode};
use super::config::WorkerConfig;
use super::error::Error;
use super::handler::{BatchHandler, CopyOnly, NodeType};
use crate::config::LogFormat;
use crate::daemon::signals;
use crate::logging;

const EXIT_OK: u8 = 0;
const EXIT_FAILURE: u8 = 1;
const EXIT_USAGE: u8 = 2;

/// Where an admin command starts.
#[derive(Args, Debug, Clone)]
pub struct Target {
    /// The worker's TOML config (queue_name, db, node_name), instead of the flags.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The cascaded queue.
    #[arg(long, value_name = "NAME")]
    pub queue: Option<String>,
    /// This node's database (libpq connection string).
    #[arg(long, value_name = "CONNSTR")]
    pub db: Option<String>,
    /// How long to wait for workers to confirm a pause or resume, or to catch up.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub wait: Duration,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("bad duration {s:?}: {e}"))
}

/// Arguments of `create-root`, `create-branch`, `create-leaf`.
#[derive(Args, Debug, Clone)]
pub struct CreateArgs {
    #[command(flatten)]
    pub target: Target,
    /// The new node's name (default: node_name of --config).
    #[arg(value_name = "NODE")]
    pub node: Option<String>,
    /// Connection string other nodes reach this one with (default: --db).
    #[arg(long, value_name = "CONNSTR")]
    pub location: Option<String>,
    /// The worker's consumer name (default: the node name).
    #[arg(long, value_name = "NAME")]
    pub worker: Option<String>,
    /// The provider's connection string (branch and leaf).
    #[arg(long, value_name = "CONNSTR")]
    pub provider: Option<String>,
}

/// The cascade commands.
#[derive(Subcommand, Debug)]
pub enum CascadeCmd {
    /// Create the root node of a cascaded queue in --db (creates the queue).
    ///
    /// Example: pgqd cascade create-root root1 --queue events --db "dbname=app"
    CreateRoot(CreateArgs),
    /// Create a branch (keeps a copy of the queue) subscribed to --provider.
    ///
    /// Example: pgqd cascade create-branch b1 --queue events --db "dbname=b1" --provider "dbname=app"
    CreateBranch(CreateArgs),
    /// Create a leaf (consumes only, no queue copy) subscribed to --provider.
    CreateLeaf(CreateArgs),
    /// List the members this node knows.
    Members(Target),
    /// Show the tree of nodes with each node's last tick and lag.
    Status(Target),
    /// Make a node's worker read from another node, where it left off.
    ChangeProvider {
        #[command(flatten)]
        target: Target,
        /// The node to move (default: the --db node).
        #[arg(long, value_name = "NODE")]
        node: Option<String>,
        /// The new provider's node name.
        #[arg(long, value_name = "NODE")]
        provider: String,
    },
    /// A node takes over from OLD: becomes root, or the provider of OLD's subscribers.
    Takeover {
        #[command(flatten)]
        target: Target,
        /// The node being replaced.
        #[arg(value_name = "OLD")]
        old: String,
        /// The node taking over (default: the --db node).
        #[arg(long, value_name = "NODE")]
        node: Option<String>,
        /// OLD is dead: tag it so and do not contact it.
        #[arg(long)]
        dead: bool,
    },
    /// Pause a node's worker (waits for it to confirm).
    Pause {
        #[command(flatten)]
        target: Target,
        /// The node (default: the --db node).
        #[arg(long, value_name = "NODE")]
        node: Option<String>,
    },
    /// Resume a paused worker (waits for it to confirm).
    Resume {
        #[command(flatten)]
        target: Target,
        /// The node (default: the --db node).
        #[arg(long, value_name = "NODE")]
        node: Option<String>,
    },
    /// Move a plain consumer from one node's queue to another's, at its tick.
    MoveConsumer {
        #[command(flatten)]
        target: Target,
        /// The consumer name.
        #[arg(value_name = "CONSUMER")]
        consumer: String,
        /// The node it reads now.
        #[arg(long, value_name = "NODE")]
        from: String,
        /// The node it reads next.
        #[arg(long, value_name = "NODE")]
        to: String,
    },
    /// Run the node's worker in the foreground; SIGINT/SIGTERM finish the batch in hand.
    ///
    /// Example: pgqd cascade worker /etc/pgqd/branch1.toml
    Worker {
        /// The worker's TOML config.
        #[arg(value_name = "CONFIG")]
        config: PathBuf,
        /// More log output (-v debug, -vv trace).
        #[arg(short, long, action = ArgAction::Count)]
        verbose: u8,
        /// Less log output.
        #[arg(short, long, action = ArgAction::Count)]
        quiet: u8,
    },
}

/// Resolves `--config`/`--queue`/`--db` into an admin session and the config's node name.
fn admin_for(t: &Target) -> Result<(Admin, Option<String>), Error> {
    let cfg = match &t.config {
        Some(p) => Some(WorkerConfig::load(p).map_err(Error::Usage)?),
        None => None,
    };
    let queue = t
        .queue
        .clone()
        .or_else(|| cfg.as_ref().map(|c| c.queue_name.clone()))
        .ok_or_else(|| Error::Usage("--queue (or --config) is required".into()))?;
    let db =
        t.db.clone()
            .or_else(|| cfg.as_ref().map(|c| c.db.clone()))
            .ok_or_else(|| Error::Usage("--db (or --config) is required".into()))?;
    if queue.trim().is_empty() {
        return Err(Error::Usage("--queue is empty".into()));
    }
    crate::conn::parse_connstr(&db).map_err(|e| Error::Usage(format!("--db: {e}")))?;
    let node = cfg.and_then(|c| c.node_name);
    Ok((Admin::new(&queue, &db, t.wait), node))
}

/// Runs a cascade command; returns the exit code.
pub fn run(cmd: &CascadeCmd) -> u8 {
    if let CascadeCmd::Worker {
        config,
        verbose,
        quiet,
    } = cmd
    {
        return run_worker_process(
            "pgqd cascade worker",
            config,
            *verbose,
            *quiet,
            || CopyOnly,
            |_| {},
        );
    }
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pgqd cascade: cannot start the async runtime: {e}");
            return EXIT_FAILURE;
        }
    };
    rt.block_on(async {
        match admin_command(cmd).await {
            Ok(()) => EXIT_OK,
            Err(e) => {
                eprintln!("pgqd cascade: {e}");
                e.exit_code()
            }
        }
    })
}

async fn admin_command(cmd: &CascadeCmd) -> Result<(), Error> {
    let create = |a: &CreateArgs, t: NodeType| -> Result<(Admin, CreateNode), Error> {
        let (admin, cfg_node) = admin_for(&a.target)?;
        let node_name = a.node.clone().or(cfg_node).ok_or_else(|| {
            Error::Usage("the node name is required (NODE, or node_name in --config)".into())
        })?;
        Ok((
            admin,
            CreateNode {
                node_type: t,
                node_name,
                location: a.location.clone(),
                worker: a.worker.clone(),
                provider: a.provider.clone(),
            },
        ))
    };
    let (mut admin, result) = match cmd {
        CascadeCmd::CreateRoot(a) | CascadeCmd::CreateBranch(a) | CascadeCmd::CreateLeaf(a) => {
            let t = match cmd {
                CascadeCmd::CreateRoot(_) => NodeType::Root,
                CascadeCmd::CreateBranch(_) => NodeType::Branch,
                _ => NodeType::Leaf,
            };
            let (mut admin, spec) = create(a, t)?;
            let r = admin.create(&spec).await;
            (admin, r)
        }
        CascadeCmd::Members(t) => {
            let (mut admin, _) = admin_for(t)?;
            let r = admin.members().await.map(|_| ());
            (admin, r)
        }
        CascadeCmd::Status(t) => {
            let (mut admin, _) = admin_for(t)?;
            let nodes = admin.status().await?;
            print!("{}", super::status::render(&admin.queue, &nodes));
            return Ok(());
        }
        CascadeCmd::ChangeProvider {
            target,
            node,
            provider,
        } => {
            let (mut admin, cfg_node) = admin_for(target)?;
            let r = match node.clone().or(cfg_node) {
                Some(n) => admin.change_provider(&n, provider).await,
                None => match local_name(&admin).await {
                    Ok(n) => admin.change_provider(&n, provider).await,
                    Err(e) => Err(e),
                },
            };
            (admin, r)
        }
        CascadeCmd::Takeover {
            target,
            old,
            node,
            dead,
        } => {
            let (mut admin, cfg_node) = admin_for(target)?;
            let r = match node.clone().or(cfg_node) {
                Some(n) => admin.takeover(old, &n, *dead).await,
                None => match local_name(&admin).await {
                    Ok(n) => admin.takeover(old, &n, *dead).await,
                    Err(e) => Err(e),
                },
            };
            (admin, r)
        }
        CascadeCmd::Pause { target, node } | CascadeCmd::Resume { target, node } => {
            let paused = matches!(cmd, CascadeCmd::Pause { .. });
            let (mut admin, cfg_node) = admin_for(target)?;
            let n = node.clone().or(cfg_node);
            let r = admin.set_paused(n.as_deref(), paused).await;
            (admin, r)
        }
        CascadeCmd::MoveConsumer {
            target,
            consumer,
            from,
            to,
        } => {
            let (mut admin, _) = admin_for(target)?;
            let r = admin.move_consumer(consumer, from, to).await.map(|_| ());
            (admin, r)
        }
        CascadeCmd::Worker { .. } => return Err(Error::Usage("worker runs apart".into())),
    };
    for line in admin.out.drain(..) {
        println!("{line}");
    }
    result
}

/// The name of the node in `--db`.
async fn local_name(admin: &Admin) -> Result<String, Error> {
    let c = super::node::connect(&admin.db, "pgqd-cascade-admin").await?;
    super::node::node_info(&c, "db", &admin.queue)
        .await?
        .map(|i| i.node_name)
        .ok_or_else(|| {
            Error::Usage(format!(
                "no cascade node for queue {:?} in --db",
                admin.queue
            ))
        })
}

/// `pgqd cascade worker CONFIG`: logging, signals, then [`super::run_worker`] with the
/// copy-only handler.
/// Runs a cascade worker process with the handler `make` builds: the worker config at
/// `path`, logging, the pidfile, signals (SIGINT/SIGTERM finish the batch in hand, a second
/// one stops at once, SIGHUP reopens the log file); `done` sees the handler at the end.
/// Returns the exit code. Shared by `pgqd cascade worker` and `pgqd replica worker`.
pub fn run_worker_process<H: BatchHandler>(
    name: &str,
    path: &std::path::Path,
    verbose: u8,
    quiet: u8,
    make: impl FnOnce() -> H,
    done: impl FnOnce(&H),
) -> u8 {
    let cfg = match WorkerConfig::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{name}: {e}");
            return EXIT_USAGE;
        }
    };
    let log = match logging::init(&logging::LogOptions {
        format: LogFormat::Text,
        level: logging::effective_level(cfg.log_level, verbose, quiet),
        logfile: cfg.logfile.clone(),
        syslog: None,
    }) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("{name}: {e}");
            return EXIT_FAILURE;
        }
    };
    let _pid = match &cfg.pidfile {
        Some(p) => match crate::daemon::pidfile::Pidfile::create(p) {
            Ok(g) => Some(g),
            Err(e) => {
                eprintln!("{name}: {e}");
                return EXIT_FAILURE;
            }
        },
        None => None,
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("pgqd-worker")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("{name}: cannot start the async runtime: {e}");
            return EXIT_FAILURE;
        }
    };
    rt.block_on(async move {
        let stop = CancellationToken::new();
        let now = CancellationToken::new();
        let sigs = match signals::register() {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot install signal handlers");
                return EXIT_FAILURE;
            }
        };
        let handle = sigs.handle();
        tokio::spawn(signal_task(sigs, stop.clone(), now.clone(), log, cfg.logfile.clone()));
        tracing::info!(queue = %cfg.queue_name, db = %crate::conn::mask_connstr(&cfg.db), worker = name, "worker starting");
        let mut handler = make();
        let r = tokio::select! {
            r = super::run_worker(&cfg, &mut handler, &stop) => r,
            _ = now.cancelled() => {
                tracing::warn!("stopping at once; the batch in hand rolls back");
                Ok(())
            }
        };
        handle.close();
        done(&handler);
        match r {
            Ok(()) => EXIT_OK,
            Err(e) => {
                tracing::error!(error = %e, sqlstate = e.sqlstate(), "worker stopped by an error");
                eprintln!("{name}: {e}");
                e.exit_code()
            }
        }
    })
}

async fn signal_task(
    mut sigs: signal_hook_tokio::Signals,
    stop: CancellationToken,
    now: CancellationToken,
    log: logging::LogHandle,
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
                // The config is not re-read (a node's identity must not change under a
                // running batch); SIGHUP serves logrotate.
                if let Err(e) = log.reopen(logfile.as_deref()) {
                    tracing::error!(error = %e, "cannot reopen the log file");
                }
            }
            None => {}
        }
    }
}
