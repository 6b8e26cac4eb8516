//! Tower layers that record the catalog's RED families for a whole server or client, so no
//! handler records anything by hand:
//!
//! - [`HttpMetricsLayer`] for axum/hyper servers: `http_requests_total` and
//!   `http_request_duration_seconds` by route template, method and status, the request's
//!   allocated bytes (`request_alloc_bytes`, with [`CountingAlloc`](crate::probe::alloc::CountingAlloc)
//!   installed), and the trace id of a sampled request as the duration's exemplar.
//! - [`RpcServerLayer`] and [`RpcClientLayer`] for tonic servers and channels:
//!   `rpc_server_*` / `rpc_client_*` by method and status code, and `rpc_client_retries_total`
//!   for calls marked as retries with [`Attempt`].

mod grpc;
mod http;

#[cfg(not(pinchpoint_bare))]
pub use self::grpc::RpcClientFuture;
pub use self::grpc::{
    code_label, Attempt, BoxError, MessagesRecorded, RpcClient, RpcClientLayer, RpcServer, RpcServerFuture,
    RpcServerLayer,
};
pub use self::http::{HttpMetrics, HttpMetricsFuture, HttpMetricsLayer, UNMATCHED};
