//! Bottlenecks and failures switched on by flags, for the lab and the tests. Each is a
//! small, honest copy of a mistake from the field reports, placed where the real one would
//! be, so the probes see it exactly as they would see the real thing.

use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::counter::model::CounterError;

/// Failures injected on purpose, after the store applied an increment: the case retries
/// and exactly-once exist for (the lab's retry storm, and the tests that prove a retried
/// increment moves the counter once).
#[derive(Debug, Default)]
pub struct Faults {
    /// Every Nth increment call answers UNAVAILABLE although it was applied.
    pub fail_after_apply_every: Option<u64>,
    /// Each increment call waits this long after applying, before answering.
    pub delay_after_apply: Option<Duration>,
    calls: std::sync::atomic::AtomicU64,
}

impl Faults {
    pub fn new(fail_after_apply_every: Option<u64>, delay_after_apply: Option<Duration>) -> Self {
        Faults { fail_after_apply_every, delay_after_apply, calls: Default::default() }
    }

    pub(crate) async fn after_apply(&self) -> Result<(), CounterError> {
        if let Some(d) = self.delay_after_apply {
            tokio::time::sleep(d).await;
        }
        if let Some(every) = self.fail_after_apply_every {
            let n = self.calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            if n % every.max(1) == 0 {
                return Err(CounterError::Unavailable("injected failure after applying (--fault-after-apply)".into()));
            }
        }
        Ok(())
    }
}

/// Gateway-side mistakes, applied to every API request (`--fault-*` flags of `gateway`).
#[derive(Debug, Clone, Default)]
pub struct GatewayFaults {
    /// Each request spawns a task that never ends (the lab's task-leak scenario): a
    /// "watcher" started with plain `tokio::spawn` and forgotten.
    pub leak_task: bool,
    /// Each request clones a buffer of this many bytes several times (allocation churn).
    pub alloc_churn: Option<usize>,
    /// Each request blocks its runtime worker thread this long (a blocking call in async code).
    pub blocking: Option<Duration>,
}

impl GatewayFaults {
    pub fn any(&self) -> bool {
        self.leak_task || self.alloc_churn.is_some() || self.blocking.is_some()
    }
}

/// The middleware that commits the configured mistakes before handling the request.
pub async fn gateway_faults(State(faults): State<std::sync::Arc<GatewayFaults>>, req: Request, next: Next) -> Response {
    if faults.leak_task {
        spawn_forgotten_watcher();
    }
    if let Some(bytes) = faults.alloc_churn {
        churn(bytes);
    }
    if let Some(d) = faults.blocking {
        // Deliberately blocking inside async code: the worker thread stalls, and every task
        // queued behind it waits.
        std::thread::sleep(d);
    }
    next.run(req).await
}

/// A task that waits for a signal nobody will send.
fn spawn_forgotten_watcher() {
    let (_tx, rx) = tokio::sync::oneshot::channel::<()>();
    std::mem::forget(_tx);
    tokio::spawn(async move {
        let _ = rx.await;
    });
}

/// Copies a request-sized buffer around the way over-eager cloning code does.
fn churn(bytes: usize) {
    let original = vec![7u8; bytes];
    let copies: Vec<Box<[u8]>> = (0..4).map(|_| original.clone().into_boxed_slice()).collect();
    std::hint::black_box(&copies);
}
