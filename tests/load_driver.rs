//! The load driver's figures against in-test servers with known behaviour (loopback only).
#![cfg(feature = "lab")]

use std::collections::{BTreeMap, HashSet};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use pinchpoint::load::{self, LoadArgs, LoadPlan, Mix};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::time::Instant;

/// Serves `router` on 127.0.0.1:0 and returns its base URL.
async fn serve(router: Router) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}")
}

fn value_body() -> Json<Value> {
    Json(json!({"resource_id": "r", "counter_type": "c", "value": 1}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_loop_against_10ms_server_gives_about_1000_qps() {
    let router = Router::new().route(
        "/api/v1/counter/increment",
        post(|| async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            value_body()
        }),
    );
    let url = serve(router).await;
    let report = load::run(&LoadPlan::closed(&url, 300, 10)).await.unwrap();

    assert_eq!(report.requests, 300);
    assert_eq!(report.ok, 300);
    assert!(report.errors_by_status.is_empty(), "{report:?}");
    assert_eq!(report.concurrency, 10);
    assert_eq!(report.connections_opened, 10, "one keep-alive connection per worker");
    assert!((500.0..=1100.0).contains(&report.qps), "qps {} outside 500..=1100", report.qps);
    let l = report.latency;
    assert_eq!(l.count, 300);
    assert!(l.p50 >= 0.010 && l.p50 < 0.030, "p50 {}", l.p50);
    assert!(l.p50 <= l.p95 && l.p95 <= l.p99 && l.p99 <= l.max, "{l:?}");
    assert!(l.mean >= 0.010, "{l:?}");
    assert_eq!(report.acked_ops, 300);
    assert_eq!(report.mode, "closed");
    assert!(report.service_latency.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_counted_by_status() {
    let seen = Arc::new(AtomicU64::new(0));
    let router = Router::new()
        .route(
            "/api/v1/counter/increment",
            post(|State(seen): State<Arc<AtomicU64>>| async move {
                let n = seen.fetch_add(1, Ordering::Relaxed);
                match n % 10 {
                    0 | 5 => Err((StatusCode::INTERNAL_SERVER_ERROR, "boom")),
                    3 => Err((StatusCode::CONFLICT, "overflow")),
                    _ => Ok(value_body()),
                }
            }),
        )
        .with_state(seen.clone());
    let url = serve(router).await;
    let report = load::run(&LoadPlan::closed(&url, 200, 4)).await.unwrap();

    assert_eq!(seen.load(Ordering::Relaxed), 200);
    assert_eq!(report.requests, 200);
    assert_eq!(report.ok, 140);
    let expect: BTreeMap<String, u64> = [("409".to_string(), 20), ("500".to_string(), 40)].into();
    assert_eq!(report.errors_by_status, expect);
    assert_eq!(report.errors(), 60);
    assert!((report.error_rate() - 0.3).abs() < 1e-9);
    // Errors still have a latency; only 200s are acknowledged.
    assert_eq!(report.latency.count, 200);
    assert_eq!(report.acked_ops, 140);
}

/// What the counting server applied, and the request ids it saw.
#[derive(Default)]
struct Counting {
    arrivals: AtomicU64,
    applied: Mutex<BTreeMap<(String, String), i64>>,
    ids: Mutex<Vec<String>>,
}

impl Counting {
    /// Every 7th request is refused with 503 and changes nothing.
    fn admit(&self, headers: &HeaderMap) -> bool {
        let id =
            headers.get("x-request-id").expect("every increment carries x-request-id").to_str().unwrap().to_string();
        self.ids.lock().unwrap().push(id);
        self.arrivals.fetch_add(1, Ordering::Relaxed) % 7 != 6
    }

    fn apply(&self, op: &Value) {
        let rid = op["resource_id"].as_str().unwrap().to_string();
        let ct = op["counter_type"].as_str().unwrap().to_string();
        let delta = op["delta"].as_i64().unwrap();
        assert_ne!(delta, 0);
        *self.applied.lock().unwrap().entry((rid, ct)).or_insert(0) += delta;
    }
}

async fn counting_server() -> (String, Arc<Counting>) {
    let state = Arc::new(Counting::default());
    let router = Router::new()
        .route(
            "/api/v1/counter/increment",
            post(|State(s): State<Arc<Counting>>, headers: HeaderMap, Json(op): Json<Value>| async move {
                if !s.admit(&headers) {
                    return Err(StatusCode::SERVICE_UNAVAILABLE);
                }
                s.apply(&op);
                Ok(value_body())
            }),
        )
        .route(
            "/api/v1/counter/batch-increment",
            post(|State(s): State<Arc<Counting>>, headers: HeaderMap, Json(b): Json<Value>| async move {
                if !s.admit(&headers) {
                    return Err(StatusCode::SERVICE_UNAVAILABLE);
                }
                let ops = b["operations"].as_array().unwrap();
                for op in ops {
                    s.apply(op);
                }
                if b["async"] == true {
                    Ok((StatusCode::ACCEPTED, Json(json!({"accepted": ops.len()}))))
                } else {
                    assert_eq!(b["async"], false);
                    Ok((StatusCode::OK, Json(json!({"results": ops}))))
                }
            }),
        )
        .with_state(state.clone());
    (serve(router).await, state)
}

fn assert_acked_matches(report: &load::LoadReport, server: &Counting, prefix: &str) {
    let applied = server.applied.lock().unwrap().clone();
    assert!(!applied.is_empty());
    assert_eq!(report.acked, applied, "acknowledged deltas == applied deltas");
    assert!(applied.keys().all(|(rid, ct)| rid.starts_with(prefix) && ct == "hits"));
    let ids = server.ids.lock().unwrap();
    assert_eq!(ids.len() as u64, report.requests);
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), ids.len(), "x-request-id is unique per request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_increments_match_what_the_server_applied() {
    let (url, server) = counting_server().await;
    let mut plan = LoadPlan::closed(&url, 350, 8);
    plan.keys = 13;
    let report = load::run(&plan).await.unwrap();
    assert_eq!(report.requests, 350);
    assert_eq!(report.errors_by_status.get("503"), Some(&50));
    assert_eq!(report.acked_ops, 300);
    assert_eq!(report.acked.len(), 13);
    assert_acked_matches(&report, &server, &plan.prefix);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_batches_match_what_the_server_applied() {
    let (url, server) = counting_server().await;
    let mut plan = LoadPlan::closed(&url, 70, 5);
    plan.mix = Mix::Batch;
    plan.batch_size = 9;
    plan.keys = 20;
    let report = load::run(&plan).await.unwrap();
    assert_eq!(report.requests, 70);
    assert_eq!(report.ok, 60);
    assert_eq!(report.acked_ops, 60 * 9);
    assert_acked_matches(&report, &server, &plan.prefix);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_batches_acknowledged_with_202_count() {
    let (url, server) = counting_server().await;
    let mut plan = LoadPlan::closed(&url, 21, 3);
    plan.mix = Mix::Batch;
    plan.asynchronous = true;
    plan.batch_size = 4;
    let report = load::run(&plan).await.unwrap();
    assert_eq!(report.ok, 18);
    assert_eq!(report.acked_ops, 18 * 4);
    assert_acked_matches(&report, &server, &plan.prefix);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_stay_unique_when_a_prefix_is_reused() {
    let (url, server) = counting_server().await;
    let mut plan = LoadPlan::closed(&url, 20, 2);
    plan.prefix = "fixed".into();
    load::run(&plan).await.unwrap();
    load::run(&plan).await.unwrap();
    let ids = server.ids.lock().unwrap();
    assert_eq!(ids.len(), 40);
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_prefix_per_plan_keeps_runs_apart() {
    let (url, server) = counting_server().await;
    let a = load::run(&LoadPlan::closed(&url, 20, 2)).await.unwrap();
    let b = load::run(&LoadPlan::closed(&url, 20, 2)).await.unwrap();
    assert_ne!(a.prefix, b.prefix);
    assert!(a.acked.keys().all(|(rid, _)| !b.acked.keys().any(|(r, _)| r == rid)));
    let applied = server.applied.lock().unwrap();
    assert_eq!(applied.len(), a.acked.len() + b.acked.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_and_health_hit_their_paths() {
    let reads = Arc::new(Mutex::new(Vec::<String>::new()));
    let router = Router::new()
        .route(
            "/api/v1/counter/{rid}/{ct}",
            get(
                |State(r): State<Arc<Mutex<Vec<String>>>>,
                 axum::extract::Path((rid, ct)): axum::extract::Path<(String, String)>| async move {
                    r.lock().unwrap().push(format!("{rid}/{ct}"));
                    value_body()
                },
            ),
        )
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
        .with_state(reads.clone());
    let url = serve(router).await;
    let mut plan = LoadPlan::closed(&url, 30, 3);
    plan.mix = Mix::Read;
    plan.keys = 5;
    plan.prefix = "rd".into();
    let r = load::run(&plan).await.unwrap();
    assert_eq!((r.ok, r.acked_ops), (30, 0));
    assert!(r.acked.is_empty());
    let distinct: HashSet<String> = reads.lock().unwrap().iter().cloned().collect();
    assert_eq!(distinct, (0..5).map(|k| format!("rd-{k}/hits")).collect());

    plan.mix = Mix::Health;
    let r = load::run(&plan).await.unwrap();
    assert_eq!(r.ok, 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_corrects_for_coordinated_omission_when_the_server_stalls() {
    // The server answers at once, except that the 40th request starts a 200 ms stall that
    // holds every request arriving during it.
    #[derive(Default)]
    struct Stall {
        n: AtomicU64,
        until: Mutex<Option<Instant>>,
    }
    let stall = Arc::new(Stall::default());
    let router = Router::new()
        .route(
            "/api/v1/counter/increment",
            post(|State(s): State<Arc<Stall>>| async move {
                let n = s.n.fetch_add(1, Ordering::Relaxed);
                let until = {
                    let mut u = s.until.lock().unwrap();
                    if n == 40 {
                        *u = Some(Instant::now() + Duration::from_millis(200));
                    }
                    *u
                };
                if let Some(until) = until {
                    tokio::time::sleep_until(until).await;
                }
                value_body()
            }),
        )
        .with_state(stall.clone());
    let url = serve(router).await;
    // 200 req/s for 1 s, at most 2 in flight: during the stall both slots are stuck, so ~40
    // requests cannot go out on time.
    let plan = LoadPlan::open(&url, 200.0, Duration::from_secs(1), 2);
    let started = Instant::now();
    let report = load::run(&plan).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(3));

    assert_eq!(report.mode, "open");
    assert_eq!(report.requests, 200);
    assert_eq!(report.ok, 200);
    assert!(report.concurrency <= 2);
    assert!(report.late >= 10, "late {}", report.late);
    assert!(report.max_dispatch_lag_seconds >= 0.1, "{report:?}");
    let corrected = report.latency;
    let service = report.service_latency.expect("open loop has service times");
    assert_eq!((corrected.count, service.count), (200, 200));
    // The stall shows in the corrected tail: every request that waited counts its wait.
    assert!(corrected.max >= 0.19, "{corrected:?}");
    assert!(corrected.p95 >= 0.08, "corrected {corrected:?}");
    // What an uncorrected driver would report hides it: only the 2 stuck requests were slow.
    assert!(service.p95 < 0.05, "service {service:?}");
    assert!(corrected.p95 > 2.0 * service.p95);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_keeps_its_rate_against_a_fast_server() {
    let router = Router::new().route("/health", get(|| async { "ok" }));
    let url = serve(router).await;
    let mut plan = LoadPlan::open(&url, 500.0, Duration::from_millis(600), 100);
    plan.mix = Mix::Health;
    let report = load::run(&plan).await.unwrap();
    assert_eq!(report.requests, 300);
    assert_eq!(report.ok, 300);
    assert_eq!(report.late, 0);
    // Bounded in time: 300 requests due over 0.6 s.
    assert!(report.elapsed_seconds >= 0.59 && report.elapsed_seconds < 2.0, "{}", report.elapsed_seconds);
    assert!(report.connections_opened <= 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_answers_become_timeouts() {
    let router = Router::new().route(
        "/api/v1/counter/increment",
        post(|| async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            value_body()
        }),
    );
    let url = serve(router).await;
    let mut plan = LoadPlan::closed(&url, 4, 2);
    plan.timeout = Duration::from_millis(100);
    let started = Instant::now();
    let report = load::run(&plan).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(report.errors_by_status.get("timeout"), Some(&4));
    assert_eq!(report.ok, 0);
    assert!(report.acked.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_when_the_server_closes_every_connection() {
    // A raw HTTP/1.1 server that answers one request per connection and closes it.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let (mut sock, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let _ = sock.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok").await;
            });
        }
    });
    let mut plan = LoadPlan::closed(&url, 40, 2);
    plan.mix = Mix::Health;
    let report = load::run(&plan).await.unwrap();
    assert_eq!(report.ok, 40, "{:?}", report.errors_by_status);
    assert_eq!(report.connections_opened, 40);
}

fn cli_args(url: &str) -> LoadArgs {
    LoadArgs {
        url: url.to_string(),
        requests: Some(10),
        concurrency: 2,
        rate: None,
        duration: None,
        method: None,
        data: None,
        headers: Vec::new(),
        json: true,
        mix: Some(Mix::Health),
        batch_size: 10,
        asynchronous: false,
        keys: 100,
        prefix: None,
        counter_type: "hits".into(),
        timeout: Duration::from_secs(5),
        max_in_flight: 1000,
        no_progress: true,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_target_exits_2_quickly() {
    // A port nobody listens on: bind, note it, close.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let started = Instant::now();
    let code = load::run_cli(cli_args(&format!("http://127.0.0.1:{port}"))).await.unwrap();
    assert_eq!(code, ExitCode::from(2));
    assert!(started.elapsed() < Duration::from_secs(2));

    let code = load::run_cli(cli_args("not a url")).await.unwrap();
    assert_eq!(code, ExitCode::from(2), "bad usage is exit 2 too");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_succeeds_against_a_live_target() {
    let url = serve(Router::new().route("/health", get(|| async { "ok" }))).await;
    let code = load::run_cli(cli_args(&url)).await.unwrap();
    assert_eq!(code, ExitCode::SUCCESS);
}
