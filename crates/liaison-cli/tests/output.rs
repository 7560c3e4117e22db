//! What the built binary prints, as snapshots: a change to the command line's output shows
//! in review. Run from a temporary directory so that only built-in data is used.

use std::process::Command;

fn stdout(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_liaison"))
        .args(args)
        .current_dir(std::env::temp_dir())
        .env_remove("LIAISON_CONFIG")
        .output()
        .expect("run liaison");
    assert!(
        out.status.success(),
        "liaison {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

#[test]
fn policy_check_of_the_built_in_data() {
    insta::assert_snapshot!("policy_check", stdout(&["policy", "check"]));
}

#[test]
fn calendar_due_across_the_holidays() {
    let lines: Vec<String> = [
        ["2025-09-30T15:00:00+08:00", "P3D"],
        ["2026-01-31T02:00:00Z", "P1M"],
        ["2025-10-01T02:15:00Z", "PT24H"],
        ["2025-12-29T09:00:00+08:00", "P3D"],
        ["2026-09-29T10:00:00+08:00", "P3D"],
    ]
    .iter()
    .map(|[from, period]| {
        let due = stdout(&["calendar", "due", "--from", from, "--period", period]);
        format!("{from} + {period} → {}", due.trim())
    })
    .collect();
    insta::assert_snapshot!("calendar_due", lines.join("\n"));
}
