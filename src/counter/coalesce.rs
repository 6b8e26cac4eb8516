//! Coalescing (`--coalesce`): group commit for increments.
//!
//! Each channel has a lane (`--coalesce-lanes N` sets another count: fewer lanes, larger
//! groups, less CPU per request). While a lane's BatchIncrement is in flight, increments that
//! arrive queue in the lane; when the call returns, everything queued goes out as the next
//! single BatchIncrement. Under light load a request goes out alone and waits for nobody;
//! under heavy load one RPC carries many requests, which is how the split system gets back
//! toward the monolith's throughput. Each operation keeps its caller's request id, so each
//! caller gets its own exact post-increment value and a retry is still applied once.
//!
//! A group goes out as one `BatchIncrement` (default) or, with `--coalesce-via stream`,
//! down a long-lived `StreamIncrements` stream per lane (one message per operation, results
//! in order). If a stream breaks, the unanswered operations are sent again as a batch under
//! the same request ids, so nothing is applied twice.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use crate::counter::client_pool::ServicePool;
use crate::counter::model::{CounterError, Op, MAX_BATCH};
use crate::counter::proto::{self, counter_service_client::CounterServiceClient};
use crate::metrics::red;

/// How a coalesced group travels to the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CoalesceVia {
    /// One BatchIncrement per group.
    #[default]
    Batch,
    /// One message per operation on a StreamIncrements stream kept open per lane.
    Stream,
}

impl std::str::FromStr for CoalesceVia {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "batch" => Ok(CoalesceVia::Batch),
            "stream" => Ok(CoalesceVia::Stream),
            _ => Err(format!("{s:?}: use batch or stream")),
        }
    }
}

#[derive(Default)]
pub struct Lane {
    state: parking_lot::Mutex<LaneState>,
    /// The lane's open stream (`--coalesce-via stream`); only the lane's leader touches it.
    stream: parking_lot::Mutex<Option<LaneStream>>,
}

struct LaneStream {
    tx: mpsc::Sender<proto::IncrementRequest>,
    rx: tonic::Streaming<proto::OpResult>,
}

#[derive(Default)]
struct LaneState {
    queue: Vec<Pending>,
    /// A leader task is sending this lane's batches.
    busy: bool,
}

struct Pending {
    /// Built once, when the caller queues: the leader sends it without copying it again.
    op: proto::Operation,
    reply: oneshot::Sender<Result<i64, CounterError>>,
}

pub async fn increment(pool: &Arc<ServicePool>, op: &Op, request_id: &str) -> Result<i64, CounterError> {
    let (tx, rx) = oneshot::channel();
    let at = pool
        .lane_for(&op.key.resource_id)
        .ok_or_else(|| CounterError::Unavailable("no counter service available".into()))?;
    let lane = pool.lane(at);
    let op = proto::Operation {
        resource_id: op.key.resource_id.clone(),
        counter_type: op.key.counter_type.clone(),
        delta: op.delta,
        request_id: request_id.to_string(),
    };
    let lead = {
        let mut s = lane.state.lock();
        s.queue.push(Pending { op, reply: tx });
        !std::mem::replace(&mut s.busy, true)
    };
    if lead {
        let pool = pool.clone();
        crate::probe::task::spawn("gateway.coalesce", async move { lead_lane(&pool, at).await });
    }
    rx.await.unwrap_or_else(|_| Err(CounterError::Internal("coalescing lane dropped the request".into())))
}

/// The id of a coalesced BatchIncrement. Every operation in it carries its caller's own
/// request id, so this one is never applied to anything; it only has to be valid, and a
/// counter is far cheaper than a random UUID per batch.
fn batch_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("coalesced-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Sends the lane's queue as groups until it is empty.
async fn lead_lane(pool: &ServicePool, at: (usize, usize)) {
    let lane = pool.lane(at);
    loop {
        let batch: Vec<Pending> = {
            let mut s = lane.state.lock();
            if s.queue.is_empty() {
                s.busy = false;
                return;
            }
            let n = s.queue.len().min(MAX_BATCH);
            if n == s.queue.len() {
                // Whoever queues next finds room for a group as large as this one.
                std::mem::replace(&mut s.queue, Vec::with_capacity(n))
            } else {
                s.queue.drain(..n).collect()
            }
        };
        let batch = if pool.config().coalesce_via == CoalesceVia::Stream {
            match send_on_stream(pool, at, lane, batch).await {
                Some(rest) => rest,
                None => continue,
            }
        } else {
            batch
        };
        let batch_id = batch_id();
        // Built per attempt straight from the queued operations: one copy per attempt.
        let request = || proto::BatchIncrementRequest {
            operations: batch.iter().map(|p| p.op.clone()).collect(),
            request_id: batch_id.clone(),
        };
        match pool.batch_request(batch.len(), batch.first().map(|p| p.op.resource_id.as_str()), request).await {
            Ok(results) => {
                for (p, r) in batch.into_iter().zip(results) {
                    let _ = p.reply.send(r);
                }
            }
            Err(e) => {
                for p in batch {
                    let _ = p.reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// Sends the group down the lane's stream and answers each caller. Returns the operations
/// left unanswered when the stream failed (None when all were answered).
async fn send_on_stream(
    pool: &ServicePool,
    at: (usize, usize),
    lane: &Lane,
    batch: Vec<Pending>,
) -> Option<Vec<Pending>> {
    let started = Instant::now();
    let taken = lane.stream.lock().take();
    let mut conn = match taken {
        Some(c) => c,
        None => match open_stream(pool, at).await {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!("cannot open an increment stream, sending a batch instead: {e}");
                return Some(batch);
            }
        },
    };
    for p in &batch {
        let req = proto::IncrementRequest {
            resource_id: p.op.resource_id.clone(),
            counter_type: p.op.counter_type.clone(),
            delta: p.op.delta,
            request_id: p.op.request_id.clone(),
        };
        if conn.tx.send(req).await.is_err() {
            return Some(batch); // the stream is gone; nothing read yet, all go as a batch
        }
    }
    let mut pending = batch.into_iter();
    let deadline = pool.config().timeout;
    while let Some(p) = pending.next() {
        match tokio::time::timeout(deadline, conn.rx.message()).await {
            Ok(Ok(Some(result))) => {
                let _ = p.reply.send(result.outcome());
            }
            _ => {
                red::rpc_client("StreamIncrements", "unavailable", started.elapsed());
                // Unanswered: retried as a batch under the same request ids (applied once).
                return Some(std::iter::once(p).chain(pending).collect());
            }
        }
    }
    red::rpc_client("StreamIncrements", "ok", started.elapsed());
    *lane.stream.lock() = Some(conn);
    None
}

async fn open_stream(pool: &ServicePool, at: (usize, usize)) -> Result<LaneStream, tonic::Status> {
    let (tx, rx) = mpsc::channel(MAX_BATCH);
    let outbound = tokio_stream::wrappers::ReceiverStream::new(rx);
    let mut client = CounterServiceClient::new(pool.lane_channel(at));
    let inbound = client.stream_increments(outbound).await?.into_inner();
    Ok(LaneStream { tx, rx: inbound })
}
