//! The consumer loop: one [`Consumer`] runs sessions (a source connection, and a target
//! connection for remote consumers) and, in each, batches until stopped or the connection
//! is lost; lost connections are reopened with a capped backoff.
//!
//! Order of one batch, and why:
//! - local: handler, `event_retry`, failed rows and `finish_batch` in ONE source
//!   transaction — all or nothing;
//! - remote: the target transaction is opened first and asked whether it has the batch
//!   (skip it if so); the handler works in it; the retries are committed on the source
//!   before the target commits (`event_retry` of an event already queued returns 0, so
//!   a rerun cannot double them); then the target commits its work, failed rows and
//!   tracking row together; then `finish_batch` on the source. A crash anywhere leaves
//!   either nothing applied or a batch the target will skip.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_postgres::{Client, Row, Transaction};
use tokio_util::sync::CancellationToken;

use super::event::{Batch, BatchInfo, Event, Outcome};
use super::failed::{self, TableName};
use super::{ConsumerConfig, Error, Handler, Progress, Tracking, listen, sql};
use crate::conn;

/// One subscription, ready to run. See the module docs of [`crate::consumer`].
#[derive(Debug)]
pub struct Consumer {
    cfg: ConsumerConfig,
    source: conn::Target,
    target: Option<conn::Target>,
    failed_table: TableName,
    progress: Arc<Progress>,
}

/// What one step did.
enum Step {
    /// A batch was finished.
    Batch,
    /// No batch: wait for a tick.
    Idle,
}

/// The database a target names, for log lines and errors.
fn db_name(t: &conn::Target) -> String {
    t.pg.get_dbname().unwrap_or("").to_string()
}

impl Consumer {
    /// Checks the config and resolves the connection strings (no connection yet).
    pub fn new(cfg: ConsumerConfig) -> Result<Consumer, Error> {
        cfg.validate()?;
        let settings = conn::Settings {
            application_name: cfg.application_name.clone(),
            ..conn::Settings::default()
        };
        let source = conn::resolve(&cfg.source, &settings)?;
        let target = match &cfg.target {
            Some(t) => Some(conn::resolve(t, &settings)?),
            None => None,
        };
        let failed_table = TableName::parse(&cfg.failed_table)
            .ok_or_else(|| Error::Config("bad failed_table".into()))?;
        Ok(Consumer {
            cfg,
            source,
            target,
            failed_table,
            progress: Arc::new(Progress::default()),
        })
    }

    /// The config.
    pub fn config(&self) -> &ConsumerConfig {
        &self.cfg
    }

    /// The progress counters, to report from another task.
    pub fn progress(&self) -> Arc<Progress> {
        self.progress.clone()
    }

    /// Registers the consumer (or coop subconsumer); true when it was new.
    pub async fn register(&self) -> Result<bool, Error> {
        let c = self.source.connect().await?;
        self.register_on(&c).await
    }

    async fn register_on(&self, c: &Client) -> Result<bool, Error> {
        let db = db_name(&self.source);
        let row = match &self.cfg.coop {
            Some(coop) => c
                .query_one(
                    sql::REGISTER_SUB,
                    &[&self.cfg.queue, &self.cfg.name, &coop.subconsumer],
                )
                .await
                .map_err(sql_err(&db, sql::REGISTER_SUB))?,
            None => c
                .query_one(sql::REGISTER, &[&self.cfg.queue, &self.cfg.name])
                .await
                .map_err(sql_err(&db, sql::REGISTER))?,
        };
        Ok(row
            .try_get::<_, i32>(0)
            .map_err(sql_err(&db, "reading the result"))?
            == 1)
    }

    /// Unregisters the consumer (or coop subconsumer, closing its open batch); true when
    /// it was registered. The consumer's retry events are dropped with it.
    pub async fn unregister(&self) -> Result<bool, Error> {
        let c = self.source.connect().await?;
        let db = db_name(&self.source);
        let row = match &self.cfg.coop {
            Some(coop) => c
                .query_one(
                    sql::UNREGISTER_SUB,
                    &[&self.cfg.queue, &self.cfg.name, &coop.subconsumer],
                )
                .await
                .map_err(sql_err(&db, sql::UNREGISTER_SUB))?,
            None => c
                .query_one(sql::UNREGISTER, &[&self.cfg.queue, &self.cfg.name])
                .await
                .map_err(sql_err(&db, sql::UNREGISTER))?,
        };
        Ok(row
            .try_get::<_, i32>(0)
            .map_err(sql_err(&db, "reading the result"))?
            > 0)
    }

    /// Runs batches until `stop` is cancelled; the batch in hand is finished (or rolled
    /// back on error) first. Returns an error only for problems a retry cannot fix:
    /// a bad config, a queue or schema that is missing at start, an unregistered consumer.
    pub async fn run<H: Handler>(
        &self,
        handler: &mut H,
        stop: &CancellationToken,
    ) -> Result<(), Error> {
        let mut backoff = Duration::from_millis(500);
        let mut started = false;
        while !stop.is_cancelled() {
            let mut s = match self.open_session(!started).await {
                Ok(s) => s,
                // A connection that cannot be opened is retried, also at start (like the
                // daemon); anything else at start (no queue, no pgq_ext) is the
                // operator's to fix, and later only a config problem is.
                Err(e)
                    if !e.is_connection_lost() && (!started || !matches!(e, Error::Sql { .. })) =>
                {
                    return Err(e);
                }
                Err(e) => {
                    tracing::warn!(error = %e, sqlstate = e.sqlstate(), "consumer cannot connect; retrying");
                    wait(stop, backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    continue;
                }
            };
            started = true;
            backoff = Duration::from_millis(500);
            while !stop.is_cancelled() {
                match self.step(&mut s, handler).await {
                    Ok(Step::Batch) => {}
                    Ok(Step::Idle) => s.wait_idle(&self.cfg, stop).await,
                    Err(e) if e.is_connection_lost() => {
                        tracing::warn!(error = %e, sqlstate = e.sqlstate(), "consumer connection lost; reconnecting");
                        break;
                    }
                    Err(e) => {
                        // The handler's statements run in the target when there is one.
                        let db = if matches!(e, Error::Handler(_)) && !s.dst_db.is_empty() {
                            &s.dst_db
                        } else {
                            &s.src_db
                        };
                        tracing::error!(
                            queue = %self.cfg.queue, consumer = %self.cfg.name, db = %db,
                            error = %e, sqlstate = e.sqlstate(),
                            "batch failed, rolled back; retrying after {:?}", self.cfg.error_delay
                        );
                        wait(stop, self.cfg.error_delay).await;
                    }
                }
            }
        }
        Ok(())
    }

    async fn open_session(&self, first: bool) -> Result<Session, Error> {
        let src_db = db_name(&self.source);
        let (src, notes) = if self.cfg.listen {
            let (c, rx) = listen::connect(&self.source).await?;
            c.batch_execute(sql::LISTEN)
                .await
                .map_err(sql_err(&src_db, sql::LISTEN))?;
            (c, Some(rx))
        } else {
            (self.source.connect().await?, None)
        };
        if self.cfg.register {
            let new = self.register_on(&src).await?;
            if new && first {
                tracing::info!(queue = %self.cfg.queue, consumer = %self.cfg.name, db = %src_db, "consumer registered");
            }
        }
        let dst = match &self.target {
            Some(t) => {
                let c = t.connect().await?;
                let db = db_name(t);
                let q = "select pg_catalog.to_regnamespace('pgq_ext') is not null";
                let has: bool = c
                    .query_one(q, &[])
                    .await
                    .map_err(sql_err(&db, q))?
                    .try_get(0)
                    .map_err(sql_err(&db, q))?;
                if !has {
                    return Err(Error::Config(format!(
                        "target database {db:?} has no pgq_ext (install it: pgqd install --component ext --dbname {db})"
                    )));
                }
                Some(c)
            }
            None => None,
        };
        Ok(Session {
            src,
            notes,
            dst,
            src_db,
            dst_db: self.target.as_ref().map(db_name).unwrap_or_default(),
        })
    }

    /// The subconsumer id used in pgq_ext tracking rows.
    fn sub_id(&self) -> &str {
        self.cfg
            .coop
            .as_ref()
            .map_or("", |c| c.subconsumer.as_str())
    }

    async fn next_batch(&self, s: &Session) -> Result<Option<BatchInfo>, Error> {
        let db = &s.src_db;
        let q = &self.cfg.queue;
        let n = &self.cfg.name;
        let row = match &self.cfg.coop {
            None => s
                .src
                .query_one(sql::NEXT_BATCH, &[q, n])
                .await
                .map_err(sql_err(db, sql::NEXT_BATCH))?,
            Some(coop) => {
                let id: Option<i64> = match coop.dead_interval {
                    None => s
                        .src
                        .query_one(sql::COOP_NEXT_BATCH, &[q, n, &coop.subconsumer])
                        .await
                        .map_err(sql_err(db, sql::COOP_NEXT_BATCH))?
                        .try_get(0)
                        .map_err(sql_err(db, sql::COOP_NEXT_BATCH))?,
                    Some(d) => s
                        .src
                        .query_one(
                            sql::COOP_NEXT_BATCH_DEAD,
                            &[q, n, &coop.subconsumer, &d.as_secs_f64()],
                        )
                        .await
                        .map_err(sql_err(db, sql::COOP_NEXT_BATCH_DEAD))?
                        .try_get(0)
                        .map_err(sql_err(db, sql::COOP_NEXT_BATCH_DEAD))?,
                };
                let Some(id) = id else { return Ok(None) };
                let r = s
                    .src
                    .query_one(sql::BATCH_INFO, &[&id])
                    .await
                    .map_err(sql_err(db, sql::BATCH_INFO))?;
                return Ok(Some(BatchInfo {
                    batch_id: id,
                    tick_id: r
                        .try_get::<_, Option<i64>>(0)
                        .map_err(sql_err(db, sql::BATCH_INFO))?
                        .unwrap_or(0),
                    prev_tick_id: r
                        .try_get::<_, Option<i64>>(1)
                        .map_err(sql_err(db, sql::BATCH_INFO))?
                        .unwrap_or(0),
                    tick_time: r.try_get(2).map_err(sql_err(db, sql::BATCH_INFO))?,
                    prev_tick_time: r.try_get(3).map_err(sql_err(db, sql::BATCH_INFO))?,
                    lag: secs(r.try_get(4).map_err(sql_err(db, sql::BATCH_INFO))?),
                }));
            }
        };
        let id: Option<i64> = row.try_get(0).map_err(sql_err(db, sql::NEXT_BATCH))?;
        let Some(batch_id) = id else { return Ok(None) };
        let g = |i| {
            row.try_get::<_, Option<i64>>(i)
                .map_err(sql_err(db, sql::NEXT_BATCH))
        };
        Ok(Some(BatchInfo {
            batch_id,
            tick_id: g(1)?.unwrap_or(0),
            prev_tick_id: g(2)?.unwrap_or(0),
            tick_time: row.try_get(3).map_err(sql_err(db, sql::NEXT_BATCH))?,
            prev_tick_time: row.try_get(4).map_err(sql_err(db, sql::NEXT_BATCH))?,
            lag: secs(row.try_get(5).map_err(sql_err(db, sql::NEXT_BATCH))?),
        }))
    }

    /// One batch, or nothing to do.
    async fn step<H: Handler>(&self, s: &mut Session, handler: &mut H) -> Result<Step, Error> {
        s.drain_notes();
        let Some(info) = self.next_batch(s).await? else {
            return Ok(Step::Idle);
        };
        let Session {
            src,
            dst,
            src_db,
            dst_db,
            ..
        } = s;
        let src_db = src_db.as_str();
        let dst_db = dst_db.as_str();
        let name = self.cfg.name.as_str();
        let sub = self.sub_id();

        // Remote: does the target have this batch already?
        let dst_tx = match dst {
            Some(d) => {
                let tx = d.transaction().await.map_err(sql_err(dst_db, "begin"))?;
                let done = match self.cfg.tracking {
                    Tracking::Batch => tx
                        .query_one(sql::IS_BATCH_DONE, &[&name, &sub, &info.batch_id])
                        .await
                        .map_err(sql_err(dst_db, sql::IS_BATCH_DONE))?
                        .try_get::<_, Option<bool>>(0)
                        .map_err(sql_err(dst_db, sql::IS_BATCH_DONE))?
                        .unwrap_or(false),
                    Tracking::Tick => {
                        let last: Option<i64> = tx
                            .query_one(sql::GET_LAST_TICK, &[&name, &sub])
                            .await
                            .map_err(sql_err(dst_db, sql::GET_LAST_TICK))?
                            .try_get(0)
                            .map_err(sql_err(dst_db, sql::GET_LAST_TICK))?;
                        last == Some(info.tick_id)
                    }
                };
                if done {
                    drop(tx);
                    tracing::info!(
                        batch = info.batch_id,
                        tick = info.tick_id,
                        "batch already applied to the target; finishing it"
                    );
                    self.finish(src, src_db, info.batch_id).await?;
                    Progress::add(&self.progress.skipped, 1);
                    return Ok(Step::Batch);
                }
                Some(tx)
            }
            None => None,
        };

        let src_tx = src.transaction().await.map_err(sql_err(src_db, "begin"))?;
        let work: &Transaction<'_> = dst_tx.as_ref().unwrap_or(&src_tx);
        let mut retries: Vec<(i64, i32)> = Vec::new();
        let mut failed_evs: Vec<(Event, String)> = Vec::new();
        let mut n_events = 0u64;
        let mut keep = |events: Vec<Event>, outcomes: Vec<Outcome>| {
            n_events += events.len() as u64;
            for (ev, o) in events.into_iter().zip(outcomes) {
                match o {
                    Outcome::Done => {}
                    Outcome::Failed(r) => failed_evs.push((ev, r)),
                    Outcome::Retry(_, r) if ev.retries() >= self.cfg.max_retries => failed_evs
                        .push((
                            ev,
                            format!("gave up after {} retries: {r}", self.cfg.max_retries),
                        )),
                    Outcome::Retry(d, _) => {
                        retries.push((ev.id, d.as_secs().min(i32::MAX as u64) as i32))
                    }
                }
            }
        };
        match self.cfg.fetch_size {
            None => {
                let rows = src_tx
                    .query(sql::BATCH_EVENTS, &[&info.batch_id])
                    .await
                    .map_err(sql_err(src_db, sql::BATCH_EVENTS))?;
                let mut batch = Batch::new(info.clone(), events(&rows, src_db)?);
                handler
                    .handle_batch(work, &mut batch)
                    .await
                    .map_err(Error::Handler)?;
                let (e, o) = batch.into_parts();
                keep(e, o);
            }
            Some(n) => {
                let n = i32::try_from(n).unwrap_or(i32::MAX);
                let fetch = format!("fetch {n} from pgqd_batch_walker");
                let mut rows = src_tx
                    .query(sql::BATCH_CURSOR, &[&info.batch_id, &n])
                    .await
                    .map_err(sql_err(src_db, sql::BATCH_CURSOR))?;
                loop {
                    let more = rows.len() as i64 >= i64::from(n);
                    if !rows.is_empty() {
                        let mut batch = Batch::new(info.clone(), events(&rows, src_db)?);
                        handler
                            .handle_batch(work, &mut batch)
                            .await
                            .map_err(Error::Handler)?;
                        let (e, o) = batch.into_parts();
                        keep(e, o);
                    }
                    if !more {
                        break;
                    }
                    rows = src_tx
                        .query(&fetch, &[])
                        .await
                        .map_err(sql_err(src_db, "fetch from pgqd_batch_walker"))?;
                }
                src_tx
                    .batch_execute(sql::CLOSE_CURSOR)
                    .await
                    .map_err(sql_err(src_db, sql::CLOSE_CURSOR))?;
            }
        }
        for (id, secs) in &retries {
            src_tx
                .query_one(sql::EVENT_RETRY, &[&info.batch_id, id, secs])
                .await
                .map_err(sql_err(src_db, sql::EVENT_RETRY))?;
        }
        let failed_refs: Vec<(&Event, &str)> =
            failed_evs.iter().map(|(e, r)| (e, r.as_str())).collect();
        for (ev, why) in &failed_refs {
            tracing::warn!(queue = %self.cfg.queue, consumer = name, event = ev.id, retry = ev.retries(), reason = %why, "event moved to the failed-events table");
        }
        match dst_tx {
            None => {
                failed::record(
                    &src_tx,
                    &self.failed_table,
                    &self.cfg.queue,
                    name,
                    info.batch_id,
                    &failed_refs,
                )
                .await
                .map_err(sql_err(src_db, "insert into the failed-events table"))?;
                let q = if self.cfg.coop.is_some() {
                    sql::COOP_FINISH_BATCH
                } else {
                    sql::FINISH_BATCH
                };
                src_tx
                    .query_one(q, &[&info.batch_id])
                    .await
                    .map_err(sql_err(src_db, q))?;
                src_tx.commit().await.map_err(sql_err(src_db, "commit"))?;
            }
            Some(tx) => {
                src_tx.commit().await.map_err(sql_err(src_db, "commit"))?;
                failed::record(
                    &tx,
                    &self.failed_table,
                    &self.cfg.queue,
                    name,
                    info.batch_id,
                    &failed_refs,
                )
                .await
                .map_err(sql_err(dst_db, "insert into the failed-events table"))?;
                match self.cfg.tracking {
                    Tracking::Batch => tx
                        .query_one(sql::SET_BATCH_DONE, &[&name, &sub, &info.batch_id])
                        .await
                        .map(|_| ())
                        .map_err(sql_err(dst_db, sql::SET_BATCH_DONE))?,
                    Tracking::Tick => tx
                        .query_one(sql::SET_LAST_TICK, &[&name, &sub, &info.tick_id])
                        .await
                        .map(|_| ())
                        .map_err(sql_err(dst_db, sql::SET_LAST_TICK))?,
                }
                tx.commit().await.map_err(sql_err(dst_db, "commit"))?;
                self.finish(src, src_db, info.batch_id).await?;
            }
        }
        let p = &self.progress;
        Progress::add(&p.batches, 1);
        Progress::add(&p.events, n_events);
        Progress::add(&p.retried, retries.len() as u64);
        Progress::add(&p.failed, failed_refs.len() as u64);
        p.lag_ms.store(
            info.lag.as_millis().min(u64::MAX as u128) as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        tracing::debug!(
            batch = info.batch_id,
            tick = info.tick_id,
            events = n_events,
            retried = retries.len(),
            failed = failed_refs.len(),
            "batch finished"
        );
        Ok(Step::Batch)
    }

    async fn finish(&self, src: &Client, db: &str, batch_id: i64) -> Result<(), Error> {
        let q = if self.cfg.coop.is_some() {
            sql::COOP_FINISH_BATCH
        } else {
            sql::FINISH_BATCH
        };
        src.query_one(q, &[&batch_id])
            .await
            .map_err(sql_err(db, q))?;
        Ok(())
    }
}

/// The connections of one session.
struct Session {
    src: Client,
    notes: Option<mpsc::UnboundedReceiver<String>>,
    dst: Option<Client>,
    src_db: String,
    dst_db: String,
}

impl Session {
    /// Forgets notifications that arrived while busy: the next `next_batch` sees their
    /// ticks anyway.
    fn drain_notes(&mut self) {
        if let Some(rx) = &mut self.notes {
            while rx.try_recv().is_ok() {}
        }
    }

    /// Waits for a tick notification of our queue, `poll_interval`, or the stop token.
    async fn wait_idle(&mut self, cfg: &ConsumerConfig, stop: &CancellationToken) {
        let sleep = tokio::time::sleep(cfg.poll_interval);
        tokio::pin!(sleep);
        loop {
            let Some(rx) = &mut self.notes else {
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = &mut sleep => {}
                }
                return;
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = &mut sleep => return,
                m = rx.recv() => match m {
                    Some(p) if p == cfg.queue || p.is_empty() => return,
                    Some(_) => {}
                    None => self.notes = None,
                },
            }
        }
    }
}

fn events(rows: &[Row], db: &str) -> Result<Vec<Event>, Error> {
    rows.iter()
        .map(|r| Event::from_row(r).map_err(sql_err(db, "reading an event")))
        .collect()
}

fn secs(v: Option<f64>) -> Duration {
    Duration::try_from_secs_f64(v.unwrap_or(0.0).max(0.0)).unwrap_or_default()
}

fn sql_err<'a>(db: &'a str, what: &'a str) -> impl FnOnce(tokio_postgres::Error) -> Error + 'a {
    move |source| Error::Sql {
        db: db.to_string(),
        what: what.to_string(),
        source,
    }
}

async fn wait(stop: &CancellationToken, d: Duration) {
    tokio::select! {
        _ = stop.cancelled() => {}
        _ = tokio::time::sleep(d) => {}
    }
}
