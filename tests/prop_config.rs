//! Property tests of the config readers (issue #8): any text gives a config or a clean
//! error, never a panic; the same settings written as TOML and as the C pgqd's INI give
//! the same config; a password in `base_connstr` never reaches an error or the summary.

use std::path::Path;

use pgqd::config::{self, RawValue};
use proptest::prelude::*;

/// Parses `text` as `format` and validates it, as `config::load` does after reading.
fn load_text(text: &str, ini: bool) -> Result<config::Config, config::Error> {
    let path = Path::new(if ini {
        "/nonexistent/t.ini"
    } else {
        "/nonexistent/t.toml"
    });
    let entries = if ini {
        config::ini::parse(text, path)?
    } else {
        config::toml::parse(text, path)?
    };
    config::build(&entries, path)
}

/// Text that looks like a config file: known and unknown keys, values of every shape.
fn config_like() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        proptest::sample::select(config::KEYS).prop_map(str::to_string),
        "[a-z_]{1,12}",
    ];
    let value = prop_oneof![
        "-?[0-9]{1,25}(\\.[0-9]{0,5})?",
        "\"[ -~]{0,20}\"",
        "[0-9]{1,22}(ns|us|ms|s|m|h|d|w|y)",
        "\"[1-9][0-9]{9,19}(s|h|y)\"",
        "\"1[0-8][0-9]{17}s\"",
        "\"-?[0-9]{1,22}(ns|ms|s|h|y)\"",
        "(true|false|yes|no|on|off)",
        "\\[(\"[a-z]{0,5}\", ?){0,3}\\]",
        "[ -~]{0,20}",
    ];
    let line = prop_oneof![
        (key, value).prop_map(|(k, v)| format!("{k} = {v}")),
        Just("[pgqd]".to_string()),
        "[#;][ -~]{0,10}",
        "\\[[a-z]{0,6}\\]",
        "[ -~]{0,30}",
    ];
    proptest::collection::vec(line, 0..12).prop_map(|ls| ls.join("\n"))
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_text_is_a_config_or_a_clean_error(text in "\\PC{0,200}", ini in any::<bool>()) {
        // No %include of arbitrary paths: that reads the disk, which is not the point here.
        let _ = load_text(&text.replace('%', ""), ini);
    }

    #[test]
    fn config_like_text_is_a_config_or_a_clean_error(body in config_like(), ini in any::<bool>()) {
        let text = if ini { format!("[pgqd]\n{body}") } else { body };
        if let Ok(cfg) = load_text(&text, ini) {
            // A config that validates can be used: the summary renders, periods are
            // usable as timer deadlines from now.
            let _ = cfg.summary();
            let now = std::time::Instant::now();
            for d in [cfg.ticker_period, cfg.maint_period, cfg.retry_period, cfg.check_period,
                      cfg.stats_period, cfg.connection_lifetime, cfg.shutdown_timeout,
                      cfg.statement_timeout, cfg.lock_timeout, cfg.reconnect_max_delay] {
                prop_assert!(d.as_secs_f64() < 1e12, "{d:?} is beyond the documented bound");
                prop_assert!(now.checked_add(d * 4).is_some(), "{d:?} overflows an Instant");
            }
        }
    }

    #[test]
    fn durations_never_panic(s in "\\PC{0,30}", i in any::<i64>(), f in any::<f64>()) {
        let _ = config::duration(&RawValue::Str(s));
        let _ = config::duration(&RawValue::Int(i));
        let _ = config::duration(&RawValue::Float(f));
    }

    #[test]
    fn toml_and_ini_spell_the_same_config(
        ticker_ms in 1u64..100_000,
        maint_s in 1u64..100_000,
        retry_s in 1u64..100_000,
        db in "[a-z][a-z0-9_]{0,15}",
        syslog in any::<bool>(),
    ) {
        let toml = format!(
            "ticker_period = \"{ticker_ms}ms\"\nmaint_period = {maint_s}\n\
             retry_period = \"{retry_s}\"\ninitial_database = \"{db}\"\nsyslog = {syslog}\n"
        );
        let ini = format!(
            "[pgqd]\nticker_period = {ticker_ms}ms\nmaint_period = {maint_s}\n\
             retry_period = {retry_s}\ninitial_database = {db}\nsyslog = {}\n",
            u8::from(syslog)
        );
        let a = load_text(&toml, false).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let b = load_text(&ini, true).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&a, &b);
        prop_assert_eq!(a.ticker_period.as_millis() as u64, ticker_ms);
        prop_assert_eq!(a.maint_period.as_secs(), maint_s);
    }

    #[test]
    fn passwords_never_reach_errors_or_the_summary(
        pw in "[A-Za-z0-9]{12,20}",
        junk in "[ -~]{0,10}",
        ini in any::<bool>(),
    ) {
        let pw = format!("Sx{pw}");
        let connstr = format!("host=db user=pgqd password={pw} {junk}");
        let body = format!("base_connstr = \"{}\"\nticker_period = \"{junk}\"\n",
                           connstr.replace(['\\', '"'], ""));
        let text = if ini { format!("[pgqd]\n{}", body.replace('"', "")) } else { body };
        match load_text(&text, ini) {
            Ok(cfg) => prop_assert!(!cfg.summary().contains(&pw), "{}", cfg.summary()),
            Err(e) => {
                prop_assert!(!e.to_string().contains(&pw), "{}", e);
                prop_assert!(!format!("{e:?}").contains(&pw), "{:?}", e);
            }
        }
    }
}
