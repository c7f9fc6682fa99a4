//! `pgqd uninstall [--component …] [--force]`: drops the schemas of SQL components from
//! one database, in one transaction.
//!
//! Refuses, unless `--force`, while queues hold unconsumed events: a consumer with pending
//! events or an open batch, events inserted since the last tick of a queue that has
//! consumers, or rows in the retry queue. Refuses always when the C extension owns
//! schema pgq (that is `DROP EXTENSION pgq`'s job) and when a component that needs pgq
//! would be left behind without it.

use super::common::{ConnArgs, Db, Error};

/// Components by command-line name, with their schema, in the order they are dropped
/// (dependents first). `triggers` lives inside schema pgq and goes with it.
const SCHEMAS: &[(&str, &str)] = &[
    ("node", "pgq_node"),
    ("coop", "pgq_coop"),
    ("ext", "pgq_ext"),
    ("pgq", "pgq"),
];

/// Components that cannot work without schema pgq.
const NEEDS_PGQ: &[&str] = &["node", "coop"];

/// Arguments of `pgqd uninstall`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Components to remove, comma-separated: pgq, ext, coop, node.
    #[arg(long, value_delimiter = ',', default_value = "pgq")]
    pub component: Vec<String>,
    /// Remove even while queues hold unconsumed events (they are lost).
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// Resolves `--component` into (name, schema) pairs in drop order.
pub fn select(names: &[String]) -> Result<Vec<(&'static str, &'static str)>, Error> {
    let wanted: Vec<&str> = names
        .iter()
        .flat_map(|n| n.split(','))
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .collect();
    for w in &wanted {
        if *w == "triggers" {
            return Err(Error::Usage(
                "the triggers component lives in schema pgq and is removed with it \
                 (--component pgq)"
                    .into(),
            ));
        }
        if !SCHEMAS.iter().any(|(n, s)| n == w || s == w) {
            return Err(Error::Usage(format!(
                "unknown component {w:?} (known: pgq, ext, coop, node)"
            )));
        }
    }
    Ok(SCHEMAS
        .iter()
        .filter(|(n, s)| wanted.iter().any(|w| w == n || w == s))
        .copied()
        .collect())
}

/// Drops the selected components' schemas.
pub async fn run(a: &Args) -> Result<u8, Error> {
    let comps = select(&a.component)?;
    let mut db = Db::open(&a.conn).await?;
    let installed: Vec<String> = db
        .client
        .query(
            "select nspname::text from pg_catalog.pg_namespace \
              where nspname in ('pgq', 'pgq_ext', 'pgq_coop', 'pgq_node')",
            &[],
        )
        .await
        .map_err(db.err("reading the catalog", "CONNECT"))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let has = |s: &str| installed.iter().any(|i| i == s);
    let dropping_pgq = comps.iter().any(|(n, _)| *n == "pgq");
    if dropping_pgq && has("pgq") {
        let ext: Option<String> = db
            .client
            .query_opt(
                "select extversion::text from pg_catalog.pg_extension where extname = 'pgq'",
                &[],
            )
            .await
            .map_err(db.err("looking for the pgq extension", "CONNECT"))?
            .map(|r| r.get(0));
        if let Some(v) = ext {
            return Err(Error::Refused(format!(
                "schema pgq in database {:?} belongs to the C extension pgq {v}; \
                 pgqd did not install it (remove it with DROP EXTENSION pgq)",
                db.name
            )));
        }
        for (dep, schema) in SCHEMAS.iter().filter(|(n, _)| NEEDS_PGQ.contains(n)) {
            if has(schema) && !comps.iter().any(|(n, _)| n == dep) {
                return Err(Error::Refused(format!(
                    "schema {schema} needs pgq and would be left broken; remove both: \
                     --component {dep},pgq"
                )));
            }
        }
        if !a.force {
            let unconsumed = unconsumed(&db).await?;
            if !unconsumed.is_empty() {
                return Err(Error::Refused(format!(
                    "queues in database {:?} hold unconsumed events: {}; let the consumers \
                     finish, or use --force to drop them anyway",
                    db.name,
                    unconsumed.join("; ")
                )));
            }
        }
    }
    let to_drop: Vec<&(&str, &str)> = comps.iter().filter(|(_, s)| has(s)).collect();
    if to_drop.is_empty() {
        println!("nothing to uninstall in database {:?}", db.name);
        return Ok(0);
    }
    let user = db.user.clone();
    let name = db.name.clone();
    let tx = db.client.transaction().await.map_err(|source| Error::Sql {
        what: "starting the transaction".into(),
        source,
    })?;
    for (_, schema) in &to_drop {
        // The schema names come from the fixed list above, never from input.
        let stmt = match *schema {
            "pgq" => "drop schema pgq cascade",
            "pgq_ext" => "drop schema pgq_ext cascade",
            "pgq_coop" => "drop schema pgq_coop cascade",
            _ => "drop schema pgq_node cascade",
        };
        if let Err(source) = tx.batch_execute(stmt).await {
            return Err(if crate::pgerr::sqlstate(&source) == Some("42501") {
                Error::Permission {
                    what: format!("drop schema {schema}"),
                    needs: format!("ownership of schema {schema} (or a superuser)"),
                    user,
                }
            } else {
                Error::Sql {
                    what: format!("drop schema {schema}"),
                    source,
                }
            });
        }
    }
    tx.commit().await.map_err(|source| Error::Sql {
        what: "committing".into(),
        source,
    })?;
    for (n, s) in &to_drop {
        println!("{n}: dropped schema {s} from database {name:?}");
    }
    Ok(0)
}

/// Describes what is still unread, one entry per queue/consumer; empty when nothing is.
async fn unconsumed(db: &Db) -> Result<Vec<String>, Error> {
    let rows = db
        .client
        .query(
            "select 'consumer ' || pg_catalog.quote_literal(c.consumer_name) || ' on queue '
                    || pg_catalog.quote_literal(c.queue_name) || ': '
                    || coalesce(c.pending_events, 0) || ' pending event(s)'
                    || case when c.current_batch is not null then ', a batch open' else '' end
               from pgq.get_consumer_info() c
              where coalesce(c.pending_events, 0) > 0 or c.current_batch is not null
             union all
             select 'queue ' || pg_catalog.quote_literal(q.queue_name) || ': ' || q.ev_new
                    || ' event(s) since the last tick'
               from pgq.get_queue_info() q
              where q.ev_new > 0
                and exists (select 1 from pgq.get_consumer_info(q.queue_name) x)
             union all
             select 'retry queue: ' || count(*) || ' event(s)'
               from pgq.retry_queue having count(*) > 0",
            &[],
        )
        .await
        .map_err(db.err(
            "checking for unconsumed events",
            "role pgq_admin (to read pgq.retry_queue)",
        ))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_order_is_dependents_first() {
        let c = select(&["pgq,coop".into()]).unwrap();
        assert_eq!(c, vec![("coop", "pgq_coop"), ("pgq", "pgq")]);
        assert_eq!(select(&["bogus".into()]).unwrap_err().exit_code(), 2);
        assert_eq!(select(&["triggers".into()]).unwrap_err().exit_code(), 2);
    }
}
