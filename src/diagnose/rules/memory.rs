//! Memory: allocation-churn (bytes allocated per request) and unbounded-growth (the heap or a
//! queue that grows in every slice).

use super::{guard, in_flight, m, min_events};
use crate::diagnose::findings::*;
use crate::diagnose::verdict::{Evidence, Finding, Where};
use crate::diagnose::window::{ProcessWindow, Slice};

fn per_request(s: &Slice, part: f64) -> Option<f64> {
    let (_, requests) = in_flight(s)?;
    (requests >= min_events(part)).then(|| s.delta(m::ALLOC_BYTES, &[]) / requests)
}

fn churn_score(s: &Slice, part: f64) -> f64 {
    per_request(s, part)
        .map_or(0.0, |b| score_between_log(b, ALLOC_BYTES_PER_REQUEST_INFO, ALLOC_BYTES_PER_REQUEST_WARNING))
}

pub(super) fn churn(w: &ProcessWindow, whole: &Slice, out: &mut Vec<Finding>) {
    if !w.has(m::ALLOC_BYTES) {
        out.push(Finding::not_measured("allocation-churn", &w.name, m::ALLOC_BYTES));
        return;
    }
    let Some(bytes) = per_request(whole, 0.0) else { return };
    // The route allocating most per request, when request_alloc_bytes is there.
    let route = whole
        .label_values(&format!("{}_count", m::REQUEST_ALLOC), "route")
        .into_iter()
        .filter_map(|r| whole.mean(m::REQUEST_ALLOC, &[("route", r.as_str())]).map(|b| (r, b)))
        .max_by(|a, b| a.1.total_cmp(&b.1));
    let place = Where {
        process: w.name.clone(),
        kind: "route",
        resource: route.as_ref().map(|r| r.0.clone()).unwrap_or_default(),
    };
    let mut f = Finding::new("allocation-churn", place, churn_score(whole, 1.0));
    f.evidence.push(Evidence::new("allocated per request", bytes, "B"));
    f.evidence.push(Evidence::new("allocation rate", whole.rate(m::ALLOC_BYTES, &[]), "B/s"));
    if let Some((route, b)) = &route {
        f.evidence.push(Evidence::new(format!("allocated per request on {route}"), *b, "B"));
    }
    let large = whole.rate(m::ALLOC_LARGE, &[]);
    if large > 0.0 {
        f.evidence.push(Evidence::new("allocations of 1 MiB or more", large, "/s"));
    }
    f.recommendation = format!(
        "cut what each request allocates ({:.0} KiB now): reuse buffers, borrow instead of cloning large values, \
         stream instead of collecting; the CPU flamegraph's allocator frames show which callers allocate",
        bytes / 1024.0
    );
    f.flame = w.flame_command("cpu");
    guard(&mut f, w, whole, churn_score);
    out.push(f);
}

/// unbounded-growth: a level that rose in every slice.
pub(super) fn growth(w: &ProcessWindow, whole: &Slice, out: &mut Vec<Finding>) {
    let slices = w.slices();
    if slices.len() < 3 {
        return; // growth "in every slice" needs at least three to mean anything
    }
    // (family, kind of resource, resource, smallest growth that counts)
    let mut levels: Vec<(&str, &'static str, String, f64)> = vec![];
    if w.has(m::HEAP_LIVE) {
        levels.push((m::HEAP_LIVE, "heap", String::new(), GROWTH_MIN_HEAP_BYTES));
    }
    for pool in whole.label_values(m::WORKER_QUEUE_DEPTH, "pool") {
        levels.push((m::WORKER_QUEUE_DEPTH, "worker queue", pool, 100.0));
    }
    for (name, kind, resource, min_abs) in levels {
        let filter: Vec<(&str, &str)> = if resource.is_empty() { vec![] } else { vec![("pool", resource.as_str())] };
        let series: Vec<f64> = w.snapshots.iter().map(|s| s.sum(name, &filter)).collect();
        let first = series[0];
        let last = *series.last().unwrap_or(&first);
        let rising = series.windows(2).all(|p| p[1] > p[0]);
        let grew = last - first;
        let share = if first > 0.0 {
            grew / first
        } else if grew > 0.0 {
            1.0
        } else {
            0.0
        };
        let score =
            if rising && grew >= min_abs { score_between(share, GROWTH_SHARE_INFO, GROWTH_SHARE_WARNING) } else { 0.0 };
        let mut f = Finding::new(
            "unbounded-growth",
            Where { process: w.name.clone(), kind, resource: resource.clone() },
            score,
        );
        let unit = if kind == "heap" { "B" } else { "" };
        f.evidence.push(Evidence::new("at the start", first, unit));
        f.evidence.push(Evidence::new("at the end", last, unit));
        f.evidence.push(Evidence::new("growth over the window", share, "share"));
        f.slices = slices.len();
        f.slices_held = series.windows(2).filter(|p| p[1] > p[0]).count();
        f.recommendation = if kind == "heap" {
            "find what holds memory: growth alongside a task-leak finding is the leaked tasks; otherwise a cache or map \
             without a bound (cap it, evict)"
                .to_string()
        } else {
            format!(
                "`{resource}`'s queue grows without draining: its workers cannot keep up (see worker-pool-undersized)"
            )
        };
        f.flame = w.flame_command("cpu");
        out.push(f);
    }
}

#[cfg(test)]
mod tests {
    use super::super::evaluate;
    use super::super::test_support::{http, window};
    use crate::diagnose::findings::Severity;

    fn alloc(bytes_per_request: f64) -> Vec<crate::diagnose::verdict::Finding> {
        evaluate(&window(3, 10, move |i| {
            let n = i as f64 * 1_000.0;
            format!("pinchpoint_alloc_bytes_total {}\n{}", n * bytes_per_request, http(n, n * 0.001))
        }))
    }

    #[test]
    fn a_megabyte_per_request_is_churn_and_a_few_kilobytes_are_not() {
        let f = alloc(1.25 * 1024.0 * 1024.0);
        assert_eq!(f.iter().find(|f| f.id == "allocation-churn").unwrap().severity, Severity::Warning);
        let f = alloc(8.0 * 1024.0);
        assert!(!f.iter().any(|f| f.reportable()), "{f:?}");
    }

    #[test]
    fn a_heap_that_grows_in_every_slice_is_unbounded_growth() {
        let grow =
            evaluate(&window(3, 10, |i| format!("pinchpoint_heap_live_bytes {}\n", 100e6 * (1.0 + i as f64 * 0.3))));
        let f = grow.iter().find(|f| f.id == "unbounded-growth").unwrap();
        assert!(f.reportable(), "{f:?}");
        let saw = evaluate(&window(3, 10, |i| {
            format!("pinchpoint_heap_live_bytes {}\n", if i % 2 == 0 { 100e6 } else { 200e6 })
        }));
        assert!(!saw.iter().any(|f| f.reportable()), "{saw:?}");
    }
}
