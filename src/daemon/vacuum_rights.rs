//! Whether the daemon's role may VACUUM a table that `pgq.maint_tables_to_vacuum()` lists.
//!
//! PostgreSQL lets only a table's owner or the database's owner (or a superuser; from 17
//! also a role with MAINTAIN) vacuum a table; anyone else's VACUUM succeeds with a warning
//! and does nothing. A non-superuser daemon (README "Least privilege") would then believe
//! it maintains pgq's hot tables while they bloat. So before each VACUUM the maintainer
//! asks [`CAN_VACUUM`]; a table it may not vacuum is skipped and warned about once (with
//! the fix), and its recovery is logged. Owned by `maint::Maintainer`.

use std::collections::HashSet;

use tracing::{info, warn};

use super::broker::DbConn;

/// True when the current role may vacuum table `$1` (a name as `maint_tables_to_vacuum`
/// returns it): it has the privileges of the table's owner, or of the database's owner
/// for a non-shared table (PostgreSQL 15's rule; `pg_has_role` is true for superusers).
/// A name that does not resolve reads as true: VACUUM itself will report it.
pub const CAN_VACUUM: &str = "\
select coalesce((
    select pg_catalog.pg_has_role(c.relowner, 'USAGE')
           or (not c.relisshared and pg_catalog.pg_has_role(d.datdba, 'USAGE'))
      from pg_catalog.pg_class c, pg_catalog.pg_database d
     where c.oid = pg_catalog.to_regclass($1)
       and d.datname = pg_catalog.current_database()), true)";

/// Tables the daemon has warned about (so each is warned about once).
#[derive(Debug, Default)]
pub struct VacuumRights {
    denied: HashSet<String>,
}

impl VacuumRights {
    /// Whether to run VACUUM on `table`; warns once when the role may not. A failed check
    /// lets VACUUM run (it is harmless either way).
    pub async fn allowed(&mut self, lease: &mut DbConn, table: &str) -> bool {
        let ok = match lease.query(CAN_VACUUM, &[&table]).await {
            Ok(rows) => rows.first().and_then(|r| r.try_get(0).ok()).unwrap_or(true),
            Err(_) => true,
        };
        if ok {
            if self.denied.remove(table) {
                info!(table, "may vacuum the table again");
            }
        } else if self.denied.insert(table.to_string()) {
            warn!(
                table,
                "cannot VACUUM this pgq table: the daemon's role owns neither the table nor \
                 the database, and PostgreSQL would skip it silently; skipping it. Make the \
                 daemon's role the owner of the pgq tables (or of the database), or on \
                 PostgreSQL 17 grant it MAINTAIN (README \"Least privilege\")"
            );
        }
        ok
    }
}
