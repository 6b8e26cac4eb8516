//! OTLP traces end to end: real `pinchpoint service` and `gateway` processes export to a real
//! OTLP receiver on loopback (grpc and http/protobuf); one HTTP request is one trace across
//! both; the OpenMetrics exemplars name traces the receiver got; and with no OTEL variables
//! nothing is exported and nothing extra listens.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use prost::Message;

/// One span as the receiver got it.
#[derive(Clone, Debug)]
struct Got {
    service: String,
    name: String,
    kind: i32,
    trace_id: String,
    span_id: String,
    parent: String,
    /// Attributes as `key=value` text.
    attributes: Vec<String>,
    /// The OTLP status code: 0 unset, 1 ok, 2 error.
    status: i32,
}

impl Got {
    fn has(&self, attribute: &str) -> bool {
        self.attributes.iter().any(|a| a == attribute)
    }
}

fn attribute_text(kv: &opentelemetry_proto::tonic::common::v1::KeyValue) -> String {
    let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        other => format!("{other:?}"),
    };
    format!("{}={value}", kv.key)
}

const KIND_SERVER: i32 = 2;
const KIND_CLIENT: i32 = 3;

#[derive(Clone, Default)]
struct Sink {
    spans: Arc<Mutex<Vec<Got>>>,
    exports: Arc<std::sync::atomic::AtomicUsize>,
    /// The `x-tenant` header of each export (`OTEL_EXPORTER_OTLP_HEADERS`), "" when absent.
    tenants: Arc<Mutex<Vec<String>>>,
    /// Exports that came gzip-compressed.
    gzipped: Arc<std::sync::atomic::AtomicUsize>,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Sink {
    fn record(&self, req: ExportTraceServiceRequest, tenant: Option<&[u8]>, gzipped: bool) {
        self.gzipped.fetch_add(usize::from(gzipped), std::sync::atomic::Ordering::SeqCst);
        self.tenants.lock().unwrap().push(String::from_utf8_lossy(tenant.unwrap_or_default()).into_owned());
        self.exports.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let mut spans = self.spans.lock().unwrap();
        for rs in req.resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| r.attributes.iter())
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                    Value::StringValue(s) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for s in ss.spans {
                    spans.push(Got {
                        service: service.clone(),
                        name: s.name,
                        kind: s.kind,
                        trace_id: hex(&s.trace_id),
                        span_id: hex(&s.span_id),
                        parent: hex(&s.parent_span_id),
                        attributes: s.attributes.iter().map(attribute_text).collect(),
                        status: s.status.map_or(0, |st| st.code),
                    });
                }
            }
        }
    }

    fn snapshot(&self) -> Vec<Got> {
        self.spans.lock().unwrap().clone()
    }

    fn exports(&self) -> usize {
        self.exports.load(std::sync::atomic::Ordering::SeqCst)
    }
}

struct GrpcReceiver(Sink);

#[tonic::async_trait]
impl TraceService for GrpcReceiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let tenant = request.metadata().get("x-tenant").map(|v| v.as_bytes().to_vec());
        let gzipped = request.metadata().get("grpc-encoding").is_some_and(|v| v == "gzip");
        self.0.record(request.into_inner(), tenant.as_deref(), gzipped);
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

/// An OTLP receiver on 127.0.0.1:0 speaking `protocol`; returns the endpoint URL.
async fn receiver(protocol: &str) -> (String, Sink) {
    let sink = Sink::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    match protocol {
        "grpc" => {
            let svc = TraceServiceServer::new(GrpcReceiver(sink.clone()))
                .accept_compressed(tonic::codec::CompressionEncoding::Gzip);
            tokio::spawn(async move {
                tonic::transport::Server::builder()
                    .add_service(svc)
                    .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
                    .await
                    .unwrap();
            });
        }
        "http/protobuf" => {
            let s = sink.clone();
            let app = axum::Router::new().route(
                "/v1/traces",
                axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                    let s = s.clone();
                    async move {
                        let gzipped = headers.get("content-encoding").is_some_and(|v| v == "gzip");
                        let body = if gzipped {
                            let mut plain = Vec::new();
                            let mut gz = flate2::read::GzDecoder::new(&body[..]);
                            std::io::Read::read_to_end(&mut gz, &mut plain).expect("a gzip body");
                            axum::body::Bytes::from(plain)
                        } else {
                            body
                        };
                        match ExportTraceServiceRequest::decode(body) {
                            Ok(req) => {
                                s.record(req, headers.get("x-tenant").map(|v| v.as_bytes()), gzipped);
                                let resp = ExportTraceServiceResponse { partial_success: None }.encode_to_vec();
                                (axum::http::StatusCode::OK, [("content-type", "application/x-protobuf")], resp)
                            }
                            Err(_) => (
                                axum::http::StatusCode::BAD_REQUEST,
                                [("content-type", "text/plain")],
                                b"not an ExportTraceServiceRequest".to_vec(),
                            ),
                        }
                    }
                }),
            );
            tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        }
        other => panic!("no receiver for {other}"),
    }
    (format!("http://{addr}"), sink)
}

fn otel_env<'a>(endpoint: &'a str, protocol: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ("OTEL_EXPORTER_OTLP_HEADERS", "x-tenant=lab%20one"),
        ("OTEL_TRACES_SAMPLER", "parentbased_always_on"),
    ]
}

/// The trace ids of the exemplars on `family`'s bucket lines.
fn exemplar_trace_ids(text: &str, family: &str) -> HashSet<String> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{family}_bucket{{")))
        .filter_map(|l| {
            let at = l.find("# {trace_id=\"")? + "# {trace_id=\"".len();
            Some(l[at..at + 32].to_string())
        })
        .collect()
}

/// TCP ports `pid` listens on: its socket inodes matched against the LISTEN rows of
/// /proc/PID/net/tcp{,6}.
fn listening_ports(pid: u32) -> HashSet<u16> {
    let inodes: HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            l.strip_prefix("socket:[")?.strip_suffix(']').map(str::to_string)
        })
        .collect();
    let mut ports = HashSet::new();
    for table in ["tcp", "tcp6"] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) else { continue };
        for row in text.lines().skip(1) {
            let cols: Vec<&str> = row.split_whitespace().collect();
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            if cols.len() > 9 && cols[3] == "0A" && inodes.contains(cols[9]) {
                let port = cols[1].rsplit(':').next().unwrap();
                ports.insert(u16::from_str_radix(port, 16).unwrap());
            }
        }
    }
    ports
}

/// `exporter` is `PINCHPOINT_OTLP_EXPORTER`: "pinchpoint" (the default) or "opentelemetry-otlp";
/// `gzip` sets `OTEL_EXPORTER_OTLP_COMPRESSION=gzip`.
async fn one_request_is_one_trace(protocol: &str, exporter: &str, gzip: bool) {
    let (endpoint, sink) = receiver(protocol).await;
    let mut env = otel_env(&endpoint, protocol);
    env.push(("PINCHPOINT_OTLP_EXPORTER", exporter));
    if gzip {
        env.push(("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"));
    }
    let mut svc = Proc::start_with_env(&["service", "--listen", ":0", "--admin", ":0"], &["grpc", "admin"], &env);
    let grpc = svc.grpc_url();
    let mut gw = Proc::start_with_env(
        &["gateway", "--listen", ":0", "--admin", ":0", "--service", &grpc, "--retries", "0"],
        &["http", "admin"],
        &env,
    );
    // An exporter is a client: nothing listens beyond the process's own ports.
    for p in [&svc, &gw] {
        let own: HashSet<u16> = p.addrs.values().map(|a| a.port()).collect();
        assert_eq!(listening_ports(p.child.id()), own, "listening sockets with OTLP on");
    }

    let api = Api::new(gw.http_url());
    let resource = fresh("otlp");
    let (status, body) = api.increment(&resource, "views", 1, None).await;
    assert_eq!(status, 200, "{body}");

    let (http, client, server, store) = eventually(Duration::from_secs(20), "gateway and service spans", || {
        let spans = sink.snapshot();
        async move {
            let http = spans.iter().find(|s| {
                s.service == "pinchpoint-gateway" && s.name == "POST /api/v1/counter/increment" && s.kind == KIND_SERVER
            })?;
            let client = spans.iter().find(|s| {
                s.service == "pinchpoint-gateway"
                    && s.kind == KIND_CLIENT
                    && s.name == "counter.v1.CounterService/Increment"
                    && s.trace_id == http.trace_id
            })?;
            let server = spans
                .iter()
                .find(|s| s.service == "pinchpoint-service" && s.kind == KIND_SERVER && s.trace_id == http.trace_id)?;
            let store = spans.iter().find(|s| {
                s.service == "pinchpoint-service" && s.name == "store increment" && s.trace_id == http.trace_id
            })?;
            Some((http.clone(), client.clone(), server.clone(), store.clone()))
        }
    })
    .await;
    assert_eq!(http.parent, "", "the HTTP span is the root (no traceparent was sent)");
    assert_eq!(client.parent, http.span_id, "rpc client span is a child of the HTTP span");
    assert_eq!(server.name, "counter.v1.CounterService/Increment");
    assert_eq!(server.parent, client.span_id, "service's server span is a child of the gateway's client span");
    assert_eq!(store.parent, server.span_id, "store span is a child of the server span");
    // The semantic-convention attributes a tracing backend groups and filters by.
    for a in ["http.request.method=POST", "http.route=/api/v1/counter/increment", "http.response.status_code=200"] {
        assert!(http.has(a), "http span lacks {a}: {:?}", http.attributes);
    }
    for s in [&client, &server] {
        for a in ["rpc.system=grpc", "rpc.service=counter.v1.CounterService", "rpc.method=Increment"] {
            assert!(s.has(a), "{} span lacks {a}: {:?}", s.name, s.attributes);
        }
        assert!(s.has("rpc.grpc.status_code=0"), "{:?}", s.attributes);
        assert_eq!(s.status, 0, "a successful call leaves the status unset");
    }
    assert!(store.has("db.system.name=memory") && store.has("db.operation.name=increment"), "{:?}", store.attributes);

    // Exemplars: the duration histograms name the trace the receiver got.
    let gw_text = scrape(&gw.admin_url()).await;
    let ids = exemplar_trace_ids(&gw_text, "pinchpoint_http_request_duration_seconds");
    assert!(ids.contains(&http.trace_id), "http exemplar {ids:?} should include {}", http.trace_id);
    let ids = exemplar_trace_ids(&gw_text, "pinchpoint_rpc_client_duration_seconds");
    assert!(ids.contains(&http.trace_id), "rpc client exemplar {ids:?}");
    let svc_text = scrape(&svc.admin_url()).await;
    let ids = exemplar_trace_ids(&svc_text, "pinchpoint_rpc_server_duration_seconds");
    assert!(ids.contains(&http.trace_id), "rpc server exemplar {ids:?}");
    // Every exemplar trace id is one the receiver got.
    let got: HashSet<String> = sink.snapshot().into_iter().map(|s| s.trace_id).collect();
    for text in [&gw_text, &svc_text] {
        for family in [
            "pinchpoint_http_request_duration_seconds",
            "pinchpoint_rpc_client_duration_seconds",
            "pinchpoint_rpc_server_duration_seconds",
        ] {
            for id in exemplar_trace_ids(text, family) {
                assert!(got.contains(&id), "exemplar {id} on {family} names a trace the receiver never got");
            }
        }
    }
    // A caller's traceparent is continued.
    let parent_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let resp = api
        .http
        .get(format!("{}/api/v1/counter/{resource}/views", api.base))
        .header("traceparent", format!("00-{parent_trace}-00f067aa0ba902b7-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    // With the service gone, the failed call and the 5xx are marked as errors.
    assert!(svc.terminate(Duration::from_secs(15)).success());
    let (status, body) = api.increment(&resource, "views", 1, None).await;
    assert!(status >= 500, "{status} {body}");
    // Graceful shutdown flushes what is buffered.
    assert!(gw.terminate(Duration::from_secs(15)).success());
    let spans = sink.snapshot();
    let failed = spans
        .iter()
        .find(|s| s.kind == KIND_SERVER && s.service == "pinchpoint-gateway" && s.status == 2)
        .expect("an HTTP span with error status");
    assert!(failed.has(&format!("http.response.status_code={status}")), "{:?}", failed.attributes);
    let failed_call = spans
        .iter()
        .find(|s| s.kind == KIND_CLIENT && s.trace_id == failed.trace_id)
        .expect("the failed call's client span");
    assert_eq!(failed_call.status, 2, "{failed_call:?}");
    assert!(!failed_call.has("rpc.grpc.status_code=0"), "{:?}", failed_call.attributes);
    let continued =
        spans.iter().find(|s| s.service == "pinchpoint-gateway" && s.trace_id == parent_trace && s.kind == KIND_SERVER);
    assert_eq!(continued.map(|s| s.parent.as_str()), Some("00f067aa0ba902b7"), "traceparent header continued");
    assert!(
        spans.iter().any(|s| s.service == "pinchpoint-service" && s.trace_id == parent_trace),
        "the service joined the caller's trace"
    );
    let tenants = sink.tenants.lock().unwrap().clone();
    assert!(!tenants.is_empty() && tenants.iter().all(|t| t == "lab one"), "OTEL_EXPORTER_OTLP_HEADERS: {tenants:?}");
    let gzipped = sink.gzipped.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(gzipped, if gzip { sink.exports() } else { 0 }, "compressed exports of {}", sink.exports());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_export_one_trace_across_gateway_and_service() {
    one_request_is_one_trace("grpc", "pinchpoint", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_protobuf_export_one_trace_across_gateway_and_service() {
    one_request_is_one_trace("http/protobuf", "pinchpoint", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_compressed_exports_arrive_whole() {
    one_request_is_one_trace("grpc", "pinchpoint", true).await;
    one_request_is_one_trace("http/protobuf", "pinchpoint", true).await;
}

/// The reference exporter stays selectable, and both protocols still work through it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opentelemetry_otlp_exporter_exports_the_same_traces() {
    one_request_is_one_trace("grpc", "opentelemetry-otlp", false).await;
    one_request_is_one_trace("http/protobuf", "opentelemetry-otlp", false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_is_down_costs_spans_not_requests() {
    // A port nothing listens on: bound, then released.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    for protocol in ["http/protobuf", "grpc"] {
        let endpoint = format!("http://{dead}");
        let env = otel_env(&endpoint, protocol);
        let (mut mono, stderr) =
            Proc::start_capturing_stderr(&["monolith", "--listen", ":0", "--admin", ":0"], &["http", "admin"], &env);
        let api = Api::new(mono.http_url());
        let resource = fresh("down");
        for i in 1..=20 {
            let (status, body) = api.increment(&resource, "views", 1, None).await;
            assert_eq!(status, 200, "request {i} with the collector down: {body}");
        }
        let says = format!("OTLP export to {endpoint}");
        eventually(Duration::from_secs(20), "a warning that names the endpoint", || {
            let seen = stderr.lock().unwrap().contains(&says);
            async move { seen.then_some(()) }
        })
        .await;
        assert_eq!(api.get_value(&resource, "views").await, 20, "{protocol}: every increment applied");
        assert!(mono.terminate(Duration::from_secs(30)).success(), "{protocol}: shutdown with a dead collector");
        // Logged at the 1st, 2nd, 4th, 8th... failure, not at each.
        let text = stderr.lock().unwrap().clone();
        let counts: Vec<u64> = text
            .lines()
            .filter(|l| l.contains("failed: "))
            .map(|l| {
                let n = l
                    .split("failures=")
                    .nth(1)
                    .unwrap_or_else(|| panic!("no failures field: {l:?}"))
                    .split(|c: char| !c.is_ascii_digit());
                n.into_iter().next().unwrap().parse().unwrap()
            })
            .collect();
        assert!(counts.iter().all(|n| n.is_power_of_two()), "{protocol}: {text}");
        assert!(counts.windows(2).all(|w| w[1] == 2 * w[0]), "{protocol}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_exporter_settings_stop_the_process_with_a_clear_error() {
    for (key, value, says) in [
        ("PINCHPOINT_OTLP_EXPORTER", "jaeger", "not an exporter"),
        ("OTEL_EXPORTER_OTLP_HEADERS", "x-tenant", "has no '='"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://127.0.0.1:4318", "no TLS"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json", "not supported"),
        ("OTEL_EXPORTER_OTLP_COMPRESSION", "zstd", "use gzip or none"),
    ] {
        let mut env = otel_env("http://127.0.0.1:9", "http/protobuf");
        env.retain(|(k, _)| *k != key);
        env.push((key, value));
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_pinchpoint"))
            .args(["service", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
            .envs(env)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{key}={value} should not start");
        assert!(stderr.contains(says), "{key}={value}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_otel_variables_nothing_is_exported_and_nothing_extra_listens() {
    let (_endpoint, sink) = receiver("grpc").await;
    let mut svc = service(&[]);
    let grpc = svc.grpc_url();
    let mut gw = gateway(&grpc, &[]);
    let api = Api::new(gw.http_url());
    for _ in 0..20 {
        let (status, _) = api.increment(&fresh("quiet"), "views", 1, None).await;
        assert_eq!(status, 200);
    }
    for p in [&svc, &gw] {
        let own: HashSet<u16> = p.addrs.values().map(|a| a.port()).collect();
        assert_eq!(own.len(), 2);
        assert_eq!(listening_ports(p.child.id()), own, "only the serving and admin ports listen");
    }
    let text = scrape(&gw.admin_url()).await;
    assert!(!text.contains("trace_id"), "no exemplars without tracing");
    assert!(gw.terminate(Duration::from_secs(15)).success());
    assert!(svc.terminate(Duration::from_secs(15)).success());
    assert_eq!(sink.exports(), 0, "nothing exported");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_sampling_keeps_traces_whole() {
    let (endpoint, sink) = receiver("grpc").await;
    let mut env = otel_env(&endpoint, "grpc");
    env.retain(|(k, _)| *k != "OTEL_TRACES_SAMPLER");
    env.push(("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"));
    env.push(("OTEL_TRACES_SAMPLER_ARG", "0.5"));
    let mut svc = Proc::start_with_env(&["service", "--listen", ":0", "--admin", ":0"], &["grpc", "admin"], &env);
    let grpc = svc.grpc_url();
    let mut gw = Proc::start_with_env(
        &["gateway", "--listen", ":0", "--admin", ":0", "--service", &grpc],
        &["http", "admin"],
        &env,
    );
    let api = Api::new(gw.http_url());
    let n = 40;
    for _ in 0..n {
        let (status, _) = api.increment(&fresh("sampled"), "views", 1, None).await;
        assert_eq!(status, 200);
    }
    assert!(gw.terminate(Duration::from_secs(15)).success());
    assert!(svc.terminate(Duration::from_secs(15)).success());
    let spans = sink.snapshot();
    let roots: HashSet<String> = spans
        .iter()
        .filter(|s| s.service == "pinchpoint-gateway" && s.kind == KIND_SERVER)
        .map(|s| s.trace_id.clone())
        .collect();
    assert!(!roots.is_empty() && roots.len() < n, "about half of {n} sampled, got {}", roots.len());
    for s in spans.iter().filter(|s| s.service == "pinchpoint-service") {
        assert!(roots.contains(&s.trace_id), "service span {s:?} belongs to a trace the gateway dropped");
    }
    let served: usize = spans.iter().filter(|s| s.service == "pinchpoint-service" && s.kind == KIND_SERVER).count();
    assert_eq!(served, roots.len(), "one service server span per sampled request");
}
