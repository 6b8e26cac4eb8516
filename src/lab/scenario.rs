//! The lab's scenarios: each a named set of flags for the counter system that switches one
//! bottleneck from the field reports on (DESIGN.md, "Lab scenarios"). They differ from
//! `tuned` in as few flags as possible, so what moves between them is the bottleneck.

use crate::load::Mix;

/// Which processes a scenario runs, with their extra flags.
#[derive(Debug, Clone)]
pub enum Topology {
    /// `service` (+ a fresh redis-server when `redis` is set) and a `gateway` in front.
    Split { service: Vec<&'static str>, gateway: Vec<&'static str>, redis: bool },
    /// The HTTP API with the store in process.
    Monolith(Vec<&'static str>),
}

#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: &'static str,
    /// What is switched, in a sentence.
    pub summary: &'static str,
    /// The finding the doctor must name (DESIGN.md's ground truth).
    pub expect: &'static str,
    pub topology: Topology,
    pub mix: Mix,
    /// `--mix batch` only: operations per batch, and whether batches are `"async": true`.
    pub batch_size: usize,
    pub asynchronous: bool,
}

/// Work under the store lock per increment (`lab --store-work`), the same in every
/// scenario so that lock layout is the only thing `global-lock` changes.
pub const DEFAULT_STORE_WORK: &str = "20us";

/// Leak suspects need a threshold shorter than a lab run.
pub const LEAK_THRESHOLD: &str = "500ms";

const TUNED_GATEWAY: &[&str] = &["--coalesce", "--pool-size", "8"];

/// Service runtime threads in every split scenario: more threads than this 2-core lab
/// machine has cores, as on a bigger production box, so a lock's waiters pile up the way
/// they do there (and a preempted holder makes them wait longer, as it does there).
const SERVICE_THREADS: &str = "8";

fn split(service: &[&'static str], gateway: &[&'static str]) -> Topology {
    let mut s = vec!["--worker-threads", SERVICE_THREADS];
    s.extend_from_slice(service);
    Topology::Split { service: s, gateway: gateway.to_vec(), redis: false }
}

fn scenario(name: &'static str, summary: &'static str, expect: &'static str, topology: Topology) -> Scenario {
    Scenario { name, summary, expect, topology, mix: Mix::Increment, batch_size: 10, asynchronous: false }
}

/// Every scenario, in the order the lab runs them.
pub fn all() -> Vec<Scenario> {
    vec![
        scenario(
            "tuned",
            "pooled channels, coalescing, sharded store",
            "nothing above info",
            split(&[], TUNED_GATEWAY),
        ),
        scenario(
            "dial-per-request",
            "a new gRPC connection for every request, closed after it (the 738-QPS design)",
            "connection-churn",
            split(&[], &["--dial-per-request"]),
        ),
        scenario(
            "single-connection",
            "one channel that allows 4 concurrent streams",
            "pool-saturated (rpc pool)",
            split(&["--max-streams", "4"], &["--pool-size", "1", "--streams-per-channel", "4"]),
        ),
        scenario(
            "global-lock",
            "one lock around the whole store, with the store's work under it",
            "lock-contention (store.global)",
            split(&["--lock", "global"], TUNED_GATEWAY),
        ),
        Scenario {
            mix: Mix::Batch,
            batch_size: 20,
            asynchronous: true,
            ..scenario(
                "undersized-workers",
                "write buffer flushed by 1 worker into a store that takes 20 ms per call",
                "worker-pool-undersized",
                split(&["--store-delay", "20ms"], &["--write-buffer", "--flush-workers", "1"]),
            )
        },
        scenario(
            "task-leak",
            "every request spawns a watcher task that never ends",
            "task-leak (its spawn site)",
            split(&[], &["--pool-size", "8", "--fault-leak-task"]),
        ),
        scenario(
            "alloc-churn",
            "every request clones a 256 KiB buffer four times",
            "allocation-churn",
            split(&[], &["--pool-size", "8", "--fault-alloc-churn", "262144"]),
        ),
        scenario(
            "blocking-call",
            "every request blocks its runtime thread for 2 ms",
            "runtime-blocked",
            split(&[], &["--pool-size", "8", "--fault-blocking", "2ms"]),
        ),
        scenario(
            "retry-storm",
            "a service that answers in 20 ms behind a 15 ms timeout and 2 retries",
            "retry-amplification",
            split(
                &["--fault-delay", "20ms"],
                &["--pool-size", "8", "--timeout", "15ms", "--retries", "2", "--breaker-threshold", "1000000"],
            ),
        ),
        Scenario {
            topology: Topology::Split {
                service: vec!["--store-pool", "1"],
                gateway: vec!["--pool-size", "8"],
                redis: true,
            },
            ..scenario(
                "small-redis-pool",
                "a Redis store behind a pool of one connection",
                "pool-saturated (redis pool)",
                Topology::Monolith(vec![]),
            )
        },
        scenario(
            "monolith",
            "the HTTP API with the store in process: the baseline the split system is measured against",
            "nothing above info",
            Topology::Monolith(vec![]),
        ),
    ]
}

pub fn find(name: &str) -> Option<Scenario> {
    all().into_iter().find(|s| s.name == name)
}

pub fn names() -> Vec<&'static str> {
    all().iter().map(|s| s.name).collect()
}
