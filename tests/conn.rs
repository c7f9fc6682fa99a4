//! Connections like libpq, against a real cluster with scram-sha-256 password
//! authentication over TCP and TLS with certificates made here (rcgen): `PGPASSWORD`, a
//! password file through `PGPASSFILE`, `sslmode=verify-full` / `verify-ca` with
//! `PGSSLROOTCERT`, session settings of daemon connections, an empty `base_connstr` with
//! `PG*` variables in the real binary, and errors that never contain the password.
//!
//! In-process tests pass their environment as a map to `conn::resolve_with` (changing the
//! process environment would race with parallel tests); the binary test uses real
//! variables.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{ClusterOptions, TestCluster};
use pgqd::conn::{self, Settings};

const PASSWORD: &str = "Sekr1t-pässword";

/// A CA, and a server certificate for `localhost` only (not 127.0.0.1), signed by it.
struct Certs {
    ca_pem: String,
    server_pem: String,
    server_key_pem: String,
}

fn make_certs() -> Certs {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "pgqd test CA");
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA cert");
    let issuer = Issuer::new(ca_params, ca_key);
    let srv_key = KeyPair::generate().expect("server key");
    let mut srv_params =
        CertificateParams::new(vec!["localhost".to_string()]).expect("server params");
    srv_params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let srv_cert = srv_params
        .signed_by(&srv_key, &issuer)
        .expect("server cert");
    Certs {
        ca_pem: ca_cert.pem(),
        server_pem: srv_cert.pem(),
        server_key_pem: srv_key.serialize_pem(),
    }
}

/// A cluster that takes scram passwords over TCP (with or without TLS) and trusts the
/// unix socket (for setup), with the postgres role's password set.
fn secure_cluster(certs: &Certs) -> TestCluster {
    let c = TestCluster::start_with(ClusterOptions {
        tcp: true,
        hba: vec!["host all all 127.0.0.1/32 scram-sha-256".into()],
        conf: vec![
            "password_encryption = 'scram-sha-256'".into(),
            "ssl = on".into(),
            "ssl_cert_file = 'server.crt'".into(),
            "ssl_key_file = 'server.key'".into(),
        ],
        data_files: vec![
            ("server.crt".into(), certs.server_pem.clone().into_bytes()),
            (
                "server.key".into(),
                certs.server_key_pem.clone().into_bytes(),
            ),
        ],
    });
    c.psql(
        "postgres",
        &format!("alter role postgres password '{PASSWORD}'"),
    );
    c
}

fn env_of(pairs: &[(&str, String)]) -> impl Fn(&str) -> Option<String> + use<> {
    let m: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    move |k: &str| m.get(k).cloned()
}

fn settings() -> Settings {
    Settings {
        dbname: Some("postgres".into()),
        ..Settings::default()
    }
}

/// Whether the session is encrypted, from the server's point of view.
async fn uses_ssl(client: &tokio_postgres::Client) -> bool {
    client
        .query_one(
            "select ssl from pg_catalog.pg_stat_ssl where pid = pg_catalog.pg_backend_pid()",
            &[],
        )
        .await
        .expect("query pg_stat_ssl")
        .get(0)
}

/// The whole error, with its source chain and Debug form, as an operator could see it.
fn all_text(e: &conn::Error) -> String {
    let mut s = format!("{e} / {e:?}");
    let mut src = std::error::Error::source(e);
    while let Some(c) = src {
        s.push_str(&format!(" / {c} / {c:?}"));
        src = c.source();
    }
    s
}

#[tokio::test]
async fn pgpassword_with_scram_over_tcp_and_tls() {
    let certs = make_certs();
    let c = secure_cluster(&certs);
    for (mode, want_ssl) in [("disable", false), ("prefer", true), ("require", true)] {
        let env = env_of(&[
            ("PGHOST", "127.0.0.1".into()),
            ("PGPORT", c.port.to_string()),
            ("PGUSER", "postgres".into()),
            ("PGPASSWORD", PASSWORD.into()),
            ("PGSSLMODE", mode.into()),
            // No root file anywhere: require must not verify.
            ("PGSSLROOTCERT", "/nonexistent/root.crt".into()),
        ]);
        let t = conn::resolve_with("", &settings(), &env).expect("resolve");
        assert!(!format!("{t:?}").contains(PASSWORD));
        let client = t
            .connect()
            .await
            .unwrap_or_else(|e| panic!("sslmode={mode}: {e}"));
        assert_eq!(uses_ssl(&client).await, want_ssl, "sslmode={mode}");
    }
}

#[tokio::test]
async fn password_file_via_pgpassfile() {
    use std::os::unix::fs::PermissionsExt;
    let certs = make_certs();
    let c = secure_cluster(&certs);
    let dir = tempfile::tempdir().unwrap();
    let pass = dir.path().join("pgpass");
    let escaped = PASSWORD.replace('\\', "\\\\").replace(':', "\\:");
    std::fs::write(
        &pass,
        format!(
            "# test\nelsewhere:*:*:*:wrong\n127.0.0.1:{}:*:postgres:{escaped}\n",
            c.port
        ),
    )
    .unwrap();
    std::fs::set_permissions(&pass, std::fs::Permissions::from_mode(0o600)).unwrap();
    let env = env_of(&[("PGPASSFILE", pass.display().to_string())]);
    let connstr = format!(
        "host=127.0.0.1 port={} user=postgres sslmode=disable",
        c.port
    );
    let t = conn::resolve_with(&connstr, &settings(), &env).expect("resolve");
    assert_eq!(t.password_file().as_deref(), Some(pass.as_path()));
    t.connect().await.expect("connect with the password file");

    // libpq ignores a password file that others can read: no password, auth fails.
    std::fs::set_permissions(&pass, std::fs::Permissions::from_mode(0o644)).unwrap();
    let t = conn::resolve_with(&connstr, &settings(), &env).expect("resolve");
    assert!(t.password_file().is_none());
    let err = t
        .connect()
        .await
        .expect_err("group-readable pgpass must be ignored");
    assert!(!all_text(&err).contains(PASSWORD));
}

#[tokio::test]
async fn verify_full_and_verify_ca_with_pgsslrootcert() {
    let certs = make_certs();
    let c = secure_cluster(&certs);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root.crt");
    std::fs::write(&root, &certs.ca_pem).unwrap();
    let env = |host: &str, mode: &str| {
        env_of(&[
            ("PGHOST", host.to_string()),
            ("PGPORT", c.port.to_string()),
            ("PGUSER", "postgres".into()),
            ("PGPASSWORD", PASSWORD.into()),
            ("PGSSLMODE", mode.into()),
            ("PGSSLROOTCERT", root.display().to_string()),
        ])
    };
    // The name matches: verify-full works. (localhost may resolve to ::1 first, where
    // nothing listens; tokio-postgres then tries 127.0.0.1.)
    let t = conn::resolve_with("", &settings(), &env("localhost", "verify-full")).unwrap();
    let client = t.connect().await.expect("verify-full to localhost");
    assert!(uses_ssl(&client).await);

    // The certificate is not for 127.0.0.1: verify-full refuses, verify-ca accepts.
    let t = conn::resolve_with("", &settings(), &env("127.0.0.1", "verify-full")).unwrap();
    let err = t
        .connect()
        .await
        .expect_err("name mismatch under verify-full");
    assert!(!all_text(&err).contains(PASSWORD));
    let t = conn::resolve_with("", &settings(), &env("127.0.0.1", "verify-ca")).unwrap();
    let client = t.connect().await.expect("verify-ca ignores the name");
    assert!(uses_ssl(&client).await);

    // A root that did not sign the server's certificate: refused.
    let other = make_certs();
    std::fs::write(&root, &other.ca_pem).unwrap();
    let t = conn::resolve_with("", &settings(), &env("localhost", "verify-ca")).unwrap();
    t.connect().await.expect_err("unknown CA under verify-ca");
    // require with an existing root file is verify-ca (libpq's rule).
    let t = conn::resolve_with("", &settings(), &env("localhost", "require")).unwrap();
    t.connect()
        .await
        .expect_err("require with a root file verifies the chain");
}

#[tokio::test]
async fn wrong_password_error_does_not_contain_it() {
    let certs = make_certs();
    let c = secure_cluster(&certs);
    let wrong = "Wr0ng-horse-battery";
    for (mode, pw_in) in [
        ("disable", "env"),
        ("require", "env"),
        ("require", "connstr"),
    ] {
        let mut pairs = vec![("PGSSLMODE", mode.to_string())];
        let mut connstr = format!("host=127.0.0.1 port={} user=postgres", c.port);
        if pw_in == "env" {
            pairs.push(("PGPASSWORD", wrong.to_string()));
        } else {
            connstr.push_str(&format!(" password='{wrong}'"));
        }
        let t = conn::resolve_with(&connstr, &settings(), &env_of(&pairs)).unwrap();
        let err = t.connect().await.expect_err("wrong password must fail");
        let text = all_text(&err);
        assert!(!text.contains(wrong), "password leaked: {text}");
        assert!(!text.contains(PASSWORD));
        assert!(
            text.contains("28P01") || text.contains("password authentication failed"),
            "{text}"
        );
    }
}

#[tokio::test]
async fn daemon_connections_carry_timeouts_and_application_name() {
    let certs = make_certs();
    let c = secure_cluster(&certs);
    let cfg = pgqd::config::Config {
        base_connstr: format!(
            "host=127.0.0.1 port={} user=postgres password='{PASSWORD}' sslmode=require dbname=ignored",
            c.port
        ),
        statement_timeout: Duration::from_secs(7),
        lock_timeout: Duration::from_millis(1500),
        application_name: "pgqd-conn-test".into(),
        ..Default::default()
    };
    let client = conn::connect_db(&cfg, "postgres")
        .await
        .expect("connect_db");
    let row = client
        .query_one(
            "select current_setting('statement_timeout'), current_setting('lock_timeout'), \
             current_setting('application_name'), current_database()",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "7s");
    assert_eq!(row.get::<_, String>(1), "1500ms");
    assert_eq!(row.get::<_, String>(2), "pgqd-conn-test");
    assert_eq!(row.get::<_, String>(3), "postgres");
    assert!(uses_ssl(&client).await);
    assert!(!format!("{:?}", conn::daemon_target(&cfg, "x").unwrap()).contains(PASSWORD));
}

/// The real binary with an empty base_connstr finds the server through PG* variables
/// (a password from PGPASSWORD over TCP), and its log never shows the password.
#[test]
fn empty_base_connstr_uses_pg_variables() {
    let certs = make_certs();
    let c = secure_cluster(&certs);
    c.create_pgq_db("app");
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("pgqd.ini");
    let log = dir.path().join("pgqd.log");
    std::fs::write(
        &cfg,
        format!(
            "[pgqd]\nbase_connstr =\ninitial_database = postgres\ncheck_period = 0.2\n\
             ticker_period = 0.1\nlogfile = {}\n",
            log.display()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_pgqd"))
        .arg(&cfg)
        .arg("-v")
        .env("PGHOST", "127.0.0.1")
        .env("PGPORT", c.port.to_string())
        .env("PGUSER", "postgres")
        .env("PGPASSWORD", PASSWORD)
        .env("PGSSLMODE", "require")
        .env("PGAPPNAME", "pgqd-env")
        .env_remove("PGDATABASE")
        .env_remove("PGPASSFILE")
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn pgqd");
    let deadline = Instant::now() + Duration::from_secs(30);
    let seen = loop {
        let n = c.psql(
            "postgres",
            "select count(*) from pg_stat_activity where application_name = 'pgqd-env' \
             and datname = 'app'",
        );
        if n != "0" {
            break true;
        }
        if Instant::now() >= deadline || child.try_wait().ok().flatten().is_some() {
            break false;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let status = child.wait().expect("wait pgqd");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(seen, "pgqd never connected to app; log:\n{text}");
    assert_eq!(status.code(), Some(0), "log:\n{text}");
    assert!(!text.contains(PASSWORD), "password in the log");
    assert!(Path::new(&log).exists());
}
