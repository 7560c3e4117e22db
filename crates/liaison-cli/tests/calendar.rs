//! `liaison calendar due`, run as the built binary: one RFC 3339 line at +08:00 on
//! stdout, or a non-zero exit with the reason on stderr.

use std::process::{Command, Output};

fn liaison(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_liaison"))
        .args(args)
        // Run from elsewhere: the built-in calendars must not depend on the directory.
        .current_dir(std::env::temp_dir())
        .env_remove("LIAISON_CALENDAR_DIR")
        .output()
        .expect("run liaison")
}

fn due(args: &[&str]) -> String {
    let mut all = vec!["calendar", "due"];
    all.extend_from_slice(args);
    let out = liaison(&all);
    assert!(
        out.status.success(),
        "liaison {all:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn refused(args: &[&str]) -> String {
    let mut all = vec!["calendar", "due"];
    all.extend_from_slice(args);
    let out = liaison(&all);
    assert!(!out.status.success(), "liaison {all:?} succeeded");
    assert!(out.stdout.is_empty());
    String::from_utf8(out.stderr).unwrap()
}

#[test]
fn due_prints_one_rfc3339_line_in_china_standard_time() {
    // National Day 2025 moves the last day from 3 to 9 October.
    assert_eq!(
        due(&["--from", "2025-09-30T15:00:00+08:00", "--period", "P3D"]),
        "2025-10-10T00:00:00+08:00\n"
    );
    // 31 January + 1 month = 28 February 2026, a Saturday declared a working day.
    assert_eq!(
        due(&["--from", "2026-01-31T02:00:00Z", "--period", "P1M"]),
        "2026-03-01T00:00:00+08:00\n"
    );
    // Hours: from the next full hour, no holiday extension; a UTC start is printed at +08:00.
    assert_eq!(
        due(&["--from", "2025-10-01T02:15:00Z", "--period", "PT24H"]),
        "2025-10-02T11:00:00+08:00\n"
    );
    // Working days: Friday 13 February 2026 → Saturday the 14th is a declared working day.
    assert_eq!(
        due(&["--from", "2026-02-13T10:00:00+08:00", "--working-days", "1"]),
        "2026-02-15T00:00:00+08:00\n"
    );
}

#[test]
fn a_year_without_a_calendar_is_an_error() {
    let err = refused(&["--from", "2026-12-30T10:00:00+08:00", "--period", "P3D"]);
    assert!(err.contains("no holiday calendar for 2027"), "{err}");
    // 31 December 2026 may still be moved by the 2027 notice.
    let err = refused(&["--from", "2026-12-30T10:00:00+08:00", "--period", "P1D"]);
    assert!(err.contains("no holiday calendar for 2027"), "{err}");
}

#[test]
fn a_calendar_directory_replaces_the_built_in_years() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("2027.toml"),
        "year = 2027\nnotice = \"n\"\ndocument = \"d\"\nissued = 2026-11-01\n\
         [[holidays]]\nname = \"元旦\"\nfirst = 2027-01-01\nlast = 2027-01-03\n",
    )
    .unwrap();
    let dir_arg = dir.path().to_str().unwrap();
    // Friday 1 January 2027 is a holiday of this file; Monday the 4th is the last day.
    assert_eq!(
        due(&[
            "--from",
            "2026-12-31T10:00:00+08:00",
            "--period",
            "P1D",
            "--calendar-dir",
            dir_arg
        ]),
        "2027-01-05T00:00:00+08:00\n"
    );
    // The built-in 2026 is gone: a 2026 last day is now an error.
    let err = refused(&[
        "--from",
        "2026-06-01T10:00:00+08:00",
        "--period",
        "P1D",
        "--calendar-dir",
        dir_arg,
    ]);
    assert!(err.contains("no holiday calendar for 2026"), "{err}");
}

#[test]
fn bad_arguments_are_refused_without_a_panic() {
    for args in [
        &["--from", "2025-03-10T10:00:00+08:00"][..],
        &["--from", "2025-03-10", "--period", "P3D"],
        &["--from", "2025-03-10T10:00:00+08:00", "--period", "P0D"],
        &["--from", "2025-03-10T10:00:00+08:00", "--period", "P1W"],
        &["--from", "2025-03-10T10:00:00+08:00", "--working-days", "0"],
        &[
            "--from",
            "2025-03-10T10:00:00+08:00",
            "--period",
            "P3D",
            "--working-days",
            "3",
        ],
        &["--from", "9999-12-31T10:00:00+08:00", "--period", "PT24H"],
    ] {
        let err = refused(args);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
}
