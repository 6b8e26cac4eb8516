//! RED for HTTP servers, by route template.

use crate::probe::Stopwatch;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::MatchedPath;
use http::{Request, Response};
use tower::{Layer, Service};

use crate::metrics::red;

/// The `route` label of a request no route matched (axum's fallback, a 404): one series for
/// all of them, so scanners probing random paths cannot grow the label set.
pub const UNMATCHED: &str = "unmatched";

/// Records every request an axum router (or any hyper service) serves: `http_requests_total`
/// and `http_request_duration_seconds` by route template (axum's [`MatchedPath`], so
/// `/users/42` counts as `/users/{id}`), method and status; `request_alloc_bytes` by route;
/// and, when the request is sampled for OTLP export, its trace id as the duration's exemplar.
///
/// Add it with `Router::layer` (after the routes, so it wraps each of them and sees the
/// matched path):
///
/// ```
/// use axum::{routing::get, Router};
/// use pinchpoint::layer::HttpMetricsLayer;
///
/// let app: Router = Router::new()
///     .route("/users/{id}", get(|| async { "user" }))
///     .layer(HttpMetricsLayer::new());
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct HttpMetricsLayer;

impl HttpMetricsLayer {
    /// The layer; it has no options.
    pub fn new() -> Self {
        HttpMetricsLayer
    }
}

#[cfg(not(pinchpoint_bare))]
impl<S> Layer<S> for HttpMetricsLayer {
    type Service = HttpMetrics<S>;

    fn layer(&self, inner: S) -> HttpMetrics<S> {
        HttpMetrics { inner }
    }
}

/// The uninstrumented twin (`--cfg pinchpoint_bare`): the layer adds nothing.
#[cfg(pinchpoint_bare)]
impl<S> Layer<S> for HttpMetricsLayer {
    type Service = S;

    fn layer(&self, inner: S) -> S {
        inner
    }
}

/// The service [`HttpMetricsLayer`] wraps around a server's service.
#[derive(Debug, Clone)]
pub struct HttpMetrics<S> {
    inner: S,
}

impl<S, B, R> Service<Request<B>> for HttpMetrics<S>
where
    S: Service<Request<B>, Response = Response<R>>,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = HttpMetricsFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let started = Stopwatch::start();
        // Interned, so a request neither copies its route nor bumps the route's shared `Arc`.
        let route = req.extensions().get::<MatchedPath>().map_or(Route::Static(UNMATCHED), |p| {
            crate::metrics::intern_cached(p.as_str()).map_or_else(|| Route::Owned(p.as_str().into()), Route::Static)
        });
        let method = req.method().clone();
        // A debug-level span: free unless an OTLP exporter (or RUST_LOG=debug) wants it.
        let span = crate::telemetry::http_request_span(method.as_str(), route.as_str(), req.headers());
        let scope = span.scope();
        let response = match route {
            Route::Static(route) => crate::probe::alloc::track_request_interned(route, self.inner.call(req)),
            Route::Owned(ref route) => crate::probe::alloc::track_request(route, self.inner.call(req)),
        };
        HttpMetricsFuture { response, scope, done: Some(Done { span, route, method, started }) }
    }
}

/// A route template: interned, or owned past the interner's cap.
enum Route {
    Static(&'static str),
    Owned(Box<str>),
}

impl Route {
    fn as_str(&self) -> &str {
        match self {
            Route::Static(s) => s,
            Route::Owned(s) => s,
        }
    }
}

/// What a request records when its response is ready.
struct Done {
    span: crate::telemetry::Span,
    route: Route,
    method: http::Method,
    started: Stopwatch,
}

pin_project_lite::pin_project! {
    /// The future of [`HttpMetrics`]: the inner service's, polled under the request's span,
    /// recording the request when it completes. Not boxed: a request pays no allocation and
    /// no copy of the inner future for being measured.
    pub struct HttpMetricsFuture<F> {
        #[pin]
        response: crate::probe::alloc::TrackAlloc<F>,
        scope: crate::telemetry::Scope,
        done: Option<Done>,
    }
}

impl<F, R, E> Future for HttpMetricsFuture<F>
where
    F: Future<Output = Result<Response<R>, E>>,
{
    type Output = Result<Response<R>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.scope.poll(this.response, cx));
        if let Some(Done { mut span, route, method, started }) = this.done.take() {
            // A service error never reaches the client as a response: hyper drops the
            // connection, which the client sees as a server failure.
            let status = result.as_ref().map_or(500, |r| r.status().as_u16());
            span.record_http_status(status);
            // Recorded in the span's scope: a sampled trace id becomes the exemplar.
            span.in_scope(|| match route {
                Route::Static(route) => red::http_request_interned(route, &method, status, started.elapsed()),
                Route::Owned(route) => red::http_request(&route, method.as_str(), status, started.elapsed()),
            });
        }
        Poll::Ready(result)
    }
}
