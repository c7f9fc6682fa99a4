//! Connecting like libpq does, on top of tokio-postgres (which is not libpq).
//!
//! A connection string (key=value or `postgresql://` URL) is parsed here with libpq's
//! quoting rules ([`parse_connstr`]), completed from the `PG*` environment variables and
//! libpq's defaults ([`resolve`]): default unix socket directory `/var/run/postgresql`,
//! port 5432, the OS user as role and the role as database, a password from
//! `PGPASSWORD` or the password file ([`pgpass`]), `sslmode=prefer` ([`tls`]). Every
//! connection gets an `application_name` and TCP keepalives; daemon connections also get
//! `statement_timeout` and `lock_timeout` through `options`.
//!
//! Every part of pgqd that opens a connection goes through here: `pgqd install` via
//! [`config_from`] + [`connect`], the daemon via [`connect_db`] (or [`daemon_target`] and
//! [`Target::connect`]). Passwords never appear in errors, logs or `Debug` output.

pub mod pgpass;
pub mod tls;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use tokio_postgres::Client;
use tokio_postgres::config::Host;
use tokio_postgres::tls::NoTls;

pub use tls::{SslMode, TlsSettings};

/// Where Debian's libpq looks for the server socket when no host is given.
pub const DEFAULT_SOCKET_DIR: &str = "/var/run/postgresql";

/// Errors from building a connection config or connecting. None contains a password.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The connection string or a `PG*` variable is invalid.
    #[error("invalid connection string: {0}")]
    BadConnstr(String),
    /// Certificates or keys cannot be loaded.
    #[error("TLS: {0}")]
    Tls(String),
    /// The server refused or could not be reached.
    // describe(): tokio-postgres's own Display of a server error is just "db error".
    #[error("cannot connect to {target}: {}", crate::pgerr::describe(.source))]
    Connect {
        /// Host and database, never the password.
        target: String,
        /// The cause.
        #[source]
        source: tokio_postgres::Error,
    },
}

/// The libpq keywords pgqd understands. Others are rejected, as libpq rejects unknown
/// keywords, instead of being silently ignored.
const KNOWN: &[&str] = &[
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "passfile",
    "connect_timeout",
    "client_encoding",
    "options",
    "application_name",
    "fallback_application_name",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "tcp_user_timeout",
    "sslmode",
    "sslnegotiation",
    "sslcert",
    "sslkey",
    "sslrootcert",
    "sslsni",
    "gssencmode",
    "target_session_attrs",
    "load_balance_hosts",
    "channel_binding",
];

/// libpq environment variables and the keyword each one supplies.
const ENV: &[(&str, &str)] = &[
    ("PGHOST", "host"),
    ("PGHOSTADDR", "hostaddr"),
    ("PGPORT", "port"),
    ("PGDATABASE", "dbname"),
    ("PGUSER", "user"),
    ("PGPASSWORD", "password"),
    ("PGPASSFILE", "passfile"),
    ("PGOPTIONS", "options"),
    ("PGAPPNAME", "application_name"),
    ("PGSSLMODE", "sslmode"),
    ("PGSSLNEGOTIATION", "sslnegotiation"),
    ("PGSSLCERT", "sslcert"),
    ("PGSSLKEY", "sslkey"),
    ("PGSSLROOTCERT", "sslrootcert"),
    ("PGSSLSNI", "sslsni"),
    ("PGCONNECT_TIMEOUT", "connect_timeout"),
    ("PGCLIENTENCODING", "client_encoding"),
    ("PGGSSENCMODE", "gssencmode"),
    ("PGTARGETSESSIONATTRS", "target_session_attrs"),
    ("PGLOADBALANCEHOSTS", "load_balance_hosts"),
    ("PGCHANNELBINDING", "channel_binding"),
];

/// Connection parameters as written, in order; a later value for a key wins (libpq).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Params(Vec<(String, String)>);

impl fmt::Debug for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

impl Params {
    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Sets `key` (replacing earlier values).
    pub fn set(&mut self, key: &str, value: &str) {
        self.0.retain(|(k, _)| k != key);
        self.0.push((key.to_string(), value.to_string()));
    }

    /// key=value form with the password replaced by `********`.
    pub fn masked(&self) -> String {
        let mut seen = std::collections::HashSet::new();
        let mut parts: Vec<String> = Vec::new();
        for (k, _) in self.0.iter().rev() {
            if !seen.insert(k.as_str()) {
                continue;
            }
            let v = if k == "password" {
                "********"
            } else {
                self.get(k).unwrap_or("")
            };
            parts.push(format!("{k}={}", quote(v)));
        }
        parts.reverse();
        parts.join(" ")
    }
}

/// Quotes a value for a key=value connection string.
pub fn quote(v: &str) -> String {
    if !v.is_empty() && !v.contains(|c: char| c.is_whitespace() || c == '\'' || c == '\\') {
        return v.to_string();
    }
    let mut s = String::from("'");
    for c in v.chars() {
        if c == '\'' || c == '\\' {
            s.push('\\');
        }
        s.push(c);
    }
    s.push('\'');
    s
}

/// Parses a libpq connection string: `key=value` pairs (values single-quoted with `\`
/// escapes when they hold spaces) or a `postgres://` / `postgresql://` URL. Errors never
/// repeat the input.
pub fn parse_connstr(s: &str) -> Result<Params, Error> {
    let t = s.trim();
    let params = if t.starts_with("postgres://") || t.starts_with("postgresql://") {
        parse_url(t)?
    } else {
        parse_kv(t)?
    };
    for (k, _) in &params.0 {
        if !KNOWN.contains(&k.as_str()) {
            return Err(Error::BadConnstr(format!(
                "invalid connection option \"{k}\""
            )));
        }
    }
    Ok(params)
}

fn parse_kv(s: &str) -> Result<Params, Error> {
    let mut out = Params::default();
    let mut it = s.chars().peekable();
    loop {
        while it.peek().is_some_and(|c| c.is_whitespace()) {
            it.next();
        }
        if it.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(&c) = it.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            it.next();
        }
        while it.peek().is_some_and(|c| c.is_whitespace()) {
            it.next();
        }
        if it.next() != Some('=') {
            return Err(Error::BadConnstr(format!("missing \"=\" after \"{key}\"")));
        }
        while it.peek().is_some_and(|c| c.is_whitespace()) {
            it.next();
        }
        let mut val = String::new();
        if it.peek() == Some(&'\'') {
            it.next();
            let mut closed = false;
            while let Some(c) = it.next() {
                match c {
                    '\\' => {
                        if let Some(n) = it.next() {
                            val.push(n);
                        }
                    }
                    '\'' => {
                        closed = true;
                        break;
                    }
                    c => val.push(c),
                }
            }
            if !closed {
                return Err(Error::BadConnstr(format!(
                    "unterminated quoted value for \"{key}\""
                )));
            }
        } else {
            while let Some(&c) = it.peek() {
                if c.is_whitespace() {
                    break;
                }
                it.next();
                if c == '\\' {
                    if let Some(n) = it.next() {
                        val.push(n);
                    }
                } else {
                    val.push(c);
                }
            }
        }
        out.0.push((key, val));
    }
    Ok(out)
}

fn percent_decode(s: &str) -> Result<String, Error> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| Error::BadConnstr("invalid percent-encoding in URL".into()))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| Error::BadConnstr("URL is not valid UTF-8".into()))
}

/// `postgresql://[user[:password]@][host[:port][,host[:port]...]][/dbname][?key=value&...]`
fn parse_url(s: &str) -> Result<Params, Error> {
    let mut out = Params::default();
    let rest = s.split_once("://").map(|x| x.1).unwrap_or("");
    let (main, query) = match rest.split_once('?') {
        Some((m, q)) => (m, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = match main.find('/') {
        Some(i) => (&main[..i], Some(&main[i + 1..])),
        None => (main, None),
    };
    let hostlist = match authority.rfind('@') {
        Some(i) => {
            let userinfo = &authority[..i];
            match userinfo.split_once(':') {
                Some((u, p)) => {
                    out.0.push(("user".into(), percent_decode(u)?));
                    out.0.push(("password".into(), percent_decode(p)?));
                }
                None if !userinfo.is_empty() => {
                    out.0.push(("user".into(), percent_decode(userinfo)?))
                }
                None => {}
            }
            &authority[i + 1..]
        }
        None => authority,
    };
    if !hostlist.is_empty() {
        let mut hosts = Vec::new();
        let mut ports = Vec::new();
        for item in hostlist.split(',') {
            let (h, p) = if let Some(r) = item.strip_prefix('[') {
                let end = r
                    .find(']')
                    .ok_or_else(|| Error::BadConnstr("unterminated [ in URL host".into()))?;
                (&r[..end], r[end + 1..].strip_prefix(':').unwrap_or(""))
            } else {
                match item.rsplit_once(':') {
                    Some((h, p)) => (h, p),
                    None => (item, ""),
                }
            };
            hosts.push(percent_decode(h)?);
            ports.push(p.to_string());
        }
        if hosts.iter().any(|h| !h.is_empty()) {
            out.0.push(("host".into(), hosts.join(",")));
        }
        if ports.iter().any(|p| !p.is_empty()) {
            out.0.push(("port".into(), ports.join(",")));
        }
    }
    if let Some(db) = path.filter(|p| !p.is_empty()) {
        out.0.push(("dbname".into(), percent_decode(db)?));
    }
    if let Some(q) = query {
        for pair in q.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| Error::BadConnstr("URL parameter without \"=\"".into()))?;
            let k = percent_decode(k)?;
            // libpq accepts ssl=true as sslmode=require in URLs.
            if k == "ssl" && v == "true" {
                out.0.push(("sslmode".into(), "require".into()));
                continue;
            }
            out.0.push((k, percent_decode(v)?));
        }
    }
    Ok(out)
}

/// `base_connstr` for logs: any password replaced by `********`; a string that does not
/// parse is not shown at all.
pub fn mask_connstr(s: &str) -> String {
    match parse_connstr(s) {
        Ok(p) => p.masked(),
        Err(_) => "<invalid connection string>".to_string(),
    }
}

/// Server-side probing of daemon sessions: idle 10 s + 3 × 5 s of silence, or 30 s of
/// unacknowledged data, and the server drops the session (and its advisory locks).
pub const SERVER_KEEPALIVES: [(&str, &str); 4] = [
    ("tcp_keepalives_idle", "10"),
    ("tcp_keepalives_interval", "5"),
    ("tcp_keepalives_count", "3"),
    ("tcp_user_timeout", "30000"),
];

/// What a connection needs besides the connection string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Database name overriding the connection string and PGDATABASE.
    pub dbname: Option<String>,
    /// application_name when neither the connection string nor PGAPPNAME sets one.
    pub application_name: String,
    /// statement_timeout for the session (None: the server's setting).
    pub statement_timeout: Option<Duration>,
    /// lock_timeout for the session (None: the server's setting).
    pub lock_timeout: Option<Duration>,
    /// Ask the server to probe this session too (`tcp_keepalives_*`, `tcp_user_timeout`),
    /// so a daemon cut off by a partition loses its sessions — and the advisory locks they
    /// hold — within a bound (issue #8). Daemon connections only.
    pub server_keepalives: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            dbname: None,
            application_name: "pgqd".into(),
            statement_timeout: None,
            lock_timeout: None,
            server_keepalives: false,
        }
    }
}

/// Where a connection's password came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSource {
    /// The connection string's `password`.
    Connstr,
    /// `PGPASSWORD`.
    Env,
    /// A password file.
    File(PathBuf),
}

/// A fully resolved connection target: the tokio-postgres config plus TLS settings.
/// `Debug` output never shows the password.
#[derive(Clone)]
pub struct Target {
    /// The tokio-postgres config (host, port, user, dbname, password, options, …).
    pub pg: tokio_postgres::Config,
    /// TLS settings with libpq's meanings.
    pub tls: TlsSettings,
    /// Where the password came from (for diagnostics; never the password itself).
    pub password_source: Option<PasswordSource>,
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target")
            .field("target", &describe(self))
            .field("tls", &self.tls)
            .field("password_source", &self.password_source)
            .finish()
    }
}

fn env_var(k: &str) -> Option<String> {
    std::env::var(k).ok().filter(|v| !v.is_empty())
}

/// The name of the OS user running pgqd: libpq's default role name.
pub fn os_user() -> String {
    nix::unistd::User::from_uid(nix::unistd::geteuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| "postgres".to_string())
}

/// Resolves a connection string as libpq would: connstr, then `PG*` variables, then
/// defaults; then the password file; then pgqd's own settings.
pub fn resolve(connstr: &str, settings: &Settings) -> Result<Target, Error> {
    resolve_with(connstr, settings, &env_var)
}

/// [`resolve`] with the environment supplied by the caller (tests pass a map, so they
/// need not change the process environment, which parallel tests share).
pub fn resolve_with(
    connstr: &str,
    settings: &Settings,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Target, Error> {
    let mut p = parse_connstr(connstr)?;
    if let Some(db) = &settings.dbname {
        p.set("dbname", db);
    }
    // The connstr's application_name wins, then PGAPPNAME, then fallback_application_name.
    let fallback_app = p
        .get("fallback_application_name")
        .map(str::to_string)
        .unwrap_or_else(|| settings.application_name.clone());
    let mut password_source = p.get("password").map(|_| PasswordSource::Connstr);
    for (var, key) in ENV {
        if p.get(key).is_none()
            && let Some(v) = env(var).filter(|v| !v.is_empty())
        {
            if *key == "password" {
                password_source = Some(PasswordSource::Env);
            }
            p.set(key, &v);
        }
    }
    if p.get("host").is_none() && p.get("hostaddr").is_none() {
        p.set("host", DEFAULT_SOCKET_DIR);
    }
    if p.get("port").is_none() {
        p.set("port", "5432");
    }
    if p.get("user").is_none() {
        p.set("user", &os_user());
    }
    if p.get("dbname").is_none() {
        let u = p.get("user").unwrap_or("").to_string();
        p.set("dbname", &u);
    }
    if p.get("application_name").is_none() {
        p.set("application_name", &fallback_app);
    }
    if let Some(enc) = p.get("client_encoding")
        && !matches!(enc.to_ascii_uppercase().as_str(), "UTF8" | "UTF-8" | "AUTO")
    {
        return Err(Error::BadConnstr(format!(
            "client_encoding {enc:?} is not supported (pgqd always uses UTF8)"
        )));
    }
    if let Some(g) = p.get("gssencmode")
        && g == "require"
    {
        return Err(Error::BadConnstr(
            "gssencmode=require is not supported (no GSSAPI)".into(),
        ));
    }
    if p.get("password").is_none() {
        let file = match p.get("passfile") {
            Some(f) => Some(crate::config::expand_tilde(f).map_err(Error::BadConnstr)?),
            None => crate::config::expand_tilde("~/.pgpass").ok(),
        };
        if let Some(file) = file {
            let host = p
                .get("host")
                .or(p.get("hostaddr"))
                .unwrap_or("")
                .split(',')
                .next()
                .unwrap_or("")
                .to_string();
            let port = p
                .get("port")
                .unwrap_or("5432")
                .split(',')
                .next()
                .unwrap_or("")
                .to_string();
            let port = if port.is_empty() {
                "5432".to_string()
            } else {
                port
            };
            let want = pgpass::Lookup {
                host: pgpass::match_host(&host),
                port: &port,
                dbname: p.get("dbname").unwrap_or(""),
                user: p.get("user").unwrap_or(""),
            };
            if let Some(pw) = pgpass::find_password(&file, &want) {
                password_source = Some(PasswordSource::File(file.clone()));
                p.set("password", &pw);
            }
        }
    }
    // Session settings of pgqd, after the user's own options so they take effect.
    let mut options = p.get("options").unwrap_or("").to_string();
    let ms = |d: Duration| d.as_millis().min(i32::MAX as u128);
    if let Some(d) = settings.statement_timeout {
        options.push_str(&format!(" -c statement_timeout={}", ms(d)));
    }
    if let Some(d) = settings.lock_timeout {
        options.push_str(&format!(" -c lock_timeout={}", ms(d)));
    }
    if settings.server_keepalives {
        // The user's own `-c` options come first in `options`; the server applies the last
        // setting of a name, so ours would win: skip any the user set.
        for (k, v) in SERVER_KEEPALIVES {
            if !options.contains(k) {
                options.push_str(&format!(" -c {k}={v}"));
            }
        }
    }
    if !options.trim().is_empty() {
        p.set("options", options.trim());
    }
    // TCP keepalives and a user timeout on every connection, far tighter than the OS's
    // 2 hours: a dead server or a partition is noticed within KEEPALIVE_BOUND; the connection
    // string may override each (README, "High availability").
    for (k, v) in [
        ("keepalives", "1"),
        ("keepalives_idle", "10"),
        ("keepalives_interval", "5"),
        ("keepalives_count", "3"),
        ("tcp_user_timeout", "30000"),
    ] {
        if p.get(k).is_none() {
            p.set(k, v);
        }
    }
    let tls = TlsSettings {
        mode: p.get("sslmode").unwrap_or("prefer").parse()?,
        rootcert: p.get("sslrootcert").map(str::to_string),
        cert: p
            .get("sslcert")
            .map(|c| crate::config::expand_tilde(c).map_err(Error::BadConnstr))
            .transpose()?,
        key: p
            .get("sslkey")
            .map(|c| crate::config::expand_tilde(c).map_err(Error::BadConnstr))
            .transpose()?,
    };
    let pg = to_pg(&p, &tls)?;
    Ok(Target {
        pg,
        tls,
        password_source,
    })
}

/// Builds the tokio-postgres config from resolved parameters, through tokio-postgres's
/// own key=value parser for the keys it knows (host lists, hostaddr, ports, …).
fn to_pg(p: &Params, tls: &TlsSettings) -> Result<tokio_postgres::Config, Error> {
    let mut kv = Vec::new();
    for key in [
        "host",
        "hostaddr",
        "port",
        "dbname",
        "user",
        "password",
        "options",
        "application_name",
        "connect_timeout",
        "tcp_user_timeout",
        "keepalives",
        "keepalives_idle",
        "keepalives_interval",
        "sslnegotiation",
        "target_session_attrs",
        "load_balance_hosts",
        "channel_binding",
    ] {
        if let Some(v) = p.get(key) {
            kv.push(format!("{key}={}", quote(v)));
        }
    }
    if let Some(v) = p.get("keepalives_count") {
        kv.push(format!("keepalives_retries={}", quote(v)));
    }
    let mut cfg = tokio_postgres::Config::from_str(&kv.join(" ")).map_err(|e| {
        // tokio-postgres names the option (in the error's source), never its value.
        match std::error::Error::source(&e) {
            Some(cause) => Error::BadConnstr(cause.to_string()),
            None => Error::BadConnstr(e.to_string()),
        }
    })?;
    cfg.ssl_mode(tls.mode.to_pg());
    Ok(cfg)
}

/// Builds a target from `connstr` (may be empty) for a one-off client such as
/// `pgqd install`: libpq's rules, `application_name` pgqd, no session timeouts.
pub fn config_from(connstr: &str, dbname: Option<&str>) -> Result<Target, Error> {
    resolve(
        connstr,
        &Settings {
            dbname: dbname.map(str::to_string),
            ..Settings::default()
        },
    )
}

/// The target of the daemon's connection to `dbname`: `base_connstr` with the dbname
/// overridden, and the config's application_name, statement_timeout and lock_timeout.
pub fn daemon_target(cfg: &crate::config::Config, dbname: &str) -> Result<Target, Error> {
    let nz = |d: Duration| Some(d);
    resolve(
        &cfg.base_connstr,
        &Settings {
            dbname: Some(dbname.to_string()),
            application_name: cfg.application_name.clone(),
            statement_timeout: nz(cfg.statement_timeout),
            lock_timeout: nz(cfg.lock_timeout),
            server_keepalives: true,
        },
    )
}

/// Connects the daemon to `dbname` (see [`daemon_target`]).
pub async fn connect_db(cfg: &crate::config::Config, dbname: &str) -> Result<Client, Error> {
    daemon_target(cfg, dbname)?.connect().await
}

/// A short description of where a target points, safe for logs (no password).
pub fn describe(t: &Target) -> String {
    let cfg = &t.pg;
    let host = match cfg.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(p)) => p.display().to_string(),
        None => cfg
            .get_hostaddrs()
            .first()
            .map(|a| a.to_string())
            .unwrap_or_else(|| "?".to_string()),
    };
    let port = cfg.get_ports().first().copied().unwrap_or(5432);
    format!(
        "database {:?} on {host}:{port} as {:?}",
        cfg.get_dbname().unwrap_or(""),
        cfg.get_user().unwrap_or("")
    )
}

impl Target {
    /// Connects and drives the connection on a spawned task; the client sees a closed
    /// connection as an error on its next call.
    pub async fn connect(&self) -> Result<Client, Error> {
        let err = |source| Error::Connect {
            target: describe(self),
            source,
        };
        match tls::client_config(&self.tls)? {
            None => {
                let (client, conn) = self.pg.connect(NoTls).await.map_err(err)?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                Ok(client)
            }
            Some(rc) => {
                let mk = tokio_postgres_rustls::MakeRustlsConnect::new(rc);
                let (client, conn) = self.pg.connect(mk).await.map_err(err)?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                Ok(client)
            }
        }
    }

    /// The password file that supplied the password, if one did.
    pub fn password_file(&self) -> Option<PathBuf> {
        match &self.password_source {
            Some(PasswordSource::File(f)) => Some(f.clone()),
            _ => None,
        }
    }
}

/// Connects to a target (kept for `pgqd install`).
pub async fn connect(t: &Target) -> Result<Client, Error> {
    t.connect().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(s: &str) -> Vec<(String, String)> {
        parse_connstr(s).unwrap().0
    }

    #[test]
    fn parses_libpq_quoting() {
        assert_eq!(
            kv("host=/tmp  port = 5433 password='a b\\'c' user=x\\ y"),
            vec![
                ("host".into(), "/tmp".into()),
                ("port".into(), "5433".into()),
                ("password".into(), "a b'c".into()),
                ("user".into(), "x y".into()),
            ]
        );
        assert!(kv("").is_empty());
    }

    #[test]
    fn parses_urls() {
        let p = parse_connstr(
            "postgresql://u%40x:p%3Aw@h1:5433,[::1]:5434/my%20db?sslmode=require&application_name=a",
        )
        .unwrap();
        assert_eq!(p.get("user"), Some("u@x"));
        assert_eq!(p.get("password"), Some("p:w"));
        assert_eq!(p.get("host"), Some("h1,::1"));
        assert_eq!(p.get("port"), Some("5433,5434"));
        assert_eq!(p.get("dbname"), Some("my db"));
        assert_eq!(p.get("sslmode"), Some("require"));
        let p = parse_connstr("postgres://%2Fvar%2Frun%2Fpostgresql/db").unwrap();
        assert_eq!(p.get("host"), Some("/var/run/postgresql"));
    }

    #[test]
    fn errors_do_not_echo_the_input() {
        for bad in [
            "password=sekrit bogus",
            "password='sekrit",
            "password=sekrit nosuchkey=1",
            "postgresql://u:sekrit@h/db?x",
            "postgresql://u:sekrit@h:notaport/db",
        ] {
            let err = match parse_connstr(bad) {
                Err(e) => e,
                Ok(_) => resolve(bad, &Settings::default()).unwrap_err(),
            };
            assert!(!err.to_string().contains("sekrit"), "{bad}: {err}");
        }
    }

    #[test]
    fn mask_hides_password() {
        let m = mask_connstr("host=h password=sekrit user=u");
        assert_eq!(m, "host=h password=******** user=u");
        assert!(!mask_connstr("postgresql://u:sekrit@h/db").contains("sekrit"));
        assert!(!mask_connstr("password='sekrit").contains("sekrit"));
    }

    #[test]
    fn explicit_values_and_dbname_override() {
        let t = config_from("host=/tmp port=6000 user=u dbname=d password=x", None).unwrap();
        assert_eq!(t.pg.get_ports(), &[6000]);
        assert_eq!(t.pg.get_user(), Some("u"));
        assert_eq!(t.pg.get_dbname(), Some("d"));
        let t = config_from("host=/tmp dbname=d user=u password=x", Some("other")).unwrap();
        assert_eq!(t.pg.get_dbname(), Some("other"));
        assert!(!format!("{t:?}").contains("password=x"));
    }

    #[test]
    fn daemon_settings_go_into_options() {
        let cfg = crate::config::Config {
            base_connstr:
                "host=/tmp user=u options='-c work_mem=1MB -c tcp_keepalives_idle=7' password=x"
                    .into(),
            statement_timeout: Duration::from_secs(5),
            lock_timeout: Duration::from_millis(1500),
            application_name: "pgqd-test".into(),
            ..Default::default()
        };
        let t = daemon_target(&cfg, "app").unwrap();
        assert_eq!(
            t.pg.get_options(),
            Some(
                "-c work_mem=1MB -c tcp_keepalives_idle=7 -c statement_timeout=5000 \
                 -c lock_timeout=1500 -c tcp_keepalives_interval=5 -c tcp_keepalives_count=3 \
                 -c tcp_user_timeout=30000"
            ),
            "the server probes daemon sessions too; the user's own setting wins"
        );
        assert_eq!(t.pg.get_dbname(), Some("app"));
        assert!(t.pg.get_keepalives());
        assert_eq!(t.pg.get_keepalives_idle(), Duration::from_secs(10));
        assert_eq!(t.pg.get_application_name(), Some("pgqd-test"));
    }

    #[test]
    fn rejects_unknown_and_unsupported_options() {
        assert!(parse_connstr("host=h service=foo").is_err());
        assert!(
            resolve(
                "host=h user=u password=x client_encoding=LATIN1",
                &Settings::default()
            )
            .is_err()
        );
        assert!(
            resolve(
                "host=h user=u password=x sslmode=verify",
                &Settings::default()
            )
            .is_err()
        );
    }

    #[test]
    fn quote_round_trips() {
        for v in ["", "a b", "it's", "back\\slash", "plain"] {
            let s = format!("k={}", quote(v));
            assert_eq!(parse_kv(&s).unwrap().0[0].1, v);
        }
    }
}
