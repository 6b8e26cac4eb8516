//! Counter system: gateway to service RPCs, retries, breaker, cache, write buffer, rate
//! limiter, store.

use super::panel::{Dashboard, Panel, Target};
use super::promql::{quantile, rate, sel, sum_by};
use crate::diagnose::findings::{RETRY_SHARE_INFO, RETRY_SHARE_WARNING};
use crate::metrics::catalog::*;

const BY: &str = "job, instance";

pub fn dashboard() -> Dashboard {
    let panels = vec![
        Panel::timeseries(
            "Gateway to service RPCs per second, by method and code",
            "reqps",
            "gRPC calls the gateway made (attempts, retries included). Codes other than ok are failures the gateway saw: \
             unavailable (service down or breaker), deadline_exceeded (slow service or short timeout).",
            vec![Target::range(sum_by("job, instance, method, code", &rate(&RPC_CLIENT_REQUESTS, "", "")), "{{method}} {{code}} ({{instance}})")],
        ),
        Panel::timeseries(
            "RPC latency seen by the gateway p50 / p99",
            "s",
            "Client-side latency, pool wait and retries included; compare with the service's own latency on the overview.",
            vec![
                Target::range(quantile(0.5, &RPC_CLIENT_DURATION, "", "job, instance, method"), "p50 {{method}} ({{instance}})"),
                Target::range(quantile(0.99, &RPC_CLIENT_DURATION, "", "job, instance, method"), "p99 {{method}} ({{instance}})"),
            ],
        )
        .with_exemplars(),
        Panel::timeseries(
            "Retries",
            "percentunit",
            "Retries per RPC attempt. Orange from the doctor's info (5%), red from warning (20%), where \
             PinchpointRetryAmplification fires: retries multiply load on a downstream that is already slow; lengthen \
             the timeout or cut retries before adding capacity.",
            vec![Target::range(
                format!("{} / {}", sum_by(BY, &rate(&RPC_CLIENT_RETRIES, "", "")), sum_by(BY, &rate(&RPC_CLIENT_REQUESTS, "", ""))),
                "{{instance}}",
            )],
        )
        .thresholds(&[(RETRY_SHARE_INFO, "orange"), (RETRY_SHARE_WARNING, "red")]),
        Panel::timeseries(
            "Breaker state",
            "short",
            "Circuit breaker per service target: 0 closed, 1 half-open, 2 open. Open means requests fail fast without \
             reaching the service (PinchpointBreakerOpen); look at the service's own dashboards for why.",
            vec![Target::range(sum_by("job, instance, target", &sel(&BREAKER_STATE, "", "")), "{{target}} ({{instance}})")],
        )
        .thresholds(&[(1.0, "orange"), (2.0, "red")]),
        Panel::timeseries(
            "Cache hit ratio",
            "percentunit",
            "Share of cached reads answered from the cache. Low with a long TTL means reads rarely repeat a key.",
            vec![Target::range(
                format!(
                    "{} / {}",
                    sum_by(BY, &rate(&CACHE_REQUESTS, "", r#"outcome="hit""#)),
                    sum_by(BY, &rate(&CACHE_REQUESTS, "", ""))
                ),
                "{{instance}}",
            )],
        ),
        Panel::timeseries(
            "Write buffer: pending and flushes",
            "short",
            "Increments buffered and not yet flushed, and flushes per second. Pending that grows is a flush pool that \
             cannot keep up: see its worker pool on the Pools dashboard.",
            vec![
                Target::range(sum_by(BY, &sel(&WRITE_BUFFER_PENDING, "", "")), "pending ({{instance}})"),
                Target::range(sum_by(BY, &rate(&WRITE_BUFFER_FLUSHES, "", "")), "flushes/s ({{instance}})"),
            ],
        ),
        Panel::timeseries(
            "Write buffer batch size p50 / p99",
            "short",
            "Increments per flush. Batches of 1 mean the buffer is not batching (load too low or flushes too eager).",
            vec![
                Target::range(quantile(0.5, &WRITE_BUFFER_BATCH, "", BY), "p50 ({{instance}})"),
                Target::range(quantile(0.99, &WRITE_BUFFER_BATCH, "", BY), "p99 ({{instance}})"),
            ],
        ),
        Panel::timeseries(
            "Rate limiter decisions and tracked keys",
            "short",
            "Decisions per second by outcome (allowed, limited) and keys tracked. Tracked keys growing without bound is \
             a leak in the limiter.",
            vec![
                Target::range(sum_by("job, instance, outcome", &rate(&RATELIMIT_DECISIONS, "", "")), "{{outcome}}/s ({{instance}})"),
                Target::range(sum_by(BY, &sel(&RATELIMIT_TRACKED_KEYS, "", "")), "tracked keys ({{instance}})"),
            ],
        ),
        Panel::timeseries(
            "Store operation latency p50 / p99",
            "s",
            "Latency of the service's store by backend and operation. A slow store shows here before it shows as pool \
             or lock waits upstream.",
            vec![
                Target::range(quantile(0.5, &STORE_OP, "", "job, instance, backend, op"), "p50 {{backend}} {{op}} ({{instance}})"),
                Target::range(quantile(0.99, &STORE_OP, "", "job, instance, backend, op"), "p99 {{backend}} {{op}} ({{instance}})"),
            ],
        )
        .with_exemplars()
        .sized(24, 8),
    ];
    Dashboard {
        uid: "pinchpoint-counter",
        title: "pinchpoint / Counter system",
        description:
            "The lab's counter gateway and service: RPCs, retries, breaker, cache, write buffer, rate limiter, store.",
        variables: Vec::new(),
        panels,
    }
}
