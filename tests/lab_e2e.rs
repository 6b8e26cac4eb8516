//! The lab end to end: real child processes, the load ladder, consistency checks,
//! flamegraph captures, a clean stop — and each scenario's headline figure moving against
//! `tuned` the way DESIGN.md's scenario table says (ratios, not absolute times).

mod common;

use std::process::Command;

use common::BIN;
use serde_json::Value;

/// Runs `pinchpoint lab ARGS --json` and returns (report, lab pid).
fn lab(args: &[&str]) -> (Value, u32) {
    let child = Command::new(BIN)
        .arg("lab")
        .args(args)
        .arg("--json")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .expect("start pinchpoint lab");
    let pid = child.id();
    let out = child.wait_with_output().expect("lab runs");
    assert!(out.status.success(), "lab {args:?} exited with {:?}", out.status);
    (serde_json::from_slice(&out.stdout).expect("lab --json prints JSON"), pid)
}

/// Processes still running that a lab with this pid started.
fn leftovers(lab_pid: u32) -> Vec<u32> {
    let marker = format!("PINCHPOINT_LAB={lab_pid}");
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .map(|env| env.split(|b| *b == 0).any(|kv| kv == marker.as_bytes()))
                .unwrap_or(false)
        })
        .collect()
}

fn scenario<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["scenarios"].as_array().unwrap().iter().find(|s| s["name"] == name).unwrap_or_else(|| panic!("{name} ran"))
}

/// A headline figure of `process`, or 0 when it is absent (e.g. no waits recorded).
fn figure(sc: &Value, process: &str, id: &str, label_has: &str) -> f64 {
    sc["headline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["process"] == process && f["id"] == id && f["label"].as_str().unwrap().contains(label_has))
        .map(|f| f["value"].as_f64().unwrap())
        .sum()
}

#[test]
fn quick_run_reports_consistent_levels_flamegraphs_and_leaves_no_process() {
    let out = std::env::temp_dir().join(format!("pinchpoint-lab-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let (report, pid) = lab(&["--scenario", "tuned", "--quick", "--max-levels", "3", "--out", out.to_str().unwrap()]);
    let tuned = scenario(&report, "tuned");
    let levels = tuned["levels"].as_array().unwrap();
    assert_eq!(levels.len(), 3);
    for l in levels {
        assert_eq!(l["consistent"], true, "level {} inconsistent", l["level"]);
        assert_eq!(l["errors"], 0);
        assert!(l["qps_median"].as_f64().unwrap() > 0.0);
    }
    assert_eq!(tuned["stopped_cleanly"], true);
    assert!(leftovers(pid).is_empty(), "children outlived the lab: {:?}", leftovers(pid));

    let captures = tuned["flamegraphs"].as_array().unwrap();
    assert_eq!(captures.len(), 4, "cpu and contention of gateway and service");
    for c in captures {
        let path = out.join(c["path"].as_str().unwrap_or_else(|| panic!("capture failed: {c}")));
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.contains("<svg"), "{} is not an SVG", path.display());
    }
    let html = std::fs::read_to_string(out.join("index.html")).unwrap();
    assert!(html.contains("tuned") && html.contains("<svg"));
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    assert_eq!(saved["scenarios"][0]["name"], "tuned");
    for snap in tuned["snapshots"].as_array().unwrap() {
        let text = std::fs::read_to_string(out.join(snap.as_str().unwrap())).unwrap();
        assert!(text.contains("pinchpoint_build_info"));
    }
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn each_scenario_moves_its_headline_metric_against_tuned() {
    let names = [
        "tuned",
        "dial-per-request",
        "single-connection",
        "global-lock",
        "task-leak",
        "alloc-churn",
        "blocking-call",
        "retry-storm",
    ];
    // Heavier work under the store lock than the default 20us: in a debug build everything
    // around the lock is slow, and the lock must still be a real part of each request.
    let mut args = vec!["--quick", "--max-levels", "3", "--no-flamegraphs", "--store-work", "200us"];
    for n in names {
        args.extend(["--scenario", n]);
    }
    let (report, pid) = lab(&args);
    assert!(leftovers(pid).is_empty());
    let tuned = scenario(&report, "tuned");
    let floor = |v: f64, min: f64| v.max(min);

    let dial = scenario(&report, "dial-per-request");
    let opened = figure(dial, "gateway", "pool_opened_per_s", "rpc");
    assert!(
        opened > 50.0 && opened > 20.0 * floor(figure(tuned, "gateway", "pool_opened_per_s", "rpc"), 1.0),
        "churn {opened}/s"
    );

    let single = scenario(&report, "single-connection");
    let wait = figure(single, "gateway", "pool_wait_ms", "rpc");
    let tuned_wait = floor(figure(tuned, "gateway", "pool_wait_ms", "rpc"), 0.001);
    assert!(wait > 10.0 * tuned_wait, "rpc pool wait {wait} ms vs tuned {tuned_wait} ms");

    let global = scenario(&report, "global-lock");
    let lock_wait = figure(global, "service", "lock_wait_per_s", "store.global");
    let tuned_lock = floor(figure(tuned, "service", "lock_wait_per_s", "store.shard"), 1e-3);
    assert!(lock_wait > 3.0 * tuned_lock, "store.global wait {lock_wait} s/s vs tuned {tuned_lock}");
    let contended = figure(global, "service", "lock_contended_share", "store.global");
    let tuned_contended = floor(figure(tuned, "service", "lock_contended_share", "store.shard"), 1e-3);
    assert!(contended > 5.0 * tuned_contended, "store.global contended {contended} vs tuned {tuned_contended}");

    let leak = scenario(&report, "task-leak");
    let peak_requests = leak["levels"][2]["requests"].as_f64().unwrap();
    let growth = figure(leak, "gateway", "tasks_alive_growth", "");
    assert!(growth >= 0.9 * peak_requests, "leaked tasks grew by {growth} over {peak_requests} requests");
    assert!(figure(tuned, "gateway", "tasks_alive_growth", "") < 0.1 * peak_requests);
    // Growth, not age: the doctor names the leaking spawn site, and tuned's long-lived tasks
    // (accept loops, tickers) are no suspects.
    let top = &leak["verdict"]["findings"][0];
    assert_eq!(top["id"], "task-leak", "{}", leak["verdict"]["headline"]);
    assert!(top["where"]["resource"].as_str().unwrap().starts_with("src/counter/faults.rs:"), "{top}");
    assert_eq!(figure(tuned, "gateway", "leak_suspects", ""), 0.0, "a healthy gateway has no leak suspects");

    let churn = scenario(&report, "alloc-churn");
    let per_request = figure(churn, "gateway", "request_alloc_kib", "");
    assert!(
        per_request > 20.0 * floor(figure(tuned, "gateway", "request_alloc_kib", ""), 1.0),
        "{per_request} KiB/request"
    );

    let blocking = scenario(&report, "blocking-call");
    let slow = figure(blocking, "gateway", "slow_poll_share", "");
    assert!(slow > 3.0 * floor(figure(tuned, "gateway", "slow_poll_share", ""), 0.01), "slow polls {slow}");

    let storm = scenario(&report, "retry-storm");
    let amplification = figure(storm, "gateway", "rpc_per_request", "");
    assert!(amplification > 2.5, "retry storm sent {amplification} RPCs per request");
    assert!(figure(tuned, "gateway", "rpc_per_request", "") <= 1.0);
}

#[test]
fn compare_runs_two_scenarios_interleaved_and_reports_ratios() {
    let (report, pid) = lab(&["--compare", "tuned", "monolith", "--quick", "--max-levels", "2"]);
    assert!(leftovers(pid).is_empty());
    assert_eq!((report["a"].as_str(), report["b"].as_str()), (Some("tuned"), Some("monolith")));
    assert_eq!(report["stopped_cleanly"], true);
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    for row in rows {
        let (a, b) = (row["a"]["qps_median"].as_f64().unwrap(), row["b"]["qps_median"].as_f64().unwrap());
        let ratio = row["qps_ratio"].as_f64().unwrap();
        assert!((ratio - b / a).abs() < 1e-9, "ratio is B/A");
        assert_eq!(row["a"]["consistent"], true);
        assert_eq!(row["b"]["consistent"], true);
    }
}
