//! How much memory tokio-console's subscriber keeps per task, with nothing else running:
//! spawns 10,000 short tasks per round under console-subscriber's layer (retention 2 s, no
//! client attached) and prints the process's resident memory after each round and after a
//! pause longer than the retention.
//!
//!   cargo run --release --example console_task_memory
//!
//! With console-subscriber 0.5.0 the resident set grows by about 450 MB per round and does
//! not come back: each task's two poll-time histograms (hdrhistogram, 24 KiB each) stay
//! allocated after the task ended and its retention passed (tokio-rs/console#639). This is
//! why pinchpoint's README says to turn `--console` on while looking, not permanently.

use std::time::Duration;

use tracing_subscriber::prelude::*;

fn resident() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status.lines().find(|l| l.starts_with("VmRSS")).map_or("VmRSS: unknown (no /proc)".into(), str::to_owned)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    runtime.block_on(async {
        let layer = console_subscriber::ConsoleLayer::builder()
            .retention(Duration::from_secs(2))
            .server_addr(([127, 0, 0, 1], 0))
            .spawn();
        tracing_subscriber::registry().with(layer).init();
        println!("start: {}", resident());
        for round in 1..=3 {
            for _ in 0..10_000 {
                tokio::spawn(async { tokio::task::yield_now().await }).await.expect("task");
            }
            println!("after {}0,000 tasks: {}", round, resident());
            tokio::time::sleep(Duration::from_secs(4)).await;
            println!("  4 s later (retention 2 s): {}", resident());
        }
    });
}
