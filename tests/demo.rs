//! The README's demo command, run in its short non-interactive mode: a real daemon on a
//! throwaway cluster ticks a queue and a consumer receives every event produced.

use std::process::Command;

#[test]
fn demo_check_mode_delivers_every_event() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new("bash")
        .arg(format!("{root}/scripts/demo.sh"))
        .arg("--check")
        .env("PGQD_BIN", env!("CARGO_BIN_EXE_pgqd"))
        .env("PGQD_DEMO_SKIP_SETUP", "1")
        .output()
        .expect("run scripts/demo.sh");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "demo failed:\n{text}");
    assert!(
        text.contains("demo: ok, consumer received 5 of 5 events"),
        "{text}"
    );
}
