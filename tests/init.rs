//! `pinchpoint::init()`: one call serves the admin listener with the runtime, task and layer
//! families, enforces the admin token rule, and stops the listener when the guard drops.
//! One test per process owns the global tracing subscriber, so the others turn tracing off.

use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use pinchpoint::layer::HttpMetricsLayer;
use pinchpoint::metrics::catalog::{self, Spec};

fn has_samples(text: &str, spec: &Spec) -> bool {
    let name = spec.exposed_name();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .any(|l| l.strip_prefix(name.as_str()).is_some_and(|r| r.starts_with(['{', ' ']) || r.starts_with("_count")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_serves_the_catalog_families_and_stops_on_drop() {
    let guard = pinchpoint::init()
        .service_name("init-test")
        .admin_addr("127.0.0.1:0".parse().unwrap())
        .otlp_from_env(false)
        .start()
        .await
        .expect("init");
    let admin = guard.admin_addr().expect("admin address");
    assert!(admin.ip().is_loopback() && admin.port() != 0);

    // The service itself: an axum app built with the layer, and a named task.
    let app = Router::new().route("/orders/{id}", get(|| async { "order" })).layer(HttpMetricsLayer::new());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = listener.local_addr().unwrap();
    pinchpoint::probe::task::spawn("init_test.api", async move { axum::serve(listener, app).await });
    let client = reqwest::Client::new();
    for id in [1, 2, 3] {
        assert!(client.get(format!("http://{api}/orders/{id}")).send().await.unwrap().status().is_success());
    }

    let text = client.get(format!("http://{admin}/metrics")).send().await.unwrap().text().await.unwrap();
    for spec in [
        &catalog::HTTP_REQUESTS,
        &catalog::HTTP_DURATION,
        &catalog::RUNTIME_WORKERS,
        &catalog::RUNTIME_ALIVE_TASKS,
        &catalog::TASKS_ALIVE,
        &catalog::TASKS_SPAWNED,
    ] {
        assert!(has_samples(&text, spec), "{} missing from /metrics", spec.exposed_name());
    }
    assert!(text.contains(r#"route="/orders/{id}""#) && !text.contains("/orders/1"), "route templates only");

    drop(guard);
    let until = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(admin).await.is_ok() {
        assert!(Instant::now() < until, "the admin listener still accepts 10 s after the guard dropped");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_loopback_admin_needs_a_token() {
    let err = pinchpoint::init().tracing(false).admin_addr("0.0.0.0:0".parse().unwrap()).start().await.unwrap_err();
    assert!(matches!(err, pinchpoint::InitError::AdminTokenRequired(_)), "{err}");
    assert!(err.to_string().contains("admin_token"), "{err}");

    // With a token the listener serves, and only to requests that present it.
    let guard = pinchpoint::init()
        .tracing(false)
        .admin_addr("0.0.0.0:0".parse().unwrap())
        .admin_token("s3cret")
        .start()
        .await
        .expect("init with a token");
    let port = guard.admin_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}/metrics");
    let client = reqwest::Client::new();
    assert_eq!(client.get(&url).send().await.unwrap().status(), 401);
    let ok = client.get(&url).bearer_auth("s3cret").send().await.unwrap();
    assert_eq!(ok.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_admin_port_is_an_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let err = pinchpoint::init().tracing(false).admin_addr(addr).start().await.unwrap_err();
    assert!(matches!(err, pinchpoint::InitError::AdminBind { .. }), "{err}");
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
}
