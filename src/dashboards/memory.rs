//! Memory, the "GC-like" view: allocation rate, bytes per request by route, live and peak
//! heap, large allocations, RSS.

use super::panel::{Dashboard, Panel, Target};
use super::promql::{quantile, rate, requests_per_second, sel, sum_by, SCOPE};
use crate::diagnose::findings::{ALLOC_BYTES_PER_REQUEST_INFO, ALLOC_BYTES_PER_REQUEST_WARNING};
use crate::metrics::catalog::*;

const BY: &str = "job, instance";

pub fn dashboard() -> Dashboard {
    let panels = vec![
        Panel::timeseries(
            "Allocation rate",
            "Bps",
            "Bytes allocated and freed per second: the allocator's traffic, Rust's equivalent of GC pressure. Allocation \
             well above free for long is growth; both high is churn (see bytes per request).",
            vec![
                Target::range(sum_by(BY, &rate(&ALLOC_BYTES, "", "")), "allocated ({{instance}})"),
                Target::range(sum_by(BY, &rate(&FREE_BYTES, "", "")), "freed ({{instance}})"),
            ],
        ),
        Panel::timeseries(
            "Allocated per request",
            "bytes",
            "Bytes allocated per request served (all allocation of the process divided by its request rate). Orange from \
             the doctor's info (64 KiB), red from warning (1 MiB), where PinchpointAllocationChurn fires: look for \
             clones, boxing and buffers rebuilt per request in a CPU flamegraph.",
            vec![Target::range(
                format!("{} / on (job, instance) {}", sum_by(BY, &rate(&ALLOC_BYTES, "", "")), requests_per_second(SCOPE, "$__rate_interval")),
                "{{instance}}",
            )],
        )
        .thresholds(&[(ALLOC_BYTES_PER_REQUEST_INFO, "orange"), (ALLOC_BYTES_PER_REQUEST_WARNING, "red")]),
        Panel::timeseries(
            "Bytes allocated per request p50 / p99, by route",
            "bytes",
            "Bytes allocated while polling one request's future, by route. A route whose p99 is far above its p50 \
             allocates for some inputs only (large batches, cache misses).",
            vec![
                Target::range(quantile(0.5, &REQUEST_ALLOC, "", "job, instance, route"), "p50 {{route}} ({{instance}})"),
                Target::range(quantile(0.99, &REQUEST_ALLOC, "", "job, instance, route"), "p99 {{route}} ({{instance}})"),
            ],
        ),
        Panel::timeseries(
            "Live and peak heap",
            "bytes",
            "Bytes allocated and not freed, and the highest value seen. Live heap that rises in every interval and never \
             falls back is unbounded growth (PinchpointUnboundedGrowth): a cache or queue without a bound, or a leak.",
            vec![
                Target::range(sum_by(BY, &sel(&HEAP_LIVE, "", "")), "live ({{instance}})"),
                Target::range(sum_by(BY, &sel(&HEAP_PEAK, "", "")), "peak ({{instance}})"),
            ],
        ),
        Panel::timeseries(
            "Large allocations (1 MiB or more) per second",
            "ops",
            "Allocations of at least 1 MiB. Each is a page-fault storm and often a whole-buffer copy; on a request path \
             they are worth removing.",
            vec![Target::range(sum_by(BY, &rate(&ALLOC_LARGE, "", "")), "{{instance}}")],
        ),
        Panel::timeseries(
            "Resident memory (RSS) vs live heap",
            "bytes",
            "What the OS charges the process, next to what the allocator holds. RSS far above live heap is \
             fragmentation or memory the allocator keeps; RSS growing with the heap is real growth.",
            vec![
                Target::range(sum_by(BY, &sel(&PROCESS_RSS, "", "")), "rss ({{instance}})"),
                Target::range(sum_by(BY, &sel(&HEAP_LIVE, "", "")), "live heap ({{instance}})"),
            ],
        ),
    ];
    Dashboard {
        uid: "pinchpoint-memory",
        title: "pinchpoint / Memory",
        description: "Allocation churn and growth, the GC-like view of a Rust process (needs the counting allocator).",
        variables: Vec::new(),
        panels,
    }
}
