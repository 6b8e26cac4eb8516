//! The one tracing set-up of every pinchpoint process: [`init`] installs a
//! tracing-subscriber registry with
//!
//! - a fmt layer to **stderr** (stdout carries the `<role> <kind> listening on ADDR` lines
//!   scripts parse), filtered by `RUST_LOG` (default `info,h2=warn,tower=warn`);
//! - the **tokio-console** layer when asked for (`--console`, feature `console`), served on
//!   its own thread and runtime, bound before `init` returns so `:0` works and a taken port
//!   is an error, announced as `<role> console listening on ADDR`;
//! - an **OTLP trace** layer (feature `otlp`) when `OTEL_EXPORTER_OTLP_ENDPOINT` or
//!   `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set, honoring `OTEL_EXPORTER_OTLP_PROTOCOL`
//!   (`grpc`, `http/protobuf`), `OTEL_SERVICE_NAME` (default `pinchpoint-<role>`),
//!   `OTEL_TRACES_SAMPLER`/`OTEL_TRACES_SAMPLER_ARG`, `OTEL_BSP_*` and the other standard
//!   exporter variables.
//!
//! Each layer has its own filter. The request spans of the counter system are at `debug`
//! level under the `pinchpoint` target: the fmt layer (at `info`) never sees them, so with no
//! exporter their callsites are disabled and cost a cached interest check. The OTLP layer
//! takes `pinchpoint=debug` (override with `PINCHPOINT_OTEL_FILTER`, EnvFilter syntax), so
//! the exporter's own transport (tonic, hyper, h2) is never traced into itself.
//!
//! The [`TelemetryGuard`] flushes buffered spans when dropped or [`TelemetryGuard::shutdown`]
//! is called; keep it alive until the process has drained.
//!
//! Trace context: [`grpc_request`] / [`grpc_request_trace`] carry W3C `traceparent` in gRPC
//! metadata, [`http_request_trace`] continues a caller's `traceparent` header (both make the
//! head-sampling decision once per request), and
//! [`sampled_trace_id`] gives the metrics the trace id for OpenMetrics exemplars.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

/// `RUST_LOG` when unset.
pub const DEFAULT_FILTER: &str = "info,h2=warn,tower=warn";

/// What the OTLP layer records when `PINCHPOINT_OTEL_FILTER` is unset: our own spans.
pub const DEFAULT_OTEL_FILTER: &str = "pinchpoint=debug";

/// tokio-console ports of DESIGN.md.
pub const CONSOLE_ADDR_GATEWAY: &str = "127.0.0.1:6669";
pub const CONSOLE_ADDR_SERVICE: &str = "127.0.0.1:6670";
pub const CONSOLE_ADDR_MONOLITH: &str = "127.0.0.1:6669";

/// The default console address of a role (`gateway`, `service`, `monolith`).
pub fn default_console_addr(role: &str) -> SocketAddr {
    let a = if role == "service" { CONSOLE_ADDR_SERVICE } else { CONSOLE_ADDR_GATEWAY };
    a.parse().expect("static address")
}

/// What [`init`] sets up.
#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    /// `gateway`, `service`, `monolith`, ...: names the console line and the default
    /// `service.name` (`pinchpoint-<role>`).
    pub role: String,
    /// Serve tokio-console on this address (`--console`, `--console-addr`).
    pub console: Option<SocketAddr>,
    /// Export traces when the OTLP environment variables ask for it. Off for client
    /// commands such as `pinchpoint load`.
    pub otlp_from_env: bool,
}

impl TelemetryConfig {
    pub fn new(role: impl Into<String>) -> Self {
        TelemetryConfig { role: role.into(), console: None, otlp_from_env: true }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("cannot listen on {addr} (tokio-console): {source}; pick another --console-addr or free the port")]
    ConsoleBind { addr: SocketAddr, source: std::io::Error },
    #[error("--console needs the `console` cargo feature, which this build lacks")]
    ConsoleNotBuilt,
    #[error("OTLP export is configured ({0}) but this build lacks the `otlp` cargo feature")]
    OtlpNotBuilt(&'static str),
    #[error("OTLP exporter: {0}")]
    Otlp(String),
    #[error("bad filter: {0}")]
    Filter(String),
    #[error("a global tracing subscriber is already installed")]
    AlreadyInstalled,
}

/// Keeps the exporters alive; flushes buffered spans on drop.
#[must_use = "dropping the guard shuts the exporter down"]
pub struct TelemetryGuard {
    console: Option<SocketAddr>,
    #[cfg(feature = "otlp")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
    otlp: Option<String>,
}

impl std::fmt::Debug for TelemetryGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelemetryGuard").field("console", &self.console).field("otlp", &self.otlp).finish()
    }
}

impl TelemetryGuard {
    /// Where tokio-console can connect, when it is on.
    pub fn console_addr(&self) -> Option<SocketAddr> {
        self.console
    }

    /// `grpc` or `http/protobuf` when traces are exported.
    pub fn otlp_protocol(&self) -> Option<&str> {
        self.otlp.as_deref()
    }

    /// Exports what is buffered and stops the exporter (at most 5 s). Call it while the Tokio
    /// runtime still runs (the exporters' I/O runs on it), e.g. after `block_on` returned and
    /// before the runtime is dropped.
    pub fn shutdown(mut self) {
        self.flush_and_stop();
    }

    fn flush_and_stop(&mut self) {
        #[cfg(feature = "otlp")]
        if let Some(provider) = self.provider.take() {
            OTLP_ACTIVE.store(false, Relaxed);
            if let Err(e) = provider.shutdown_with_timeout(std::time::Duration::from_secs(5)) {
                eprintln!("pinchpoint: flushing spans at exit: {e}");
            }
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        self.flush_and_stop();
    }
}

/// True while an OTLP exporter is installed: the hot path asks this (one relaxed load)
/// before looking for a trace id.
static OTLP_ACTIVE: AtomicBool = AtomicBool::new(false);

/// True while spans are exported.
#[inline]
pub fn otlp_active() -> bool {
    OTLP_ACTIVE.load(Relaxed)
}

type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync + 'static>;

/// Installs the global subscriber. Call it once, inside a Tokio runtime context
/// (`Runtime::enter`) when OTLP may be on: the exporters do their I/O on that runtime.
pub fn init(config: TelemetryConfig) -> Result<TelemetryGuard, TelemetryError> {
    let env_filter = match std::env::var("RUST_LOG") {
        Ok(s) if !s.trim().is_empty() => {
            EnvFilter::try_new(&s).map_err(|e| TelemetryError::Filter(format!("RUST_LOG={s:?}: {e}")))?
        }
        _ => EnvFilter::new(DEFAULT_FILTER),
    };
    let mut layers: Vec<BoxedLayer> = Vec::new();
    layers.push(tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_filter(env_filter).boxed());

    let console = match config.console {
        Some(addr) => {
            let (layer, bound) = console_layer(addr)?;
            layers.push(layer);
            Some(bound)
        }
        None => None,
    };

    #[cfg_attr(not(feature = "otlp"), allow(unused_mut))]
    let mut guard = TelemetryGuard {
        console,
        #[cfg(feature = "otlp")]
        provider: None,
        otlp: None,
    };
    if config.otlp_from_env {
        if let Some(protocol) = otlp_requested() {
            #[cfg(feature = "otlp")]
            {
                let (layer, provider, protocol) = otlp::layer(&config.role, protocol)?;
                layers.push(layer);
                guard.provider = Some(provider);
                guard.otlp = Some(protocol.to_string());
            }
            #[cfg(not(feature = "otlp"))]
            {
                let _ = protocol;
                return Err(TelemetryError::OtlpNotBuilt("OTEL_EXPORTER_OTLP_ENDPOINT is set"));
            }
        }
    }
    tracing_subscriber::registry().with(layers).try_init().map_err(|_| TelemetryError::AlreadyInstalled)?;
    #[cfg(feature = "otlp")]
    if guard.provider.is_some() {
        OTLP_ACTIVE.store(true, Relaxed);
    }
    if let Some(addr) = guard.console {
        announce(&config.role, "console", addr);
    }
    Ok(guard)
}

fn announce(role: &str, what: &str, addr: SocketAddr) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{role} {what} listening on {addr}");
    let _ = out.flush();
}

/// The protocol asked for, when the environment asks for OTLP traces at all.
fn otlp_requested() -> Option<String> {
    let set = |k: &str| std::env::var(k).is_ok_and(|v| !v.trim().is_empty());
    if !(set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")) {
        return None;
    }
    if std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true")) {
        return None;
    }
    if std::env::var("OTEL_TRACES_EXPORTER").is_ok_and(|v| v.trim().eq_ignore_ascii_case("none")) {
        return None;
    }
    let protocol = std::env::var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .or_else(|_| std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .unwrap_or_else(|_| "http/protobuf".into());
    Some(protocol.trim().to_ascii_lowercase())
}

#[cfg(feature = "console")]
fn console_layer(addr: SocketAddr) -> Result<(BoxedLayer, SocketAddr), TelemetryError> {
    use tracing_subscriber::filter::FilterFn;
    // Bind here, so a taken port is an error now and `:0` has a port to print.
    let listener = std::net::TcpListener::bind(addr).map_err(|source| TelemetryError::ConsoleBind { addr, source })?;
    let bound = listener.local_addr().map_err(|source| TelemetryError::ConsoleBind { addr, source })?;
    listener.set_nonblocking(true).map_err(|source| TelemetryError::ConsoleBind { addr, source })?;
    let (layer, server) = console_subscriber::ConsoleLayer::builder().server_addr(bound).build();
    std::thread::Builder::new()
        .name("console_subscriber".into())
        .spawn(move || {
            // The console's own server is not traced into itself.
            let _quiet = tracing::subscriber::set_default(tracing::subscriber::NoSubscriber::default());
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("pinchpoint: tokio-console server cannot start: {e}");
                    return;
                }
            };
            runtime.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => {
                        eprintln!("pinchpoint: tokio-console listener: {e}");
                        return;
                    }
                };
                let parts = server.into_parts();
                let aggregate = tokio::spawn(parts.aggregator.run());
                let incoming = tonic::transport::server::TcpIncoming::from(listener);
                let served = tonic::transport::Server::builder()
                    .add_service(parts.instrument_server)
                    .serve_with_incoming(incoming)
                    .await;
                aggregate.abort();
                if let Err(e) = served {
                    eprintln!("pinchpoint: tokio-console server failed: {e}");
                }
            });
        })
        .map_err(|source| TelemetryError::ConsoleBind { addr, source })?;
    // What console-subscriber's own `spawn()` filters to: tokio's task, resource and
    // async-op instrumentation.
    fn wanted(meta: &tracing::Metadata<'_>) -> bool {
        if meta.is_event() {
            return meta.target().starts_with("runtime") || meta.target().starts_with("tokio");
        }
        meta.name().starts_with("runtime.") || meta.target().starts_with("tokio")
    }
    let filter = FilterFn::new(wanted as for<'r, 's> fn(&'r tracing::Metadata<'s>) -> bool);
    Ok((layer.with_filter(filter).boxed(), bound))
}

#[cfg(not(feature = "console"))]
fn console_layer(_addr: SocketAddr) -> Result<(BoxedLayer, SocketAddr), TelemetryError> {
    Err(TelemetryError::ConsoleNotBuilt)
}

/// The trace id of the current span when it is sampled for export: what a histogram keeps
/// as its exemplar. `None` (after one relaxed load) when nothing is exported.
#[inline]
pub fn sampled_trace_id() -> Option<u128> {
    if !otlp_active() || dropped_here() {
        return None;
    }
    #[cfg(feature = "otlp")]
    {
        // An unsampled request has no span: skip building an OTel context for nothing.
        let span = tracing::Span::current();
        if span.is_none() {
            return None;
        }
        otlp::span_trace_id(&span)
    }
    #[cfg(not(feature = "otlp"))]
    {
        None
    }
}

/// The sampled trace id of `span`, if any.
pub fn trace_id_of(span: &tracing::Span) -> Option<u128> {
    if !otlp_active() || span.is_disabled() {
        return None;
    }
    #[cfg(feature = "otlp")]
    {
        otlp::span_trace_id(span)
    }
    #[cfg(not(feature = "otlp"))]
    {
        None
    }
}

/// Makes `span` a child of the W3C trace context in `headers` (`traceparent`,
/// `tracestate`), when spans are exported. Works for HTTP headers and gRPC metadata alike.
pub fn set_parent_from_headers(span: &tracing::Span, headers: &http::HeaderMap) {
    if !otlp_active() || span.is_disabled() {
        return;
    }
    #[cfg(feature = "otlp")]
    otlp::set_parent(span, headers);
    #[cfg(not(feature = "otlp"))]
    let _ = headers;
}

/// Writes `span`'s W3C trace context into `headers`, when spans are exported.
pub fn inject_headers(span: &tracing::Span, headers: &mut http::HeaderMap) {
    if !otlp_active() || span.is_disabled() {
        return;
    }
    #[cfg(feature = "otlp")]
    otlp::inject(span, headers);
    #[cfg(not(feature = "otlp"))]
    let _ = headers;
}

tokio::task_local! {
    /// The trace of the request this task serves, where it entered the process.
    static TRACE: Trace;
}

/// A request's head-sampling decision, as its task sees it.
#[derive(Clone)]
enum Trace {
    /// Not sampled: no spans; calls carry this unsampled `traceparent` so the next process
    /// drops the trace too. A `HeaderValue` shares its bytes: passing an incoming header on,
    /// and adding it to each call, copies nothing.
    Dropped(http::HeaderValue),
    /// Sampled: the innermost span in progress. Spans made below it name it as their parent
    /// explicitly, and calls carry its context.
    Sampled(tracing::Span),
}

/// True when the current task serves a request whose trace was not sampled.
#[inline]
fn dropped_here() -> bool {
    TRACE.try_with(|t| matches!(t, Trace::Dropped(_))).unwrap_or(false)
}

/// Runs `fut` inside `span`.
///
/// With OTLP export on, a sampled span is *not* entered on every poll. Entering costs two
/// ref-count changes in the subscriber's registry and a walk through every layer, on each
/// poll of the future: 12% of the gateway's CPU at 100% sampling (`/debug/pprof/profile`).
/// Instead the span rides in a task-local; spans made below it name it as their parent and
/// calls inject its context. Without OTLP (a `RUST_LOG=debug` fmt layer, say) the span is
/// entered as usual, so log lines show it.
pub async fn in_span<F: std::future::Future>(span: tracing::Span, fut: F) -> F::Output {
    use tracing::Instrument;
    if span.is_disabled() {
        fut.await
    } else if otlp_active() {
        TRACE.scope(Trace::Sampled(span), fut).await
    } else {
        fut.instrument(span).await
    }
}

/// The span of a request served (HTTP or gRPC) and its head-sampling decision. Made once
/// per request, where it enters the process: an unsampled request gets no spans at all (its
/// children are not created either), so 10% sampling costs about 10% of full tracing.
#[must_use]
pub struct RequestTrace {
    pub span: tracing::Span,
    dropped: Option<http::HeaderValue>,
}

impl RequestTrace {
    fn untraced(span: tracing::Span) -> Self {
        RequestTrace { span, dropped: None }
    }

    /// Runs the request's future in its span and under its sampling decision.
    pub async fn run<F: std::future::Future>(self, f: F) -> F::Output {
        match self.dropped {
            Some(unsampled) => TRACE.scope(Trace::Dropped(unsampled), f).await,
            None => in_span(self.span, f).await,
        }
    }
}

/// The span of one HTTP request, continuing the caller's `traceparent` when there is one.
/// `route` is the route template; the status is recorded later with
/// `span.record("http.response.status_code", status)`.
pub fn http_request_trace(method: &str, route: &str, headers: &http::HeaderMap) -> RequestTrace {
    let make = || {
        tracing::debug_span!(
            target: "pinchpoint::http",
            "http.request",
            otel.name = %format_args!("{method} {route}"),
            otel.kind = "server",
            otel.status_code = tracing::field::Empty,
            http.request.method = %method,
            http.route = %route,
            http.response.status_code = tracing::field::Empty,
        )
    };
    request_trace(headers, make)
}

fn request_trace(headers: &http::HeaderMap, make: impl FnOnce() -> tracing::Span) -> RequestTrace {
    if !otlp_active() {
        return RequestTrace::untraced(make());
    }
    #[cfg(feature = "otlp")]
    {
        match otlp::head_decision(headers) {
            Some(unsampled) => RequestTrace { span: tracing::Span::none(), dropped: Some(unsampled) },
            None => {
                let span = make();
                set_parent_from_headers(&span, headers);
                RequestTrace::untraced(span)
            }
        }
    }
    #[cfg(not(feature = "otlp"))]
    {
        let _ = headers;
        RequestTrace::untraced(make())
    }
}

/// Where a span made while serving a request goes.
enum Placement {
    /// The request was not sampled: no span.
    Dropped,
    /// Below the sampled span the task works under ([`in_span`]), named explicitly.
    Under(Option<tracing::Id>),
    /// Below the entered span, as usual (OTLP off, or not serving a request).
    Contextual,
}

fn placement() -> Placement {
    if !otlp_active() {
        return Placement::Contextual;
    }
    TRACE
        .try_with(|t| match t {
            Trace::Dropped(_) => Placement::Dropped,
            Trace::Sampled(s) => Placement::Under(s.id()),
        })
        .unwrap_or(Placement::Contextual)
}

/// A debug span at its [`Placement`].
macro_rules! placed_span {
    (target: $target:literal, $name:literal, $($fields:tt)*) => {
        match placement() {
            Placement::Dropped => tracing::Span::none(),
            Placement::Under(parent) => tracing::debug_span!(target: $target, parent: parent, $name, $($fields)*),
            Placement::Contextual => tracing::debug_span!(target: $target, $name, $($fields)*),
        }
    };
}

/// The span of one gRPC call made by the gateway (one per attempt). Run the call in it with
/// [`in_span`].
pub fn grpc_client_span(method: &'static str, attempt: u32) -> tracing::Span {
    placed_span!(
        target: "pinchpoint::rpc",
        "rpc.client",
        otel.name = %format_args!("counter.v1.CounterService/{method}"),
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
        rpc.system = "grpc",
        rpc.service = "counter.v1.CounterService",
        rpc.method = method,
        rpc.grpc.status_code = tracing::field::Empty,
        attempt,
    )
}

/// The span of one store operation (`backend` memory|redis, `op` increment|batch|get). Run
/// the operation in it with [`in_span`].
pub fn store_span(backend: &'static str, op: &'static str) -> tracing::Span {
    placed_span!(
        target: "pinchpoint::store",
        "store.op",
        otel.name = %format_args!("store {op}"),
        otel.kind = "internal",
        db.system.name = backend,
        db.operation.name = op,
    )
}

/// The span of one gRPC call served, child of the caller's `traceparent` metadata.
#[cfg(feature = "lab")]
pub fn grpc_request_trace(method: &'static str, metadata: &tonic::metadata::MetadataMap) -> RequestTrace {
    let make = || {
        tracing::debug_span!(
            target: "pinchpoint::rpc",
            "rpc.server",
            otel.name = %format_args!("counter.v1.CounterService/{method}"),
            otel.kind = "server",
            otel.status_code = tracing::field::Empty,
            rpc.system = "grpc",
            rpc.service = "counter.v1.CounterService",
            rpc.method = method,
            rpc.grpc.status_code = tracing::field::Empty,
        )
    };
    // MetadataMap is a HeaderMap underneath.
    request_trace(metadata.as_ref(), make)
}

/// A gRPC request carrying the current trace context in its metadata: the sampled span the
/// task works under ([`in_span`]), the request's unsampled decision, or else the entered span.
#[cfg(feature = "lab")]
pub fn grpc_request<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if !otlp_active() {
        return request;
    }
    // MetadataMap is a HeaderMap underneath: trace headers go in as they are.
    let headers: &mut http::HeaderMap = request.metadata_mut().as_mut();
    match TRACE.try_with(Trace::clone) {
        Ok(Trace::Dropped(unsampled)) => {
            headers.insert(http::header::HeaderName::from_static("traceparent"), unsampled);
        }
        Ok(Trace::Sampled(span)) => inject_headers(&span, headers),
        Err(_) => inject_headers(&tracing::Span::current(), headers),
    }
    // A traceparent is new on every call: HPACK would add each one to the connection's
    // dynamic table and evict the headers that repeat (path, content-type, te...). Sensitive
    // values are sent as literals that are never indexed.
    if let Some(v) = headers.get_mut("traceparent") {
        v.set_sensitive(true);
    }
    request
}

/// The same span an outcome status: `Ok`, or `Error` with the gRPC code.
pub fn record_grpc_status(span: &tracing::Span, code: i32) {
    if span.is_disabled() {
        return;
    }
    span.record("rpc.grpc.status_code", code);
    if code != 0 {
        span.record("otel.status_code", "ERROR");
    }
}

#[cfg(feature = "otlp")]
mod otlp {
    use std::time::Duration;

    use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
    use opentelemetry::trace::SpanKind;
    use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
    use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
    use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use opentelemetry_sdk::trace::{
        IdGenerator, RandomIdGenerator, Sampler, SamplingDecision, SdkTracerProvider, ShouldSample,
    };
    use opentelemetry_sdk::Resource;
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    use tracing_subscriber::{EnvFilter, Layer};

    use super::{BoxedLayer, TelemetryError, DEFAULT_OTEL_FILTER};

    /// The OTLP HTTP client: hyper, run on the process's Tokio runtime (the batch span
    /// processor exports from its own thread, which has no runtime).
    #[derive(Debug, Clone)]
    struct RuntimeHyperClient {
        inner: opentelemetry_http::hyper::HyperClient,
        handle: tokio::runtime::Handle,
    }

    #[async_trait::async_trait]
    impl HttpClient for RuntimeHyperClient {
        async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
            let inner = self.inner.clone();
            match self.handle.spawn(async move { inner.send_bytes(request).await }).await {
                Ok(r) => r,
                Err(e) => Err(Box::new(e)),
            }
        }
    }

    fn export_timeout() -> Duration {
        ["OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"]
            .iter()
            .find_map(|k| std::env::var(k).ok()?.trim().parse::<u64>().ok())
            .map_or(Duration::from_secs(10), Duration::from_millis)
    }

    pub(super) fn layer(
        role: &str,
        protocol: String,
    ) -> Result<(BoxedLayer, SdkTracerProvider, &'static str), TelemetryError> {
        let handle = tokio::runtime::Handle::try_current().map_err(|_| {
            TelemetryError::Otlp("OTLP export needs a Tokio runtime: call telemetry::init inside Runtime::enter".into())
        })?;
        let (exporter, protocol) = match protocol.as_str() {
            "grpc" => {
                let _rt = handle.enter();
                let e = opentelemetry_otlp::SpanExporter::builder()
                    .with_tonic()
                    .build()
                    .map_err(|e| TelemetryError::Otlp(e.to_string()))?;
                (e, "grpc")
            }
            "http/protobuf" => {
                let client = RuntimeHyperClient {
                    inner: opentelemetry_http::hyper::HyperClient::with_default_connector(export_timeout(), None),
                    handle: handle.clone(),
                };
                let e = opentelemetry_otlp::SpanExporter::builder()
                    .with_http()
                    .with_protocol(Protocol::HttpBinary)
                    .with_http_client(client)
                    .build()
                    .map_err(|e| TelemetryError::Otlp(e.to_string()))?;
                (e, "http/protobuf")
            }
            other => {
                return Err(TelemetryError::Otlp(format!(
                    "OTEL_EXPORTER_OTLP_PROTOCOL={other:?} is not supported: use grpc or http/protobuf"
                )))
            }
        };
        let service_name = std::env::var("OTEL_SERVICE_NAME")
            .ok()
            .filter(|s| !s.trim().is_empty())
            .unwrap_or_else(|| format!("pinchpoint-{role}"));
        let resource = Resource::builder()
            .with_service_name(service_name)
            .with_attribute(opentelemetry::KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
            .build();
        // The sampler comes from OTEL_TRACES_SAMPLER / _ARG (the SDK's default config reads
        // them; parentbased_always_on when unset); the batch processor from OTEL_BSP_*.
        // Head sampling happens where a request enters (see `head_decision`), with the sampler
        // OTEL_TRACES_SAMPLER / _ARG ask for (the SDK's default config reads them;
        // parentbased_always_on when unset). Spans that exist were sampled there, so the
        // provider records every span whose parent is sampled and every root.
        let _ = HEAD.set(opentelemetry_sdk::trace::Config::default().sampler);
        // Unset means the spec's default, parentbased_always_on.
        let sampler_name = std::env::var("OTEL_TRACES_SAMPLER").unwrap_or_default();
        HEAD_PARENT_BASED.store(
            sampler_name.trim().is_empty() || sampler_name.trim().starts_with("parentbased_"),
            std::sync::atomic::Ordering::Relaxed,
        );
        let provider = SdkTracerProvider::builder()
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)))
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build();
        let tracer = provider.tracer("pinchpoint");
        let filter = match std::env::var("PINCHPOINT_OTEL_FILTER") {
            Ok(s) if !s.trim().is_empty() => EnvFilter::try_new(&s)
                .map_err(|e| TelemetryError::Filter(format!("PINCHPOINT_OTEL_FILTER={s:?}: {e}")))?,
            _ => EnvFilter::new(DEFAULT_OTEL_FILTER),
        };
        let layer = tracing_opentelemetry::layer()
            .with_tracer(tracer)
            // Per-span costs we do not need: thread and location attributes (allocated per
            // span), busy/idle timing (two clock reads per poll), and activating the OTel
            // context on every enter, i.e. on every poll of an instrumented future (we read a
            // span's context explicitly with `span.context()` where we propagate it).
            .with_threads(false)
            .with_location(false)
            .with_target(false)
            .with_tracked_inactivity(false)
            .with_context_activation(false)
            .with_filter(filter)
            .boxed();
        Ok((layer, provider, protocol))
    }

    static HEAD: std::sync::OnceLock<Box<dyn ShouldSample>> = std::sync::OnceLock::new();
    /// The head sampler follows a remote parent's decision (every `parentbased_*` sampler).
    static HEAD_PARENT_BASED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

    /// A well-formed W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`) whose sampled flag is
    /// clear.
    fn unsampled_traceparent(value: &str) -> bool {
        let b = value.as_bytes();
        b.len() == 55
            && b[2] == b'-'
            && b[35] == b'-'
            && b[52] == b'-'
            && u8::from_str_radix(&value[53..55], 16).is_ok_and(|flags| flags & 1 == 0)
    }

    #[cfg(test)]
    #[test]
    fn recognizes_unsampled_traceparents() {
        assert!(unsampled_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"));
        assert!(!unsampled_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"));
        assert!(!unsampled_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0"));
        assert!(!unsampled_traceparent("00-0af7651916cd43dd8448eb211c80319c_b7ad6b7169203331-00"));
        assert!(!unsampled_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-zz"));
    }

    /// The head-sampling decision for a request entering with `headers`: `None` to trace it,
    /// `Some(traceparent)` (flags 00) to drop it and tell the next process so.
    pub(super) fn head_decision(headers: &http::HeaderMap) -> Option<http::HeaderValue> {
        let sampler = HEAD.get()?;
        // Fast path, taken by every unsampled request after the first process: a parent-based
        // sampler always drops when the remote parent was not sampled, so the full
        // extract + should_sample + format (7% of a service's CPU at 0% sampling, measured
        // with /debug/pprof/profile) is not needed, and the parent's header passes on as is.
        if HEAD_PARENT_BASED.load(std::sync::atomic::Ordering::Relaxed) {
            if let Some(tp) = headers.get("traceparent") {
                if tp.to_str().is_ok_and(unsampled_traceparent) {
                    return Some(tp.clone());
                }
            }
        }
        let ids = RandomIdGenerator::default();
        let parent = if headers.contains_key("traceparent") {
            TraceContextPropagator::new().extract(&HeaderExtractor(headers))
        } else {
            opentelemetry::Context::new()
        };
        let parent_sc = parent.span().span_context().clone();
        let trace_id = if parent_sc.is_valid() { parent_sc.trace_id() } else { ids.new_trace_id() };
        let result = sampler.should_sample(Some(&parent), trace_id, "request", &SpanKind::Server, &[], &[]);
        match result.decision {
            SamplingDecision::Drop => Some(unsampled_header(trace_id.to_bytes(), ids.new_span_id().to_bytes())),
            _ => None,
        }
    }

    /// `00-<trace id>-<span id>-00`, written without the formatting machinery: the gateway
    /// makes one for every unsampled request.
    fn unsampled_header(trace_id: [u8; 16], span_id: [u8; 8]) -> http::HeaderValue {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 55];
        out[..3].copy_from_slice(b"00-");
        for (i, b) in trace_id.iter().chain(&span_id).enumerate() {
            // Byte i of the trace id at 3 + 2i; the span id after the second dash.
            let at = if i < 16 { 3 + 2 * i } else { 36 + 2 * (i - 16) };
            out[at] = HEX[(b >> 4) as usize];
            out[at + 1] = HEX[(b & 15) as usize];
        }
        out[35] = b'-';
        out[52..].copy_from_slice(b"-00");
        http::HeaderValue::from_bytes(&out).expect("hex digits and dashes are a valid header value")
    }

    #[cfg(test)]
    #[test]
    fn unsampled_header_is_a_w3c_traceparent() {
        use opentelemetry::trace::{SpanId, TraceId};
        let (t, s) = (TraceId::from(0x0af7651916cd43dd8448eb211c80319c_u128), SpanId::from(0xb7ad6b7169203331_u64));
        let v = unsampled_header(t.to_bytes(), s.to_bytes());
        assert_eq!(v.to_str().unwrap(), format!("00-{t}-{s}-00"));
        assert!(unsampled_traceparent(v.to_str().unwrap()));
    }

    pub(super) fn span_trace_id(span: &tracing::Span) -> Option<u128> {
        let cx = span.context();
        let sc = cx.span().span_context().clone();
        (sc.is_valid() && sc.is_sampled()).then(|| u128::from_be_bytes(sc.trace_id().to_bytes()))
    }

    struct HeaderExtractor<'a>(&'a http::HeaderMap);

    impl Extractor for HeaderExtractor<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            self.0.get(key).and_then(|v| v.to_str().ok())
        }
        fn keys(&self) -> Vec<&str> {
            self.0.keys().map(|k| k.as_str()).collect()
        }
    }

    struct HeaderInjector<'a>(&'a mut http::HeaderMap);

    impl Injector for HeaderInjector<'_> {
        fn set(&mut self, key: &str, value: String) {
            if let (Ok(k), Ok(v)) = (http::HeaderName::from_bytes(key.as_bytes()), http::HeaderValue::from_str(&value))
            {
                self.0.insert(k, v);
            }
        }
    }

    pub(super) fn set_parent(span: &tracing::Span, headers: &http::HeaderMap) {
        if !headers.contains_key("traceparent") {
            return;
        }
        let parent = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
        if parent.span().span_context().is_valid() {
            let _ = span.set_parent(parent);
        }
    }

    pub(super) fn inject(span: &tracing::Span, headers: &mut http::HeaderMap) {
        let cx = span.context();
        TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(headers));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_console_ports_follow_design() {
        assert_eq!(default_console_addr("gateway").port(), 6669);
        assert_eq!(default_console_addr("monolith").port(), 6669);
        assert_eq!(default_console_addr("service").port(), 6670);
    }

    #[test]
    fn nothing_exported_without_a_subscriber() {
        assert!(sampled_trace_id().is_none());
        let span = grpc_client_span("Get", 0);
        assert!(trace_id_of(&span).is_none());
    }
}
