//! Graceful shutdown: SIGINT or SIGTERM stops the listeners from accepting, in-flight
//! requests finish, and the process exits 0 — within a drain deadline, so a stuck
//! connection cannot hold the process forever.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// How long in-flight work may take to finish after a signal. DESIGN.md allows 10 s in
/// all; a little is kept for flushing and exit.
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(9);

#[derive(Clone, Default)]
pub struct Shutdown {
    token: CancellationToken,
}

impl Shutdown {
    pub fn new() -> Self {
        Shutdown::default()
    }

    /// Starts a task that triggers this shutdown on SIGINT or SIGTERM.
    pub fn trigger_on_signals(&self) {
        let token = self.token.clone();
        crate::probe::task::spawn("shutdown.signals", async move {
            wait_for_signal().await;
            tracing::info!("signal received: draining in-flight requests");
            token.cancel();
        });
    }

    pub fn trigger(&self) {
        self.token.cancel();
    }

    pub fn is_triggered(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Resolves once shutdown has been triggered.
    pub fn wait(&self) -> impl Future<Output = ()> + Send + 'static {
        let token = self.token.clone();
        async move { token.cancelled().await }
    }
}

#[cfg(unix)]
/// Resolves on the first SIGINT or SIGTERM (Ctrl-C elsewhere).
pub async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[cfg(not(unix))]
/// Resolves on the first SIGINT or SIGTERM (Ctrl-C elsewhere).
pub async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}
