//! Discovery: which databases the daemon should serve, asked every `check_period`.
//!
//! With `database_list` set, that list is the answer and no connection is made. Otherwise
//! the databases that allow connections and are not templates are listed through
//! `initial_database`. A connection to a template database is never kept (Debian's default
//! `initial_database` is template1, and `CREATE DATABASE` fails while anyone is connected to
//! its template): it is opened for the listing and closed at once. A non-template
//! `initial_database` connection is kept between rounds, which saves the server a new
//! backend every `check_period`.
//!
//! Called by the supervisor; [`Discovery::run_once`] is one listing.

use std::sync::Arc;

use crate::config::Config;

use super::broker::{Broker, ConnectError, DbConn, Purpose, StmtError};
use crate::sql;

/// Why a listing failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Could not connect to `initial_database`.
    #[error("cannot connect to initial_database {db:?}: {source}")]
    Connect {
        /// The database asked.
        db: String,
        /// Why.
        #[source]
        source: ConnectError,
    },
    /// The listing query failed.
    #[error("listing databases through {db:?} failed: {source}")]
    List {
        /// The database asked.
        db: String,
        /// Why.
        #[source]
        source: StmtError,
    },
}

/// Lists databases; keeps a connection only to a non-template `initial_database`.
#[derive(Debug)]
pub struct Discovery {
    broker: Broker,
    held: Option<(String, DbConn)>,
}

impl Discovery {
    /// A discovery that opens its connections through `broker`.
    pub fn new(broker: Broker) -> Discovery {
        Discovery { broker, held: None }
    }

    /// Drops any held connection (shutdown, or a config change).
    pub fn close(&mut self) {
        self.held = None;
    }

    /// The databases to serve under `cfg`, sorted.
    pub async fn run_once(&mut self, cfg: &Arc<Config>) -> Result<Vec<String>, Error> {
        if !cfg.database_list.is_empty() {
            self.held = None;
            let mut v = cfg.database_list.clone();
            v.sort();
            v.dedup();
            return Ok(v);
        }
        let db = cfg.initial_database.clone();
        let reuse = matches!(&self.held, Some((name, c)) if *name == db && !c.stale_for(cfg));
        let mut conn = match (reuse, self.held.take()) {
            (true, Some((_, c))) => c,
            _ => self
                .broker
                .connect(&db, Purpose::Discovery)
                .await
                .map_err(|source| Error::Connect {
                    db: db.clone(),
                    source,
                })?,
        };
        let rows = conn
            .query(sql::LIST_DATABASES, &[])
            .await
            .map_err(|source| Error::List {
                db: db.clone(),
                source,
            })?;
        let mut names = Vec::with_capacity(rows.len());
        let mut here_is_template = true;
        for r in &rows {
            if let Ok(n) = r.try_get::<_, String>(0) {
                names.push(n);
            }
            here_is_template = r.try_get(1).unwrap_or(true);
        }
        if rows.is_empty() {
            // Nothing listed: we cannot tell; do not keep the connection.
            here_is_template = true;
        }
        if !here_is_template {
            self.held = Some((db, conn));
        }
        Ok(names)
    }
}
