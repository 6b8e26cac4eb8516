//! An axum app and a tonic service built only from pinchpoint's layers expose the catalog's
//! HTTP and RPC families: routes by template (a path with an id folds into its route, never a
//! raw path), RPC methods and codes, the request's allocated bytes. Real servers on loopback.
#![cfg(feature = "lab")]

use std::time::Duration;

use axum::routing::get;
use axum::Router;
use pinchpoint::layer::{Attempt, HttpMetricsLayer, RpcClientLayer, RpcServerLayer};
use pinchpoint::metrics::catalog;
use pinchpoint::probe::alloc::CountingAlloc;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tower::Layer;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc::system();

/// The value of the sample `name{labels}` in the exposition, if present.
fn sample(exposition: &str, name: &str, labels: &str) -> Option<f64> {
    let prefix = format!("{name}{{{labels}}} ");
    exposition.lines().find_map(|l| l.strip_prefix(&prefix)).and_then(|v| v.split(' ').next()?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_layer_records_route_templates_never_raw_paths() {
    let app = Router::new()
        .route("/layer-users/{id}", get(|| async { vec![7u8; 4096] }))
        .route("/layer-users/{id}/orders", get(|| async { (axum::http::StatusCode::CONFLICT, "busy") }))
        .layer(HttpMetricsLayer::new());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let client = reqwest::Client::new();
    for path in ["/layer-users/42", "/layer-users/43?full=1", "/layer-users/42/orders", "/layer-nowhere/1"] {
        client.get(format!("{base}{path}")).send().await.unwrap();
    }
    let text = pinchpoint::metrics::encode();
    let requests = catalog::HTTP_REQUESTS.exposed_name();
    assert_eq!(sample(&text, &requests, r#"route="/layer-users/{id}",method="GET",status="200""#), Some(2.0), "{text}");
    assert_eq!(sample(&text, &requests, r#"route="/layer-users/{id}/orders",method="GET",status="409""#), Some(1.0));
    assert_eq!(sample(&text, &requests, r#"route="unmatched",method="GET",status="404""#), Some(1.0));
    assert!(!text.contains("/layer-users/42") && !text.contains("layer-nowhere"), "a raw path became a label");
    let duration = format!("{}_count", catalog::HTTP_DURATION.exposed_name());
    assert_eq!(sample(&text, &duration, r#"route="/layer-users/{id}",method="GET""#), Some(2.0));
    // Each answer allocated its 4 KiB body inside the request.
    let alloc = format!("{}_count", catalog::REQUEST_ALLOC.exposed_name());
    assert_eq!(sample(&text, &alloc, r#"route="/layer-users/{id}""#), Some(2.0), "{text}");
    let alloc_sum = format!("{}_sum", catalog::REQUEST_ALLOC.exposed_name());
    assert!(sample(&text, &alloc_sum, r#"route="/layer-users/{id}""#).unwrap() >= 2.0 * 4096.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_layers_record_methods_codes_and_retries() {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter.set_service_status("layer.Known", tonic_health::ServingStatus::Serving).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    tokio::spawn(
        tonic::transport::Server::builder()
            .layer(RpcServerLayer::new())
            .add_service(health)
            .serve_with_incoming(incoming),
    );
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .unwrap();
    let mut client = HealthClient::new(tower::ServiceBuilder::new().layer(RpcClientLayer::new()).service(channel));

    client.check(HealthCheckRequest { service: "layer.Known".into() }).await.unwrap();
    let status = client.check(HealthCheckRequest { service: "layer.Unknown".into() }).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);
    let mut retry = tonic::Request::new(HealthCheckRequest { service: "layer.Known".into() });
    retry.extensions_mut().insert(Attempt(1));
    client.check(retry).await.unwrap();

    let text = pinchpoint::metrics::encode();
    let server = catalog::RPC_SERVER_REQUESTS.exposed_name();
    let client_total = catalog::RPC_CLIENT_REQUESTS.exposed_name();
    assert_eq!(sample(&text, &server, r#"method="Check",code="ok""#), Some(2.0), "{text}");
    assert_eq!(sample(&text, &server, r#"method="Check",code="not_found""#), Some(1.0));
    assert_eq!(sample(&text, &client_total, r#"method="Check",code="ok""#), Some(2.0));
    assert_eq!(sample(&text, &client_total, r#"method="Check",code="not_found""#), Some(1.0));
    assert_eq!(sample(&text, &catalog::RPC_CLIENT_RETRIES.exposed_name(), r#"method="Check""#), Some(1.0));
    let server_duration = format!("{}_count", catalog::RPC_SERVER_DURATION.exposed_name());
    assert_eq!(sample(&text, &server_duration, r#"method="Check""#), Some(3.0));

    // Calls that get no answer: past the client's deadline, and to a port nobody serves.
    let slow = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let slow_addr = slow.local_addr().unwrap();
    let (_reporter, health) = tonic_health::server::health_reporter();
    let stall = tower::util::MapFutureLayer::new(|answer| async move {
        tokio::time::sleep(Duration::from_secs(5)).await;
        answer.await
    });
    let slow_server = tokio::spawn(
        tonic::transport::Server::builder()
            .layer(stall)
            .add_service(health)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(slow)),
    );
    let impatient = tonic::transport::Endpoint::from_shared(format!("http://{slow_addr}"))
        .unwrap()
        .timeout(Duration::from_millis(200))
        .connect_lazy();
    let mut client = HealthClient::new(RpcClientLayer::new().layer(impatient));
    client.check(HealthCheckRequest::default()).await.expect_err("the deadline passes first");
    slow_server.abort();
    let nobody = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let refused = tonic::transport::Endpoint::from_shared(format!("http://{nobody}")).unwrap().connect_lazy();
    let mut client = HealthClient::new(RpcClientLayer::new().layer(refused));
    let status = client.check(HealthCheckRequest::default()).await.expect_err("nothing listens");
    assert_eq!(status.code(), tonic::Code::Unavailable);
    let text = pinchpoint::metrics::encode();
    assert_eq!(sample(&text, &client_total, r#"method="Check",code="deadline_exceeded""#), Some(1.0), "{text}");
    assert_eq!(sample(&text, &client_total, r#"method="Check",code="unavailable""#), Some(1.0));
}
