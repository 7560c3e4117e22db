//! `liaison bench --quick`: the broker in the bench's process, the agencies' clients and
//! the consuming agency in a load-generator process of their own, and every phase's CPU
//! per process, the gateway alone and the ratio's ceiling, and the broker's own account of
//! where a lone request's time went.

use std::process::Command;

use liaison_tests::process::liaison_binary;

#[test]
fn a_quick_bench_runs_its_load_generator_apart_and_reports_cpu_per_process() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let json = dir.path().join("bench.json");
    let output = Command::new(liaison_binary())
        .args(["bench", "--quick", "--json"])
        .arg(&json)
        .env("LIAISON_LOG", "off")
        .output()
        .expect("run liaison bench");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        text.contains("from a separate load generator process"),
        "{text}"
    );
    assert!(
        text.contains("full path, 64 in flight, 1 HTTP/2 connection:"),
        "{text}"
    );
    assert!(
        text.contains("full path, 64 in flight, 8 HTTP/2 connections:"),
        "{text}"
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("the JSON report")).expect("JSON");
    let connections: Vec<u64> = report["by_connections"]
        .as_array()
        .expect("by_connections")
        .iter()
        .map(|r| r["connections"].as_u64().expect("connections"))
        .collect();
    assert_eq!(connections, [1, 8, 8, 1]);
    assert!(
        report["one_connection_ratio"]
            .as_f64()
            .expect("one_connection_ratio")
            > 0.0,
        "{}",
        report["one_connection_ratio"]
    );
    assert!(
        text.contains(
            "one HTTP/2 connection / eight (runs in the order 1, 8, 8, 1, taken together): "
        ),
        "{text}"
    );
    for run in [&report["full_path"], &report["by_connections"][0]] {
        let cpu = &run["cpu"];
        // The broker and the load generator are both busy for the whole window.
        assert!(
            cpu["liaison_s"].as_f64().expect("broker CPU") > 0.0,
            "{run}"
        );
        assert!(
            cpu["load_generator_s"]
                .as_f64()
                .expect("load generator CPU")
                > 0.0,
            "{run}"
        );
        assert!(cpu["rabbitmq_s"].is_number(), "{run}");
        assert!(cpu["postgresql_s"].is_number(), "{run}");
    }
    assert!(report["raw_floor"]["cpu"]["load_generator_s"].is_null());

    // The gateway alone: the same leads answered by the route preview, none of them
    // recorded (the broker's histograms count no accepted lead during the run); with the
    // floor and the ledger, the ratio's ceiling.
    let gateway = &report["gateway_alone"];
    assert_eq!(
        gateway["messages"], report["full_path"]["messages"],
        "{gateway}"
    );
    assert_eq!(gateway["stages"]["accepted"], 0, "{gateway}");
    assert!(
        gateway["cpu"]["liaison_s"].as_f64().expect("broker CPU") > 0.0,
        "{gateway}"
    );
    let ceiling = &report["ceiling"];
    let part = |name: &str| ceiling[name].as_f64().expect(name);
    let (floor, gateway_us, ledger) = (part("floor_us"), part("gateway_us"), part("ledger_us"));
    assert!(floor > 0.0 && gateway_us > 0.0 && ledger > 0.0, "{ceiling}");
    assert!(
        (part("ratio") - floor / (floor + gateway_us + ledger)).abs() < 1e-9,
        "{ceiling}"
    );
    assert!(
        text.contains("gateway alone (route previews: TLS, HTTP/2, admission; nothing recorded):"),
        "{text}"
    );
    assert!(
        text.contains("ceiling of the ratio on this machine, CPU µs per message: floor "),
        "{text}"
    );

    // Where a lone request's time went, from the broker's own histograms: every lead of
    // the run was accepted over HTTPS, and each went through a commit with all its steps.
    let alone = &report["one_in_flight"];
    let stages = &alone["stages"];
    assert_eq!(stages["accepted"], alone["messages"], "{alone}");
    let commit_ms = stages["commit_ms"].as_f64().expect("commit_ms");
    assert!(commit_ms > 0.0, "{stages}");
    let phases: Vec<(String, f64)> =
        serde_json::from_value(stages["commit_phases_ms"].clone()).expect("commit phases");
    let names: Vec<&str> = phases.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["seal", "begin", "read", "plan", "write", "commit"]);
    let sum: f64 = phases.iter().map(|(_, ms)| ms).sum();
    assert!(sum > 0.0 && sum <= commit_ms * 1.01, "{stages}");
    assert!(
        stages["accept_ms"].as_f64().expect("accept_ms")
            <= alone["accepted_ms"]["max"].as_f64().expect("max"),
        "{alone}"
    );
    assert!(text.contains("means, ms: agency saw "), "{text}");
}
