//! The spans of the counter system's request path: the HTTP request, the RPC client call,
//! the RPC server handler and the store operation, and the trace context their calls carry.
//!
//! A [`Span`] is whatever the process's telemetry makes of it:
//! - with OTLP export on, the request's head-sampling decision is made once, where it enters
//!   the process. A sampled request's spans go straight to the exporter (see `otlp.rs`); an
//!   unsampled one has no spans at all, and its calls carry an unsampled `traceparent` so the
//!   next process drops it too. 10% sampling costs about 10% of full tracing.
//! - without OTLP, a span is a debug-level `tracing` span under the `pinchpoint` target, seen
//!   by `RUST_LOG=pinchpoint=debug` logs and free (a cached interest check) otherwise.
//!
//! A span does not get entered on every poll: [`Span::run`] makes its trace context the
//! task's trace (`task_trace.rs`), where children and [`Propagate`](super::Propagate) find
//! it, and [`Span::in_scope`] names its trace for the exemplars of metrics recorded in the
//! closure ([`sampled_trace_id`]).

// Without `otlp` nothing is sampled or dropped: those variants and their helpers go unused
// (and the sampled context's type has no values, so code past it is unreachable).
#![cfg_attr(not(feature = "otlp"), allow(dead_code, unreachable_code))]

#[cfg(feature = "otlp")]
use std::borrow::Cow;
use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::task_trace::{self, Scoped as TraceScope, Trace};
use super::{otlp, otlp_active};

/// What a metric recorded inside [`Span::in_scope`] takes as its exemplar.
#[derive(Clone, Copy)]
enum Scoped {
    /// Not inside `in_scope`: ask the task's trace.
    Unknown,
    Untraced,
    Traced(u128),
}

thread_local! {
    static SCOPED: Cell<Scoped> = const { Cell::new(Scoped::Unknown) };
}

/// One span of the request path. Dropping it ends it (and exports it, when sampled).
#[must_use = "a span ends when dropped"]
pub struct Span(Inner);

enum Inner {
    /// Nothing records it: no exporter and no debug logging, or part of an unsampled request.
    Off,
    /// Head sampling dropped the request this span would have started.
    Dropped(http::HeaderValue),
    /// OTLP off and a subscriber wants debug spans: an ordinary `tracing` span.
    Log(tracing::Span),
    /// Sampled: exported when dropped.
    Exported(Box<otlp::Live>),
}

impl Span {
    /// A span that records nothing.
    pub fn none() -> Self {
        Span(Inner::Off)
    }

    /// True when the span is exported or logged.
    pub fn is_recording(&self) -> bool {
        matches!(self.0, Inner::Log(_) | Inner::Exported(_))
    }

    /// The trace id when the span is sampled for export.
    pub fn trace_id(&self) -> Option<u128> {
        match &self.0 {
            Inner::Exported(live) => Some(live.ctx().trace_id()),
            Inner::Log(s) => tracing_span_trace_id(s),
            Inner::Off | Inner::Dropped(_) => None,
        }
    }

    /// Runs `fut` as the work of this span: spans made in it are its children and gRPC
    /// calls made through [`Propagate`](super::Propagate) carry its context.
    pub async fn run<F: Future>(&self, fut: F) -> F::Output {
        use tracing::Instrument;
        match &self.0 {
            Inner::Off => fut.await,
            Inner::Dropped(unsampled) => TraceScope::new(Trace::Dropped(unsampled.clone()), fut).await,
            Inner::Log(span) => fut.instrument(span.clone()).await,
            Inner::Exported(live) => TraceScope::new(Trace::Sampled(live.ctx().clone()), fut).await,
        }
    }

    /// What the span's work is polled under, for a caller that polls it by hand (an
    /// unboxed layer future) instead of through [`Span::run`].
    pub(crate) fn scope(&self) -> Scope {
        Scope(match &self.0 {
            Inner::Off => ScopeKind::Plain,
            Inner::Dropped(unsampled) => ScopeKind::Trace(Trace::Dropped(unsampled.clone())),
            Inner::Log(span) => ScopeKind::Log(span.clone()),
            Inner::Exported(live) => ScopeKind::Trace(Trace::Sampled(live.ctx().clone())),
        })
    }

    /// Calls `f` with this span's trace as the exemplar of the metrics it records.
    pub fn in_scope<R>(&self, f: impl FnOnce() -> R) -> R {
        let scoped = match &self.0 {
            Inner::Off => return f(),
            Inner::Log(span) => return span.in_scope(f),
            Inner::Dropped(_) => Scoped::Untraced,
            Inner::Exported(live) => Scoped::Traced(live.ctx().trace_id()),
        };
        let outer = SCOPED.replace(scoped);
        let r = f();
        SCOPED.set(outer);
        r
    }

    /// Records an HTTP response status (5xx marks the span as an error).
    pub fn record_http_status(&mut self, status: u16) {
        match &mut self.0 {
            Inner::Exported(live) => live.record_http_status(status),
            Inner::Log(span) => {
                span.record("http.response.status_code", status);
                if status >= 500 {
                    span.record("otel.status_code", "ERROR");
                }
            }
            Inner::Off | Inner::Dropped(_) => {}
        }
    }

    /// Records a gRPC status code (anything but 0, `OK`, marks the span as an error).
    pub fn record_grpc_status(&mut self, code: i32) {
        match &mut self.0 {
            Inner::Exported(live) => live.record_grpc_status(code),
            Inner::Log(span) => {
                span.record("rpc.grpc.status_code", code);
                if code != 0 {
                    span.record("otel.status_code", "ERROR");
                }
            }
            Inner::Off | Inner::Dropped(_) => {}
        }
    }
}

/// What [`Span::run`] does on each poll, kept by a future that owns its span: nothing, the
/// trace made current (so children and outgoing calls find it), or the `tracing` span
/// entered.
pub(crate) struct Scope(ScopeKind);

enum ScopeKind {
    Plain,
    Trace(Trace),
    Log(tracing::Span),
}

impl Scope {
    /// Polls `fut` once under this scope.
    #[inline]
    pub(crate) fn poll<F: Future>(&self, fut: Pin<&mut F>, cx: &mut Context<'_>) -> Poll<F::Output> {
        match &self.0 {
            ScopeKind::Plain => fut.poll(cx),
            ScopeKind::Trace(trace) => task_trace::poll_under(trace, fut, cx),
            ScopeKind::Log(span) => {
                let _entered = span.enter();
                fut.poll(cx)
            }
        }
    }
}

/// A logged span, or none when nothing wants it.
fn logged(span: tracing::Span) -> Span {
    if span.is_disabled() {
        Span::none()
    } else {
        Span(Inner::Log(span))
    }
}

/// The OTel attributes of a span, built only for sampled ones.
#[cfg(feature = "otlp")]
type Attributes = Vec<opentelemetry::KeyValue>;

/// A span where a request enters the process: sampled or dropped here, continuing the
/// caller's trace context in `headers`.
#[cfg(feature = "otlp")]
fn entry(
    headers: &http::HeaderMap,
    kind: opentelemetry::trace::SpanKind,
    exported: impl FnOnce() -> (Cow<'static, str>, Attributes),
    log: impl FnOnce() -> tracing::Span,
) -> Span {
    if !otlp_active() {
        return logged(log());
    }
    match otlp::head_decision(headers, kind.clone()) {
        otlp::Head::Drop(unsampled) => Span(Inner::Dropped(unsampled)),
        otlp::Head::Sample { trace_id, remote_parent, state } => {
            let (name, attributes) = exported();
            Span(Inner::Exported(Box::new(otlp::Live::entry((trace_id, remote_parent, state), kind, name, attributes))))
        }
    }
}

/// A span below the one the task works under. Outside any request (a write-buffer flush,
/// say) it starts a trace of its own, sampled like a request.
#[cfg(feature = "otlp")]
fn child(
    kind: opentelemetry::trace::SpanKind,
    exported: impl FnOnce() -> (Cow<'static, str>, Attributes),
    log: impl FnOnce() -> tracing::Span,
) -> Span {
    if !otlp_active() {
        return logged(log());
    }
    let parent = task_trace::with(|t| {
        t.map(|t| match t {
            Trace::Dropped(_) => None,
            Trace::Sampled(ctx) => Some(ctx.clone()),
        })
    });
    match parent {
        Some(None) => Span::none(),
        Some(Some(parent)) => {
            let (name, attributes) = exported();
            Span(Inner::Exported(Box::new(otlp::Live::child(&parent, kind, name, attributes))))
        }
        None => entry(&http::HeaderMap::new(), kind, exported, log),
    }
}

/// The span of one HTTP request served (`route` is the route template), continuing the
/// caller's `traceparent`.
pub fn http_request_span(method: &str, route: &str, headers: &http::HeaderMap) -> Span {
    let log = || {
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
    #[cfg(feature = "otlp")]
    {
        use opentelemetry::KeyValue;
        entry(
            headers,
            opentelemetry::trace::SpanKind::Server,
            || {
                // Interned: a `&'static str` name costs no allocation per span (nor a copy
                // when opentelemetry-otlp, if chosen, clones each batch).
                let method = known_method(method);
                let route = interned(route).unwrap_or_else(|| Cow::Owned(route.to_owned()));
                let label = if method == "_OTHER" { "HTTP" } else { method };
                let name = interned(&format!("{label} {route}")).unwrap_or_else(|| format!("{label} {route}").into());
                // Room for the status, pushed at the end: a full Vec would reallocate.
                let mut attributes = Vec::with_capacity(3);
                attributes.extend([KeyValue::new("http.request.method", method), KeyValue::new("http.route", route)]);
                (name, attributes)
            },
            log,
        )
    }
    #[cfg(not(feature = "otlp"))]
    {
        let _ = headers;
        logged(log())
    }
}

/// The method as the HTTP semantic conventions name it: one of the standard methods, or
/// `_OTHER` (which also keeps the set of span names bounded).
#[cfg(feature = "otlp")]
fn known_method(method: &str) -> &'static str {
    const KNOWN: [&str; 9] = ["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"];
    KNOWN.iter().find(|m| **m == method).copied().unwrap_or("_OTHER")
}

/// Route templates and span names, kept for the life of the process (see
/// [`crate::metrics::intern`]).
#[cfg(feature = "otlp")]
fn interned(s: &str) -> Option<Cow<'static, str>> {
    crate::metrics::intern(s).map(Cow::Borrowed)
}

/// `counter.v1.CounterService/<method>` without an allocation for the methods we serve.
#[cfg(feature = "otlp")]
fn rpc_name(method: &'static str) -> Cow<'static, str> {
    match method {
        "Increment" => Cow::Borrowed("counter.v1.CounterService/Increment"),
        "BatchIncrement" => Cow::Borrowed("counter.v1.CounterService/BatchIncrement"),
        "Get" => Cow::Borrowed("counter.v1.CounterService/Get"),
        "StreamIncrements" => Cow::Borrowed("counter.v1.CounterService/StreamIncrements"),
        other => Cow::Owned(format!("counter.v1.CounterService/{other}")),
    }
}

#[cfg(feature = "otlp")]
fn rpc_attributes(method: &'static str) -> Attributes {
    use opentelemetry::KeyValue;
    // Room for the status (and a client's attempt), pushed later: a full Vec would reallocate.
    let mut attributes = Vec::with_capacity(5);
    attributes.extend([
        KeyValue::new("rpc.system", "grpc"),
        KeyValue::new("rpc.service", "counter.v1.CounterService"),
        KeyValue::new("rpc.method", method),
    ]);
    attributes
}

/// The span of one gRPC call made by the gateway (one per attempt). Run the call in it with
/// [`Span::run`].
pub fn grpc_client_span(method: &'static str, attempt: u32) -> Span {
    let log = || {
        tracing::debug_span!(
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
    };
    #[cfg(feature = "otlp")]
    {
        child(
            opentelemetry::trace::SpanKind::Client,
            || {
                let mut attributes = rpc_attributes(method);
                if attempt > 0 {
                    attributes.push(opentelemetry::KeyValue::new("attempt", i64::from(attempt)));
                }
                (rpc_name(method), attributes)
            },
            log,
        )
    }
    #[cfg(not(feature = "otlp"))]
    logged(log())
}

/// The span of one gRPC call served (`path` is the request's `/package.Service/Method`),
/// child of the caller's `traceparent` header.
pub fn grpc_server_span(path: &str, headers: &http::HeaderMap) -> Span {
    let full = path.trim_start_matches('/');
    let (service, method) = full.rsplit_once('/').unwrap_or(("", full));
    let log = || {
        tracing::debug_span!(
            target: "pinchpoint::rpc",
            "rpc.server",
            otel.name = %full,
            otel.kind = "server",
            otel.status_code = tracing::field::Empty,
            rpc.system = "grpc",
            rpc.service = %service,
            rpc.method = %method,
            rpc.grpc.status_code = tracing::field::Empty,
        )
    };
    #[cfg(feature = "otlp")]
    {
        use opentelemetry::KeyValue;
        entry(
            headers,
            opentelemetry::trace::SpanKind::Server,
            || {
                // Interned like route templates: a server's methods are a bounded set.
                let own = |s: &str| interned(s).unwrap_or_else(|| Cow::Owned(s.to_owned()));
                // Room for the status, pushed at the end: a full Vec would reallocate.
                let mut attributes = Vec::with_capacity(4);
                attributes.extend([
                    KeyValue::new("rpc.system", "grpc"),
                    KeyValue::new("rpc.service", own(service)),
                    KeyValue::new("rpc.method", own(method)),
                ]);
                (own(full), attributes)
            },
            log,
        )
    }
    #[cfg(not(feature = "otlp"))]
    {
        let _ = headers;
        logged(log())
    }
}

/// The span of one store operation (`backend` memory|redis, `op` increment|batch|get). Run
/// the operation in it with [`Span::run`].
pub fn store_span(backend: &'static str, op: &'static str) -> Span {
    let log = || {
        tracing::debug_span!(
            target: "pinchpoint::store",
            "store.op",
            otel.name = %format_args!("store {op}"),
            otel.kind = "internal",
            db.system.name = backend,
            db.operation.name = op,
        )
    };
    #[cfg(feature = "otlp")]
    {
        use opentelemetry::KeyValue;
        child(
            opentelemetry::trace::SpanKind::Internal,
            || {
                let name = match op {
                    "increment" => Cow::Borrowed("store increment"),
                    "batch" => Cow::Borrowed("store batch"),
                    "get" => Cow::Borrowed("store get"),
                    other => Cow::Owned(format!("store {other}")),
                };
                (name, vec![KeyValue::new("db.system.name", backend), KeyValue::new("db.operation.name", op)])
            },
            log,
        )
    }
    #[cfg(not(feature = "otlp"))]
    logged(log())
}

/// Writes the trace context of the span the task works under ([`Span::run`]) into
/// `headers`: its sampled context, the request's unsampled decision, or else the context of
/// the entered `tracing` span. See [`Propagate`](super::Propagate).
pub(super) fn inject_current(headers: &mut http::HeaderMap) {
    if !otlp_active() {
        return;
    }
    let in_request = task_trace::with(|t| match t {
        Some(Trace::Dropped(unsampled)) => {
            headers.insert(otlp::TRACEPARENT, unsampled.clone());
            true
        }
        Some(Trace::Sampled(ctx)) => {
            ctx.inject(headers);
            true
        }
        None => false,
    });
    if !in_request {
        inject_tracing_span(&tracing::Span::current(), headers);
    }
}

/// The trace id of the span in scope when it is sampled for export: what a histogram keeps
/// as its exemplar. `None` (after one relaxed load) when nothing is exported.
#[inline]
pub fn sampled_trace_id() -> Option<u128> {
    if !otlp_active() {
        return None;
    }
    match SCOPED.get() {
        Scoped::Traced(id) => return Some(id),
        Scoped::Untraced => return None,
        Scoped::Unknown => {}
    }
    match task_trace::with(|t| {
        t.map(|t| match t {
            Trace::Dropped(_) => None,
            Trace::Sampled(ctx) => Some(ctx.trace_id()),
        })
    }) {
        Some(id) => id,
        // Not serving a request: an entered `tracing` span of the embedding service, if any.
        None => {
            let span = tracing::Span::current();
            if span.is_none() {
                None
            } else {
                tracing_span_trace_id(&span)
            }
        }
    }
}

fn tracing_span_trace_id(span: &tracing::Span) -> Option<u128> {
    if !otlp_active() || span.is_disabled() {
        return None;
    }
    #[cfg(feature = "otlp")]
    {
        otlp::tracing_span_trace_id(span)
    }
    #[cfg(not(feature = "otlp"))]
    {
        None
    }
}

fn inject_tracing_span(span: &tracing::Span, headers: &mut http::HeaderMap) {
    if span.is_disabled() {
        return;
    }
    #[cfg(feature = "otlp")]
    otlp::inject_tracing_span(span, headers);
    #[cfg(not(feature = "otlp"))]
    let _ = headers;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_recorded_without_a_subscriber() {
        let span = grpc_client_span("Get", 0);
        assert!(!span.is_recording());
        assert!(span.trace_id().is_none());
        assert!(span.in_scope(sampled_trace_id).is_none());
    }
}
