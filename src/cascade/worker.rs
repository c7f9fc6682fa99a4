//! The cascade worker: keeps one node of a cascaded queue in step with its provider.
//! Called by `pgqd cascade worker` and by table replication (which passes its own
//! [`BatchHandler`]).
//!
//! Loop (the `run_worker` loop owns timing and cancellation; `Worker::step` does one
//! look): read the node's state (`pgq_node.get_worker_state`); confirm a state change
//! (`uptodate`); wait while paused; on the root, publish the global watermark every
//! `global_wm_publish_period` (the daemon ticks the root's queue); elsewhere take the
//! next batch of the provider's queue as the node's worker consumer and apply it:
//!
//! 1. subscriber transaction, with `session_replication_role = replica` so the local
//!    queue (insert-disabled on a branch) accepts the copies and the tables' own triggers
//!    stay quiet: the handler; the cascade's own events (`pgq.location-info`,
//!    `pgq.unregister-location`, `pgq.global-watermark`); on a branch, the events copied
//!    into the local queue keeping ev_id and ev_time; `pgq_node.set_consumer_completed`
//!    with the batch's end tick. Commit.
//! 2. a branch ticks its queue with the provider's tick (id, time, event sequence), in a
//!    transaction of its own: a tick's snapshot must see the copied events as committed,
//!    which a snapshot taken inside their own transaction does not reliably do (the
//!    transaction's own xid can be above the snapshot's xmax), so the events would land
//!    one batch late and the branch's batches would differ from the root's.
//! 3. `pgq.finish_batch` on the provider.
//!
//! The handler gets the whole batch, the cascade's own `pgq.*` events included (it should
//! pass over them), in a transaction with `session_replication_role = replica` — so
//! triggers on the tables it writes do not fire, as londiste applies. The advisory lock
//! `pgqd.cascade`/queue, taken first, keeps a second worker of the same node from
//! applying the batch too; it then sees the new completed tick and starts over.
//!
//! A crash between any two steps is repaired on the next look: a batch whose end tick
//! the node has already completed is not applied again (a branch only adds the missing
//! tick), then finished on the provider. Every `local_wm_publish_period` a non-root node
//! sends its local watermark (the lowest tick it and its subscribers need) to the
//! provider, so the root's global watermark — and with it queue rotation — waits for the
//! slowest node. A change of provider (`change-provider`, `takeover`) shows up in the
//! state and the worker reconnects. An idle worker waits for the provider's tick
//! notification (`NOTIFY pgqd_tick, '<queue>'`: the daemon sends it for the root's ticks,
//! a branch's worker for the ticks it copies) or `poll_interval`, whichever comes first.

use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc;
use tokio_postgres::Client;
use tokio_util::sync::CancellationToken;

use super::config::WorkerConfig;
use super::error::{Error, sql_err};
use super::handler::{BatchHandler, NodeCtx, NodeType};
use super::node::{self, WorkerState};
use super::sql;
use crate::consumer::{BatchInfo, Event};

/// Counters of a running worker, for its progress line and for tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerStats {
    /// Batches applied.
    pub batches: u64,
    /// Events in applied batches.
    pub events: u64,
    /// Batches found already applied (after a crash) and only finished.
    pub skipped: u64,
    /// Lag of the last batch (now − its end tick's time on the provider), ms.
    pub lag_ms: u64,
}

/// What one look did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// A batch was applied (or skipped): look again at once.
    Batch,
    /// Nothing to do: wait `poll_interval`.
    Idle,
}

/// Runs the worker of the node in `cfg.db` until `stop` is cancelled (the batch in hand
/// is finished first) or a usage error (no node, wrong node name) stops it. Failed
/// batches are recorded with `pgq_node.set_consumer_error` and tried again after
/// `error_delay`; lost connections are reopened.
pub async fn run_worker<H: BatchHandler>(
    cfg: &WorkerConfig,
    handler: &mut H,
    stop: &CancellationToken,
) -> Result<(), Error> {
    cfg.validate().map_err(Error::Usage)?;
    let mut w = Worker::new(cfg);
    let mut last_stats = Instant::now();
    let mut reported = WorkerStats::default();
    while !stop.is_cancelled() {
        let wait = match w.step(handler).await {
            Ok(Step::Batch) => None,
            Ok(Step::Idle) => Some(cfg.poll_interval),
            Err(e @ Error::Usage(_)) => return Err(e),
            Err(e) => {
                tracing::error!(
                    queue = %cfg.queue_name, error = %e, sqlstate = e.sqlstate(),
                    "batch failed; trying again after error_delay"
                );
                w.record_error(&e).await;
                if e.is_connection_lost() {
                    w.local = None;
                    w.provider = None;
                }
                Some(cfg.error_delay)
            }
        };
        if last_stats.elapsed() >= cfg.stats_period {
            let s = w.stats;
            tracing::info!(
                queue = %cfg.queue_name, batches = s.batches - reported.batches,
                events = s.events - reported.events, lag_ms = s.lag_ms, "progress"
            );
            reported = s;
            last_stats = Instant::now();
        }
        match wait {
            Some(d) if d == cfg.poll_interval => w.wait_idle(d, stop).await,
            Some(d) => {
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = tokio::time::sleep(d) => {}
                }
            }
            None => {}
        }
    }
    tracing::info!(queue = %cfg.queue_name, batches = w.stats.batches, events = w.stats.events, "worker stopped");
    Ok(())
}

/// The batch the provider handed out.
struct NextBatch {
    info: BatchInfo,
    tick_time: SystemTime,
}

/// The session on the provider, with its tick notifications.
struct Provider {
    location: String,
    client: Client,
    notes: mpsc::UnboundedReceiver<String>,
}

/// The worker's sessions and timers.
struct Worker<'a> {
    cfg: &'a WorkerConfig,
    local: Option<Client>,
    provider: Option<Provider>,
    /// The last state read, for error recording.
    state: Option<WorkerState>,
    last_local_wm: Option<Instant>,
    last_global_wm: Option<Instant>,
    stats: WorkerStats,
}

impl<'a> Worker<'a> {
    fn new(cfg: &'a WorkerConfig) -> Worker<'a> {
        Worker {
            cfg,
            local: None,
            provider: None,
            state: None,
            last_local_wm: None,
            last_global_wm: None,
            stats: WorkerStats::default(),
        }
    }

    fn local_name(&self) -> String {
        self.state
            .as_ref()
            .map(|s| s.node_name.clone())
            .or_else(|| self.cfg.node_name.clone())
            .unwrap_or_else(|| crate::conn::mask_connstr(&self.cfg.db))
    }

    async fn local(&mut self) -> Result<&Client, Error> {
        if self.local.as_ref().is_none_or(|c| c.is_closed()) {
            self.local = Some(node::connect(&self.cfg.db, &self.cfg.application_name).await?);
        }
        self.local
            .as_ref()
            .ok_or_else(|| Error::State("no local session".into()))
    }

    async fn provider(&mut self, location: &str) -> Result<&Client, Error> {
        let stale = match &self.provider {
            Some(p) => p.location != location || p.client.is_closed(),
            None => true,
        };
        if stale {
            self.provider = None;
            let settings = crate::conn::Settings {
                application_name: self.cfg.application_name.clone(),
                ..crate::conn::Settings::default()
            };
            let target = crate::conn::resolve(location, &settings)?;
            let (client, notes) = crate::consumer::listen::connect(&target).await?;
            client
                .batch_execute(sql::LISTEN)
                .await
                .map_err(sql_err(&crate::conn::describe(&target), "listen"))?;
            tracing::info!(provider = %crate::conn::mask_connstr(location), "connected to provider");
            self.provider = Some(Provider {
                location: location.to_string(),
                client,
                notes,
            });
        }
        self.provider
            .as_ref()
            .map(|p| &p.client)
            .ok_or_else(|| Error::State("no provider session".into()))
    }

    /// Waits for a tick notification of the queue from the provider, `d`, or `stop`.
    /// Notifications that came while the worker was busy are dropped first: the next
    /// look sees their ticks anyway.
    async fn wait_idle(&mut self, d: Duration, stop: &CancellationToken) {
        let queue = self.cfg.queue_name.as_str();
        let sleep = tokio::time::sleep(d);
        tokio::pin!(sleep);
        let Some(p) = self.provider.as_mut() else {
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = &mut sleep => {}
            }
            return;
        };
        while p.notes.try_recv().is_ok() {}
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = &mut sleep => return,
                m = p.notes.recv() => match m {
                    Some(n) if n == queue || n.is_empty() => return,
                    Some(_) => {}
                    None => {
                        // The session is gone; the next look reconnects.
                        tokio::select! {
                            _ = stop.cancelled() => {}
                            _ = &mut sleep => {}
                        }
                        return;
                    }
                },
            }
        }
    }

    /// Best effort: the error goes into `local_state.cur_error` for `status`.
    async fn record_error(&mut self, e: &Error) {
        let Some(st) = self.state.clone() else { return };
        let Some(c) = self.local.as_ref().filter(|c| !c.is_closed()) else {
            return;
        };
        let msg = e.to_string();
        if let Err(e2) = c
            .query_one(
                sql::SET_ERROR,
                &[&self.cfg.queue_name, &st.worker_name, &msg],
            )
            .await
        {
            tracing::warn!(error = %crate::pgerr::describe(&e2), "cannot record the error");
        }
    }

    /// One look at the node and, if there is one, one batch.
    async fn step<H: BatchHandler>(&mut self, handler: &mut H) -> Result<Step, Error> {
        let queue = self.cfg.queue_name.clone();
        let db_name = self.local_name();
        let cfg = self.cfg;
        let local = self.local().await?;
        let st = node::worker_state(local, &db_name, &queue).await?;
        if let Some(want) = &cfg.node_name
            && want != &st.node_name
        {
            return Err(Error::Usage(format!(
                "the node in db is {:?}, not {want:?} (node_name)",
                st.node_name
            )));
        }
        let name = st.node_name.clone();
        if !st.uptodate {
            node::call(local, &name, sql::SET_UPTODATE, &[&queue, &st.worker_name]).await?;
            tracing::info!(
                node = %name, node_type = st.node_type.as_str(), provider = %st.provider_node,
                paused = st.paused, "node state changed"
            );
        }
        self.state = Some(st.clone());
        let step = if st.paused {
            self.provider = None;
            Step::Idle
        } else if st.node_type == NodeType::Root {
            self.provider = None;
            self.root_duties(&st).await?;
            Step::Idle
        } else {
            match self.next_batch(&st).await? {
                None => {
                    self.publish_local_wm(&st, None).await?;
                    Step::Idle
                }
                Some(batch) => {
                    self.apply(handler, &st, &batch).await?;
                    self.publish_local_wm(&st, Some(batch.info.tick_id)).await?;
                    Step::Batch
                }
            }
        };
        // The last failure stays visible (status) until a look goes through; an applied
        // batch clears it already (set_consumer_completed).
        if st.cur_error.is_some() {
            let local = self.local().await?;
            local
                .query_one(sql::SET_ERROR, &[&queue, &st.worker_name, &None::<String>])
                .await
                .map_err(sql_err(&name, "pgq_node.set_consumer_error"))?;
        }
        Ok(step)
    }

    /// The root publishes its local watermark as the global one, which also travels
    /// down as a `pgq.global-watermark` event.
    async fn root_duties(&mut self, st: &WorkerState) -> Result<(), Error> {
        if self
            .last_global_wm
            .is_some_and(|t| t.elapsed() < self.cfg.global_wm_publish_period)
        {
            return Ok(());
        }
        let queue = self.cfg.queue_name.clone();
        let local = self.local().await?;
        node::call(
            local,
            &st.node_name,
            sql::SET_GLOBAL_WATERMARK,
            &[&queue, &None::<i64>],
        )
        .await?;
        tracing::debug!(node = %st.node_name, "global watermark published");
        self.last_global_wm = Some(Instant::now());
        Ok(())
    }

    /// Sends the node's local watermark to the provider when due; never ahead of the
    /// batch just applied.
    async fn publish_local_wm(&mut self, st: &WorkerState, cur: Option<i64>) -> Result<(), Error> {
        if self
            .last_local_wm
            .is_some_and(|t| t.elapsed() < self.cfg.local_wm_publish_period)
        {
            return Ok(());
        }
        let Some(mut wm) = st.local_watermark.or(st.completed_tick) else {
            return Ok(());
        };
        if let Some(c) = cur {
            wm = wm.min(c);
        }
        if let Some(c) = st.completed_tick {
            wm = wm.min(c);
        }
        let queue = self.cfg.queue_name.clone();
        let provider = self.provider(&st.provider_location).await?;
        match node::call(
            provider,
            &st.provider_node,
            sql::SET_SUBSCRIBER_WATERMARK,
            &[&queue, &st.node_name, &wm],
        )
        .await
        {
            Ok(_) => tracing::debug!(watermark = wm, "local watermark published"),
            // 405: the provider has a higher mark already (after a provider change).
            Err(Error::Refused { code, note, .. }) => {
                tracing::warn!(code, note = %note, "provider refused the local watermark")
            }
            Err(e) => return Err(e),
        }
        self.last_local_wm = Some(Instant::now());
        Ok(())
    }

    async fn next_batch(&mut self, st: &WorkerState) -> Result<Option<NextBatch>, Error> {
        let queue = self.cfg.queue_name.clone();
        let pname = st.provider_node.clone();
        let provider = self.provider(&st.provider_location).await?;
        let r = provider
            .query_one(sql::NEXT_BATCH, &[&queue, &st.worker_name])
            .await
            .map_err(sql_err(&pname, "pgq.next_batch_info"))?;
        let get = |e| sql_err(&pname, "pgq.next_batch_info")(e);
        let Some(batch_id) = r.try_get::<_, Option<i64>>(0).map_err(get)? else {
            return Ok(None);
        };
        let tick_id: i64 = r.try_get(1).map_err(get)?;
        let prev_tick_id: i64 = r.try_get(2).map_err(get)?;
        let tick_time: SystemTime = r.try_get(3).map_err(get)?;
        let lag: f64 = r.try_get::<_, Option<f64>>(4).map_err(get)?.unwrap_or(0.0);
        Ok(Some(NextBatch {
            info: BatchInfo {
                batch_id,
                tick_id,
                prev_tick_id,
                tick_time: Some(humantime::format_rfc3339_micros(tick_time).to_string()),
                prev_tick_time: None,
                lag: Duration::from_secs_f64(lag.max(0.0)),
            },
            tick_time,
        }))
    }

    async fn apply<H: BatchHandler>(
        &mut self,
        handler: &mut H,
        st: &WorkerState,
        batch: &NextBatch,
    ) -> Result<(), Error> {
        let b = &batch.info;
        let queue = self.cfg.queue_name.clone();
        let pname = st.provider_node.clone();
        let name = st.node_name.clone();
        let branch = st.node_type == NodeType::Branch;
        let done = match st.completed_tick {
            Some(t) if t == b.tick_id => true,
            Some(t) if t == b.prev_tick_id => false,
            other => {
                return Err(Error::State(format!(
                    "{name}: lost position: provider {pname} hands out batch {}..{}, \
                     the node has completed tick {other:?}",
                    b.prev_tick_id, b.tick_id
                )));
            }
        };
        // Reads on the provider first: they need no transaction of the subscriber.
        let provider = self.provider(&st.provider_location).await?;
        let (events, event_seq) = if done {
            (Vec::new(), None)
        } else {
            let rows = provider
                .query(sql::BATCH_EVENTS, &[&b.batch_id])
                .await
                .map_err(sql_err(&pname, "pgq.get_batch_events"))?;
            let events = rows
                .iter()
                .map(Event::from_row)
                .collect::<Result<Vec<_>, _>>()
                .map_err(sql_err(&pname, "pgq.get_batch_events"))?;
            let seq = if branch {
                provider
                    .query_opt(sql::TICK_EVENT_SEQ, &[&queue, &b.tick_id])
                    .await
                    .map_err(sql_err(&pname, "tick event sequence"))?
                    .map(|r| r.try_get::<_, i64>(0))
                    .transpose()
                    .map_err(sql_err(&pname, "tick event sequence"))?
            } else {
                None
            };
            (events, seq)
        };
        if done {
            tracing::info!(node = %name, tick = b.tick_id, "batch already applied; finishing it");
            self.stats.skipped += 1;
        } else {
            let ctx = NodeCtx {
                queue_name: queue.clone(),
                node_name: name.clone(),
                node_type: st.node_type,
                worker_name: st.worker_name.clone(),
                provider_node: pname.clone(),
                provider_connstr: st.provider_location.clone(),
            };
            let local = self
                .local
                .as_mut()
                .ok_or_else(|| Error::State("no local session".into()))?;
            let tx = local.transaction().await.map_err(sql_err(&name, "begin"))?;
            tx.query_one(sql::APPLY_LOCK, &[&queue])
                .await
                .map_err(sql_err(&name, "apply lock"))?;
            let now_done: Option<i64> = tx
                .query_one(sql::COMPLETED_TICK, &[&queue, &st.worker_name])
                .await
                .and_then(|r| r.try_get(0))
                .map_err(sql_err(&name, "pgq_node.get_consumer_state"))?;
            if now_done != st.completed_tick {
                // Another worker moved the node meanwhile; look again from the start.
                return Err(Error::State(format!(
                    "{name}: another worker applied tick {now_done:?} meanwhile"
                )));
            }
            tx.batch_execute(sql::REPLICA_ROLE)
                .await
                .map_err(sql_err(&name, "session_replication_role"))?;
            handler
                .handle_batch(&tx, &ctx, b, &events)
                .await
                .map_err(Error::Handler)?;
            for ev in events.iter().filter(|e| is_cascade_event(e)) {
                cascade_event(&tx, st, &queue, ev).await?;
            }
            if branch && !events.is_empty() {
                copy_events(&tx, &name, &queue, &events).await?;
            }
            node::call(
                &tx,
                &name,
                sql::SET_COMPLETED,
                &[&queue, &st.worker_name, &b.tick_id],
            )
            .await?;
            tx.commit().await.map_err(sql_err(&name, "commit"))?;
            self.stats.batches += 1;
            self.stats.events += events.len() as u64;
        }
        if branch {
            let max_id = events.iter().map(|e| e.id).max().unwrap_or(0);
            self.branch_tick(&name, b, batch.tick_time, event_seq.unwrap_or(max_id))
                .await?;
        }
        let provider = self.provider(&st.provider_location).await?;
        provider
            .query_one(sql::FINISH_BATCH, &[&b.batch_id])
            .await
            .map_err(sql_err(&pname, "pgq.finish_batch"))?;
        self.stats.lag_ms = b.lag.as_millis() as u64;
        tracing::debug!(
            node = %name, batch = b.batch_id, tick = b.tick_id, events = events.len(),
            lag_ms = self.stats.lag_ms, "batch applied"
        );
        Ok(())
    }

    /// Adds the batch's end tick to the branch's queue unless it is there already.
    async fn branch_tick(
        &mut self,
        name: &str,
        b: &BatchInfo,
        tick_time: SystemTime,
        event_seq: i64,
    ) -> Result<(), Error> {
        let queue = self.cfg.queue_name.clone();
        let local = self.local().await?;
        let last: Option<i64> = local
            .query_opt(sql::LOCAL_LAST_TICK, &[&queue])
            .await
            .map_err(sql_err(name, "last local tick"))?
            .map(|r| r.try_get(0))
            .transpose()
            .map_err(sql_err(name, "last local tick"))?;
        match last {
            Some(t) if t == b.tick_id => Ok(()),
            Some(t) if t == b.prev_tick_id => {
                local
                    .query_one(
                        sql::BRANCH_TICK,
                        &[
                            &queue,
                            &b.tick_id,
                            &tick_time,
                            &event_seq,
                            &crate::sql::TICK_CHANNEL,
                        ],
                    )
                    .await
                    .map_err(sql_err(name, "pgq.ticker"))?;
                Ok(())
            }
            other => Err(Error::State(format!(
                "{name}: the local queue's last tick is {other:?}, expected {} or {}",
                b.prev_tick_id, b.tick_id
            ))),
        }
    }
}

/// The cascade's own events (`pgq.*`), which the worker acts on.
fn is_cascade_event(ev: &Event) -> bool {
    ev.ev_type.as_deref().is_some_and(|t| t.starts_with("pgq."))
}

/// Applies one cascade event in the batch's transaction.
async fn cascade_event(
    tx: &tokio_postgres::Transaction<'_>,
    st: &WorkerState,
    queue: &str,
    ev: &Event,
) -> Result<(), Error> {
    let ty = ev.ev_type.as_deref().unwrap_or("");
    let name = &st.node_name;
    if ty == "pgq.tick-id" {
        // Merge-leaf partition ticks: combined queues are not supported; nothing to do.
        return Ok(());
    }
    if ev.extra1.as_deref() != Some(queue) {
        return Err(Error::State(format!(
            "{name}: cascade event {} of type {ty} names queue {:?}, not {queue:?}",
            ev.id, ev.extra1
        )));
    }
    match ty {
        "pgq.location-info" => {
            let dead = matches!(ev.extra3.as_deref(), Some("true" | "t"));
            tx.query_one(
                sql::REGISTER_LOCATION,
                &[&queue, &ev.data, &ev.extra2, &dead],
            )
            .await
            .map_err(sql_err(name, "pgq_node.register_location"))?;
        }
        "pgq.unregister-location" => {
            // 403 (own or parent location) is answered, not raised: nothing to undo.
            tx.query_one(sql::UNREGISTER_LOCATION, &[&queue, &ev.data])
                .await
                .map_err(sql_err(name, "pgq_node.unregister_location"))?;
        }
        "pgq.global-watermark" => {
            if st.node_type == NodeType::Branch {
                let wm: i64 = ev
                    .data
                    .as_deref()
                    .and_then(|d| d.trim().parse().ok())
                    .ok_or_else(|| {
                        Error::State(format!("{name}: bad global watermark event {}", ev.id))
                    })?;
                node::call(tx, name, sql::SET_GLOBAL_WATERMARK, &[&queue, &Some(wm)]).await?;
            }
        }
        other => {
            return Err(Error::State(format!(
                "{name}: unknown cascade event type {other:?} (event {})",
                ev.id
            )));
        }
    }
    Ok(())
}

/// Copies the batch into the branch's queue in one statement, ids and times kept.
async fn copy_events(
    tx: &tokio_postgres::Transaction<'_>,
    name: &str,
    queue: &str,
    events: &[Event],
) -> Result<(), Error> {
    let ids: Vec<i64> = events.iter().map(|e| e.id).collect();
    let times: Vec<SystemTime> = events.iter().map(|e| e.time).collect();
    let col = |f: fn(&Event) -> &Option<String>| -> Vec<Option<String>> {
        events.iter().map(|e| f(e).clone()).collect()
    };
    let ty = col(|e| &e.ev_type);
    let d = col(|e| &e.data);
    let e1 = col(|e| &e.extra1);
    let e2 = col(|e| &e.extra2);
    let e3 = col(|e| &e.extra3);
    let e4 = col(|e| &e.extra4);
    tx.query_one(
        sql::COPY_EVENTS,
        &[&queue, &ids, &times, &ty, &d, &e1, &e2, &e3, &e4],
    )
    .await
    .map_err(sql_err(name, "copy events into the local queue"))?;
    Ok(())
}
