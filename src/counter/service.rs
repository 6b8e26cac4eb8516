//! The counter service (gRPC): validates, applies each request id at most once, answers.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use futures_util::{Stream, StreamExt};
use tonic::{Request, Response, Status};
use tower::Layer;

use crate::counter::faults::Faults;
use crate::counter::model::{self, check_batch_len, ApplyId, CounterError, Key};
use crate::counter::proto::{
    self, counter_service_server::CounterService, counter_service_server::CounterServiceServer, BatchIncrementRequest,
    BatchIncrementResponse, GetRequest, GetResponse, IncrementRequest, IncrementResponse, OpResult,
};
use crate::counter::store::Store;
use crate::layer::{MessagesRecorded, RpcServerLayer};
use crate::metrics::red;

#[derive(Clone)]
pub struct CounterRpc {
    store: Arc<Store>,
    faults: Arc<Faults>,
}

impl CounterRpc {
    pub fn new(store: Arc<Store>, faults: Faults) -> Self {
        CounterRpc { store, faults: Arc::new(faults) }
    }

    pub fn into_server(self) -> CounterServiceServer<Self> {
        CounterServiceServer::new(self)
    }
}

/// A request id from the wire; an empty one gets a fresh id, which makes the call
/// non-retriable but still valid (the gateway always sends one).
fn request_id_or_new(id: String) -> Result<String, CounterError> {
    if id.is_empty() {
        Ok(uuid::Uuid::new_v4().to_string())
    } else {
        model::check_request_id(&id)?;
        Ok(id)
    }
}

/// A handler's answer on the wire. The server span and `rpc_server_*{method,code}` are
/// [`RpcServerLayer`]'s, around every call (see [`serve`]).
async fn answer<T>(f: impl std::future::Future<Output = Result<T, CounterError>>) -> Result<Response<T>, Status> {
    f.await.map(Response::new).map_err(|e| proto::to_status(&e))
}

impl CounterRpc {
    async fn apply_one(&self, req: IncrementRequest) -> Result<IncrementResponse, CounterError> {
        let op = model::Op::new(req.resource_id, req.counter_type, req.delta)?;
        let request_id = request_id_or_new(req.request_id)?;
        let value = self.store.increment(&op, ApplyId { request_id: &request_id, index: 0 }).await?;
        self.faults.after_apply().await?;
        Ok(IncrementResponse { resource_id: op.key.resource_id, counter_type: op.key.counter_type, value })
    }
}

#[tonic::async_trait]
impl CounterService for CounterRpc {
    async fn increment(&self, request: Request<IncrementRequest>) -> Result<Response<IncrementResponse>, Status> {
        answer(self.apply_one(request.into_inner())).await
    }

    async fn batch_increment(
        &self,
        request: Request<BatchIncrementRequest>,
    ) -> Result<Response<BatchIncrementResponse>, Status> {
        answer(async {
            let req = request.into_inner();
            check_batch_len(req.operations.len())?;
            // Validate everything before applying anything: a bad batch changes nothing. The
            // strings move from the request into the operations and on into the results.
            let mut own_ids = Vec::with_capacity(req.operations.len());
            let mut ops = Vec::with_capacity(req.operations.len());
            for o in req.operations {
                ops.push(model::Op::new(o.resource_id, o.counter_type, o.delta)?);
                own_ids.push(o.request_id);
            }
            let request_id = request_id_or_new(req.request_id)?;
            for own in own_ids.iter().filter(|id| !id.is_empty()) {
                model::check_request_id(own)?;
            }
            let ids: Vec<ApplyId> = own_ids
                .iter()
                .enumerate()
                .map(|(i, own)| match own.as_str() {
                    "" => ApplyId { request_id: &request_id, index: i as u32 },
                    own => ApplyId { request_id: own, index: 0 },
                })
                .collect();
            let outcomes = self.store.batch(&ops, &ids).await?;
            self.faults.after_apply().await?;
            let results = ops.into_iter().zip(&outcomes).map(|(op, r)| OpResult::from_outcome(op, r)).collect();
            Ok(BatchIncrementResponse { results })
        })
        .await
    }

    async fn get(&self, request: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        answer(async {
            let req = request.into_inner();
            let key = Key::new(req.resource_id, req.counter_type)?;
            let value = self.store.get(&key).await?;
            Ok(GetResponse { resource_id: key.resource_id, counter_type: key.counter_type, value })
        })
        .await
    }

    type StreamIncrementsStream = Pin<Box<dyn Stream<Item = Result<OpResult, Status>> + Send + 'static>>;

    /// One result per incoming increment, in order. A bad item gets an error result and
    /// the stream goes on; only a broken transport ends it. Each increment counts as one
    /// `StreamIncrements` call in `rpc_server_*` (as each does on the gateway's side), so the
    /// response is marked [`MessagesRecorded`] for [`RpcServerLayer`].
    async fn stream_increments(
        &self,
        request: Request<tonic::Streaming<IncrementRequest>>,
    ) -> Result<Response<Self::StreamIncrementsStream>, Status> {
        let rpc = self.clone();
        let inbound = request.into_inner();
        let out = inbound.then(move |item| {
            let rpc = rpc.clone();
            async move {
                let req = item?;
                let started = Instant::now();
                let (rid, ct) = (req.resource_id.clone(), req.counter_type.clone());
                let result = rpc.apply_one(req).await;
                let code = match &result {
                    Ok(_) => "ok",
                    Err(e) => proto::code_label(proto::to_status(e).code()),
                };
                red::rpc_server("StreamIncrements", code, started.elapsed());
                Ok(match result {
                    Ok(r) => OpResult {
                        resource_id: r.resource_id,
                        counter_type: r.counter_type,
                        value: r.value,
                        ..Default::default()
                    },
                    Err(e) => OpResult {
                        resource_id: rid,
                        counter_type: ct,
                        value: 0,
                        error: proto::ErrorCode::from(&e) as i32,
                        message: e.to_string(),
                    },
                })
            }
        });
        let mut response = Response::new(Box::pin(out) as Self::StreamIncrementsStream);
        response.extensions_mut().insert(MessagesRecorded);
        Ok(response)
    }
}

/// Options of `pinchpoint service` that shape the gRPC server.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// Cap on concurrent HTTP/2 streams per connection (`--max-streams`).
    pub max_streams: Option<u32>,
    pub fail_after_apply_every: Option<u64>,
    pub delay_after_apply: Option<std::time::Duration>,
}

/// Serves the counter service and `grpc.health.v1` on `listener` until `shutdown` fires,
/// then lets in-flight calls finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    store: Arc<Store>,
    options: ServeOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter.set_serving::<CounterServiceServer<CounterRpc>>().await;
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        .max_concurrent_streams(options.max_streams)
        .add_service(health)
        // Only the counter service is measured: health checks are not the service's calls.
        .add_service(
            RpcServerLayer::new().layer(
                CounterRpc::new(store, Faults::new(options.fail_after_apply_every, options.delay_after_apply))
                    .into_server(),
            ),
        )
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}

pub fn local_addr(listener: &tokio::net::TcpListener) -> SocketAddr {
    listener.local_addr().expect("bound listener has an address")
}
