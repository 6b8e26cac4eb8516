//! RED for HTTP servers, by route template.

use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::MatchedPath;
use http::{Request, Response};
use tower::{Layer, Service};

use super::BoxFuture;
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
    S::Future: Send + 'static,
    S::Error: 'static,
    R: 'static,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = BoxFuture<Response<R>, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let started = Instant::now();
        let route =
            req.extensions().get::<MatchedPath>().map_or_else(|| UNMATCHED.to_owned(), |p| p.as_str().to_owned());
        let method = req.method().clone();
        // A debug-level span: free unless an OTLP exporter (or RUST_LOG=debug) wants it.
        let mut span = crate::telemetry::http_request_span(method.as_str(), &route, req.headers());
        let response = self.inner.call(req);
        Box::pin(async move {
            let result = span.run(crate::probe::alloc::track_request(&route, response)).await;
            // A service error never reaches the client as a response: hyper drops the
            // connection, which the client sees as a server failure.
            let status = result.as_ref().map_or(500, |r| r.status().as_u16());
            span.record_http_status(status);
            // Recorded in the span's scope: a sampled trace id becomes the exemplar.
            span.in_scope(|| red::http_request(&route, method.as_str(), status, started.elapsed()));
            result
        })
    }
}
