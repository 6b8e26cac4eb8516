//! Coalescing (`--coalesce`): group commit for increments.
//!
//! Each channel has a lane. While a lane's BatchIncrement is in flight, increments that
//! arrive queue in the lane; when the call returns, everything queued goes out as the next
//! single BatchIncrement. Under light load a request goes out alone and waits for nobody;
//! under heavy load one RPC carries many requests, which is how the split system gets back
//! toward the monolith's throughput. Each operation keeps its caller's request id, so each
//! caller gets its own exact post-increment value and a retry is still applied once.

use std::sync::Arc;

use tokio::sync::oneshot;

use crate::counter::client_pool::ServicePool;
use crate::counter::model::{CounterError, Op, MAX_BATCH};
use crate::counter::proto;

#[derive(Default)]
pub struct Lane {
    state: parking_lot::Mutex<LaneState>,
}

#[derive(Default)]
struct LaneState {
    queue: Vec<Pending>,
    /// A leader task is sending this lane's batches.
    busy: bool,
}

struct Pending {
    op: Op,
    request_id: String,
    reply: oneshot::Sender<Result<i64, CounterError>>,
}

pub async fn increment(pool: &Arc<ServicePool>, op: Op, request_id: String) -> Result<i64, CounterError> {
    let (tx, rx) = oneshot::channel();
    let at = pool
        .lane_for(&op.key.resource_id)
        .ok_or_else(|| CounterError::Unavailable("no counter service available".into()))?;
    let lane = pool.lane(at);
    let lead = {
        let mut s = lane.state.lock();
        s.queue.push(Pending { op, request_id, reply: tx });
        !std::mem::replace(&mut s.busy, true)
    };
    if lead {
        let pool = pool.clone();
        crate::probe::task::spawn("gateway.coalesce", async move { lead_lane(&pool, pool.lane(at)).await });
    }
    rx.await.unwrap_or_else(|_| Err(CounterError::Internal("coalescing lane dropped the request".into())))
}

/// Sends the lane's queue as batches until it is empty.
async fn lead_lane(pool: &ServicePool, lane: &Lane) {
    loop {
        let batch: Vec<Pending> = {
            let mut s = lane.state.lock();
            if s.queue.is_empty() {
                s.busy = false;
                return;
            }
            let n = s.queue.len().min(MAX_BATCH);
            s.queue.drain(..n).collect()
        };
        let operations = batch
            .iter()
            .map(|p| proto::Operation {
                resource_id: p.op.key.resource_id.clone(),
                counter_type: p.op.key.counter_type.clone(),
                delta: p.op.delta,
                request_id: p.request_id.clone(),
            })
            .collect();
        let batch_id = uuid::Uuid::new_v4().to_string();
        match pool.batch_ops(operations, &batch_id).await {
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
