//! `pinchpoint load` as a user runs it against their own service: the real binary, a request
//! given with -m/-d/-H, and Ctrl-C ending a long run with a partial report. The targets are
//! servers in the test, on loopback.
#![cfg(feature = "lab")]

mod common;

use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::Router;
use serde_json::Value;
use tokio::net::TcpListener;

/// What the test server saw of one request.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    method: String,
    target: String,
    x_a: Vec<String>,
    body: Bytes,
}

type Log = Arc<Mutex<Vec<Seen>>>;

/// Serves every path on 127.0.0.1:0, logging each request and answering 200 after `delay`.
async fn recording_server(delay: Duration) -> (String, Log) {
    let log: Log = Arc::default();
    let app = Router::new()
        .fallback(|State((log, delay)): State<(Log, Duration)>, req: Request| async move {
            let (parts, body) = req.into_parts();
            let body = axum::body::to_bytes(body, 1 << 20).await.unwrap_or_default();
            let x_a = parts.headers.get_all("x-a").iter().map(|v| v.to_str().unwrap_or("?").to_string()).collect();
            let target = parts.uri.path_and_query().map_or("", |pq| pq.as_str()).to_string();
            log.lock().unwrap().push(Seen { method: parts.method.to_string(), target, x_a, body });
            tokio::time::sleep(delay).await;
            "ok"
        })
        .with_state((log.clone(), delay));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), log)
}

fn load_command(args: &[&str]) -> Command {
    let mut cmd = Command::new(common::BIN);
    cmd.arg("load").args(args).env("RUST_LOG", "warn").stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_exactly_the_request_given_on_the_command_line() {
    let (base, log) = recording_server(Duration::ZERO).await;
    let dir = std::env::temp_dir().join(format!("pinchpoint-load-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let body = br#"{"name":"probe","tags":["a","b"]}"#;
    std::fs::write(dir.join("body.json"), body).unwrap();
    let url = format!("{base}/any/path?q=1");
    let out = tokio::task::spawn_blocking(move || {
        load_command(&["-m", "POST", "-d", "@body.json", "-H", "x-a: 1", "--url", &url, "-n", "5", "-c", "1", "--json"])
            .current_dir(&dir)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "load failed: {}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], 5, "{report}");
    assert_eq!(report["mix"], "url");
    assert_eq!(report["partial"], false);
    let seen = log.lock().unwrap().clone();
    assert_eq!(seen.len(), 5);
    let expected = Seen {
        method: "POST".into(),
        target: "/any/path?q=1".into(),
        x_a: vec!["1".into()],
        body: Bytes::from_static(body),
    };
    for s in &seen {
        assert_eq!(s, &expected);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_request_flags_are_refused_before_any_request() {
    let (base, log) = recording_server(Duration::ZERO).await;
    for args in [
        vec!["-d", "@/nonexistent/body.json"],
        vec!["-H", "no colon here"],
        vec!["-m", "GE T"],
        vec!["--mix", "increment", "-m", "PUT"],
    ] {
        let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        all.extend(["--url".to_string(), base.clone(), "-n".to_string(), "3".to_string()]);
        let out = tokio::task::spawn_blocking(move || {
            let all: Vec<&str> = all.iter().map(String::as_str).collect();
            load_command(&all).output().unwrap()
        })
        .await
        .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.starts_with("pinchpoint load: "), "{args:?}: {err}");
    }
    assert!(log.lock().unwrap().is_empty(), "a refused run sent nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_ends_a_long_run_with_a_partial_report() {
    let (base, log) = recording_server(Duration::from_millis(20)).await;
    let url = format!("{base}/slow");
    let mut child = load_command(&["--url", &url, "--duration", "60s", "-c", "4", "--json"]).spawn().unwrap();
    // Signal once the run is really under way.
    let until = Instant::now() + Duration::from_secs(20);
    while log.lock().unwrap().len() < 20 {
        assert!(Instant::now() < until, "the load run sent fewer than 20 requests in 20 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let signalled = Instant::now();
    common::signal(child.id(), "INT");
    let status = tokio::task::spawn_blocking(move || {
        let status = common::wait_exit(&mut child, Duration::from_secs(10));
        (status, child)
    })
    .await
    .unwrap();
    let (status, child) = status;
    let stopped_after = signalled.elapsed();
    assert!(status.success(), "exit status {status:?}");
    // The grace for in-flight requests is 5 s; a 20 ms request needs far less of it.
    assert!(stopped_after < Duration::from_secs(5), "stopped {stopped_after:?} after SIGINT");
    let out = child.wait_with_output().unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["partial"], true, "{report}");
    assert_eq!(report["abandoned"], 0, "{report}");
    let requests = report["requests"].as_u64().unwrap();
    assert!(requests >= 20, "{report}");
    assert_eq!(report["ok"].as_u64(), Some(requests), "in-flight requests finished and were counted");
    assert!(report["elapsed_seconds"].as_f64().unwrap() < 40.0, "{report}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("stopping"), "{err}");
}
