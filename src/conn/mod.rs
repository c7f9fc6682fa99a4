//! Connecting like libpq does: a connection string (key=value or URL) completed from the
//! `PG*` environment variables and libpq's defaults (default unix socket directory, the OS
//! user as role and database).
//!
//! Every part of pgqd that opens a connection goes through here. This is the minimal
//! layer the installer needs; the daemon's connection broker builds on it.

use std::str::FromStr;

use tokio_postgres::config::Host;
use tokio_postgres::{Client, Config, NoTls};

/// Where Debian's libpq looks for the server socket when no host is given.
pub const DEFAULT_SOCKET_DIR: &str = "/var/run/postgresql";

/// Errors from building a connection config or connecting.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The connection string does not parse.
    #[error("invalid connection string: {0}")]
    BadConnstr(String),
    /// The server refused or could not be reached.
    #[error("cannot connect to {target}: {source}")]
    Connect {
        /// Host and database, never the password.
        target: String,
        #[source]
        source: tokio_postgres::Error,
    },
}

/// Builds a config from `connstr` (may be empty), filling what it leaves out from the
/// environment as libpq would: PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSWORD,
/// PGAPPNAME, then the defaults.
pub fn config_from(connstr: &str, dbname: Option<&str>) -> Result<Config, Error> {
    let mut cfg = if connstr.trim().is_empty() {
        Config::new()
    } else {
        // Never echo the input: it may hold a password.
        Config::from_str(connstr)
            .map_err(|e| Error::BadConnstr(e.to_string().replace(connstr, "<connection string>")))?
    };
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    if cfg.get_hosts().is_empty() {
        let hosts = env("PGHOST").unwrap_or_else(|| DEFAULT_SOCKET_DIR.to_string());
        for h in hosts.split(',') {
            if h.starts_with('/') {
                cfg.host_path(h);
            } else {
                cfg.host(h);
            }
        }
    }
    if cfg.get_ports().is_empty() {
        let port = env("PGPORT")
            .map(|p| {
                p.parse::<u16>()
                    .map_err(|_| Error::BadConnstr(format!("PGPORT {p:?} is not a port number")))
            })
            .transpose()?
            .unwrap_or(5432);
        cfg.port(port);
    }
    if cfg.get_user().is_none() {
        let user = env("PGUSER").unwrap_or_else(os_user);
        cfg.user(&user);
    }
    if let Some(db) = dbname {
        cfg.dbname(db);
    } else if cfg.get_dbname().is_none() {
        let db = env("PGDATABASE").unwrap_or_else(|| cfg.get_user().unwrap_or("").to_string());
        cfg.dbname(&db);
    }
    if cfg.get_password().is_none()
        && let Some(pw) = env("PGPASSWORD")
    {
        cfg.password(pw);
    }
    if cfg.get_application_name().is_none() {
        cfg.application_name(&env("PGAPPNAME").unwrap_or_else(|| "pgqd".to_string()));
    }
    Ok(cfg)
}

/// The name of the OS user running pgqd: libpq's default role name.
fn os_user() -> String {
    nix::unistd::User::from_uid(nix::unistd::geteuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| "postgres".to_string())
}

/// A short description of where a config points, safe for logs (no password).
pub fn describe(cfg: &Config) -> String {
    let host = match cfg.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "?".to_string(),
    };
    let port = cfg.get_ports().first().copied().unwrap_or(5432);
    format!(
        "database {:?} on {host}:{port} as {:?}",
        cfg.get_dbname().unwrap_or(""),
        cfg.get_user().unwrap_or("")
    )
}

/// Connects and drives the connection on a background task.
pub async fn connect(cfg: &Config) -> Result<Client, Error> {
    let (client, conn) = cfg.connect(NoTls).await.map_err(|source| Error::Connect {
        target: describe(cfg),
        source,
    })?;
    tokio::spawn(async move {
        // The client sees a closed connection as an error on its next call.
        let _ = conn.await;
    });
    Ok(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_values_win_over_defaults() {
        let cfg = config_from("host=/tmp port=6000 user=u dbname=d", None).unwrap();
        assert_eq!(cfg.get_ports(), &[6000]);
        assert_eq!(cfg.get_user(), Some("u"));
        assert_eq!(cfg.get_dbname(), Some("d"));
        let cfg = config_from("host=/tmp dbname=d", Some("other")).unwrap();
        assert_eq!(cfg.get_dbname(), Some("other"));
    }

    #[test]
    fn bad_connstr_does_not_echo_password() {
        let err = config_from("password=sekrit bogus", None).unwrap_err();
        assert!(!err.to_string().contains("sekrit"), "{err}");
    }
}
