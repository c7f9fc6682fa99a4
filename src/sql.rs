//! The daemon's SQL: every statement it sends, as a named constant (R11), plus the one
//! reviewed place where SQL text is built from data — the function and table names that
//! `pgq.maint_operations()` returns.
//!
//! Queue names are always bound as `$1`. Every statement here works on our plain-SQL schema
//! (`sql/pgq/`) and on the real pgq 3.5 extension alike. Callers: `daemon::discovery`,
//! `daemon::database` (probe), `daemon::ticker`, `daemon::maint`, `daemon::retry`,
//! `daemon::broker` (session settings).

/// Databases the daemon may serve: those that accept connections and are not templates.
/// The second column says whether the database we asked through is itself a template
/// (then the daemon must not keep its connection: `CREATE DATABASE` copies template1 and
/// fails while anyone is connected to it).
pub const LIST_DATABASES: &str = "\
select d.datname::text,
       coalesce((select c.datistemplate from pg_catalog.pg_database c
                  where c.datname = pg_catalog.current_database()), false)
  from pg_catalog.pg_database d
 where d.datallowconn and not d.datistemplate
 order by d.datname";

/// Whether schema `pgq` exists (first half of the probe; `pgq.version()` cannot even be
/// parsed without it).
pub const PROBE_SCHEMA: &str =
    "select exists (select 1 from pg_catalog.pg_namespace where nspname = 'pgq')";

/// Second half of the probe: the installed pgq version (NULL means unusable, as in C pgqd),
/// and whether it has `pgq._ticker_batch` for [`TICK_SET`] (our schema from 1.1).
pub const PROBE_VERSION: &str = "select pgq.version()::text, \
     pg_catalog.to_regprocedure('pgq._ticker_batch(text[])') is not null";

/// Session settings applied on every daemon connection: `$1` statement_timeout, `$2`
/// lock_timeout, both in milliseconds as text (`'0'` disables).
pub const SET_TIMEOUTS: &str = "select pg_catalog.set_config('statement_timeout', $1, false), \
     pg_catalog.set_config('lock_timeout', $2, false)";

/// The due check: one row per queue with what the tick decision of reference §3.1 needs,
/// read with plain SQL so it costs one statement per database per period.
///
/// Columns: queue_name, skip (paused or external ticker), max_count, max_lag and
/// idle_period in seconds, has_tick, lag of the latest tick in seconds, its
/// tick_event_seq, the gap between the latest two ticks in seconds (NULL with one tick),
/// the number of event ids handed out so far (`event_seq`), and for [`SEQ_CHECK`] the
/// queue row's version (`xmin`) and the oid of the sequence read (NULL when not read).
///
/// `event_seq` is read with `pg_sequence_last_value`, which is NULL until the sequence is
/// first used; that NULL becomes 0. Against our schema (which stores ids actually used
/// in `tick_event_seq`, docs/sql-design.md difference 1) this counts a fresh queue's first
/// event; against the real extension (which stores `last_value`, 1 on a fresh queue) the
/// difference only ever comes out 0 or negative where pgq sees 0, so both agree with
/// their own `pgq.ticker()`. A sequence that is missing, is not a sequence, or that we
/// may not read yields NULL: the daemon then treats the queue as due and lets
/// `pgq.ticker(queue)` decide (and report the error) — never a missed tick, and never an
/// error that would hide the other queues.
pub const DUE_CHECK: &str = "\
select q.queue_name::text,
       (q.queue_ticker_paused or q.queue_external_ticker) as skip,
       q.queue_ticker_max_count::int8,
       extract(epoch from q.queue_ticker_max_lag)::float8,
       extract(epoch from q.queue_ticker_idle_period)::float8,
       t.tick_id is not null as has_tick,
       extract(epoch from pg_catalog.now() - t.tick_time)::float8 as lag,
       t.tick_event_seq::int8,
       extract(epoch from t.tick_time - p.tick_time)::float8 as prev_gap,
       case when pg_catalog.has_sequence_privilege(s.seq, 'SELECT,USAGE')
            then coalesce(pg_catalog.pg_sequence_last_value(s.seq), 0) end::int8 as event_seq,
       q.xmin::text,
       case when pg_catalog.has_sequence_privilege(s.seq, 'SELECT,USAGE')
            then s.seq::pg_catalog.oid end
  from pgq.queue q
  left join lateral (
        select tk.tick_id, tk.tick_time, tk.tick_event_seq from pgq.tick tk
         where tk.tick_queue = q.queue_id
         order by tk.tick_queue desc, tk.tick_id desc limit 1) t on true
  left join lateral (
        select tk.tick_time from pgq.tick tk
         where tk.tick_queue = q.queue_id and tk.tick_id < t.tick_id
         order by tk.tick_queue desc, tk.tick_id desc limit 1) p on true
  left join lateral (
        select c.oid::pg_catalog.regclass as seq from pg_catalog.pg_class c
         where c.oid = pg_catalog.to_regclass(q.queue_event_seq) and c.relkind = 'S') s on true
 order by q.queue_id";

/// The cheap half of [`DUE_CHECK`], for a database whose queues' other figures the daemon
/// knows from its own ticks: the queues' names and row versions (`xmin`: a changed
/// setting or a new or dropped queue shows here, as pgq's ticker never updates the row),
/// each as an array in `queue_id` order (as the due check's rows), and the event ids handed out so far by the sequences
/// `$1` (oids from the last due check), in that order. No look into `pgq.tick`, no name
/// lookups: a sixth of the full check's time with a thousand queues. A sequence dropped
/// or no longer readable since makes the statement fail, and the daemon reads everything
/// again.
pub const SEQ_CHECK: &str = "\
select coalesce((select pg_catalog.array_agg(q.queue_name::text order by q.queue_id)
                   from pgq.queue q), '{}'),
       coalesce((select pg_catalog.array_agg(q.xmin::text order by q.queue_id)
                   from pgq.queue q), '{}'),
       array(select coalesce(pg_catalog.pg_sequence_last_value(u.o::pg_catalog.regclass), 0)
               from pg_catalog.unnest($1::oid[]) with ordinality u(o, n)
              order by u.n)";

/// Key of the cluster leader lock (a session advisory lock in the control database):
/// the daemon holding it ticks and maintains; others wait as standbys (issue #8).
/// In `pg_locks`: classid 1885827428 ("pgqd"), objid 0, objsubid 1.
pub const LEADER_KEY: i64 = 0x7067_7164_0000_0000;

/// Key of the per-database fence: the leader holds it as a session lock on its connection
/// to each database, and every tick, retry and maintenance transaction takes it again as a
/// transaction lock before writing — which fails while another daemon's session holds it,
/// so a stale daemon cannot write. In `pg_locks`: classid 1885827428, objid 1, objsubid 1.
pub const FENCE_KEY: i64 = 0x7067_7164_0000_0001;

/// Takes a session advisory lock without waiting (`$1` = key); true when held.
pub const TRY_SESSION_LOCK: &str = "select pg_catalog.pg_try_advisory_lock($1::int8)";

/// Who holds advisory lock `$1` in this database: pid, application_name, client address.
pub const LOCK_HOLDER: &str = "\
select l.pid, coalesce(a.application_name, '')::text,
       coalesce(pg_catalog.host(a.client_addr), 'local')::text
  from pg_catalog.pg_locks l
  left join pg_catalog.pg_stat_activity a on a.pid = l.pid
 where l.locktype = 'advisory' and l.granted and l.objsubid = 1
   and l.database = (select oid from pg_catalog.pg_database
                      where datname = pg_catalog.current_database())
   and ((l.classid::int8 << 32) | l.objid::int8) = $1::int8
 limit 1";

/// The control connection's view of the server: whether it is in recovery (never tick a
/// standby server) and whether the database we are in is a template (then the control
/// connection moves to `postgres`: `CREATE DATABASE` fails while anyone is connected to
/// its template).
pub const CONTROL_PROBE: &str = "\
select pg_catalog.pg_is_in_recovery(),
       coalesce((select datistemplate from pg_catalog.pg_database
                  where datname = pg_catalog.current_database()), false)";

/// The cluster-wide write signal: the current snapshot as `xmin:xmax:xip,…` text. Its
/// xmax moves only when a transaction that wrote something, anywhere in the cluster,
/// ends (issue #7). Cheap: no table is read.
pub const SNAPSHOT: &str = "select pg_catalog.txid_current_snapshot()::text";

/// Databases where a client session (not ours: `$2` = our application_name) changed state
/// since `$1`, with the server's clock for the next call. Run only after the snapshot
/// says someone else wrote. Sessions of other roles show a NULL `state_change` unless we
/// are a member of `pg_read_all_stats`; those are caught by [`DB_WRITE_COUNTERS`] instead.
///
/// A session whose transaction has written and not ended (a `backend_xid`) is left for
/// its next state change: ticking before it commits would leave its events for the tick
/// after, which pgq's ticker, having counted them already, makes only at the next idle
/// tick (seconds to a minute later). The control session looks once more on the poll after
/// a foreign write, for a commit whose state change came just after the look.
pub const ACTIVE_DATABASES: &str = "\
select pg_catalog.statement_timestamp(),
       array(select distinct a.datname::text from pg_catalog.pg_stat_activity a
              where a.state_change >= $1 and a.datname is not null
                and a.backend_xid is null
                and a.pid <> pg_catalog.pg_backend_pid()
                and a.application_name is distinct from $2::text)";

/// Other sessions of this database inside a transaction that has written, by their
/// transaction ids: events they inserted are not visible to a tick made now
/// (`daemon::ticker`, held-back ticks), and a hold waits only for these transactions, not
/// for the ones that begin after it. Without `pg_read_all_stats` other roles' `backend_xid`
/// reads NULL and this lists only our role's.
pub const OPEN_WRITERS: &str = "\
select coalesce(pg_catalog.array_agg(backend_xid::text), '{}')
  from pg_catalog.pg_stat_activity
 where datname = pg_catalog.current_database() and backend_xid is not null
   and pid <> pg_catalog.pg_backend_pid()";

/// Whether sessions of other roles are visible ([`ACTIVE_DATABASES`] sees every client)
/// and `pg_stat_database.sessions` exists (PostgreSQL 14): then [`DB_SESSION_COUNTERS`]
/// replaces [`DB_WRITE_COUNTERS`].
pub const SEES_ALL_SESSIONS: &str = "select pg_catalog.pg_has_role('pg_read_all_stats', 'member')
   and pg_catalog.current_setting('server_version_num')::int >= 140000";

/// Sessions opened and rows written per database so far (counted at the latest when each
/// session ends): with [`ACTIVE_DATABASES`] seeing every live session, what remains to
/// catch is a session that wrote and went away between two looks — a new one (sessions
/// beyond those we opened) or an old one (rows written where we have not written lately).
/// Columns as [`DB_WRITE_COUNTERS`]'s, the third one filled.
pub const DB_SESSION_COUNTERS: &str = "\
select datname::text, (tup_inserted + tup_updated + tup_deleted)::int8, sessions::int8
  from pg_catalog.pg_stat_database where datname is not null";

/// Rows written per database so far (flushed by each backend at most about once a
/// second, and at exit): the slower signal that also sees short-lived sessions. Our own
/// writes move it too, so it is only used when [`SEES_ALL_SESSIONS`] is false.
/// Columns: database, rows written, and NULL (where [`DB_SESSION_COUNTERS`] has sessions;
/// `pg_stat_database.sessions` is PostgreSQL 14+).
pub const DB_WRITE_COUNTERS: &str = "\
select datname::text, (tup_inserted + tup_updated + tup_deleted)::int8, null::int8
  from pg_catalog.pg_stat_database where datname is not null";

/// Tick one queue under the fence, in one transaction: `$1` queue, `$2` [`FENCE_KEY`].
/// Columns: fence taken; the new tick id (NULL when pgq found no tick due, or the fence
/// was refused); the transaction's txid if it wrote (so the activity signal can tell our
/// writes from others'); with a tick made, the gap it ended in seconds (its `tick_time`,
/// the transaction's start, minus the previous tick's: the statement's snapshot does not
/// see the new row; the queue id is looked up first so the index on pgq.tick is read
/// for that queue only — a join let the planner walk the whole index backwards), from
/// which the next idle tick is predicted without reading it back.
/// With `$3` true, a tick made also sends `NOTIFY pgqd_tick` with the
/// queue name as payload, in the same transaction, for consumers that wait on it.
/// `offset 0` keeps the fence before the tick: the subquery is not pulled up.
pub const TICK: &str = "\
select t.ok, t.tick_id,
       case when t.tick_id is not null and $3::bool
            then (select true from pg_catalog.pg_notify('pgqd_tick', $1::text)) end,
       pg_catalog.txid_current_if_assigned()::int8,
       case when t.tick_id is not null then (
            select extract(epoch from pg_catalog.now() - tk.tick_time)::float8
              from pgq.tick tk
             where tk.tick_queue = (select q.queue_id from pgq.queue q
                                     where q.queue_name = $1::text)
             order by tk.tick_queue desc, tk.tick_id desc limit 1) end
  from (select f.ok, case when f.ok then pgq.ticker($1::text) end as tick_id
          from (select pg_catalog.pg_try_advisory_xact_lock($2::int8) as ok offset 0) f
        offset 0) t";

/// [`TICK`] for several queues in one statement and one transaction (`$1` the queue
/// names, `$2` [`FENCE_KEY`], `$3` notify): one row per queue, in order — fence taken,
/// queue, new tick id or NULL, notification sent, the transaction's txid if it wrote so
/// far, the gap the new tick ended (as [`TICK`]'s). Refused by the fence, a single row with `false` and no queue. Any queue's error
/// rolls back all of them: the daemon then ticks them one by one.
pub const TICK_MANY: &str = "\
select f.ok, t.name, t.tick_id,
       case when t.tick_id is not null and $3::bool
            then (select true from pg_catalog.pg_notify('pgqd_tick', t.name)) end,
       pg_catalog.txid_current_if_assigned()::int8,
       case when t.tick_id is not null then (
            select extract(epoch from pg_catalog.now() - tk.tick_time)::float8
              from pgq.tick tk
             where tk.tick_queue = (select q.queue_id from pgq.queue q
                                     where q.queue_name = t.name)
             order by tk.tick_queue desc, tk.tick_id desc limit 1) end
  from (select pg_catalog.pg_try_advisory_xact_lock($2::int8) as ok offset 0) f
  left join lateral (
        select q.name, pgq.ticker(q.name) as tick_id
          from pg_catalog.unnest($1::text[]) with ordinality q(name, n)
         where f.ok
        offset 0) t on true";

/// [`TICK_MANY`] through `pgq._ticker_batch` (our schema from 1.1): the same decisions,
/// columns and fence, with the queues' figures read in one statement and their ticks
/// inserted in one, where `pgq.ticker(queue)` runs five statements per queue — under half
/// the server time per queue, so a thousand queues due at one instant (idle periods
/// line up after one `pgq.ticker()` transaction) are ticked within tens of milliseconds.
pub const TICK_SET: &str = "\
select f.ok, t.r_queue_name, t.r_tick_id,
       case when t.r_tick_id is not null and $3::bool
            then (select true from pg_catalog.pg_notify('pgqd_tick', t.r_queue_name)) end,
       pg_catalog.txid_current_if_assigned()::int8,
       t.r_gap
  from (select pg_catalog.pg_try_advisory_xact_lock($2::int8) as ok offset 0) f
  left join lateral (
        select b.r_queue_name, b.r_tick_id, b.r_gap
          from pgq._ticker_batch($1::text[]) b
         where f.ok
        offset 0) t on true";

/// Opens every queue's tick sequence in this session (the count is not used). The first
/// tick of a queue in a session otherwise builds its sequence's cache entry inside
/// `pgq.ticker`, at a third more server time per queue, and a thousand queues due at
/// one instant wait for that; run once per session, after the first due check, long
/// before the ticks it speeds up in a database whose idle periods line up. Needs no
/// privilege on the sequences.
pub const PRIME_TICK_SEQS: &str = "\
select pg_catalog.count(pg_catalog.pg_relation_size(c.oid))
  from pgq.queue q
  join pg_catalog.pg_class c on c.oid = pg_catalog.to_regclass(q.queue_tick_seq)";

/// `pgq._ticker_batch` called for no queue: compiles it and plans its statements in this
/// session, as [`PRIME_TICK_SEQS`] does for the sequences (it writes nothing and takes no
/// transaction id).
pub const PRIME_TICK_SET: &str = "select pg_catalog.count(*) from pgq._ticker_batch('{}'::text[])";

/// The channel of the per-tick notification (payload: queue name).
pub const TICK_CHANNEL: &str = "pgqd_tick";

/// What maintenance to run now, in order (reference §4.5).
pub const MAINT_OPERATIONS: &str =
    "select func_name::text, func_arg::text from pgq.maint_operations()";

/// Whether [`MAINT_OPERATIONS`] may list anything: false only when no rotation is due or
/// half done, no queue has extra maintenance, autovacuum is on (pgq then lists no VACUUM)
/// and no pgq_node or londiste schema is here (their operations are pgq's to list). A plain
/// statement, where `pgq.maint_operations()` compiles two PL/pgSQL functions in every new
/// session — most of a visit's server time in a database served without a held
/// connection. The column `queue_extra_maint` is read through `to_jsonb` because older
/// schemas lack it.
///
/// A rotation that is due but that `pgq.maint_rotate_tables_step1` would skip, because the
/// slowest consumer's last tick is not past the previous rotation's step 2, counts as not
/// due: pgq lists it every round for as long as that consumer stays behind (a stopped
/// consumer: for ever), and each call locks the queue row and takes a txid for nothing.
/// Step 1's other outcomes stay its own: no consumer, a missing tick (its error), txids
/// behind the last rotation (its error; judged here without taking a txid: the snapshot's
/// xmax is at most the txid step 1 would get).
pub const MAINT_NEEDED: &str = "\
select exists (select 1 from pgq.queue q
                where q.queue_rotation_period is not null
                  and (q.queue_switch_step2 is null
                       or (q.queue_switch_time + q.queue_rotation_period < pg_catalog.now()
                           and not coalesce(
                               (select pg_catalog.txid_snapshot_xmin(t.tick_snapshot)
                                           <= q.queue_switch_step2
                                       and pg_catalog.txid_snapshot_xmax(
                                               pg_catalog.txid_current_snapshot())
                                           >= q.queue_switch_step1
                                  from pgq.tick t
                                 where t.tick_queue = q.queue_id
                                   and t.tick_id = (select pg_catalog.min(s.sub_last_tick)
                                                      from pgq.subscription s
                                                     where s.sub_queue = q.queue_id)),
                               false))))
    or exists (select 1 from pgq.queue q
                where pg_catalog.jsonb_typeof(pg_catalog.to_jsonb(q) -> 'queue_extra_maint')
                      is distinct from 'null'
                  and pg_catalog.to_jsonb(q) ? 'queue_extra_maint')
    or pg_catalog.current_setting('autovacuum') <> 'on'
    or exists (select 1 from pg_catalog.pg_namespace
                where nspname in ('pgq_node', 'londiste'))";

/// Whether table `$1` (a name from `pgq.maint_operations()`) may have dead rows to vacuum:
/// true unless the statistics say none (an unknown table reads true and VACUUM reports it;
/// with `track_counts` off there are no statistics, and it is always true).
pub const DEAD_ROWS: &str = "\
select not pg_catalog.current_setting('track_counts')::bool
    or coalesce((select s.n_dead_tup > 0 from pg_catalog.pg_stat_all_tables s
                  where s.relid = pg_catalog.to_regclass($1::text)), true)";

/// Move due retry events back into their queue; returns how many moved (at most 10).
///
/// `pgq.maint_retry_events()` is only called when some retry event is due (or the role
/// cannot read the retry queue): most databases have none, and in a fresh session the
/// PL/pgSQL call costs milliseconds of compilation where the plain check costs a fraction.
pub const RETRY: &str = "\
select case when pg_catalog.pg_try_advisory_xact_lock($1::int8)
            then case when not pg_catalog.has_table_privilege('pgq.retry_queue', 'SELECT')
                        or exists (select 1 from pgq.retry_queue r
                                    where r.ev_retry_after <= pg_catalog.now())
                      then pgq.maint_retry_events() else 0 end
       end::int8,
       pg_catalog.txid_current_if_assigned()::int8";

/// A name from `pgq.maint_operations()` that cannot be a safe `schema.name` identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unusable name {0:?} from pgq.maint_operations()")]
pub struct BadName(pub String);

/// Longest identifier PostgreSQL keeps (NAMEDATALEN - 1).
const MAX_IDENT: usize = 63;

/// Quotes one identifier part, always in double quotes (so reserved words and upper case
/// stay exact, as C pgqd's "quote unless plain lower-case" rule also ends up doing).
fn quote_part(part: &str, whole: &str) -> Result<String, BadName> {
    if part.is_empty() || part.len() > MAX_IDENT || part.chars().any(|c| c.is_control()) {
        return Err(BadName(whole.to_string()));
    }
    Ok(format!("\"{}\"", part.replace('"', "\"\"")))
}

/// Quotes `schema.name` as C pgqd does: split at the first dot, no dot means schema
/// `public`, each part quoted. Rejects empty parts, over-long parts and control characters.
pub fn quote_qualified(name: &str) -> Result<String, BadName> {
    let (schema, obj) = name.split_once('.').unwrap_or(("public", name));
    Ok(format!(
        "{}.{}",
        quote_part(schema, name)?,
        quote_part(obj, name)?
    ))
}

/// A maintenance call runs only under the per-database fence ([`FENCE_KEY`], as a
/// transaction lock); refused, it reads as NULL (0: nothing more to do). The second column
/// is the txid when the call wrote (see [`TICK`]).
fn fenced(call: &str) -> String {
    format!(
        "select case when pg_catalog.pg_try_advisory_xact_lock({FENCE_KEY}) then ({call})::text end, \
         pg_catalog.txid_current_if_assigned()::int8"
    )
}

/// What to do for one row of `pgq.maint_operations()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MaintCall {
    /// Run this statement outside any transaction, on a VACUUM lease.
    Vacuum(String),
    /// Run this `select` (with `$1` = the argument when `with_arg`), repeating while its
    /// first column reads as non-zero.
    Function {
        /// The statement text.
        sql: String,
        /// Whether `$1` must be bound to the operation's argument.
        with_arg: bool,
    },
}

/// Builds the statement for one maintenance operation — the only place where SQL text is
/// made from data (R11). `vacuum`/`vacuum analyze` (any case) take a table name; anything
/// else is a function called with the argument as `$1` (or no argument when it is NULL),
/// its result cast to text so the daemon can read any return type like C's `atoi`.
pub fn maint_call(func_name: &str, func_arg: Option<&str>) -> Result<MaintCall, BadName> {
    let verb = func_name.trim().to_ascii_lowercase();
    if verb == "vacuum" || verb == "vacuum analyze" {
        let table = func_arg.ok_or_else(|| BadName(func_name.to_string()))?;
        let prefix = if verb == "vacuum" {
            "vacuum "
        } else {
            "vacuum analyze "
        };
        return Ok(MaintCall::Vacuum(format!(
            "{prefix}{}",
            quote_qualified(table)?
        )));
    }
    let f = quote_qualified(func_name)?;
    Ok(match func_arg {
        Some(_) => MaintCall::Function {
            sql: fenced(&format!("{f}($1)")),
            with_arg: true,
        },
        None => MaintCall::Function {
            sql: fenced(&format!("{f}()")),
            with_arg: false,
        },
    })
}

/// Reads a result the way C's `atoi` does: optional blanks and sign, then digits; anything
/// else (NULL, empty, a composite such as `(100,"note")`) is 0.
pub fn atoi(s: Option<&str>) -> i64 {
    let Some(s) = s else { return 0 };
    let s = s.trim_start();
    let (neg, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let mut v: i64 = 0;
    for b in digits.bytes().take_while(u8::is_ascii_digit) {
        v = v.saturating_mul(10).saturating_add(i64::from(b - b'0'));
    }
    if neg { -v } else { v }
}

/// The metrics collector's queue figures (issue #6), once per `stats_period`, never per
/// tick, and only while the database changed (collect.rs): per queue, by name, the age of
/// the latest tick, the events per second over the latest ticks (the newest and the
/// oldest of the last 21 tick ids, as `pgq.get_queue_info` computes `ev_per_sec`), the
/// event ids handed out since the latest tick, the latest tick id, the age and period of
/// rotation in seconds, and the events waiting in the retry queue.
///
/// Plain SQL on pgq's tables rather than `pgq.get_queue_info()`: the PL/pgSQL call cost a
/// hundred idle databases about twice this statement's server time per collection. The
/// tables are pgq 3.5's, so the real extension answers it too. Event ids are read as
/// [`DUE_CHECK`] reads them (NULL where the sequence may not be read); on the real
/// extension, whose ticks store the sequence's `last_value`, a fresh queue would come out
/// at -1, hence the floor at 0.
pub const COLLECT_QUEUES: &str = "\
select q.queue_name::text,
       extract(epoch from pg_catalog.now() - t.tick_time)::float8,
       case when b.tick_time < t.tick_time
            then ((t.tick_event_seq - b.tick_event_seq)
                  / extract(epoch from t.tick_time - b.tick_time))::float8 end,
       greatest(
           case when pg_catalog.has_sequence_privilege(s.seq, 'SELECT,USAGE')
                then coalesce(pg_catalog.pg_sequence_last_value(s.seq), 0) end
           - t.tick_event_seq, 0)::int8,
       t.tick_id::int8,
       extract(epoch from pg_catalog.now() - q.queue_switch_time)::float8,
       extract(epoch from q.queue_rotation_period)::float8,
       (select pg_catalog.count(*) from pgq.retry_queue r where r.ev_queue = q.queue_id)::int8
  from pgq.queue q
  left join lateral (
        select tk.tick_id, tk.tick_time, tk.tick_event_seq from pgq.tick tk
         where tk.tick_queue = q.queue_id
         order by tk.tick_queue desc, tk.tick_id desc limit 1) t on true
  left join lateral (
        select tk.tick_time, tk.tick_event_seq from pgq.tick tk
         where tk.tick_queue = q.queue_id and tk.tick_id >= t.tick_id - 20
         order by tk.tick_queue, tk.tick_id limit 1) b on true
  left join lateral (
        select c.oid::pg_catalog.regclass as seq from pg_catalog.pg_class c
         where c.oid = pg_catalog.to_regclass(q.queue_event_seq) and c.relkind = 'S') s on true
 order by q.queue_name";

/// The metrics collector's consumer figures, as `pgq.get_consumer_info()` gives them (and
/// plain SQL for the reason [`COLLECT_QUEUES`] gives): queue, consumer, lag and last seen
/// in seconds, position, events between the position and the queue's latest tick — and
/// whether the consumer's position predates the last rotation's step 2. Such a consumer
/// holds up the queue's rotation once the rotation is due (reference §4.1 points 1 and
/// 3: `maint_rotate_tables_step1` then skips the queue); the collector adds the "due"
/// half from the queue's figures, so it stays right between two reads.
pub const COLLECT_CONSUMERS: &str = "\
select q.queue_name::text, co.co_name::text,
       extract(epoch from pg_catalog.now() - lt.tick_time)::float8,
       extract(epoch from pg_catalog.now() - s.sub_active)::float8,
       s.sub_last_tick::int8,
       (t.tick_event_seq - lt.tick_event_seq)::int8,
       coalesce(pg_catalog.txid_snapshot_xmin(lt.tick_snapshot) <= q.queue_switch_step2,
                false)
  from pgq.subscription s
  join pgq.queue q on q.queue_id = s.sub_queue
  join pgq.consumer co on co.co_id = s.sub_consumer
  left join pgq.tick lt on lt.tick_queue = s.sub_queue and lt.tick_id = s.sub_last_tick
  left join lateral (
        select tk.tick_event_seq from pgq.tick tk
         where tk.tick_queue = s.sub_queue
         order by tk.tick_queue desc, tk.tick_id desc limit 1) t on true
 order by q.queue_name, co.co_name";

/// The opt-in policy `consumer_unregister_after`: `$1` queue, `$2` consumer.
pub const UNREGISTER_CONSUMER: &str = "select pgq.unregister_consumer($1, $2)::int8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qualified_names_are_quoted_and_default_to_public() {
        assert_eq!(
            quote_qualified("pgq.maint_rotate_tables_step1").unwrap(),
            "\"pgq\".\"maint_rotate_tables_step1\""
        );
        assert_eq!(quote_qualified("baz").unwrap(), "\"public\".\"baz\"");
        assert_eq!(
            quote_qualified("Foo.bar baz").unwrap(),
            "\"Foo\".\"bar baz\""
        );
        // Only the first dot splits; the rest is part of the name.
        assert_eq!(quote_qualified("a.b.c").unwrap(), "\"a\".\"b.c\"");
        assert_eq!(
            quote_qualified("x.a\"b").unwrap(),
            "\"x\".\"a\"\"b\"",
            "embedded quotes are doubled"
        );
    }

    #[test]
    fn unsafe_names_are_rejected() {
        for bad in ["", ".", "pgq.", ".f", "a.b\nc", &"x".repeat(64)] {
            assert!(quote_qualified(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn injection_stays_inside_the_identifier() {
        let MaintCall::Function { sql, .. } =
            maint_call("public.f\"(); drop table x; --", None).unwrap()
        else {
            panic!("not a function call")
        };
        assert_eq!(sql, fenced("\"public\".\"f\"\"(); drop table x; --\"()"));
    }

    #[test]
    fn vacuum_ops_become_vacuum_statements() {
        assert_eq!(
            maint_call("vacuum", Some("pgq.tick")).unwrap(),
            MaintCall::Vacuum("vacuum \"pgq\".\"tick\"".into())
        );
        assert_eq!(
            maint_call("VACUUM ANALYZE", Some("t")).unwrap(),
            MaintCall::Vacuum("vacuum analyze \"public\".\"t\"".into())
        );
        assert!(maint_call("vacuum", None).is_err());
    }

    #[test]
    fn function_ops_bind_their_argument() {
        assert_eq!(
            maint_call("pgq.maint_rotate_tables_step1", Some("q")).unwrap(),
            MaintCall::Function {
                sql: fenced("\"pgq\".\"maint_rotate_tables_step1\"($1)"),
                with_arg: true
            }
        );
        assert_eq!(
            maint_call("pgq.maint_rotate_tables_step2", None).unwrap(),
            MaintCall::Function {
                sql: fenced("\"pgq\".\"maint_rotate_tables_step2\"()"),
                with_arg: false
            }
        );
    }

    #[test]
    fn atoi_reads_like_c() {
        assert_eq!(atoi(Some("1")), 1);
        assert_eq!(atoi(Some("  42abc")), 42);
        assert_eq!(atoi(Some("-3")), -3);
        assert_eq!(atoi(Some("(100,\"Sequences updated\")")), 0);
        assert_eq!(atoi(Some("")), 0);
        assert_eq!(atoi(None), 0);
        assert_eq!(atoi(Some("t")), 0);
    }
}
