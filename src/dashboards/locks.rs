//! Locks: wait rate, contention share, wait and hold quantiles, waiters.

use super::overview::share_steps;
use super::panel::{Dashboard, Panel, Target};
use super::promql::{increase, quantile, rate, requests_in_flight, sel, sum_by, SCOPE};
use crate::metrics::catalog::*;

const LOCK: &str = r#"lock=~"$lock""#;
const BY: &str = "job, instance, lock";

pub fn dashboard() -> Dashboard {
    let waiting = sum_by(BY, &rate(&LOCK_WAIT, "_sum", LOCK));
    let panels = vec![
        Panel::timeseries(
            "Wait rate (waiters)",
            "short",
            "Seconds waited on the lock per second = tasks or threads blocked on it on average (Little's law). Above 1 \
             a whole worker's worth of time queues on this lock: shard it, shorten the critical section (no I/O or \
             allocation under it), or use an RwLock for read-mostly data.",
            vec![Target::range(waiting.clone(), "{{lock}} ({{instance}})")],
        ),
        Panel::timeseries(
            "Share of request time waiting on the lock",
            "percentunit",
            "Wait rate divided by requests in flight: the share of request time spent queued on this lock, the doctor's \
             lock-contention score. Orange from info (12.5%), red from warning (37.5%), where PinchpointLockContention \
             fires.",
            vec![Target::range(
                format!("{waiting} / on (job, instance) group_left() {}", requests_in_flight(SCOPE, "$__rate_interval")),
                "{{lock}} ({{instance}})",
            )],
        )
        .thresholds(&share_steps()),
        Panel::timeseries(
            "Contended acquisitions",
            "percentunit",
            "Share of acquisitions that found the lock taken. Many contended acquisitions with short waits are cheap; \
             few with long waits are a convoy behind a slow holder: see the hold time.",
            vec![Target::range(
                format!("{} / {}", sum_by(BY, &increase(&LOCK_CONTENDED, "", LOCK)), sum_by(BY, &increase(&LOCK_ACQUIRE, "", LOCK))),
                "{{lock}} ({{instance}})",
            )],
        ),
        Panel::timeseries(
            "Acquisitions per second",
            "ops",
            "Lock traffic by mode (exclusive or shared). Contention grows with this times the hold time.",
            vec![Target::range(sum_by("job, instance, lock, mode", &rate(&LOCK_ACQUIRE, "", LOCK)), "{{lock}} {{mode}} ({{instance}})")],
        ),
        Panel::timeseries(
            "Wait time p50 / p99 of contended acquisitions",
            "s",
            "How long an acquisition that blocked waited. p99 many times the hold time means waiters queue behind each \
             other (a convoy); take a contention flamegraph (data link) to see where they wait and who holds.",
            vec![
                Target::range(quantile(0.5, &LOCK_WAIT, LOCK, BY), "p50 {{lock}} ({{instance}})"),
                Target::range(quantile(0.99, &LOCK_WAIT, LOCK, BY), "p99 {{lock}} ({{instance}})"),
            ],
        )
        .with_exemplars(),
        Panel::timeseries(
            "Hold time p50 / p99 (sampled)",
            "s",
            "How long the lock is held, from one acquisition in 256 (quantiles are unbiased). Long holds are work under \
             the lock that should move out of it.",
            vec![
                Target::range(quantile(0.5, &LOCK_HOLD, LOCK, BY), "p50 {{lock}} ({{instance}})"),
                Target::range(quantile(0.99, &LOCK_HOLD, LOCK, BY), "p99 {{lock}} ({{instance}})"),
            ],
        )
        .with_exemplars(),
        Panel::timeseries(
            "Waiters right now",
            "short",
            "Tasks or threads waiting at each scrape. A steady non-zero value is a convoy; spikes are bursts.",
            vec![Target::range(sum_by(BY, &sel(&LOCK_WAITERS, "", LOCK)), "{{lock}} ({{instance}})")],
        )
        .sized(24, 8),
    ];
    Dashboard {
        uid: "pinchpoint-locks",
        title: "pinchpoint / Locks",
        description: "Instrumented locks: how long tasks wait on them, how often, and how long they are held.",
        variables: vec![("lock", "Lock", format!("label_values({}{{{SCOPE}}}, lock)", LOCK_ACQUIRE.exposed_name()))],
        panels,
    }
}
