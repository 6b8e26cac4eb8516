//! OTLP export (feature `otlp`): the exporter and batch processor, the head-sampling
//! decision, W3C trace context, and the request spans made straight into `SpanData`.
//!
//! Why request spans skip `tracing`: a sampled request used to make its four spans with
//! `tracing` + tracing-opentelemetry. Every span then paid the registry's slab insert, a
//! field visitor per attribute, an `OtelData` builder in the span's extensions, `on_record`
//! for the status, and the SDK tracer's own span at close. A [`Live`] span is a start time,
//! two ids and a few `&'static` attributes; it becomes a `SpanData` once, when it ends, and
//! goes to the same batch processor (and exporter, `otlp_exporter.rs`) as any SDK span.
//! Other `tracing` spans (an embedding service's own, selected by `PINCHPOINT_OTEL_FILTER`)
//! still go through the tracing-opentelemetry layer into that processor.

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchSpanProcessor, IdGenerator, RandomIdGenerator, Sampler, SamplingDecision, SdkTracerProvider, ShouldSample,
    SpanData, SpanProcessor,
};
use opentelemetry_sdk::Resource;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{EnvFilter, Layer};

use super::otlp_exporter::{self, export_timeout, Choice, WireExporter};
use super::{BoxedLayer, TelemetryError, DEFAULT_OTEL_FILTER};

/// The OTLP HTTP client for opentelemetry-otlp: hyper, run on the process's Tokio runtime
/// (the batch span processor exports from its own thread, which has no runtime).
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

/// opentelemetry-otlp's exporter (`PINCHPOINT_OTLP_EXPORTER=opentelemetry-otlp`).
fn opentelemetry_otlp_exporter(
    grpc: bool,
    handle: &tokio::runtime::Handle,
) -> Result<opentelemetry_otlp::SpanExporter, TelemetryError> {
    let built = if grpc {
        let _rt = handle.enter();
        opentelemetry_otlp::SpanExporter::builder().with_tonic().build()
    } else {
        let client = RuntimeHyperClient {
            inner: opentelemetry_http::hyper::HyperClient::with_default_connector(export_timeout(), None),
            handle: handle.clone(),
        };
        opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_http_client(client)
            .build()
    };
    built.map_err(|e| TelemetryError::Otlp(e.to_string()))
}

/// Where ended request spans go.
struct Export {
    processor: Arc<BatchSpanProcessor>,
    scope: InstrumentationScope,
    /// The sampler `OTEL_TRACES_SAMPLER` / `_ARG` ask for, applied once per request where it
    /// enters the process.
    head: Box<dyn ShouldSample>,
    /// The head sampler follows a remote parent's decision (every `parentbased_*` sampler).
    head_parent_based: bool,
}

static EXPORT: OnceLock<Export> = OnceLock::new();

/// The batch processor, shared by the request spans and the tracing layer's provider. The
/// provider's `shutdown` reaches it through here; the resource was set before sharing.
#[derive(Debug)]
struct Shared(Arc<BatchSpanProcessor>);

impl SpanProcessor for Shared {
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &opentelemetry::Context) {
        self.0.on_start(span, cx)
    }
    fn on_end(&self, span: SpanData) {
        self.0.on_end(span)
    }
    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }
}

/// Builds the exporter `protocol` names, the batch processor (`OTEL_BSP_*`), the head
/// sampler (`OTEL_TRACES_SAMPLER*`) and the tracing layer for other spans.
pub(super) fn install(
    role: &str,
    protocol: String,
) -> Result<(BoxedLayer, SdkTracerProvider, &'static str), TelemetryError> {
    let handle = tokio::runtime::Handle::try_current().map_err(|_| {
        TelemetryError::Otlp("OTLP export needs a Tokio runtime: call telemetry::init inside Runtime::enter".into())
    })?;
    let (grpc, protocol) = match protocol.as_str() {
        "grpc" => (true, "grpc"),
        "http/protobuf" => (false, "http/protobuf"),
        other => {
            return Err(TelemetryError::Otlp(format!(
                "OTEL_EXPORTER_OTLP_PROTOCOL={other:?} is not supported: use grpc or http/protobuf"
            )))
        }
    };
    // The batch processor is generic over its exporter, hence a build per exporter.
    let mut processor = match otlp_exporter::choice()? {
        Choice::Wire => BatchSpanProcessor::builder(WireExporter::from_env(grpc, handle)?).build(),
        Choice::OpenTelemetryOtlp => BatchSpanProcessor::builder(opentelemetry_otlp_exporter(grpc, &handle)?).build(),
    };
    let service_name = std::env::var("OTEL_SERVICE_NAME")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| format!("pinchpoint-{role}"));
    let resource = Resource::builder()
        .with_service_name(service_name)
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    let filter = match std::env::var("PINCHPOINT_OTEL_FILTER") {
        Ok(s) if !s.trim().is_empty() => {
            EnvFilter::try_new(&s).map_err(|e| TelemetryError::Filter(format!("PINCHPOINT_OTEL_FILTER={s:?}: {e}")))?
        }
        _ => EnvFilter::new(DEFAULT_OTEL_FILTER),
    };
    processor.set_resource(&resource);
    let processor = Arc::new(processor);
    // Unset means the spec's default, parentbased_always_on.
    let sampler_name = std::env::var("OTEL_TRACES_SAMPLER").unwrap_or_default();
    let export = Export {
        processor: processor.clone(),
        scope: InstrumentationScope::builder("pinchpoint").with_version(env!("CARGO_PKG_VERSION")).build(),
        // The SDK's default config reads OTEL_TRACES_SAMPLER / _ARG.
        head: opentelemetry_sdk::trace::Config::default().sampler,
        head_parent_based: sampler_name.trim().is_empty() || sampler_name.trim().starts_with("parentbased_"),
    };
    if EXPORT.set(export).is_err() {
        return Err(TelemetryError::AlreadyInstalled);
    }
    // Spans reaching the provider through the tracing layer follow their parent, or start a
    // trace; the request path made its sampling decision at the door already.
    let provider = SdkTracerProvider::builder()
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)))
        .with_span_processor(Shared(processor))
        .with_resource(resource)
        .build();
    let layer = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("pinchpoint"))
        // Per-span costs we do not need: thread and location attributes (allocated per span),
        // busy/idle timing (two clock reads per poll), and activating the OTel context on
        // every enter (we read a span's context explicitly where we propagate it).
        .with_threads(false)
        .with_location(false)
        .with_target(false)
        .with_tracked_inactivity(false)
        .with_context_activation(false)
        .with_filter(filter)
        .boxed();
    Ok((layer, provider, protocol))
}

/// The trace context a sampled span passes to its children and calls.
#[derive(Clone, Debug)]
pub(super) struct Ctx {
    trace_id: TraceId,
    span_id: SpanId,
    state: TraceState,
}

impl Ctx {
    pub(super) fn trace_id(&self) -> u128 {
        u128::from_be_bytes(self.trace_id.to_bytes())
    }

    /// Writes `traceparent` (and `tracestate` when there is one) into `headers`.
    pub(super) fn inject(&self, headers: &mut http::HeaderMap) {
        headers.insert(TRACEPARENT, traceparent(self.trace_id.to_bytes(), self.span_id.to_bytes(), true));
        let state = self.state.header();
        if !state.is_empty() {
            if let Ok(v) = http::HeaderValue::from_str(&state) {
                headers.insert(TRACESTATE, v);
            }
        }
    }
}

/// A request's head-sampling decision, made where it enters the process.
pub(super) enum Head {
    /// Not traced; calls carry this unsampled `traceparent` so the next process drops it too.
    Drop(http::HeaderValue),
    /// Traced: a new root, or the continuation of a caller's sampled span.
    Sample { trace_id: TraceId, remote_parent: Option<SpanId>, state: TraceState },
}

/// W3C trace context header names. Constants: a name looked up by `&str` is parsed and
/// checked on every lookup.
pub(super) const TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");
const TRACESTATE: http::HeaderName = http::HeaderName::from_static("tracestate");

/// The head-sampling decision for a request entering with `headers` (empty for work that
/// starts inside the process).
pub(super) fn head_decision(headers: &http::HeaderMap, kind: SpanKind) -> Head {
    let Some(export) = EXPORT.get() else {
        return Head::Drop(traceparent([0; 16], [0; 8], false));
    };
    let incoming = headers.get(TRACEPARENT);
    // Fast path, taken by every unsampled request after the first process: a parent-based
    // sampler always drops when the remote parent was not sampled, so the full
    // extract + should_sample + format (7% of a service's CPU at 0% sampling, measured with
    // /debug/pprof/profile) is not needed, and the parent's header passes on as is.
    // Likewise a sampled parent is followed without asking the sampler (the service's path
    // for every sampled request).
    if export.head_parent_based {
        if let Some(tp) = incoming {
            if unsampled_traceparent(tp.as_bytes()) {
                let mut passed_on = tp.clone();
                passed_on.set_sensitive(true);
                return Head::Drop(passed_on);
            }
            if let Some((trace_id, span_id, flags)) = parse_traceparent(tp.as_bytes()) {
                if flags & 1 == 1 {
                    let state = headers
                        .get(TRACESTATE)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<TraceState>().ok())
                        .unwrap_or_default();
                    return Head::Sample { trace_id, remote_parent: Some(span_id), state };
                }
            }
        }
    }
    let ids = RandomIdGenerator::default();
    let parent = if incoming.is_some() {
        TraceContextPropagator::new().extract(&HeaderExtractor(headers))
    } else {
        opentelemetry::Context::new()
    };
    let parent_sc = parent.span().span_context().clone();
    let trace_id = if parent_sc.is_valid() { parent_sc.trace_id() } else { ids.new_trace_id() };
    let result = export.head.should_sample(Some(&parent), trace_id, "request", &kind, &[], &[]);
    match result.decision {
        SamplingDecision::RecordAndSample => Head::Sample {
            trace_id,
            remote_parent: parent_sc.is_valid().then(|| parent_sc.span_id()),
            state: result.trace_state,
        },
        // A span that records but is not sampled would never be exported: drop it.
        _ => Head::Drop(traceparent(trace_id.to_bytes(), ids.new_span_id().to_bytes(), false)),
    }
}

/// A well-formed W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`) whose sampled flag is
/// clear.
fn unsampled_traceparent(b: &[u8]) -> bool {
    let hex = |c: u8| (c as char).to_digit(16);
    b.len() == 55
        && b[2] == b'-'
        && b[35] == b'-'
        && b[52] == b'-'
        && hex(b[53]).is_some()
        && hex(b[54]).is_some_and(|low| low & 1 == 0)
}

/// The trace id, parent span id and flags of a version-00 `traceparent`; `None` for anything
/// else (other versions and malformed values take the propagator's path).
fn parse_traceparent(b: &[u8]) -> Option<(TraceId, SpanId, u8)> {
    fn hex(b: &[u8]) -> Option<u128> {
        b.iter().try_fold(0u128, |acc, c| Some(acc << 4 | (*c as char).to_digit(16)? as u128))
    }
    // Lowercase only, as W3C requires; `to_digit` also takes uppercase.
    if b.len() != 55 || &b[..3] != b"00-" || b[35] != b'-' || b[52] != b'-' || b.iter().any(u8::is_ascii_uppercase) {
        return None;
    }
    let trace_id = hex(&b[3..35])?;
    let span_id = hex(&b[36..52])? as u64;
    let flags = hex(&b[53..55])? as u8;
    (trace_id != 0 && span_id != 0).then(|| (TraceId::from(trace_id), SpanId::from(span_id), flags))
}

/// `00-<trace id>-<span id>-<flags>`, written without the formatting machinery: the gateway
/// makes one for every request.
///
/// Sent sensitive, so HPACK never adds it to the connection's dynamic table: each value is
/// new, and indexing them would fill the table and evict the headers that do repeat.
/// [`Propagate`](super::Propagate) lets a client's first few go out indexable.
fn traceparent(trace_id: [u8; 16], span_id: [u8; 8], sampled: bool) -> http::HeaderValue {
    fn hex_into(out: &mut [u8], mut v: u128) {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for c in out.iter_mut().rev() {
            *c = HEX[(v & 15) as usize];
            v >>= 4;
        }
    }
    let mut out = [0u8; 55];
    out[..3].copy_from_slice(b"00-");
    hex_into(&mut out[3..35], u128::from_be_bytes(trace_id));
    out[35] = b'-';
    hex_into(&mut out[36..52], u128::from(u64::from_be_bytes(span_id)));
    out[52..].copy_from_slice(if sampled { b"-01" } else { b"-00" });
    // SAFETY: `out` holds only ASCII hex digits and dashes, all valid in a header value
    // (checked in debug builds by `from_maybe_shared_unchecked` itself).
    let mut value = unsafe { http::HeaderValue::from_maybe_shared_unchecked(out) };
    value.set_sensitive(true);
    value
}

/// A sampled span in progress. Dropping it ends it: it becomes a `SpanData` for the batch
/// processor.
pub(super) struct Live {
    ctx: Ctx,
    parent: SpanId,
    parent_remote: bool,
    kind: SpanKind,
    name: Cow<'static, str>,
    start: SystemTime,
    attributes: Vec<KeyValue>,
    error: bool,
}

impl Live {
    /// The first span of a request `head` sampled.
    pub(super) fn entry(
        head: (TraceId, Option<SpanId>, TraceState),
        kind: SpanKind,
        name: Cow<'static, str>,
        attributes: Vec<KeyValue>,
    ) -> Self {
        let (trace_id, remote_parent, state) = head;
        Live {
            ctx: Ctx { trace_id, span_id: RandomIdGenerator::default().new_span_id(), state },
            parent: remote_parent.unwrap_or(SpanId::INVALID),
            parent_remote: remote_parent.is_some(),
            kind,
            name,
            start: SystemTime::now(),
            attributes,
            error: false,
        }
    }

    /// A span below the sampled span `parent` in the same process.
    pub(super) fn child(parent: &Ctx, kind: SpanKind, name: Cow<'static, str>, attributes: Vec<KeyValue>) -> Self {
        Live {
            ctx: Ctx { span_id: RandomIdGenerator::default().new_span_id(), ..parent.clone() },
            parent: parent.span_id,
            parent_remote: false,
            kind,
            name,
            start: SystemTime::now(),
            attributes,
            error: false,
        }
    }

    pub(super) fn ctx(&self) -> &Ctx {
        &self.ctx
    }

    pub(super) fn record_http_status(&mut self, status: u16) {
        self.attributes.push(KeyValue::new("http.response.status_code", i64::from(status)));
        self.error |= status >= 500;
    }

    pub(super) fn record_grpc_status(&mut self, code: i32) {
        self.attributes.push(KeyValue::new("rpc.grpc.status_code", i64::from(code)));
        self.error |= code != 0;
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        let Some(export) = EXPORT.get() else { return };
        let ctx = &self.ctx;
        export.processor.on_end(SpanData {
            span_context: SpanContext::new(ctx.trace_id, ctx.span_id, TraceFlags::SAMPLED, false, ctx.state.clone()),
            parent_span_id: self.parent,
            parent_span_is_remote: self.parent_remote,
            span_kind: self.kind.clone(),
            name: std::mem::take(&mut self.name),
            start_time: self.start,
            end_time: SystemTime::now(),
            attributes: std::mem::take(&mut self.attributes),
            dropped_attributes_count: 0,
            events: Default::default(),
            links: Default::default(),
            status: if self.error { Status::error("") } else { Status::Unset },
            instrumentation_scope: export.scope.clone(),
        });
    }
}

/// The sampled trace id of a `tracing` span (one of an embedding service's own).
pub(super) fn tracing_span_trace_id(span: &tracing::Span) -> Option<u128> {
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    (sc.is_valid() && sc.is_sampled()).then(|| u128::from_be_bytes(sc.trace_id().to_bytes()))
}

/// Writes a `tracing` span's W3C context into `headers`.
pub(super) fn inject_tracing_span(span: &tracing::Span, headers: &mut http::HeaderMap) {
    let cx = span.context();
    TraceContextPropagator::new().inject_context(&cx, &mut HeaderInjector(headers));
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
        if let (Ok(k), Ok(mut v)) = (http::HeaderName::from_bytes(key.as_bytes()), http::HeaderValue::from_str(&value))
        {
            // New on every call: see `traceparent`.
            v.set_sensitive(k == TRACEPARENT);
            self.0.insert(k, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognizes_unsampled_traceparents() {
        assert!(unsampled_traceparent(b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"));
        assert!(!unsampled_traceparent(b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"));
        assert!(!unsampled_traceparent(b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0"));
        assert!(!unsampled_traceparent(b"00-0af7651916cd43dd8448eb211c80319c_b7ad6b7169203331-00"));
        assert!(!unsampled_traceparent(b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-zz"));
    }

    #[test]
    fn traceparent_is_the_w3c_form() {
        let (t, s) = (TraceId::from(0x0af7651916cd43dd8448eb211c80319c_u128), SpanId::from(0xb7ad6b7169203331_u64));
        let v = traceparent(t.to_bytes(), s.to_bytes(), false);
        assert_eq!(v.to_str().unwrap(), format!("00-{t}-{s}-00"));
        assert!(unsampled_traceparent(v.as_bytes()));
        assert!(v.is_sensitive());
        let v = traceparent(t.to_bytes(), s.to_bytes(), true);
        assert_eq!(v.to_str().unwrap(), format!("00-{t}-{s}-01"));
        // What another W3C implementation reads from it.
        let mut headers = http::HeaderMap::new();
        headers.insert("traceparent", v);
        let cx = TraceContextPropagator::new().extract(&HeaderExtractor(&headers));
        let sc = cx.span().span_context().clone();
        assert_eq!((sc.trace_id(), sc.span_id(), sc.is_sampled()), (t, s, true));
    }

    #[test]
    fn parses_what_the_propagator_parses() {
        let good = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let (t, s, f) = parse_traceparent(good.as_bytes()).unwrap();
        assert_eq!(
            (t, s, f),
            (TraceId::from(0x0af7651916cd43dd8448eb211c80319c_u128), SpanId::from(0xb7ad6b7169203331_u64), 1)
        );
        let mut headers = http::HeaderMap::new();
        headers.insert("traceparent", http::HeaderValue::from_static(good));
        let sc = TraceContextPropagator::new().extract(&HeaderExtractor(&headers)).span().span_context().clone();
        assert_eq!((sc.trace_id(), sc.span_id()), (t, s));
        for bad in [
            "00-00000000000000000000000000000000-b7ad6b7169203331-01", // zero trace id
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01", // zero span id
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01", // uppercase
            "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", // another version
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333g-01", // not hex
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-1",  // short
        ] {
            assert!(parse_traceparent(bad.as_bytes()).is_none(), "{bad}");
        }
    }

    #[test]
    fn injected_context_carries_trace_state() {
        let state = TraceState::from_key_value([("vendor", "v1")]).unwrap();
        let ctx = Ctx { trace_id: TraceId::from(7_u128), span_id: SpanId::from(9_u64), state };
        let mut headers = http::HeaderMap::new();
        ctx.inject(&mut headers);
        assert_eq!(headers["tracestate"], "vendor=v1");
        let cx = TraceContextPropagator::new().extract(&HeaderExtractor(&headers));
        assert_eq!(cx.span().span_context().trace_id(), TraceId::from(7_u128));
        assert_eq!(ctx.trace_id(), 7);
    }
}
