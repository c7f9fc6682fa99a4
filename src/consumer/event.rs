//! The data a handler sees: [`Event`] (one row of `pgq.get_batch_events`), [`BatchInfo`]
//! (the batch's ticks) and [`Batch`] (the events of one delivery plus what the handler
//! decided for each: done, retry later, or failed for good).
//!
//! Built by `run.rs` from the rows it fetched; read back by it to queue retries and write
//! failed events once the handler returns.

use std::time::{Duration, SystemTime};

use tokio_postgres::Row;

/// One event of a batch, as `pgq.get_batch_events` returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// `ev_id`: unique within the queue.
    pub id: i64,
    /// `ev_time`: when the producer inserted it (kept by retries and by the queue mover).
    pub time: SystemTime,
    /// `ev_txid`: the producing transaction (NULL for retried events).
    pub txid: Option<i64>,
    /// `ev_retry`: how often the event was retried before (NULL the first time).
    pub retry: Option<i32>,
    /// `ev_type`.
    pub ev_type: Option<String>,
    /// `ev_data`.
    pub data: Option<String>,
    /// `ev_extra1` (the table name for trigger events).
    pub extra1: Option<String>,
    /// `ev_extra2`.
    pub extra2: Option<String>,
    /// `ev_extra3`.
    pub extra3: Option<String>,
    /// `ev_extra4`.
    pub extra4: Option<String>,
}

impl Event {
    /// Reads the ten columns of `get_batch_events`/`get_batch_cursor`, in their order.
    pub(crate) fn from_row(r: &Row) -> Result<Event, tokio_postgres::Error> {
        Ok(Event {
            id: r.try_get(0)?,
            time: r.try_get(1)?,
            txid: r.try_get(2)?,
            retry: r.try_get(3)?,
            ev_type: r.try_get(4)?,
            data: r.try_get(5)?,
            extra1: r.try_get(6)?,
            extra2: r.try_get(7)?,
            extra3: r.try_get(8)?,
            extra4: r.try_get(9)?,
        })
    }

    /// How many times the event has been tried before this delivery.
    pub fn retries(&self) -> u32 {
        self.retry.map_or(0, |r| r.max(0) as u32)
    }
}

/// The batch being handled: its id and the two ticks it spans.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchInfo {
    /// The batch id (`pgq.next_batch`).
    pub batch_id: i64,
    /// The tick the batch ends at; the consumer's position once the batch is finished.
    pub tick_id: i64,
    /// The tick the batch starts after.
    pub prev_tick_id: i64,
    /// The end tick's time, as the server prints it.
    pub tick_time: Option<String>,
    /// The start tick's time, as the server prints it.
    pub prev_tick_time: Option<String>,
    /// now() − end tick time when the batch was opened: how far the consumer is behind.
    pub lag: Duration,
}

/// What the handler decided for one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Handled (the default).
    Done,
    /// Deliver again after this delay (`pgq.event_retry`), or into the failed-events
    /// table once the event has been retried `max_retries` times; the text says why.
    Retry(Duration, String),
    /// Into the failed-events table now, with the reason.
    Failed(String),
}

/// The events of one delivery and the handler's verdict per event.
///
/// Without `fetch_size` a delivery is the whole batch; with it (cursor mode) a big batch
/// comes in several deliveries of at most `fetch_size` events, all in one transaction.
#[derive(Debug)]
pub struct Batch {
    info: BatchInfo,
    events: Vec<Event>,
    outcomes: Vec<Outcome>,
}

impl Batch {
    pub(crate) fn new(info: BatchInfo, events: Vec<Event>) -> Batch {
        let outcomes = vec![Outcome::Done; events.len()];
        Batch {
            info,
            events,
            outcomes,
        }
    }

    /// The batch's id and ticks.
    pub fn info(&self) -> &BatchInfo {
        &self.info
    }

    /// The events, in ev_id order.
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// The number of events in this delivery.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether this delivery holds no events (an empty batch still gets finished).
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Asks for the event at `index` (of [`Batch::events`]) to be delivered again after
    /// `delay`. Out-of-range indexes are ignored.
    pub fn retry(&mut self, index: usize, delay: Duration, reason: impl Into<String>) {
        if let Some(o) = self.outcomes.get_mut(index) {
            *o = Outcome::Retry(delay, reason.into());
        }
    }

    /// Sends the event at `index` to the failed-events table without further tries.
    pub fn fail(&mut self, index: usize, reason: impl Into<String>) {
        if let Some(o) = self.outcomes.get_mut(index) {
            *o = Outcome::Failed(reason.into());
        }
    }

    /// Marks the event at `index` done again (undoes `retry`/`fail`).
    pub fn done(&mut self, index: usize) {
        if let Some(o) = self.outcomes.get_mut(index) {
            *o = Outcome::Done;
        }
    }

    /// The verdict for each event, in the order of [`Batch::events`].
    pub fn outcomes(&self) -> &[Outcome] {
        &self.outcomes
    }

    pub(crate) fn into_parts(self) -> (Vec<Event>, Vec<Outcome>) {
        (self.events, self.outcomes)
    }
}
