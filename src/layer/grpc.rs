//! RED for gRPC servers and clients (tonic, or any HTTP/2 gRPC stack on `http` types).
//!
//! The status code is read from the response's `grpc-status` header: tonic sends a failed
//! call as a trailers-only response, where that header carries the code. A response without
//! it counts as `ok` (its status follows in the trailers). Streaming calls are timed to their
//! response headers, not to the end of the stream.

use crate::probe::Stopwatch;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower::{Layer, Service};

use crate::metrics::red;

/// The `code` label of a gRPC status code, in snake case (`ok`, `not_found`, ...).
pub fn code_label(code: i32) -> &'static str {
    const LABELS: [&str; 17] = [
        "ok",
        "cancelled",
        "unknown",
        "invalid_argument",
        "deadline_exceeded",
        "not_found",
        "already_exists",
        "permission_denied",
        "resource_exhausted",
        "failed_precondition",
        "aborted",
        "out_of_range",
        "unimplemented",
        "internal",
        "unavailable",
        "data_loss",
        "unauthenticated",
    ];
    usize::try_from(code).ok().and_then(|c| LABELS.get(c)).copied().unwrap_or("unknown")
}

/// The `method` label: the last segment of `/package.Service/Method`.
fn method_of(uri: &http::Uri) -> &str {
    uri.path().rsplit('/').next().unwrap_or_default()
}

/// The gRPC status code of a response: its `grpc-status` header, or 0 (`ok`) when the code
/// follows in the trailers.
fn code_of<R>(resp: &Response<R>) -> i32 {
    resp.headers().get("grpc-status").and_then(|v| v.to_str().ok()).and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// The error every client call's failure is boxed into (what tonic's clients accept).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The status code of a call that got no response: `deadline_exceeded` for a timeout (the
/// client's own deadline, as gRPC names it), the code of a `tonic::Status` in the error's
/// chain, otherwise `unavailable` (no connection, or it broke).
#[cfg(not(pinchpoint_bare))]
fn transport_code(err: &(dyn std::error::Error + 'static)) -> i32 {
    const DEADLINE_EXCEEDED: i32 = 4;
    const UNAVAILABLE: i32 = 14;
    let mut next = Some(err);
    while let Some(e) = next {
        if e.is::<tower::timeout::error::Elapsed>() {
            return DEADLINE_EXCEEDED;
        }
        // The features that bring tonic in.
        #[cfg(any(feature = "lab", feature = "otlp", feature = "console"))]
        {
            if e.is::<tonic::TimeoutExpired>() {
                return DEADLINE_EXCEEDED;
            }
            if let Some(status) = e.downcast_ref::<tonic::Status>() {
                return status.code() as i32;
            }
        }
        next = e.source();
    }
    UNAVAILABLE
}

/// Records every call a tonic server serves: `rpc_server_requests_total{method,code}` and
/// `rpc_server_request_duration_seconds{method}`.
///
/// ```no_run
/// # #[cfg(feature = "lab")]
/// # async fn serve() -> Result<(), Box<dyn std::error::Error>> {
/// let (_reporter, health) = tonic_health::server::health_reporter();
/// tonic::transport::Server::builder()
///     .layer(pinchpoint::layer::RpcServerLayer::new())
///     .add_service(health)
///     .serve("127.0.0.1:50051".parse()?)
///     .await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct RpcServerLayer;

impl RpcServerLayer {
    /// The layer; it has no options.
    pub fn new() -> Self {
        RpcServerLayer
    }
}

#[cfg(not(pinchpoint_bare))]
impl<S> Layer<S> for RpcServerLayer {
    type Service = RpcServer<S>;

    fn layer(&self, inner: S) -> RpcServer<S> {
        RpcServer { inner }
    }
}

/// The uninstrumented twin (`--cfg pinchpoint_bare`): the layer adds nothing.
#[cfg(pinchpoint_bare)]
impl<S> Layer<S> for RpcServerLayer {
    type Service = S;

    fn layer(&self, inner: S) -> S {
        inner
    }
}

/// The service [`RpcServerLayer`] wraps around a gRPC server.
#[derive(Debug, Clone)]
pub struct RpcServer<S> {
    inner: S,
}

impl<S, B, R> Service<Request<B>> for RpcServer<S>
where
    S: Service<Request<B>, Response = Response<R>>,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = RpcServerFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let started = Stopwatch::start();
        // Shares the request's bytes: no copy of the path.
        let uri = req.uri().clone();
        // A debug-level span: free unless an OTLP exporter (or RUST_LOG=debug) wants it.
        let span = crate::telemetry::grpc_server_span(req.uri().path(), req.headers());
        let scope = span.scope();
        RpcServerFuture { response: self.inner.call(req), scope, done: Some((span, uri, started)) }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`RpcServer`]: the inner service's, polled under the call's span,
    /// recording the call when its response is ready. Not boxed.
    pub struct RpcServerFuture<F> {
        #[pin]
        response: F,
        scope: crate::telemetry::Scope,
        done: Option<(crate::telemetry::Span, http::Uri, Stopwatch)>,
    }
}

impl<F, R, E> Future for RpcServerFuture<F>
where
    F: Future<Output = Result<Response<R>, E>>,
{
    type Output = Result<Response<R>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.scope.poll(this.response, cx));
        if let Some((mut span, uri, started)) = this.done.take() {
            const INTERNAL: i32 = 13;
            let code = result.as_ref().map_or(INTERNAL, code_of);
            span.record_grpc_status(code);
            let own_messages = result.as_ref().is_ok_and(|r| r.extensions().get::<MessagesRecorded>().is_some());
            if !own_messages {
                // Recorded in the span's scope: a sampled trace id becomes the exemplar.
                span.in_scope(|| red::rpc_server(method_of(&uri), code_label(code), started.elapsed()));
            }
        }
        Poll::Ready(result)
    }
}

/// Put in a streaming call's response extensions
/// (`tonic::Response::extensions_mut().insert(MessagesRecorded)`) by a handler that records
/// each message of the stream as a call of its own ([`red::rpc_server`]): [`RpcServerLayer`]
/// then leaves the call out, which it would otherwise count once more, timed to the stream's
/// first headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MessagesRecorded;

/// tonic routes a request by the wrapped service's name.
#[cfg(any(feature = "lab", feature = "otlp", feature = "console"))]
impl<S: tonic::server::NamedService> tonic::server::NamedService for RpcServer<S> {
    const NAME: &'static str = S::NAME;
}

/// Marks a client call as attempt `n` of the same logical call (0 = the first); put it in the
/// request's extensions (`tonic::Request::extensions_mut().insert(Attempt(n))`) when
/// retrying, and [`RpcClientLayer`] counts `rpc_client_retries_total{method}` for every
/// attempt after the first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Attempt(pub u32);

/// Records every call made through a tonic channel: `rpc_client_requests_total{method,code}`,
/// `rpc_client_request_duration_seconds{method}`, and retries marked with [`Attempt`].
/// A transport failure (no response at all) counts as `unavailable`.
///
/// ```no_run
/// # #[cfg(feature = "lab")]
/// # async fn call() -> Result<(), Box<dyn std::error::Error>> {
/// use tonic_health::pb::health_client::HealthClient;
///
/// let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:50051").connect().await?;
/// let channel = tower::ServiceBuilder::new().layer(pinchpoint::layer::RpcClientLayer::new()).service(channel);
/// let mut health = HealthClient::new(channel);
/// health.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct RpcClientLayer;

impl RpcClientLayer {
    /// The layer; it has no options.
    pub fn new() -> Self {
        RpcClientLayer
    }
}

impl<S> Layer<S> for RpcClientLayer {
    type Service = RpcClient<S>;

    fn layer(&self, inner: S) -> RpcClient<S> {
        RpcClient { inner, attempt: Attempt(0) }
    }
}

/// The service [`RpcClientLayer`] wraps around a gRPC channel. Its errors are boxed
/// ([`BoxError`]), as tonic's generated clients take them.
#[derive(Debug, Clone)]
pub struct RpcClient<S> {
    inner: S,
    attempt: Attempt,
}

impl<S> RpcClient<S> {
    /// Counts every call made through this service as attempt `attempt` of its logical call,
    /// for a caller that builds a client per attempt; an [`Attempt`] in a request's
    /// extensions still wins.
    pub fn with_attempt(mut self, attempt: Attempt) -> Self {
        self.attempt = attempt;
        self
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

/// The uninstrumented twin (`--cfg pinchpoint_bare`): the same type, so callers compile
/// unchanged, passing calls straight through (only the error is boxed, as tonic takes it).
#[cfg(pinchpoint_bare)]
impl<S, B, R> Service<Request<B>> for RpcClient<S>
where
    S: Service<Request<B>, Response = Response<R>>,
    S::Error: Into<BoxError>,
{
    type Response = Response<R>;
    type Error = BoxError;
    type Future = futures_util::future::MapErr<S::Future, fn(S::Error) -> BoxError>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        use futures_util::TryFutureExt;
        self.inner.call(req).map_err(Into::into as fn(S::Error) -> BoxError)
    }
}

#[cfg(not(pinchpoint_bare))]
impl<S, B, R> Service<Request<B>> for RpcClient<S>
where
    S: Service<Request<B>, Response = Response<R>>,
    S::Error: Into<BoxError>,
{
    type Response = Response<R>;
    type Error = BoxError;
    type Future = RpcClientFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let started = Stopwatch::start();
        // Shares the request's bytes: no copy of the path.
        let uri = req.uri().clone();
        let attempt = req.extensions().get::<Attempt>().copied().unwrap_or(self.attempt);
        if attempt.0 > 0 {
            red::rpc_client_retry(method_of(&uri));
        }
        RpcClientFuture { response: self.inner.call(req), done: Some((uri, started)) }
    }
}

#[cfg(not(pinchpoint_bare))]
pin_project_lite::pin_project! {
    /// The future of [`RpcClient`]: the channel's, recording the call when it completes.
    /// Not boxed.
    pub struct RpcClientFuture<F> {
        #[pin]
        response: F,
        done: Option<(http::Uri, Stopwatch)>,
    }
}

#[cfg(not(pinchpoint_bare))]
impl<F, R, E> Future for RpcClientFuture<F>
where
    F: Future<Output = Result<Response<R>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response<R>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.response.poll(cx)).map_err(Into::into);
        if let Some((uri, started)) = this.done.take() {
            let code = match &result {
                Ok(r) => code_of(r),
                Err(e) => transport_code(&**e),
            };
            // The caller's span (if any) is the task's trace: a sampled one becomes the exemplar.
            red::rpc_client(method_of(&uri), code_label(code), started.elapsed());
        }
        Poll::Ready(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_methods() {
        assert_eq!(code_label(0), "ok");
        assert_eq!(code_label(5), "not_found");
        assert_eq!(code_label(16), "unauthenticated");
        assert_eq!(code_label(17), "unknown");
        assert_eq!(code_label(-1), "unknown");
        assert_eq!(method_of(&http::Uri::from_static("/grpc.health.v1.Health/Check")), "Check");
        let failed = Response::builder().header("grpc-status", "14").body(()).unwrap();
        assert_eq!(code_label(code_of(&failed)), "unavailable");
        assert_eq!(code_label(code_of(&Response::new(()))), "ok");
        let elapsed: BoxError = Box::new(tower::timeout::error::Elapsed::new());
        assert_eq!(code_label(transport_code(&*elapsed)), "deadline_exceeded");
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(code_label(transport_code(&refused)), "unavailable");
    }
}
