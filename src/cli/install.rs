//! `pgqd install`: installs or upgrades the embedded SQL components in one database, in
//! one transaction, and says what it did.
//!
//! It refuses, with a message an operator can act on, when the server is too old, when
//! the C extension `pgq` owns the schema, when the schema was made by something else, when
//! the database holds a newer release than this binary, or when the role lacks the rights
//! the install needs.

use tokio_postgres::Client;

use crate::conn;
use crate::schema::{self, Component};

/// Oldest PostgreSQL major we test on (`server_version_num`).
pub const MIN_SERVER_VERSION: i32 = 130000;

/// What the operator asked for.
#[derive(Debug, Clone)]
pub struct InstallArgs {
    /// Component names, as given to `--component` (empty means `pgq`).
    pub components: Vec<String>,
    /// libpq connection string; may be empty.
    pub connstr: String,
    /// Database name, overriding the one in `connstr`.
    pub dbname: Option<String>,
}

/// Why an install did not happen.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad arguments: exit code 2.
    #[error("{0}")]
    Usage(String),
    /// Could not connect.
    #[error(transparent)]
    Conn(#[from] conn::Error),
    /// The database is not in a state we install into.
    #[error("{0}")]
    Refused(String),
    /// A statement failed; `what` says which step or file.
    #[error("{what}: {}", crate::pgerr::describe(.source))]
    Sql {
        /// The step or file that failed.
        what: String,
        #[source]
        source: tokio_postgres::Error,
    },
}

impl Error {
    /// The process exit code for this error: 2 for usage, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) => 2,
            _ => 1,
        }
    }
}

fn sql(what: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> Error {
    let what = what.into();
    move |source| Error::Sql { what, source }
}

/// Resolves `--component` values into components in install order.
pub fn select_components(names: &[String]) -> Result<Vec<Component>, Error> {
    let all = schema::components();
    let wanted: Vec<String> = if names.is_empty() {
        vec!["pgq".to_string()]
    } else {
        names
            .iter()
            .flat_map(|n| n.split(','))
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty())
            .collect()
    };
    for w in &wanted {
        if !all.iter().any(|c| c.name == w || c.dir == w) {
            let known: Vec<&str> = all.iter().map(|c| c.name).collect();
            return Err(Error::Usage(format!(
                "unknown component {w:?} (this build has: {})",
                known.join(", ")
            )));
        }
    }
    Ok(all
        .into_iter()
        .filter(|c| wanted.iter().any(|w| w == c.name || w == c.dir))
        .collect())
}

/// Connects and installs; returns one report line per component.
pub async fn run(args: &InstallArgs) -> Result<Vec<String>, Error> {
    let comps = select_components(&args.components)?;
    let cfg = conn::config_from(&args.connstr, args.dbname.as_deref())?;
    let mut client = conn::connect(&cfg).await?;
    install(&mut client, &comps).await
}

/// Installs `comps` into the database `client` is connected to, in one transaction.
pub async fn install(client: &mut Client, comps: &[Component]) -> Result<Vec<String>, Error> {
    let row = client
        .query_one(
            "select current_setting('server_version_num')::int, current_database()::text",
            &[],
        )
        .await
        .map_err(sql("reading the server version"))?;
    let server: i32 = row.get(0);
    let db: String = row.get(1);
    if server < MIN_SERVER_VERSION {
        return Err(Error::Refused(format!(
            "PostgreSQL {}.{} is older than the oldest supported major (13)",
            server / 10000,
            (server / 100) % 100
        )));
    }
    let ext: Option<String> = client
        .query_opt(
            "select extversion::text from pg_catalog.pg_extension where extname = 'pgq'",
            &[],
        )
        .await
        .map_err(sql("looking for the pgq extension"))?
        .map(|r| r.get(0));
    if let Some(v) = ext {
        return Err(Error::Refused(format!(
            "database {db:?} has the C extension pgq {v} installed; this schema replaces it \
             and cannot install beside it (drop the extension, or migrate its queues first)"
        )));
    }

    let mut report = Vec::new();
    let tx = client
        .transaction()
        .await
        .map_err(sql("starting the transaction"))?;
    for c in comps {
        report.push(install_component(&tx, c, &db).await?);
    }
    tx.commit().await.map_err(sql("committing"))?;
    Ok(report)
}

async fn install_component(
    tx: &tokio_postgres::Transaction<'_>,
    c: &Component,
    db: &str,
) -> Result<String, Error> {
    if c.name != "pgq" && !schema_exists(tx, "pgq").await? {
        return Err(Error::Refused(format!(
            "component {} needs pgq: install it first (--component pgq,{})",
            c.name, c.name
        )));
    }
    check_rights(tx, c, db).await?;
    let mut upgraded_from = None;
    if c.name == "pgq" {
        let ours = schema::pgq_schema_version().unwrap_or("0");
        match installed_pgq_version(tx).await? {
            Installed::None => {}
            Installed::Foreign => {
                return Err(Error::Refused(format!(
                    "database {db:?} has a pgq schema that pgqd did not install \
                     (no pgq.pgqd_schema_version()); refusing to overwrite it"
                )));
            }
            Installed::Ours(v) => {
                let (have, want) = (schema::parse_version(&v), schema::parse_version(ours));
                if have > want {
                    return Err(Error::Refused(format!(
                        "database {db:?} has pgq schema {v}, newer than this pgqd's {ours}; \
                         use a newer pgqd"
                    )));
                }
                for (name, body) in schema::upgrade_path(&v) {
                    tx.batch_execute(body)
                        .await
                        .map_err(sql(format!("pgq/upgrade/{name}")))?;
                }
                upgraded_from = Some(v);
            }
        }
    }
    apply_files(tx, c).await?;
    if c.name == "pgq" {
        tx.execute("select pgq.upgrade_schema()", &[])
            .await
            .map_err(sql("pgq.upgrade_schema()"))?;
        let now = schema::pgq_schema_version().unwrap_or("?");
        return Ok(match upgraded_from {
            None => format!(
                "pgq: installed schema {now} into {db:?} ({} files)",
                c.files.len()
            ),
            Some(v) if v == now => format!(
                "pgq: schema {now} was already installed in {db:?}; re-applied {} files",
                c.files.len()
            ),
            Some(v) => format!("pgq: upgraded {db:?} from schema {v} to {now}"),
        });
    }
    Ok(format!(
        "{}: installed into {db:?} ({} files)",
        c.name,
        c.files.len()
    ))
}

/// Runs a component's files, in order, in `tx`, with no checks (used by `pgqd migrate`,
/// which has done its own).
pub async fn apply_files(tx: &tokio_postgres::Transaction<'_>, c: &Component) -> Result<(), Error> {
    for (name, body) in c.files {
        tx.batch_execute(body)
            .await
            .map_err(sql(format!("{}/{name}", c.dir)))?;
    }
    Ok(())
}

enum Installed {
    None,
    Foreign,
    Ours(String),
}

async fn installed_pgq_version(tx: &tokio_postgres::Transaction<'_>) -> Result<Installed, Error> {
    if !schema_exists(tx, "pgq").await? {
        return Ok(Installed::None);
    }
    let has_fn: bool = tx
        .query_one(
            "select to_regprocedure('pgq.pgqd_schema_version()') is not null",
            &[],
        )
        .await
        .map_err(sql("reading the installed version"))?
        .get(0);
    if !has_fn {
        let has_queue: bool = tx
            .query_one("select to_regclass('pgq.queue') is not null", &[])
            .await
            .map_err(sql("reading the installed version"))?
            .get(0);
        return Ok(if has_queue {
            Installed::Foreign
        } else {
            Installed::None
        });
    }
    let v: String = tx
        .query_one("select pgq.pgqd_schema_version()", &[])
        .await
        .map_err(sql("reading the installed version"))?
        .get(0);
    Ok(Installed::Ours(v))
}

async fn schema_exists(tx: &tokio_postgres::Transaction<'_>, name: &str) -> Result<bool, Error> {
    Ok(tx
        .query_one(
            "select exists (select 1 from pg_catalog.pg_namespace where nspname = $1)",
            &[&name],
        )
        .await
        .map_err(sql("reading the catalog"))?
        .get(0))
}

/// Checks up front what would otherwise fail half-way with a bare "permission denied".
async fn check_rights(
    tx: &tokio_postgres::Transaction<'_>,
    c: &Component,
    db: &str,
) -> Result<(), Error> {
    let row = tx
        .query_one(
            "select current_user::text,
                    r.rolsuper or r.rolcreaterole,
                    has_database_privilege(current_database(), 'CREATE'),
                    (select n.nspowner = r.oid or r.rolsuper
                       from pg_catalog.pg_namespace n where n.nspname = $1),
                    (select array_agg(x) from unnest(array['pgq_reader','pgq_writer','pgq_admin']) x
                      where not exists (select 1 from pg_catalog.pg_roles where rolname = x))
               from pg_catalog.pg_roles r where r.rolname = current_user",
            &[&c.schema],
        )
        .await
        .map_err(sql("checking privileges"))?;
    let user: String = row.get(0);
    let can_create_role: bool = row.get(1);
    let can_create_schema: bool = row.get(2);
    let owns_schema: Option<bool> = row.get(3);
    let missing_roles: Option<Vec<String>> = row.get(4);
    if let Some(roles) = missing_roles.filter(|r| !r.is_empty())
        && !can_create_role
    {
        return Err(Error::Refused(format!(
            "role {user:?} cannot create the roles {} (needs CREATEROLE); create them once \
             as a superuser, or install as one",
            roles.join(", ")
        )));
    }
    match owns_schema {
        None if !can_create_schema => Err(Error::Refused(format!(
            "role {user:?} may not create schema {} in database {db:?} (needs CREATE on the \
             database)",
            c.schema
        ))),
        Some(false) => Err(Error::Refused(format!(
            "schema {} in database {db:?} belongs to another role; install as its owner",
            c.schema
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_component_is_pgq() {
        let c = select_components(&[]).unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].name, "pgq");
    }

    #[test]
    fn unknown_component_is_a_usage_error() {
        let e = select_components(&["pgq,bogus".to_string()]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("bogus"));
    }
}
