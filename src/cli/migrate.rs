//! `pgqd migrate`: replaces the C extension `pgq` (3.5) in one database with our schema,
//! in one transaction, keeping every queue, tick, consumer position, open batch, event
//! and retry event.
//!
//! The extension's tables and sequences have exactly our layout, so they are kept: every
//! member object is released from the extension (`ALTER EXTENSION pgq DROP …`), the now
//! memberless extension is dropped, and our component files run over the top. They are
//! `CREATE OR REPLACE` and guarded DDL, so the tables stay and each function is replaced
//! in place: same OID (user triggers reference `pgq.logutriga` & co. by OID), language C
//! becomes PL/pgSQL. Old functions ours does not define are dropped; then
//! `pgq.upgrade_schema()` regenerates the insert dispatcher for the existing queues.
//!
//! Refuses while extensions that depend on pgq (pgq_node, pgq_coop, pgq_ext) are
//! installed. `--dry-run` does all of it and rolls back. A database without the extension
//! has nothing to migrate: that is reported and exits 0.

use tokio_postgres::Transaction;

use super::common::{ConnArgs, Db, Error};
use super::install;
use crate::schema;

/// Arguments of `pgqd migrate`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Do the whole migration, report it, and roll it back.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub conn: ConnArgs,
}

fn sql(what: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> Error {
    let what = what.into();
    move |source| Error::Sql { what, source }
}

fn from_install(e: install::Error) -> Error {
    match e {
        install::Error::Usage(m) => Error::Usage(m),
        install::Error::Conn(c) => Error::Conn(c),
        install::Error::Refused(m) => Error::Refused(m),
        install::Error::Sql { what, source } => Error::Sql { what, source },
    }
}

/// Migrates the database; prints what it did.
pub async fn run(a: &Args) -> Result<u8, Error> {
    let mut db = Db::open(&a.conn).await?;
    let name = db.name.clone();
    let ext: Option<String> = db
        .client
        .query_opt(
            "select extversion::text from pg_catalog.pg_extension where extname = 'pgq'",
            &[],
        )
        .await
        .map_err(sql("looking for the pgq extension"))?
        .map(|r| r.get(0));
    let Some(version) = ext else {
        println!("nothing to migrate: database {name:?} has no pgq extension");
        return Ok(0);
    };
    let tx = db
        .client
        .transaction()
        .await
        .map_err(sql("starting the transaction"))?;
    let lines = migrate(&tx, &name, &version).await?;
    if a.dry_run {
        tx.rollback().await.map_err(sql("rolling back"))?;
        for l in &lines {
            println!("{l}");
        }
        println!("dry run: rolled back, nothing changed");
    } else {
        tx.commit().await.map_err(sql("committing"))?;
        for l in &lines {
            println!("{l}");
        }
    }
    Ok(0)
}

async fn migrate(tx: &Transaction<'_>, db: &str, version: &str) -> Result<Vec<String>, Error> {
    // (1) Extensions built on pgq would lose their base: refuse.
    let dependents: Vec<String> = tx
        .query(
            "select x.extname::text
               from pg_catalog.pg_extension x
              where x.extname in ('pgq_node', 'pgq_coop', 'pgq_ext')
                 or exists (select 1 from pg_catalog.pg_depend d
                             join pg_catalog.pg_extension p on p.oid = d.refobjid
                            where p.extname = 'pgq'
                              and d.classid = 'pg_catalog.pg_extension'::regclass
                              and d.objid = x.oid)
              order by 1",
            &[],
        )
        .await
        .map_err(sql("looking for extensions that depend on pgq"))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if !dependents.is_empty() {
        return Err(Error::Refused(format!(
            "database {db:?} has extensions built on pgq: {}; pgqd migrate replaces only \
             pgq itself (drop those extensions first, or keep the C extension)",
            dependents.join(", ")
        )));
    }

    // (2) Release every member object from the extension, remembering the functions.
    let members = tx
        .query(
            "select i.type, i.identity,
                    case when d.classid = 'pg_catalog.pg_proc'::regclass
                         then d.objid end
               from pg_catalog.pg_depend d
               join pg_catalog.pg_extension e on e.oid = d.refobjid
                    and d.refclassid = 'pg_catalog.pg_extension'::regclass,
                    pg_catalog.pg_identify_object(d.classid, d.objid, 0) i
              where e.extname = 'pgq' and d.deptype = 'e'",
            &[],
        )
        .await
        .map_err(sql("listing the objects of extension pgq"))?;
    let mut funcs: Vec<u32> = Vec::new();
    let mut triggers = false;
    for m in &members {
        let kind: String = m.get(0);
        let ident: String = m.get(1);
        if let Some(oid) = m.get::<_, Option<u32>>(2) {
            funcs.push(oid);
            if ["pgq.logutriga()", "pgq.sqltriga()", "pgq.jsontriga()"].contains(&ident.as_str()) {
                triggers = true;
            }
        }
        tx.batch_execute(&format!("alter extension pgq drop {kind} {ident}"))
            .await
            .map_err(sql(format!("releasing {kind} {ident} from extension pgq")))?;
    }

    // (3) Drop the now memberless extension.
    tx.batch_execute("drop extension pgq")
        .await
        .map_err(sql("dropping extension pgq"))?;

    // (4) Our components over the top: tables kept, functions replaced in place.
    let mut comps = vec!["pgq"];
    if triggers {
        comps.push("triggers");
    }
    for name in &comps {
        let c = schema::component(name)
            .ok_or_else(|| Error::Failed(format!("this build has no component {name}")))?;
        install::apply_files(tx, &c).await.map_err(from_install)?;
    }
    // Functions the files did not replace (their pg_proc row is not ours to this
    // transaction) belonged only to the old extension.
    let leftovers: Vec<String> = tx
        .query(
            "select p.oid::regprocedure::text from pg_catalog.pg_proc p
              where p.oid = any($1::oid[]) and pg_catalog.age(p.xmin) <> 0
              order by 1",
            &[&funcs],
        )
        .await
        .map_err(sql("looking for functions of the old extension"))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for f in &leftovers {
        tx.batch_execute(&format!("drop function {f}"))
            .await
            .map_err(sql(format!("dropping the old extension's function {f}")))?;
    }
    tx.execute("select pgq.upgrade_schema()", &[])
        .await
        .map_err(sql("pgq.upgrade_schema()"))?;

    // (5) Report.
    let counts = tx
        .query_one(
            "select (select count(*) from pgq.queue), (select count(*) from pgq.subscription),
                    (select count(*) from pgq.subscription where sub_batch is not null),
                    (select count(*) from pgq.retry_queue)",
            &[],
        )
        .await
        .map_err(sql("counting queues"))?;
    let (q, s, open, retry): (i64, i64, i64, i64) =
        (counts.get(0), counts.get(1), counts.get(2), counts.get(3));
    let ours = schema::pgq_schema_version().unwrap_or("?");
    let mut lines = vec![format!(
        "migrated {db:?} from extension pgq {version} to pgq schema {ours} \
         (components: {}): {q} queues, {s} subscriptions ({open} with an open batch), \
         {retry} retry events kept",
        comps.join(", ")
    )];
    if !leftovers.is_empty() {
        lines.push(format!(
            "dropped {} functions of the old extension that pgqd does not define: {}",
            leftovers.len(),
            leftovers.join(", ")
        ));
    }
    Ok(lines)
}
