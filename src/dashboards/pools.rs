//! Pools: connection pools (utilization, saturation, errors, churn, acquire wait) and worker
//! pools (utilization, queue, queue wait, jobs).

use super::overview::share_steps;
use super::panel::{Dashboard, Panel, Target};
use super::promql::{mean, quantile, rate, requests_in_flight, sel, sum_by, SCOPE};
use crate::metrics::catalog::*;

const POOL: &str = r#"pool=~"$pool""#;
const BY: &str = "job, instance, pool";

fn connection_pools() -> Vec<Panel> {
    let waiting = sum_by(BY, &rate(&POOL_ACQUIRE_WAIT, "_sum", POOL));
    vec![
        Panel::timeseries(
            "Acquire wait (waiters)",
            "short",
            "Seconds spent waiting for a pool resource per second = callers queued on the pool on average. Non-zero and \
             growing with load: the pool is too small for the demand (or its resources are held too long).",
            vec![Target::range(waiting.clone(), "{{pool}} ({{instance}})")],
        ),
        Panel::timeseries(
            "Share of request time waiting for the pool",
            "percentunit",
            "Acquire wait divided by requests in flight, the doctor's pool-saturated score. Orange from info (12.5%), red \
             from warning (37.5%), where PinchpointPoolSaturated fires. Size the pool to (in use + waiters) / 0.7.",
            vec![Target::range(
                format!("{waiting} / on (job, instance) group_left() {}", requests_in_flight(SCOPE, "$__rate_interval")),
                "{{pool}} ({{instance}})",
            )],
        )
        .thresholds(&share_steps()),
        Panel::timeseries(
            "Pool utilization",
            "percentunit",
            "Time-averaged resources in use divided by capacity. At 100% every caller beyond capacity waits.",
            vec![Target::range(
                format!("{} / {}", sum_by(BY, &rate(&POOL_IN_USE_SECONDS, "", POOL)), sum_by(BY, &sel(&POOL_MAX_SIZE, "", POOL))),
                "{{pool}} ({{instance}})",
            )],
        )
        .thresholds(&[(0.8, "orange"), (0.95, "red")]),
        Panel::timeseries(
            "Size, in use and waiters",
            "short",
            "Capacity, open resources, leased resources and waiting callers at each scrape.",
            vec![
                Target::range(sum_by(BY, &sel(&POOL_MAX_SIZE, "", POOL)), "max {{pool}} ({{instance}})"),
                Target::range(sum_by(BY, &sel(&POOL_SIZE, "", POOL)), "open {{pool}} ({{instance}})"),
                Target::range(sum_by(BY, &sel(&POOL_IN_USE, "", POOL)), "in use {{pool}} ({{instance}})"),
                Target::range(sum_by(BY, &sel(&POOL_WAITERS, "", POOL)), "waiters {{pool}} ({{instance}})"),
            ],
        ),
        Panel::timeseries(
            "Acquisitions by outcome",
            "ops",
            "Acquisitions per second: immediate, waited, timeout, error. Timeouts and errors fail requests; a growing \
             'waited' share is saturation starting.",
            vec![Target::range(sum_by("job, instance, pool, outcome", &rate(&POOL_ACQUIRE, "", POOL)), "{{pool}} {{outcome}} ({{instance}})")],
        ),
        Panel::timeseries(
            "Acquire wait p50 / p99",
            "s",
            "Time from asking the pool to holding a resource. p99 near the request timeout turns into errors.",
            vec![
                Target::range(quantile(0.5, &POOL_ACQUIRE_WAIT, POOL, BY), "p50 {{pool}} ({{instance}})"),
                Target::range(quantile(0.99, &POOL_ACQUIRE_WAIT, POOL, BY), "p99 {{pool}} ({{instance}})"),
            ],
        )
        .with_exemplars(),
        Panel::timeseries(
            "Connections opened / closed",
            "ops",
            "Connection churn: opens and closes per second. Opens close to the acquisition rate mean no reuse (a \
             connection per request): keep connections in a pool. PinchpointConnectionChurn fires at 0.375 opens per \
             acquisition.",
            vec![
                Target::range(sum_by(BY, &rate(&POOL_OPENED, "", POOL)), "opened {{pool}} ({{instance}})"),
                Target::range(sum_by("job, instance, pool, reason", &rate(&POOL_CLOSED, "", POOL)), "closed {{pool}} {{reason}} ({{instance}})"),
            ],
        ),
        Panel::timeseries(
            "Time to open a connection p50 / p99",
            "s",
            "Dial and handshake time of one resource; multiplied by the open rate it is request time spent dialing.",
            vec![
                Target::range(quantile(0.5, &POOL_OPEN, POOL, BY), "p50 {{pool}} ({{instance}})"),
                Target::range(quantile(0.99, &POOL_OPEN, POOL, BY), "p99 {{pool}} ({{instance}})"),
            ],
        )
        .with_exemplars(),
    ]
}

fn worker_pools() -> Vec<Panel> {
    vec![
        Panel::timeseries(
            "Worker utilization",
            "percentunit",
            "Busy workers divided by workers. At or above 80% with jobs waiting longer than they run, the pool is \
             undersized (PinchpointWorkerPoolUndersized); below 10% with 16 or more workers it is oversized.",
            vec![Target::range(
                format!("{} / {}", sum_by(BY, &rate(&WORKER_BUSY, "", POOL)), sum_by(BY, &sel(&WORKER_COUNT, "", POOL))),
                "{{pool}} ({{instance}})",
            )],
        )
        .thresholds(&[(0.8, "red")]),
        Panel::timeseries(
            "Queue wait vs job time",
            "s",
            "Mean time a job waits in the queue, and mean time a worker spends on it. Wait above job time means jobs \
             spend most of their life queued: add workers (jobs per second x job time / 0.7).",
            vec![
                Target::range(mean(&WORKER_QUEUE_WAIT, POOL, BY), "queue wait {{pool}} ({{instance}})"),
                Target::range(
                    format!(
                        "{} / {}",
                        sum_by(BY, &rate(&WORKER_BUSY, "", POOL)),
                        sum_by(BY, &rate(&WORKER_JOBS, "", &format!(r#"{POOL},outcome!="rejected""#)))
                    ),
                    "job time {{pool}} ({{instance}})",
                ),
            ],
        )
        .with_exemplars(),
        Panel::timeseries(
            "Queue depth and capacity",
            "short",
            "Jobs queued and the queue's bound. Depth at capacity means submissions are rejected.",
            vec![
                Target::range(sum_by(BY, &sel(&WORKER_QUEUE_DEPTH, "", POOL)), "depth {{pool}} ({{instance}})"),
                Target::range(sum_by(BY, &sel(&WORKER_QUEUE_CAPACITY, "", POOL)), "capacity {{pool}} ({{instance}})"),
                Target::range(sum_by(BY, &sel(&WORKER_COUNT, "", POOL)), "workers {{pool}} ({{instance}})"),
            ],
        ),
        Panel::timeseries(
            "Jobs by outcome",
            "ops",
            "Jobs per second: done, rejected (queue full or closed), panicked. Any rejected or panicked job is lost work.",
            vec![Target::range(sum_by("job, instance, pool, outcome", &rate(&WORKER_JOBS, "", POOL)), "{{pool}} {{outcome}} ({{instance}})")],
        ),
    ]
}

pub fn dashboard() -> Dashboard {
    let mut panels = connection_pools();
    panels.extend(worker_pools());
    Dashboard {
        uid: "pinchpoint-pools",
        title: "pinchpoint / Pools",
        description: "Connection pools and worker pools: utilization, saturation, errors, churn and queue wait.",
        variables: vec![(
            "pool",
            "Pool",
            format!(
                "label_values({{__name__=~\"{}|{}\",{SCOPE}}}, pool)",
                POOL_MAX_SIZE.exposed_name(),
                WORKER_COUNT.exposed_name()
            ),
        )],
        panels,
    }
}
