//! `LeakCheck` in a test: "did this code leave tasks behind?"
//!
//! `finish(deadline)` waits adaptively: a task that shuts down slowly but within the deadline
//! passes (no false positive from a fixed 100 ms sleep), one still alive at the deadline fails
//! with its name, spawn site, age and last poll. Only tasks spawned under the check (and the
//! tasks they spawn) are blamed, so tests running in parallel do not blame each other.
//!
//! Run the tests: `cargo test --example leak_check --no-default-features`
//! Run the demo:  `cargo run --example leak_check --no-default-features`

use std::time::Duration;

use pinchpoint::probe::task::{self, LeakCheck};
use tokio::sync::oneshot;

/// A component under test: it starts a background task and stops it on `close`.
struct Worker {
    stop: Option<oneshot::Sender<()>>,
}

impl Worker {
    fn start(shutdown_delay: Duration) -> Self {
        let (tx, rx) = oneshot::channel::<()>();
        task::spawn("example.worker", async move {
            let _ = rx.await;
            // A slow but finite shutdown (flushing, closing connections...).
            tokio::time::sleep(shutdown_delay).await;
        });
        Self { stop: Some(tx) }
    }

    /// Asks the task to stop; `forget` simulates the bug of never doing so.
    fn close(mut self, forget: bool) {
        if forget {
            std::mem::forget(self.stop.take());
        }
    }
}

#[cfg_attr(test, allow(dead_code))]
#[tokio::main]
async fn main() {
    let check = LeakCheck::start();
    Worker::start(Duration::from_millis(300)).close(false);
    match check.finish(Duration::from_secs(2)).await {
        Ok(()) => println!("no leak: the slow shutdown ended within the deadline"),
        Err(report) => println!("{report}"),
    }
    let check = LeakCheck::start();
    Worker::start(Duration::ZERO).close(true);
    match check.finish(Duration::from_millis(200)).await {
        Ok(()) => println!("unexpected: no leak"),
        Err(report) => println!("leak found, as expected:\n{report}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn slow_shutdown_within_the_deadline_is_not_a_leak() {
        let check = LeakCheck::start();
        Worker::start(Duration::from_millis(300)).close(false);
        check.finish(Duration::from_secs(5)).await.expect("no leak");
    }

    #[tokio::test]
    async fn forgotten_task_is_reported_with_its_name_and_site() {
        let check = LeakCheck::start();
        Worker::start(Duration::ZERO).close(true);
        let report = check.finish(Duration::from_millis(200)).await.expect_err("a leak");
        assert_eq!(report.tasks.len(), 1);
        let leaked = &report.tasks[0];
        assert_eq!(leaked.name, Some("example.worker"));
        assert!(leaked.site.starts_with("examples/leak_check.rs:"), "{}", leaked.site);
    }
}
