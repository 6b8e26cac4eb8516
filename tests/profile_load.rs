//! Real processes: profiling under load neither hangs nor crashes, and `pinchpoint flame`
//! captures, diffs and fails cleanly.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// `pinchpoint load` against `url` for `secs`, as a child (bounded by --duration).
fn load(url: &str, secs: u32, concurrency: u32) -> std::process::Child {
    Command::new(BIN)
        .args(["load", "--url", url, "--duration", &format!("{secs}s"), "-c", &concurrency.to_string()])
        .args(["--prefix", &fresh("prof")])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .env("RUST_LOG", "warn")
        .spawn()
        .expect("spawn pinchpoint load")
}

fn sum_folded(text: &str) -> i64 {
    text.lines().filter_map(|l| l.rsplit(' ').next()?.parse::<i64>().ok()).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_seconds_of_profiling_under_load_neither_hangs_nor_crashes() {
    let svc = service(&[]);
    let mut gw = gateway(&svc.grpc_url(), &["--coalesce"]);
    let api = Api::new(gw.http_url());
    eventually(Duration::from_secs(20), "gateway healthy", || async { (api.health().await == 200).then_some(()) })
        .await;
    let mut driver = load(&gw.http_url(), 14, 32);
    let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();

    let started = Instant::now();
    let cpu = http.get(format!("{}/debug/pprof/profile?seconds=10&format=folded", gw.admin_url())).send();
    let waits = http.get(format!("{}/debug/pprof/contention?seconds=10&format=folded", svc.admin_url())).send();
    let (cpu, waits) = tokio::join!(cpu, waits);
    let (cpu, waits) = (cpu.expect("cpu profile answers"), waits.expect("contention profile answers"));
    assert_eq!(cpu.status(), 200);
    assert_eq!(waits.status(), 200);
    let cpu = cpu.text().await.unwrap();
    waits.text().await.unwrap();
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(10) && took < Duration::from_secs(45), "profiles took {took:?}");
    // The gateway was busy: ~99 Hz of its CPU time over 10 s gives hundreds of samples.
    assert!(sum_folded(&cpu) > 100, "only {} CPU samples:\n{cpu}", sum_folded(&cpu));
    assert!(cpu.contains("tokio"), "stacks reach the tokio runtime");

    // Still alive and serving, then a clean exit.
    assert_eq!(api.health().await, 200, "gateway serves after profiling");
    let (status, body) = api.increment(&fresh("after"), "hits", 1, None).await;
    assert_eq!(status, 200, "{body}");
    let done = wait_exit(&mut driver, Duration::from_secs(30));
    assert!(done.success(), "load driver: {done:?}");
    assert!(gw.terminate(Duration::from_secs(15)).success(), "gateway exits cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flame_cli_captures_contention_and_diffs() {
    let dir = std::env::temp_dir().join(fresh("flame"));
    std::fs::create_dir_all(&dir).unwrap();
    let mono = monolith(&["--lock", "global", "--store-work", "20us"]);
    let mut driver = load(&mono.http_url(), 6, 64);

    let folded = dir.join("global.folded");
    let out = Command::new(BIN)
        .args(["flame", "--target", &mono.admin_url(), "--seconds", "2", "--kind", "contention", "-o"])
        .arg(&folded)
        .output()
        .unwrap();
    assert!(out.status.success(), "flame: {}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&folded).unwrap();
    assert!(text.contains(";lock:store.global"), "global lock named in:\n{text}");

    let cpu = dir.join("cpu.svg");
    let out = Command::new(BIN)
        .args(["flame", "--target", &mono.admin_url(), "--seconds", "1", "-o"])
        .arg(&cpu)
        .output()
        .unwrap();
    assert!(out.status.success(), "flame cpu: {}", String::from_utf8_lossy(&out.stderr));
    assert!(std::fs::read_to_string(&cpu).unwrap().contains("<svg"));
    wait_exit(&mut driver, Duration::from_secs(30));

    let after = dir.join("after.folded");
    std::fs::write(&after, text.replace("lock:store.global", "lock:store.shard")).unwrap();
    let diff = dir.join("diff.svg");
    let out = Command::new(BIN).args(["flame", "diff"]).arg(&folded).arg(&after).arg("-o").arg(&diff).output().unwrap();
    assert!(out.status.success(), "flame diff: {}", String::from_utf8_lossy(&out.stderr));
    let svg = std::fs::read_to_string(&diff).unwrap();
    assert!(svg.contains("<svg") && svg.contains("lock:store.shard"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn flame_cli_exits_2_when_the_target_is_unreachable() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let out = Command::new(BIN)
        .args(["flame", "--target", &format!("http://127.0.0.1:{port}"), "--seconds", "1", "-o", "/tmp/x.svg"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "one-line reason: {stderr}");
    assert!(stderr.contains("cannot reach"), "{stderr}");

    let out = Command::new(BIN).args(["flame", "--target", ":1", "-o", "/tmp/x.png"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "unknown extension is bad usage");
}
