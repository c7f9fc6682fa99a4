//! The queue splitter's handler: each event goes to the target queue of its table
//! (ev_extra1, as logutriga/jsontriga write it): the queue `routes` names for the table,
//! else the queue named like the table. `include` (when not empty) and `exclude` select
//! the tables; a pattern ending in `*` matches a prefix. Events of other tables, and
//! events without ev_extra1, are not routed (counted in the debug log). A missing target
//! queue fails the batch (logged) until it is created.

use tokio_postgres::Transaction;

use super::ToolConfig;
use super::mover::insert_events;
use crate::consumer::{Batch, BoxError, Event, Handler};
use std::collections::BTreeMap;

/// The splitter.
pub struct Splitter {
    include: Vec<String>,
    exclude: Vec<String>,
    routes: BTreeMap<String, String>,
}

fn matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

impl Splitter {
    /// The splitter of a config.
    pub fn new(cfg: &ToolConfig) -> Splitter {
        Splitter {
            include: cfg.include.clone(),
            exclude: cfg.exclude.clone(),
            routes: cfg.routes.clone(),
        }
    }

    /// The target queue of an event, or None when it is not routed.
    pub fn route(&self, ev: &Event) -> Option<String> {
        let table = ev.extra1.as_deref().filter(|t| !t.is_empty())?;
        if self.exclude.iter().any(|p| matches(p, table)) {
            return None;
        }
        if !self.include.is_empty() && !self.include.iter().any(|p| matches(p, table)) {
            return None;
        }
        Some(
            self.routes
                .get(table)
                .cloned()
                .unwrap_or_else(|| table.to_string()),
        )
    }
}

impl Handler for Splitter {
    async fn handle_batch(
        &mut self,
        tx: &Transaction<'_>,
        batch: &mut Batch,
    ) -> Result<(), BoxError> {
        let routed: Vec<(&Event, String)> = batch
            .events()
            .iter()
            .filter_map(|e| self.route(e).map(|q| (e, q)))
            .collect();
        let skipped = batch.len() - routed.len();
        if skipped > 0 {
            tracing::debug!(batch = batch.info().batch_id, skipped, "events not routed");
        }
        let evs: Vec<&Event> = routed.iter().map(|(e, _)| *e).collect();
        let queues: std::collections::HashMap<i64, &str> =
            routed.iter().map(|(e, q)| (e.id, q.as_str())).collect();
        insert_events(tx, &evs, |e| {
            queues.get(&e.id).map(|q| q.to_string()).unwrap_or_default()
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(table: Option<&str>) -> Event {
        Event {
            id: 1,
            time: std::time::SystemTime::UNIX_EPOCH,
            txid: None,
            retry: None,
            ev_type: None,
            data: None,
            extra1: table.map(str::to_string),
            extra2: None,
            extra3: None,
            extra4: None,
        }
    }

    #[test]
    fn routes_by_table_with_include_and_exclude() {
        let s = Splitter {
            include: vec!["public.*".into()],
            exclude: vec!["public.tmp_*".into()],
            routes: [("public.orders".to_string(), "orders_q".to_string())].into(),
        };
        assert_eq!(
            s.route(&ev(Some("public.orders"))).as_deref(),
            Some("orders_q")
        );
        assert_eq!(
            s.route(&ev(Some("public.users"))).as_deref(),
            Some("public.users")
        );
        assert_eq!(s.route(&ev(Some("public.tmp_x"))), None);
        assert_eq!(s.route(&ev(Some("other.t"))), None);
        assert_eq!(s.route(&ev(None)), None);
    }
}
