//! `pinchpoint diagnose` and `/debug/doctor` on real processes: a blocking handler is named,
//! a healthy process comes out clean, saved snapshots give the same verdict as live ones,
//! bad input gets a one-line reason and exit code 2.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use pinchpoint::load::{self, LoadPlan, Mode};
use serde_json::Value;

fn diagnose(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).arg("diagnose").args(args).output().expect("run pinchpoint diagnose");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Closed-loop increments against `url` for `secs` in the background.
fn load_for(url: String, secs: u64, concurrency: usize) -> tokio::task::JoinHandle<anyhow::Result<load::LoadReport>> {
    let mut plan = LoadPlan::closed(url, u64::MAX, concurrency);
    plan.mode = Mode::Closed { requests: u64::MAX, concurrency, max_duration: Some(Duration::from_secs(secs)) };
    tokio::spawn(async move { load::run(&plan).await })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_handler_is_named_runtime_blocked_and_fail_on_sets_the_exit_code() {
    let gw_service = service(&[]);
    let gw = gateway(&gw_service.grpc_url(), &["--pool-size", "4", "--fault-blocking", "3ms"]);
    let load = load_for(gw.http_url(), 8, 16);
    // The window starts once the load is flowing through the blocking handler.
    let admin = gw.admin_url();
    eventually(Duration::from_secs(10), "the gateway serves the load", || {
        let admin = admin.clone();
        async move {
            let served = metric_sum(&scrape(&admin).await, "pinchpoint_http_requests_total", &[]);
            (served >= 50.0).then_some(())
        }
    })
    .await;
    let target = gw.admin_url();
    let (code, stdout, stderr) = tokio::task::spawn_blocking(move || {
        diagnose(&["--target", &target, "--window", "3s", "--json", "--fail-on", "warning"])
    })
    .await
    .unwrap();
    load.await.unwrap().expect("load ran");
    let v: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout} {stderr}"));
    let top = &v["findings"][0];
    assert_eq!(top["id"], "runtime-blocked", "{}", v["headline"]);
    assert!(top["flame"].as_str().unwrap().contains("--kind cpu"), "{top}");
    assert_eq!(code, if top["severity"] == "warning" { 1 } else { 0 }, "--fail-on warning: {}", v["headline"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_process_is_clean_live_and_from_saved_snapshots() {
    let mono = monolith(&[]);
    let load = load_for(mono.http_url(), 6, 4);
    let dir = std::env::temp_dir().join(format!("pinchpoint-doctor-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Four snapshots a second apart, saved the way the lab saves them.
    for i in 0..4 {
        let text = scrape(&mono.admin_url()).await;
        std::fs::write(dir.join(format!("monolith-{i:02}.prom")), text).unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let target = mono.admin_url();
    let live = tokio::task::spawn_blocking(move || diagnose(&["--target", &target, "--window", "2s", "--all"]));
    let (code, stdout, _) = live.await.unwrap();
    load.await.unwrap().expect("load ran");
    assert_eq!(code, 0);
    assert!(stdout.starts_with("No pinch at info or above"), "{stdout}");
    assert!(stdout.contains("checked, below info:"), "--all lists the checks: {stdout}");

    let d = dir.to_str().unwrap().to_string();
    let (code, stdout, stderr) =
        tokio::task::spawn_blocking(move || diagnose(&["--snapshots", &d, "--json"])).await.unwrap();
    assert_eq!(code, 0, "{stderr}");
    let v: Value = serde_json::from_str(&stdout).unwrap();
    let reported: Vec<&Value> = v["findings"].as_array().unwrap().iter().filter(|f| f["severity"] != "ok").collect();
    assert!(reported.is_empty(), "a healthy monolith: {reported:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_doctor_runs_the_rules_on_the_process_itself_and_refuses_bad_windows() {
    let mono = monolith(&[]);
    let client = reqwest::Client::new();
    let url = format!("{}/debug/doctor", mono.admin_url());
    let resp = client.get(format!("{url}?window=600ms")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert!(v["headline"].as_str().unwrap().starts_with("No pinch"), "{v}");
    let checked: Vec<&str> = v["findings"].as_array().unwrap().iter().filter_map(|f| f["id"].as_str()).collect();
    assert!(checked.contains(&"task-leak") && checked.contains(&"lock-contention"), "{checked:?}");
    for bad in ["forever", "2h", "10ms"] {
        let resp = client.get(format!("{url}?window={bad}")).send().await.unwrap();
        assert_eq!(resp.status(), 400, "window={bad}");
    }
}

#[test]
fn unreachable_targets_and_unknown_ids_exit_2_with_one_line() {
    let (code, stdout, stderr) = diagnose(&["--target", "http://127.0.0.1:1", "--window", "1s"]);
    assert_eq!(code, 2, "{stdout}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("cannot scrape http://127.0.0.1:1/metrics"), "{stderr}");
    let (code, _, stderr) = diagnose(&["--explain", "no-such-finding"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("lock-contention"), "lists the ids: {stderr}");
    let (code, stdout, _) = diagnose(&["--explain", "lock-contention"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("PinchpointLockContention") && stdout.contains("rate(lock_wait_seconds_sum)"), "{stdout}");
    let (code, _, stderr) = diagnose(&["--snapshots", "/nonexistent-pinchpoint-dir"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("cannot read /nonexistent-pinchpoint-dir"), "{stderr}");
}
