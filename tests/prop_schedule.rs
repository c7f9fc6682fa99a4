//! Property tests of the daemon's schedule arithmetic (issue #8): the ticker's due
//! prediction [`due_in`], the per-database lane [`Schedule`] and the reconnect
//! [`Backoff`]. Pure functions get arbitrary figures (NaN, infinities, negative lags,
//! absurd `ticker_max_lag`); the loop that sleeps on the schedule runs on paused tokio
//! time, so an hour of schedule takes no wall-clock time.

use std::time::Duration;

use pgqd::config::Config;
use pgqd::daemon::database::{Backoff, Lane, Schedule};
use pgqd::daemon::ticker::{QueueState, due_in};
use proptest::prelude::*;

fn figure() -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => -1e6f64..1e12,
        1 => Just(f64::NAN),
        1 => Just(f64::INFINITY),
        1 => Just(f64::NEG_INFINITY),
        1 => Just(0.0),
        1 => Just(f64::MAX),
    ]
}

fn queue() -> impl Strategy<Value = QueueState> {
    (
        (
            any::<bool>(),
            any::<i64>(),
            figure(),
            figure(),
            any::<bool>(),
        ),
        (
            proptest::option::of(figure()),
            proptest::option::of(any::<i64>()),
            proptest::option::of(figure()),
            proptest::option::of(any::<i64>()),
        ),
    )
        .prop_map(
            |((skip, max_count, max_lag, idle_period, has_tick), (lag, tick_seq, gap, seq))| {
                QueueState {
                    name: "q".into(),
                    skip,
                    max_count,
                    max_lag,
                    idle_period,
                    has_tick,
                    lag,
                    tick_event_seq: tick_seq,
                    prev_gap: gap,
                    event_seq: seq,
                    version: "1".into(),
                }
            },
        )
}

fn period() -> impl Strategy<Value = Duration> {
    prop_oneof![
        (1u64..10_000).prop_map(Duration::from_millis),
        (1u64..1_000_000_000_000).prop_map(Duration::from_secs),
    ]
}

fn config() -> impl Strategy<Value = Config> {
    (period(), period(), period()).prop_map(|(t, r, m)| Config {
        ticker_period: t,
        retry_period: r,
        maint_period: m,
        ..Config::default()
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 2000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Never panics (also on i64 overflow of the event counts), never predicts for a
    /// paused or externally ticked queue, and never predicts beyond 1e9 s.
    #[test]
    fn due_in_is_total_and_bounded(q in queue()) {
        let d = due_in(&q);
        if q.skip {
            prop_assert_eq!(d, None);
        } else {
            let d = d.expect("a queue the daemon ticks always gets a prediction");
            prop_assert!(d <= Duration::from_secs(1_000_000_000), "{:?}", d);
        }
    }

    /// More lag never makes a queue due later.
    #[test]
    fn more_lag_is_never_later(q in queue(), lag in 0f64..1e6, more in 0f64..1e6) {
        let a = due_in(&QueueState { lag: Some(lag), has_tick: true, ..q.clone() });
        let b = due_in(&QueueState { lag: Some(lag + more), has_tick: true, ..q });
        if let (Some(a), Some(b)) = (a, b) {
            prop_assert!(b <= a, "lag {lag} → {a:?}, lag {} → {b:?}", lag + more);
        }
    }

    /// `due` agrees with `next`: a lane is due exactly when its next time has come (the
    /// ticker first), otherwise the wake-up is the earliest next time, in the future.
    /// The next run is always "last end + period" (or sooner for a ticker hint), so no
    /// backlog of runs can build up.
    #[test]
    fn schedule_due_agrees_with_next(
        cfg in config(),
        jitter in 0f64..1.0,
        steps in proptest::collection::vec((0u8..3, 0u64..100_000, proptest::option::of(0u64..100_000)), 0..20),
        probe_ms in 0u64..10_000_000,
    ) {
        let t0 = std::time::Instant::now();
        let mut s = Schedule::new(t0, jitter);
        let mut now = t0;
        for (lane, advance_ms, hint_ms) in steps {
            now += Duration::from_millis(advance_ms);
            let lane = [Lane::Ticker, Lane::Retry, Lane::Maint][lane as usize];
            s.done(lane, now, hint_ms.map(Duration::from_millis));
            let period = match lane {
                Lane::Ticker => cfg.ticker_period,
                Lane::Retry => cfg.retry_period,
                Lane::Maint => cfg.maint_period,
                Lane::Stats => pgqd::daemon::collect::collect_period(&cfg).unwrap_or(cfg.stats_period),
            };
            let next = s.next(lane, &cfg);
            prop_assert!(next > now && next <= now + period + Duration::from_millis(2));
        }
        let at = now + Duration::from_millis(probe_ms);
        let lanes = [Lane::Ticker, Lane::Retry, Lane::Maint];
        match s.due(at, &cfg) {
            Ok(lane) => {
                prop_assert!(s.next(lane, &cfg) <= at);
                for earlier in lanes.iter().take_while(|l| **l != lane) {
                    prop_assert!(s.next(*earlier, &cfg) > at);
                }
            }
            Err(wake) => {
                prop_assert!(wake > at);
                let min = lanes.iter().map(|l| s.next(*l, &cfg)).min().unwrap();
                prop_assert_eq!(wake, min);
            }
        }
    }

    /// Each delay lies in [d/2, d] of a doubling d capped at 10 s; reset starts over.
    #[test]
    fn backoff_is_capped_and_resets(n in 1usize..40) {
        let mut b = Backoff::default();
        let mut cap = Duration::from_millis(100);
        for _ in 0..n {
            let d = b.next_delay();
            prop_assert!(d >= cap / 2 && d <= cap, "{d:?} not in [{:?}, {cap:?}]", cap / 2);
            cap = (cap * 2).min(Duration::from_secs(10));
        }
        b.reset();
        prop_assert!(b.next_delay() <= Duration::from_millis(100));
    }
}

/// An hour of a database task's timing on paused tokio time: sleeping until `due` and
/// running the due lane gives each lane about hour / period runs, never a burst of
/// catch-up runs after a slow one.
#[tokio::test(start_paused = true)]
async fn an_hour_of_schedule_runs_each_lane_at_its_period() {
    let cfg = Config {
        ticker_period: Duration::from_secs(1),
        retry_period: Duration::from_secs(30),
        maint_period: Duration::from_secs(120),
        ..Config::default()
    };
    let start = tokio::time::Instant::now();
    let mut s = Schedule::new(start.into_std(), 0.5);
    let mut runs = std::collections::HashMap::<Lane, u32>::new();
    let mut last = std::collections::HashMap::<Lane, tokio::time::Instant>::new();
    while start.elapsed() < Duration::from_secs(3600) {
        let now = tokio::time::Instant::now();
        match s.due(now.into_std(), &cfg) {
            Ok(lane) => {
                if let Some(prev) = last.get(&lane) {
                    let period = match lane {
                        Lane::Ticker => cfg.ticker_period,
                        Lane::Retry => cfg.retry_period,
                        Lane::Maint => cfg.maint_period,
                        Lane::Stats => {
                            pgqd::daemon::collect::collect_period(&cfg).unwrap_or(cfg.stats_period)
                        }
                    };
                    assert!(now - *prev >= period, "{lane:?} ran early");
                }
                last.insert(lane, now);
                *runs.entry(lane).or_default() += 1;
                // A slow maintenance round (20 s) must not cause catch-up ticks.
                let cost = if lane == Lane::Maint { 20_000 } else { 5 };
                tokio::time::advance(Duration::from_millis(cost)).await;
                s.done(lane, tokio::time::Instant::now().into_std(), None);
            }
            Err(wake) => tokio::time::sleep_until(wake.into()).await,
        }
    }
    let ticks = runs[&Lane::Ticker] as f64;
    let maint = runs[&Lane::Maint] as f64;
    // Maintenance every 120 s after the previous 20 s round ended: ~3600 / 140 rounds.
    assert!((24.0..=27.0).contains(&maint), "{runs:?}");
    // Ticks 1 s + 5 ms apart over the hour minus the time spent in maintenance.
    let expect = (3600.0 - 20.0 * maint) / 1.005;
    assert!(
        (ticks - expect).abs() <= maint + 2.0,
        "{ticks} ticks, expected ~{expect}"
    );
    assert!((80..=120).contains(&runs[&Lane::Retry]), "{runs:?}");
}
