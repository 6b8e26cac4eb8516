//! RED for gRPC servers and clients (tonic, or any HTTP/2 gRPC stack on `http` types).
//!
//! The status code is read from the response's `grpc-status` header: tonic sends a failed
//! call as a trailers-only response, where that header carries the code. A response without
//! it counts as `ok` (its status follows in the trailers). Streaming calls are timed to their
//! response headers, not to the end of the stream.

use std::task::{Context, Poll};
use std::time::Instant;

use http::{Request, Response};
use tower::{Layer, Service};

use super::BoxFuture;
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
fn method_of<B>(req: &Request<B>) -> String {
    req.uri().path().rsplit('/').next().unwrap_or_default().to_owned()
}

fn status_of<R>(resp: &Response<R>) -> &'static str {
    let code = resp.headers().get("grpc-status").and_then(|v| v.to_str().ok()).and_then(|s| s.parse().ok());
    code.map_or("ok", code_label)
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
        let method = method_of(&req);
        let response = self.inner.call(req);
        Box::pin(async move {
            let result = response.await;
            let code = result.as_ref().map_or("internal", status_of);
            red::rpc_server(&method, code, started.elapsed());
            result
        })
    }
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

#[cfg(not(pinchpoint_bare))]
impl<S> Layer<S> for RpcClientLayer {
    type Service = RpcClient<S>;

    fn layer(&self, inner: S) -> RpcClient<S> {
        RpcClient { inner }
    }
}

/// The uninstrumented twin (`--cfg pinchpoint_bare`): the layer adds nothing.
#[cfg(pinchpoint_bare)]
impl<S> Layer<S> for RpcClientLayer {
    type Service = S;

    fn layer(&self, inner: S) -> S {
        inner
    }
}

/// The service [`RpcClientLayer`] wraps around a gRPC channel.
#[derive(Debug, Clone)]
pub struct RpcClient<S> {
    inner: S,
}

impl<S, B, R> Service<Request<B>> for RpcClient<S>
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
        let method = method_of(&req);
        if req.extensions().get::<Attempt>().is_some_and(|a| a.0 > 0) {
            red::rpc_client_retry(&method);
        }
        let response = self.inner.call(req);
        Box::pin(async move {
            let result = response.await;
            let code = result.as_ref().map_or("unavailable", status_of);
            red::rpc_client(&method, code, started.elapsed());
            result
        })
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
        let req = Request::builder().uri("/grpc.health.v1.Health/Check").body(()).unwrap();
        assert_eq!(method_of(&req), "Check");
        let failed = Response::builder().header("grpc-status", "14").body(()).unwrap();
        assert_eq!(status_of(&failed), "unavailable");
        assert_eq!(status_of(&Response::new(())), "ok");
    }
}
