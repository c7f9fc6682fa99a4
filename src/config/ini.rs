//! Reader for the C pgqd's `pgqd.ini`, so an existing `/etc/pgqd.ini` works unchanged.
//!
//! The grammar is libusual's `cfparser`: one `[pgqd]` section (any other section is an
//! error, as is a key before the section or a file without it), whole-line comments
//! starting with `#` or `;`, `key = value` where the key is made of letters, digits and
//! `_ . - *` or is single-quoted, and the value runs to the end of the line with trailing
//! space trimmed (no quoting, no inline comments). `%include FILE` reads another file in
//! place, nested at most 10 deep. Every value is a string here; its type is checked in
//! [`super::build`] against the same key table as TOML.
//!
//! One deliberate difference: a relative `%include` path is taken relative to the
//! including file's directory (libusual uses the current directory, which is `/` for a
//! daemonized process).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{Entry, Error, Origin, RawValue};

/// Deepest `%include` nesting, as in libusual.
pub const MAX_INCLUDE: usize = 10;

/// Parses `text` (the contents of `path`) and any file it includes.
pub fn parse(text: &str, path: &Path) -> Result<Vec<Entry>, Error> {
    let mut st = State {
        entries: Vec::new(),
        section: None,
        seen_main: false,
    };
    parse_into(&mut st, text, path, 0)?;
    if !st.seen_main {
        return Err(Error::Invalid {
            path: path.to_path_buf(),
            msg: "no [pgqd] section".into(),
        });
    }
    Ok(st.entries)
}

struct State {
    entries: Vec<Entry>,
    /// The current section, carried into and out of included files as in libusual.
    section: Option<String>,
    seen_main: bool,
}

fn parse_into(st: &mut State, text: &str, path: &Path, depth: usize) -> Result<(), Error> {
    let file: Arc<Path> = Arc::from(path);
    for (i, raw_line) in text.lines().enumerate() {
        let origin = Origin {
            file: file.clone(),
            line: i + 1,
        };
        let syntax = |msg: &str| Error::Syntax {
            origin: origin.clone(),
            msg: msg.to_string(),
        };
        let line = raw_line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(rest) = line.strip_prefix("%include")
            && rest.starts_with([' ', '\t'])
        {
            if depth >= MAX_INCLUDE {
                return Err(syntax(&format!(
                    "%include nested deeper than {MAX_INCLUDE} levels"
                )));
            }
            let target = include_path(path, rest.trim());
            let inc = std::fs::read_to_string(&target)
                .map_err(|e| syntax(&format!("cannot read %include {}: {e}", target.display())))?;
            parse_into(st, &inc, &target, depth + 1)?;
            continue;
        }
        if let Some(rest) = line.strip_prefix('[') {
            let Some(name) = rest.strip_suffix(']') else {
                return Err(syntax("section header without closing ]"));
            };
            if name != "pgqd" {
                return Err(syntax(&format!(
                    "unknown section [{name}] (only [pgqd] is allowed)"
                )));
            }
            st.section = Some(name.to_string());
            st.seen_main = true;
            continue;
        }
        let (key, rest) = split_key(line).ok_or_else(|| syntax("expected key = value"))?;
        let value = rest
            .trim_start_matches([' ', '\t'])
            .strip_prefix('=')
            .ok_or_else(|| syntax("expected = after the key"))?
            .trim();
        if st.section.is_none() {
            return Err(syntax(&format!("key {key:?} before the [pgqd] section")));
        }
        st.entries.push(Entry {
            key: key.to_string(),
            value: RawValue::Str(value.to_string()),
            origin,
        });
    }
    Ok(())
}

/// Splits a key (bare or single-quoted) from the rest of the line.
fn split_key(line: &str) -> Option<(&str, &str)> {
    if let Some(rest) = line.strip_prefix('\'') {
        let end = rest.find('\'')?;
        if end == 0 {
            return None;
        }
        return Some((&rest[..end], &rest[end + 1..]));
    }
    let end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || "_.-*".contains(c)))
        .unwrap_or(line.len());
    if end == 0 {
        return None;
    }
    Some((&line[..end], &line[end..]))
}

fn include_path(from: &Path, target: &str) -> PathBuf {
    let t = Path::new(target);
    if t.is_absolute() {
        t.to_path_buf()
    } else {
        from.parent().unwrap_or(Path::new(".")).join(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, build, load};
    use std::time::Duration;

    fn parse_str(text: &str) -> Result<Config, Error> {
        let p = Path::new("/etc/pgqd.ini");
        build(&parse(text, p)?, p)
    }

    /// Debian's shipped /etc/pgqd.ini, as an operator would have it.
    const DEBIAN: &str = "\
[pgqd]

# where to log
logfile = /var/log/postgresql/pgqd.log

# pidfile
pidfile = /var/run/postgresql/pgqd.pid

## optional parameters ##

# libpq connect string without dbname=
;base_connstr = host=/tmp

# startup db to query other databases
;initial_database = postgres

# limit ticker to specific databases
;database_list = 

# log into syslog
;syslog = 1
;syslog_ident = pgqd

## optional timeouts ##

# how often to check for new databases
;check_period = 60

# how often to flush retry queue
;retry_period = 30

# how often to do maintentance
;maint_period = 120

# how often to run ticker
;ticker_period = 1
";

    #[test]
    fn reads_debian_default_file() {
        let cfg = parse_str(DEBIAN).unwrap();
        assert_eq!(
            cfg.logfile.as_deref(),
            Some(Path::new("/var/log/postgresql/pgqd.log"))
        );
        assert_eq!(
            cfg.pidfile.as_deref(),
            Some(Path::new("/var/run/postgresql/pgqd.pid"))
        );
        assert_eq!(cfg.ticker_period, Config::default().ticker_period);
    }

    #[test]
    fn reads_values_as_c_pgqd_does() {
        let cfg = parse_str(
            "[pgqd]\n\
             base_connstr = host=/tmp port=5433  \n\
             database_list = db1, db2 ,db3\n\
             'ticker_period' = 0.5\n\
             maint_period=7\n\
             syslog = 0\n\
             stats_period = 2m\n",
        )
        .unwrap();
        assert_eq!(cfg.base_connstr, "host=/tmp port=5433");
        assert_eq!(cfg.database_list, vec!["db1", "db2", "db3"]);
        assert_eq!(cfg.ticker_period, Duration::from_millis(500));
        assert_eq!(cfg.maint_period, Duration::from_secs(7));
        assert!(!cfg.syslog);
        assert_eq!(cfg.stats_period, Duration::from_secs(120));
    }

    #[test]
    fn unknown_key_names_file_and_line() {
        let err = parse_str("[pgqd]\n# c\nticker_periodd = 1\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "/etc/pgqd.ini:3: unknown key \"ticker_periodd\""
        );
    }

    #[test]
    fn bad_value_names_file_line_and_key() {
        let err = parse_str("[pgqd]\n\nticker_period = fast\n").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("/etc/pgqd.ini:3: bad value for ticker_period:"),
            "{err}"
        );
    }

    #[test]
    fn structure_errors() {
        let cases = [
            ("logfile = x\n[pgqd]\n", "/etc/pgqd.ini:1:"),
            ("[pgqd]\n[other]\n", "/etc/pgqd.ini:2: unknown section"),
            ("[pgqd\n", "/etc/pgqd.ini:1:"),
            ("[pgqd]\nlogfile x\n", "/etc/pgqd.ini:2:"),
            ("[pgqd]\n= x\n", "/etc/pgqd.ini:2:"),
            ("# only comments\n", "/etc/pgqd.ini: no [pgqd] section"),
        ];
        for (text, want) in cases {
            let err = parse_str(text).expect_err(text).to_string();
            assert!(err.starts_with(want), "{text:?}: {err}");
        }
    }

    #[test]
    fn include_reads_relative_to_the_including_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("common.ini"), "ticker_period = 3\n").unwrap();
        let main = dir.path().join("pgqd.ini");
        std::fs::write(&main, "[pgqd]\n%include common.ini\nmaint_period = 9\n").unwrap();
        let cfg = load(&main).unwrap();
        assert_eq!(cfg.ticker_period, Duration::from_secs(3));
        assert_eq!(cfg.maint_period, Duration::from_secs(9));
    }

    #[test]
    fn error_in_included_file_names_that_file() {
        let dir = tempfile::tempdir().unwrap();
        let inc = dir.path().join("inc.ini");
        std::fs::write(&inc, "\nbogus = 1\n").unwrap();
        let main = dir.path().join("pgqd.ini");
        std::fs::write(&main, format!("[pgqd]\n%include {}\n", inc.display())).unwrap();
        let err = load(&main).unwrap_err().to_string();
        assert_eq!(err, format!("{}:2: unknown key \"bogus\"", inc.display()));
    }

    #[test]
    fn include_depth_is_limited() {
        let dir = tempfile::tempdir().unwrap();
        // A file that includes itself.
        let main = dir.path().join("loop.ini");
        std::fs::write(&main, "[pgqd]\n%include loop.ini\n").unwrap();
        let err = load(&main).unwrap_err().to_string();
        assert!(err.contains("nested deeper than 10"), "{err}");
        // Exactly ten levels are fine.
        for i in 0..10 {
            let body = if i < 9 {
                format!("%include l{}.ini\n", i + 1)
            } else {
                "ticker_period = 4\n".to_string()
            };
            std::fs::write(dir.path().join(format!("l{i}.ini")), body).unwrap();
        }
        let top = dir.path().join("top.ini");
        std::fs::write(&top, "[pgqd]\n%include l0.ini\n").unwrap();
        assert_eq!(load(&top).unwrap().ticker_period, Duration::from_secs(4));
    }

    #[test]
    fn missing_include_is_an_error() {
        let err = parse_str("[pgqd]\n%include /nonexistent/x.ini\n").unwrap_err();
        assert!(
            err.to_string().starts_with("/etc/pgqd.ini:2: cannot read"),
            "{err}"
        );
    }
}
