//! The lab's scenarios: each a named set of flags for the counter system that switches one
//! bottleneck from the field reports on (DESIGN.md, "Lab scenarios"). They differ from
//! `tuned` in as few flags as possible, so what moves between them is the bottleneck.

use std::time::Duration;

use crate::lab::consumer_runner::{ConsumerSpec, Workers};
use crate::load::Mix;

/// Which processes a scenario runs, with their extra flags.
#[derive(Debug, Clone)]
pub enum Topology {
    /// `service` (+ a fresh redis-server when `redis` is set) and a `gateway` in front.
    Split { service: Vec<&'static str>, gateway: Vec<&'static str>, redis: bool },
    /// The HTTP API with the store in process.
    Monolith(Vec<&'static str>),
    /// A `pinchpoint consumer` behind a fresh `nats-server -js` (src/lab/consumer_runner.rs).
    Consumer(ConsumerSpec),
}

#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: &'static str,
    /// What is switched, in a sentence.
    pub summary: &'static str,
    /// The finding the doctor must name (DESIGN.md's ground truth), in words.
    pub expect: &'static str,
    /// The same as data: the id ranked first (None: nothing at info or above), the process it
    /// must be in, and a part of the resource's name.
    pub expect_id: Option<&'static str>,
    pub expect_process: Option<&'static str>,
    pub expect_where: Option<&'static str>,
    pub topology: Topology,
    pub mix: Mix,
    /// `--mix batch` only: operations per batch, and whether batches are `"async": true`.
    pub batch_size: usize,
    pub asynchronous: bool,
    /// Distinct keys per run (the load driver's default is 100).
    pub keys: u32,
    /// `--store-work` of this scenario as a multiple of the lab's (1 for all but global-lock).
    pub store_work_factor: u32,
    /// `--doctor-window` of this scenario as a multiple of the lab's (1 for all but
    /// undersized-workers, whose jobs are long).
    pub doctor_window_factor: u32,
}

/// Work under the store lock per increment (`lab --store-work`), the same in every
/// scenario so that lock layout is the only thing `global-lock` changes.
pub const DEFAULT_STORE_WORK: &str = "20us";

/// Leak suspects need a threshold shorter than a lab run.
pub const LEAK_THRESHOLD: &str = "500ms";

/// One coalescing lane per channel (the default). Two lanes cost the gateway and service less
/// CPU per request (`scripts/agrade.sh` prints both), but at L5 a two-lane group carries
/// about 250 operations in one RPC, and the doctor, counting allocation per RPC rather than per
/// operation, then reads the service's ~150 KiB per call as allocation churn.
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
    Scenario {
        name,
        summary,
        expect,
        expect_id: None,
        expect_process: None,
        expect_where: None,
        topology,
        mix: Mix::Increment,
        batch_size: 10,
        asynchronous: false,
        keys: 100,
        store_work_factor: 1,
        doctor_window_factor: 1,
    }
}

/// global-lock's critical section, in multiples of `--store-work`. At 20 µs one lock admits
/// 50,000 increments a second, more than the rest of the system drives on 2 shared cores, so
/// the lock never binds and the doctor rightly finds it uncontended (1.4% of acquisitions
/// waited). The field report's global lock was held across far longer work; 5× makes it bind.
pub const GLOBAL_LOCK_WORK_FACTOR: u32 = 5;

/// undersized-workers spreads its batches over this many keys. With the default 100, the write
/// buffer merges a whole flush interval into at most 100 operations, one 20 ms job per 100 ms:
/// the single flush worker was 24% busy, its queue waits only bursts. Distinct keys keep the
/// jobs coming, so the pool is really too small for the load.
pub const UNDERSIZED_KEYS: u32 = 10_000;

/// undersized-workers holds its peak for this many doctor windows. Its one flush worker runs
/// 110 ms jobs on a quiet machine and 200 ms ones on a loaded machine: 5 to 9 jobs a second,
/// so a 3 s window can see fewer than the 20 jobs the doctor needs before it calls a pool
/// undersized.
pub const UNDERSIZED_WINDOW_FACTOR: u32 = 3;

impl Scenario {
    fn with_store_work_factor(mut self, factor: u32) -> Self {
        self.store_work_factor = factor;
        self
    }

    fn expects(mut self, id: &'static str, process: &'static str, resource: Option<&'static str>) -> Self {
        self.expect_id = Some(id);
        self.expect_process = Some(process);
        self.expect_where = resource;
        self
    }
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
        )
        .expects("connection-churn", "gateway", Some("rpc")),
        scenario(
            "single-connection",
            "one channel that allows 4 concurrent streams",
            "pool-saturated (rpc pool)",
            split(&["--max-streams", "4"], &["--pool-size", "1", "--streams-per-channel", "4"]),
        )
        .expects("pool-saturated", "gateway", Some("rpc")),
        scenario(
            "global-lock",
            "one lock around the whole store, with the store's work under it",
            "lock-contention (store.global)",
            split(&["--lock", "global"], TUNED_GATEWAY),
        )
        .expects("lock-contention", "service", Some("store.global"))
        .with_store_work_factor(GLOBAL_LOCK_WORK_FACTOR),
        Scenario {
            mix: Mix::Batch,
            batch_size: 20,
            asynchronous: true,
            keys: UNDERSIZED_KEYS,
            doctor_window_factor: UNDERSIZED_WINDOW_FACTOR,
            ..scenario(
                "undersized-workers",
                "write buffer flushed by 1 worker into a store that takes 20 ms per call",
                "worker-pool-undersized",
                split(&["--store-delay", "20ms"], &["--write-buffer", "--flush-workers", "1"]),
            )
            .expects("worker-pool-undersized", "gateway", Some("write_buffer.flush"))
        },
        scenario(
            "task-leak",
            "every request spawns a watcher task that never ends",
            "task-leak (its spawn site)",
            split(&[], &["--pool-size", "8", "--fault-leak-task"]),
        )
        .expects("task-leak", "gateway", Some("src/counter/faults.rs")),
        scenario(
            "alloc-churn",
            "every request clones a 256 KiB buffer four times",
            "allocation-churn",
            split(&[], &["--pool-size", "8", "--fault-alloc-churn", "262144"]),
        )
        .expects("allocation-churn", "gateway", None),
        scenario(
            "blocking-call",
            "every request blocks its runtime thread for 2 ms",
            "runtime-blocked",
            split(&[], &["--pool-size", "8", "--fault-blocking", "2ms"]),
        )
        .expects("runtime-blocked", "gateway", None),
        scenario(
            "retry-storm",
            "a service that answers in 20 ms behind a 15 ms timeout and 2 retries",
            "retry-amplification",
            split(
                &["--fault-delay", "20ms"],
                &["--pool-size", "8", "--timeout", "15ms", "--retries", "2", "--breaker-threshold", "1000000"],
            ),
        )
        .expects("retry-amplification", "gateway", None),
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
            .expects("pool-saturated", "service", Some("redis"))
        },
        scenario(
            "monolith",
            "the HTTP API with the store in process: the baseline the split system is measured against",
            "nothing above info",
            Topology::Monolith(vec![]),
        ),
    ]
    .into_iter()
    .chain(consumer_scenarios())
    .collect()
}

/// The consumer's handler time and publish rate in the tuned, oversized, residue and
/// slow-shutdown scenarios: 1,000 messages/s of 2 ms jobs keep 2 workers busy on average.
const CONSUMER_HANDLER: Duration = Duration::from_millis(2);
const CONSUMER_RATE: f64 = 1000.0;

fn consumer(name: &'static str, summary: &'static str, expect: &'static str, spec: ConsumerSpec) -> Scenario {
    scenario(name, summary, expect, Topology::Consumer(spec))
}

fn consumer_tuned() -> ConsumerSpec {
    ConsumerSpec {
        workers: Workers::FromRate,
        handler_time: CONSUMER_HANDLER,
        rate: Some(CONSUMER_RATE),
        purge: true,
        shutdown_delay: Duration::ZERO,
    }
}

/// The broker scenarios of field reports 002 and 003 (nats-server with JetStream).
fn consumer_scenarios() -> Vec<Scenario> {
    vec![
        consumer(
            "consumer-tuned",
            "JetStream consumer, pool sized from measured rate × handler time, stream purged before every run",
            "nothing above info",
            consumer_tuned(),
        ),
        consumer(
            "consumer-undersized",
            "48 workers behind a 50 ms handler, messages published as fast as the broker takes them",
            "worker-pool-undersized",
            ConsumerSpec {
                workers: Workers::Fixed(48),
                handler_time: Duration::from_millis(50),
                rate: None,
                ..consumer_tuned()
            },
        )
        .expects("worker-pool-undersized", "consumer", Some("consumer")),
        consumer(
            "consumer-oversized",
            "256 workers for 1,000 messages/s of 2 ms jobs (2 workers busy on average)",
            "worker-pool-oversized",
            ConsumerSpec { workers: Workers::Fixed(256), ..consumer_tuned() },
        )
        .expects("worker-pool-oversized", "consumer", Some("consumer")),
        consumer(
            "consumer-residue",
            "the stream is not purged between runs, and each run's new consumer reads it from the start",
            "inconsistent-counts (stale data)",
            ConsumerSpec { purge: false, ..consumer_tuned() },
        )
        .expects("inconsistent-counts", "lab", None),
        consumer(
            "consumer-slow-shutdown",
            "the consumer's background tasks end 1.5 s after close",
            "nothing (LeakCheck passes; a fixed 100 ms wait would not)",
            ConsumerSpec { shutdown_delay: Duration::from_millis(1500), ..consumer_tuned() },
        ),
    ]
}

pub fn find(name: &str) -> Option<Scenario> {
    all().into_iter().find(|s| s.name == name)
}

pub fn names() -> Vec<&'static str> {
    all().iter().map(|s| s.name).collect()
}
