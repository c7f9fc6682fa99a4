//! Warnings about the config file's permissions (issue #8 item 4): a file that holds a
//! password in `base_connstr` should not be readable by every local user, and a config
//! file anyone may write lets anyone point the daemon elsewhere. These are warnings, not
//! errors: packaging and containers set modes in many ways, and a refusal to start would
//! turn a hygiene problem into an outage.
//!
//! Called by `main.rs` at start (logged) and by `--check-config` (printed).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::Config;

/// What is wrong with `path`'s permissions for the config `cfg` read from it; empty when
/// nothing is (or the file cannot be inspected).
pub fn warnings(path: &Path, cfg: &Config) -> Vec<String> {
    let Ok(meta) = std::fs::metadata(path) else {
        return Vec::new();
    };
    let mode = meta.permissions().mode();
    let mut out = Vec::new();
    let has_password = crate::conn::parse_connstr(&cfg.base_connstr)
        .map(|p| p.get("password").is_some_and(|v| !v.is_empty()))
        .unwrap_or(false);
    if has_password && mode & 0o004 != 0 {
        out.push(format!(
            "config file {} is readable by every user (mode {:o}) and base_connstr holds a \
             password: chmod 600 (or 640 with a group the daemon's user is in), or move the \
             password to ~/.pgpass",
            path.display(),
            mode & 0o777
        ));
    }
    if mode & 0o002 != 0 {
        out.push(format!(
            "config file {} is writable by every user (mode {:o}): anyone could point the \
             daemon at another server; chmod o-w it",
            path.display(),
            mode & 0o777
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_mode(text: &str, mode: u32) -> (tempfile::TempDir, std::path::PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("pgqd.toml");
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        (d, p)
    }

    #[test]
    fn world_readable_password_is_warned_and_not_echoed() {
        let cfg = Config {
            base_connstr: "host=db password=Sekrit".into(),
            ..Config::default()
        };
        let (_d, p) = with_mode("", 0o644);
        let w = warnings(&p, &cfg);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("readable by every user"));
        assert!(!w[0].contains("Sekrit"));
        let (_d, p) = with_mode("", 0o640);
        assert!(warnings(&p, &cfg).is_empty());
    }

    #[test]
    fn no_password_no_read_warning_but_world_writable_is() {
        let cfg = Config {
            base_connstr: "host=db".into(),
            ..Config::default()
        };
        let (_d, p) = with_mode("", 0o644);
        assert!(warnings(&p, &cfg).is_empty());
        let (_d, p) = with_mode("", 0o666);
        let w = warnings(&p, &cfg);
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("writable by every user"));
    }
}
