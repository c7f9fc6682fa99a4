//! The password file (`~/.pgpass`, or `passfile` / `PGPASSFILE`) with libpq's rules.
//!
//! Each line is `hostname:port:database:username:password`; `#` starts a comment line;
//! `\` escapes `:` and `\`; a field that is exactly `*` matches anything. The first
//! matching line wins. A file that is not a regular file, or that group or others can
//! read or write, is ignored with a warning (libpq: "permissions should be u=rw (0600) or
//! less"). For a unix-socket connection to the default socket directory the host name
//! matched is `localhost`; other socket directories are matched literally.
//!
//! Called by [`super::resolve`] when no password was given otherwise.

use std::path::Path;

/// What a password is looked up for.
#[derive(Debug, Clone, Copy)]
pub struct Lookup<'a> {
    /// Host name or socket directory, as libpq would match it (see [`match_host`]).
    pub host: &'a str,
    /// Port as text.
    pub port: &'a str,
    /// Database name.
    pub dbname: &'a str,
    /// Role name.
    pub user: &'a str,
}

/// The host string libpq matches in the password file for a connection to `host`.
pub fn match_host(host: &str) -> &str {
    if host.is_empty() || host == super::DEFAULT_SOCKET_DIR {
        "localhost"
    } else {
        host
    }
}

/// Reads `path` and returns the password of the first matching line. Problems with the
/// file are warnings, never errors, as in libpq; the warnings never include a password.
pub fn find_password(path: &Path, want: &Lookup<'_>) -> Option<String> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let meta = std::fs::metadata(path).ok()?;
    let ft = meta.file_type();
    if !ft.is_file() || ft.is_fifo() {
        tracing::warn!(
            file = %path.display(),
            "password file is not a plain file"
        );
        return None;
    }
    if meta.mode() & 0o077 != 0 {
        tracing::warn!(
            file = %path.display(),
            "password file has group or world access; permissions should be u=rw (0600) or less"
        );
        return None;
    }
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "cannot read password file");
            return None;
        }
    };
    find_in(&text, want)
}

/// The matching rules on the file's text.
pub fn find_in(text: &str, want: &Lookup<'_>) -> Option<String> {
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields = split(line);
        if fields.len() < 5 {
            continue;
        }
        let ok = field_matches(&fields[0], want.host)
            && field_matches(&fields[1], want.port)
            && field_matches(&fields[2], want.dbname)
            && field_matches(&fields[3], want.user);
        if ok {
            // Everything after the fourth separator is the password (it may contain
            // unescaped colons, which libpq also accepts there).
            return Some(
                fields[4..]
                    .iter()
                    .map(|f| f.text.clone())
                    .collect::<Vec<_>>()
                    .join(":"),
            );
        }
    }
    None
}

struct Field {
    text: String,
    /// The field was a bare `*` (an escaped `\*` is a literal star).
    wildcard: bool,
}

fn field_matches(f: &Field, value: &str) -> bool {
    f.wildcard || f.text == value
}

fn split(line: &str) -> Vec<Field> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut escaped_any = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                    escaped_any = true;
                }
            }
            ':' => {
                out.push(Field {
                    wildcard: cur == "*" && !escaped_any,
                    text: std::mem::take(&mut cur),
                });
                escaped_any = false;
            }
            c => cur.push(c),
        }
    }
    out.push(Field {
        wildcard: cur == "*" && !escaped_any,
        text: cur,
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn want<'a>(host: &'a str, port: &'a str, db: &'a str, user: &'a str) -> Lookup<'a> {
        Lookup {
            host,
            port,
            dbname: db,
            user,
        }
    }

    const FILE: &str = "\
# comment
db1.example:5432:app:alice:pw-one
*:5433:*:bob:pw-two
localhost:*:*:carol:pw:with:colons
weird\\:host:5432:*:dave:pw\\\\four
\\*:5432:*:erin:literal-star
*:*:*:erin:any-erin
/tmp/sock:5432:*:frank:socket-pw
";

    #[test]
    fn first_matching_line_wins() {
        assert_eq!(
            find_in(FILE, &want("db1.example", "5432", "app", "alice")).as_deref(),
            Some("pw-one")
        );
        assert_eq!(
            find_in(FILE, &want("db1.example", "5432", "other", "alice")),
            None
        );
        assert_eq!(
            find_in(FILE, &want("anything", "5433", "x", "bob")).as_deref(),
            Some("pw-two")
        );
        assert_eq!(find_in(FILE, &want("anything", "5432", "x", "bob")), None);
    }

    #[test]
    fn escapes_and_colons_in_password() {
        assert_eq!(
            find_in(FILE, &want("localhost", "1", "d", "carol")).as_deref(),
            Some("pw:with:colons")
        );
        assert_eq!(
            find_in(FILE, &want("weird:host", "5432", "d", "dave")).as_deref(),
            Some("pw\\four")
        );
    }

    #[test]
    fn escaped_star_is_literal() {
        assert_eq!(
            find_in(FILE, &want("*", "5432", "d", "erin")).as_deref(),
            Some("literal-star")
        );
        assert_eq!(
            find_in(FILE, &want("h", "5432", "d", "erin")).as_deref(),
            Some("any-erin")
        );
    }

    #[test]
    fn default_socket_dir_matches_localhost() {
        assert_eq!(match_host(crate::conn::DEFAULT_SOCKET_DIR), "localhost");
        assert_eq!(match_host("/tmp/sock"), "/tmp/sock");
        assert_eq!(
            find_in(FILE, &want(match_host("/tmp/sock"), "5432", "d", "frank")).as_deref(),
            Some("socket-pw")
        );
    }

    #[test]
    fn group_readable_file_is_ignored() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pgpass");
        std::fs::write(&p, "*:*:*:*:secret\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert_eq!(find_password(&p, &want("h", "1", "d", "u")), None);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            find_password(&p, &want("h", "1", "d", "u")).as_deref(),
            Some("secret")
        );
        assert_eq!(find_password(dir.path(), &want("h", "1", "d", "u")), None);
    }
}
