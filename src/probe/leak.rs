//! `LeakCheck`: "did this test leave tasks behind?", without the false positives of a fixed
//! short wait.
//!
//! `finish(deadline)` polls the task registry until every task spawned under the check has
//! ended (then passes at once) or the deadline passes. A task that ends late but before the
//! deadline is not a leak: field report 002 saw 100 ms waits flag slow shutdowns that a 2 s
//! wait did not. Only tasks spawned from the check's context (the test body and the tasks it
//! spawns, transitively) are blamed, so parallel tests do not blame each other.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use super::clock_ns;
use super::task::{current_check, for_each_task, set_current_check};

/// A running leak check; see the module docs.
#[derive(Debug)]
#[must_use = "call finish(deadline).await"]
pub struct LeakCheck {
    id: u64,
    prev: u64,
}

/// A task still alive at the deadline.
#[derive(Debug, Clone)]
pub struct LeakedTask {
    /// Its name, when spawned with one.
    pub name: Option<&'static str>,
    /// `file:line` of the spawn.
    pub site: String,
    /// How long it had been alive.
    pub age: Duration,
    /// `None`: never polled.
    pub since_last_poll: Option<Duration>,
}

/// Tasks still alive when the check's deadline passed.
#[derive(Debug, Clone)]
pub struct LeakReport {
    /// How long the check waited for them.
    pub waited: Duration,
    /// The tasks, oldest first.
    pub tasks: Vec<LeakedTask>,
}

impl std::fmt::Display for LeakReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{} task(s) still alive after waiting {:?}:", self.tasks.len(), self.waited)?;
        for t in &self.tasks {
            let poll = match t.since_last_poll {
                Some(d) => format!("last polled {d:?} ago"),
                None => "never polled".to_string(),
            };
            writeln!(f, "  - {} spawned at {}, age {:?}, {}", t.name.unwrap_or("(unnamed)"), t.site, t.age, poll)?;
        }
        Ok(())
    }
}

impl std::error::Error for LeakReport {}

impl LeakCheck {
    /// Starts a check in the current context (thread, or tracked task).
    pub fn start() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let id = NEXT.fetch_add(1, Relaxed);
        let prev = set_current_check(id);
        Self { id, prev }
    }

    /// Tasks of this check alive right now.
    pub fn alive(&self) -> Vec<LeakedTask> {
        let now_ns = clock_ns();
        let mut out = Vec::new();
        for_each_task(|t| {
            if t.check == self.id {
                out.push(LeakedTask {
                    name: t.name(),
                    site: super::task::site_label(t.site.location),
                    age: t.age(now_ns),
                    since_last_poll: t.since_last_poll(now_ns),
                });
            }
        });
        out.sort_by_key(|t| std::cmp::Reverse(t.age));
        out
    }

    /// Waits until every task spawned under this check has ended (`Ok`) or `deadline` has
    /// passed (`Err` listing the survivors). Polls with backoff from 1 ms to 50 ms.
    pub async fn finish(self, deadline: Duration) -> Result<(), LeakReport> {
        // Stop attributing new spawns to this check.
        self.restore();
        let start = Instant::now();
        let mut pause = Duration::from_millis(1);
        loop {
            let alive = self.alive();
            if alive.is_empty() {
                return Ok(());
            }
            let waited = start.elapsed();
            if waited >= deadline {
                return Err(LeakReport { waited, tasks: alive });
            }
            tokio::time::sleep(pause.min(deadline - waited)).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    fn restore(&self) {
        if current_check() == self.id {
            set_current_check(self.prev);
        }
    }
}

impl Drop for LeakCheck {
    fn drop(&mut self) {
        self.restore();
    }
}
