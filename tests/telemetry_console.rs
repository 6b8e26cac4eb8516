//! tokio-console end to end: a console client built on `console-api` connects to a real
//! `pinchpoint gateway --console` and receives task updates naming our tasks; in process,
//! the async lock and semaphore probes show up as console resources.

mod common;

use std::time::{Duration, Instant};

use common::*;
use console_api::instrument::instrument_client::InstrumentClient;
use console_api::instrument::{InstrumentRequest, Update};

/// Reads updates from the console at `addr` until `done` holds for what was seen (all the
/// updates' debug text), or panics after `deadline`.
async fn watch_until(
    addr: std::net::SocketAddr,
    deadline: Duration,
    what: &str,
    done: impl Fn(&str) -> bool,
) -> String {
    let until = Instant::now() + deadline;
    let mut client = loop {
        match InstrumentClient::connect(format!("http://{addr}")).await {
            Ok(c) => break c,
            Err(e) => {
                assert!(Instant::now() < until, "cannot connect to the console at {addr}: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let mut stream = client.watch_updates(InstrumentRequest {}).await.expect("watch_updates").into_inner();
    let mut seen = String::new();
    loop {
        let left = until.saturating_duration_since(Instant::now());
        let update: Update = match tokio::time::timeout(left, stream.message()).await {
            Ok(Ok(Some(u))) => u,
            Ok(Ok(None)) => panic!("console closed the stream before {what}"),
            Ok(Err(e)) => panic!("console stream failed: {e}"),
            Err(_) => panic!("timed out waiting for {what}; seen:\n{}", &seen[..seen.len().min(4000)]),
        };
        if let Some(t) = &update.task_update {
            for task in &t.new_tasks {
                seen.push_str(&format!("task {:?} at {:?}\n", task.fields, task.location));
            }
        }
        if let Some(r) = &update.resource_update {
            for res in &r.new_resources {
                seen.push_str(&format!("resource {} at {:?}\n", res.concrete_type, res.location));
            }
        }
        if done(&seen) {
            return seen;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_client_sees_named_tasks_of_a_gateway() {
    let svc = service(&[]);
    let grpc = svc.grpc_url();
    let gw = Proc::start_with_env(
        &["gateway", "--listen", ":0", "--admin", ":0", "--service", &grpc, "--console-addr", ":0"],
        &["http", "admin", "console"],
        &[],
    );
    let console = gw.addr("console");
    assert!(console.ip().is_loopback());
    assert_ne!(console.port(), 0);
    let api = Api::new(gw.http_url());
    let (status, _) = api.increment(&fresh("console"), "views", 1, None).await;
    assert_eq!(status, 200);
    let seen = watch_until(console, Duration::from_secs(20), "gateway.health_check and http.server tasks", |s| {
        s.contains("gateway.health_check") && s.contains("http.server") && s.contains("admin.server")
    })
    .await;
    // The pool's call-slot semaphore is a tokio semaphore: a console resource too.
    assert!(seen.contains("task"), "{seen}");
}

#[test]
fn console_flag_on_a_taken_port_fails_with_a_reason() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = std::process::Command::new(BIN)
        .args(["service", "--listen", ":0", "--admin", ":0", "--console-addr", &format!("127.0.0.1:{port}")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tokio-console") && err.contains(&port.to_string()), "{err}");
}

#[test]
fn a_console_retention_that_is_not_a_duration_fails_with_a_reason() {
    let out = std::process::Command::new(BIN)
        .args(["service", "--listen", ":0", "--admin", ":0", "--console-addr", ":0"])
        .env("TOKIO_CONSOLE_RETENTION", "ten minutes")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("TOKIO_CONSOLE_RETENTION") && err.contains("ten minutes"), "{err}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("listening on"), "nothing started");
}

#[test]
fn probes_appear_as_console_resources() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let _enter = rt.enter();
    let config = pinchpoint::telemetry::TelemetryConfig {
        console: Some("127.0.0.1:0".parse().unwrap()),
        otlp_from_env: false,
        ..pinchpoint::telemetry::TelemetryConfig::new("probe-test")
    };
    let guard = pinchpoint::telemetry::init(config).expect("telemetry init");
    let addr = guard.console_addr().expect("console address");
    rt.block_on(async move {
        let mutex = pinchpoint::probe::lock::AsyncMutex::new("console_test_mutex", 0u32);
        let rwlock = pinchpoint::probe::lock::AsyncRwLock::new("console_test_rwlock", 0u32);
        let sem = pinchpoint::probe::lock::Semaphore::new("console_test_sem", 2);
        let pool = pinchpoint::probe::pool::Semaphore::new("console_test_pool", 2);
        let jobs = pinchpoint::probe::worker::WorkerPool::new("console_test.jobs", 1, 4);
        let spawn_line = line!() + 1;
        let worker = pinchpoint::probe::task::spawn("console_test.worker", async move {
            loop {
                *mutex.lock().await += 1;
                *rwlock.write().await += 1;
                let _p = sem.acquire().await;
                let _q = pool.acquire().await;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        let seen = watch_until(addr, Duration::from_secs(20), "probe resources", |s| {
            s.contains("console_test.worker")
                && s.contains("console_test.jobs")
                && s.contains("resource Mutex")
                && s.contains("resource RwLock")
                && s.contains("resource Semaphore")
        })
        .await;
        worker.abort();
        jobs.shutdown().await;
        // The resources were created by the probes' constructors.
        assert!(seen.lines().any(|l| l.starts_with("resource") && l.contains("probe")), "{seen}");
        // The named task is located at the caller's line, not inside pinchpoint's spawn.
        let task = seen.lines().find(|l| l.starts_with("task") && l.contains("console_test.worker")).unwrap();
        assert!(task.contains("\"tests/telemetry_console.rs\""), "{task}");
        assert!(task.contains(&format!("line: Some({spawn_line})")), "expected line {spawn_line}: {task}");
        // The worker pool's tasks carry the pool's name.
        assert!(seen.lines().any(|l| l.starts_with("task") && l.contains("console_test.jobs")), "{seen}");
    });
}
