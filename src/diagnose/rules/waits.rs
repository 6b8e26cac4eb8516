//! Waiting on a resource: lock-contention, pool-saturated, connection-churn.
//!
//! Impact is Little's law: the average number of tasks waiting on a resource is the rate of
//! its wait seconds; over the requests in flight (the rate of request-duration seconds) it is
//! the share of request time spent waiting on it.

use super::{guard, in_flight, m, min_events};
use crate::diagnose::findings::*;
use crate::diagnose::verdict::{Evidence, Finding, Where};
use crate::diagnose::window::{ProcessWindow, Slice};

/// Score of `waiters` tasks waiting on average: by share of request time, or by waiters when
/// the process serves no measured requests.
pub(crate) fn wait_score(s: &Slice, waiters: f64) -> (f64, Option<f64>) {
    match in_flight(s) {
        Some((busy, _)) => {
            let share = (waiters / busy).min(1.0);
            (score_between(share, INFO_SHARE, WARNING_SHARE), Some(share))
        }
        None => (score_between(waiters, WAITERS_INFO, WAITERS_WARNING), None),
    }
}

fn place(w: &ProcessWindow, kind: &'static str, resource: &str) -> Where {
    Where { process: w.name.clone(), kind, resource: resource.to_string() }
}

pub(super) fn locks(w: &ProcessWindow, whole: &Slice, out: &mut Vec<Finding>) {
    if !w.has(m::LOCK_ACQUIRE) {
        out.push(Finding::not_measured("lock-contention", &w.name, m::LOCK_ACQUIRE));
        return;
    }
    for lock in whole.label_values(m::LOCK_ACQUIRE, "lock") {
        let f = [("lock", lock.as_str())];
        let score_of = |s: &Slice, part: f64| {
            if s.delta(m::LOCK_CONTENDED, &f) < min_events(part) {
                return 0.0;
            }
            wait_score(s, s.rate(m::LOCK_WAIT_SUM, &f)).0
        };
        let waiters = whole.rate(m::LOCK_WAIT_SUM, &f);
        let acquires = whole.delta(m::LOCK_ACQUIRE, &f);
        let contended = whole.delta(m::LOCK_CONTENDED, &f);
        let (_, share) = wait_score(whole, waiters);
        let mut finding = Finding::new("lock-contention", place(w, "lock", &lock), score_of(whole, 1.0));
        finding.impact = share;
        finding.evidence.push(Evidence::new("tasks waiting on average", waiters, ""));
        if let Some(share) = share {
            finding.evidence.push(Evidence::new("of request time", share, "share"));
        }
        finding.evidence.push(Evidence::new("acquisitions", acquires / whole.secs, "/s"));
        if acquires > 0.0 {
            finding.evidence.push(Evidence::new("contended", contended / acquires, "share"));
        }
        if let Some(p99) = whole.quantile(m::LOCK_WAIT, &f, 0.99) {
            finding.evidence.push(Evidence::new("wait p99 ≤", p99, "s"));
        }
        let hold = whole.mean(m::LOCK_HOLD, &[("lock", lock.as_str())]);
        if let Some(hold) = hold {
            finding.evidence.push(Evidence::new("mean hold (sampled)", hold, "s"));
            finding.evidence.push(Evidence::new("lock held", (hold * acquires / whole.secs).min(1.0), "share"));
        }
        finding.recommendation = match hold {
            Some(hold) => format!(
                "shard `{lock}` or move work out from under it: it is held {:.1} µs each time, {:.0} times a second; \
                 the contention flamegraph shows who waits and where the holder took it",
                hold * 1e6,
                acquires / whole.secs
            ),
            None => format!("shard `{lock}` or shorten what runs under it; the contention flamegraph shows who waits"),
        };
        if contended < MIN_EVENTS {
            finding.note = Some(format!("too few contended acquisitions to judge ({contended:.0} < {MIN_EVENTS:.0})"));
        }
        finding.flame = w.flame_command("contention");
        guard(&mut finding, w, whole, score_of);
        out.push(finding);
    }
}

pub(super) fn pools(w: &ProcessWindow, whole: &Slice, out: &mut Vec<Finding>) {
    if !w.has(m::POOL_ACQUIRE) {
        out.push(Finding::not_measured("pool-saturated", &w.name, m::POOL_ACQUIRE));
        return;
    }
    for pool in whole.label_values(m::POOL_ACQUIRE, "pool") {
        let f = [("pool", pool.as_str())];
        let waited_filter = [("pool", pool.as_str()), ("outcome", "waited")];
        let timeout_filter = [("pool", pool.as_str()), ("outcome", "timeout")];
        let score_of = |s: &Slice, part: f64| {
            let waited = s.delta(m::POOL_ACQUIRE, &waited_filter) + s.delta(m::POOL_ACQUIRE, &timeout_filter);
            if waited < min_events(part) {
                return 0.0;
            }
            wait_score(s, s.rate(m::POOL_WAIT_SUM, &f)).0
        };
        let waiters = whole.rate(m::POOL_WAIT_SUM, &f);
        let acquires = whole.delta(m::POOL_ACQUIRE, &f);
        let waited = whole.delta(m::POOL_ACQUIRE, &waited_filter);
        let timeouts = whole.delta(m::POOL_ACQUIRE, &timeout_filter);
        let in_use = whole.rate(m::POOL_IN_USE_SECONDS, &f);
        let max = whole.gauge(m::POOL_MAX, &f);
        let (_, share) = wait_score(whole, waiters);
        let mut finding = Finding::new("pool-saturated", place(w, "pool", &pool), score_of(whole, 1.0));
        finding.impact = share;
        finding.evidence.push(Evidence::new("tasks waiting on average", waiters, ""));
        if let Some(share) = share {
            finding.evidence.push(Evidence::new("of request time", share, "share"));
        }
        if acquires > 0.0 {
            finding.evidence.push(Evidence::new("acquisitions that waited", (waited + timeouts) / acquires, "share"));
        }
        if timeouts > 0.0 {
            finding.evidence.push(Evidence::new("acquire timeouts", timeouts / whole.secs, "/s"));
        }
        if let Some(p99) = whole.quantile(m::POOL_WAIT, &f, 0.99) {
            finding.evidence.push(Evidence::new("wait p99 ≤", p99, "s"));
        }
        finding.evidence.push(Evidence::new("in use on average", in_use, ""));
        if max > 0.0 {
            finding.evidence.push(Evidence::new("max size", max, ""));
            finding.evidence.push(Evidence::new("utilization", in_use / max, "share"));
        }
        let suggested = ((in_use + waiters) / TARGET_UTILIZATION).ceil().max(max + 1.0);
        let hold = if acquires > 0.0 { in_use * whole.secs / acquires } else { 0.0 };
        finding.recommendation = if max > 0.0 && in_use >= 0.5 * max {
            format!(
                "raise `{pool}`'s max size from {max:.0} to {suggested:.0} ((in use {in_use:.1} + waiting {waiters:.1}) / \
                 {TARGET_UTILIZATION}); each use holds it {:.2} ms, so if the holder is slow, that is the fix",
                hold * 1e3
            )
        } else {
            format!(
                "`{pool}` has free capacity ({in_use:.1} of {max:.0} in use) yet acquisitions wait: \
                 look for a per-resource limit inside it (streams per connection, a connect in the acquire path)"
            )
        };
        finding.flame = w.flame_command("contention");
        guard(&mut finding, w, whole, score_of);
        out.push(finding);
    }
}

pub(super) fn churn(w: &ProcessWindow, whole: &Slice, out: &mut Vec<Finding>) {
    if !w.has(m::POOL_OPENED) {
        if w.has(m::POOL_ACQUIRE) {
            out.push(Finding::not_measured("connection-churn", &w.name, m::POOL_OPENED));
        }
        return;
    }
    for pool in whole.label_values(m::POOL_OPENED, "pool") {
        let f = [("pool", pool.as_str())];
        let score_of = |s: &Slice, part: f64| {
            let opened = s.delta(m::POOL_OPENED, &f);
            let acquires = s.delta(m::POOL_ACQUIRE, &f);
            if acquires >= min_events(part) {
                score_between(opened / acquires, CHURN_OPENS_PER_ACQUIRE_INFO, CHURN_OPENS_PER_ACQUIRE_WARNING)
            } else if opened >= min_events(part) {
                score_between(opened / s.secs, CHURN_OPENS_PER_SECOND_INFO, 3.0 * CHURN_OPENS_PER_SECOND_INFO)
            } else {
                0.0
            }
        };
        let opened = whole.delta(m::POOL_OPENED, &f);
        let acquires = whole.delta(m::POOL_ACQUIRE, &f);
        let mut finding = Finding::new("connection-churn", place(w, "pool", &pool), score_of(whole, 1.0));
        finding.evidence.push(Evidence::new("connections opened", opened / whole.secs, "/s"));
        if acquires > 0.0 {
            finding.evidence.push(Evidence::new("opened per acquisition", opened / acquires, "x"));
        }
        if let Some(p50) = whole.quantile(m::POOL_OPEN, &f, 0.5) {
            finding.evidence.push(Evidence::new("time to open p50 ≤", p50, "s"));
        }
        let dialing = whole.rate(m::POOL_OPEN_SUM, &f);
        if let Some((busy, _)) = in_flight(whole) {
            let share = (dialing / busy).min(1.0);
            finding.impact = Some(share);
            finding.evidence.push(Evidence::new("of request time opening connections", share, "share"));
        }
        finding.recommendation = format!(
            "keep `{pool}`'s connections open and reuse them: it opened {:.0} a second for {:.0} uses; \
             a pooled client with a few long-lived connections (HTTP/2 multiplexes) removes the dial from every request",
            opened / whole.secs,
            acquires / whole.secs
        );
        finding.flame = w.flame_command("cpu");
        guard(&mut finding, w, whole, score_of);
        out.push(finding);
    }
}

#[cfg(test)]
mod tests {
    use super::super::evaluate;
    use super::super::test_support::{hist, http, window};
    use crate::diagnose::findings::Severity;

    fn lock_window(wait_per_slice: f64, contended: f64) -> crate::diagnose::window::ProcessWindow {
        window(3, 10, |i| {
            let i = i as f64;
            format!(
                "pinchpoint_lock_acquire_total{{lock=\"store.global\",mode=\"exclusive\"}} {}\n\
                 pinchpoint_lock_contended_total{{lock=\"store.global\",mode=\"exclusive\"}} {}\n{}{}",
                i * 10_000.0,
                i * contended,
                hist(
                    "pinchpoint_lock_wait_seconds",
                    "lock=\"store.global\",mode=\"exclusive\"",
                    1e-3,
                    i * contended,
                    i * wait_per_slice
                ),
                http(i * 5_000.0, i * 20.0),
            )
        })
    }

    #[test]
    fn lock_contention_fires_by_share_of_request_time() {
        // 15 s of waiting per 10 s slice over 2 requests in flight: 75% of request time.
        let found = evaluate(&lock_window(15.0, 5_000.0));
        let f = found.iter().find(|f| f.id == "lock-contention").unwrap();
        assert_eq!(f.place.resource, "store.global");
        assert_eq!(f.severity, Severity::Warning, "{f:?}");
        assert!((f.impact.unwrap() - 0.75).abs() < 1e-9);
        assert_eq!(f.slices_held, 3);
        assert!(f.flame.contains("--kind contention"), "{}", f.flame);
    }

    #[test]
    fn lock_contention_stays_quiet_on_a_little_waiting_or_few_events() {
        let found = evaluate(&lock_window(0.5, 5_000.0));
        assert!(!found.iter().any(|f| f.id == "lock-contention" && f.reportable()), "{found:?}");
        let found = evaluate(&lock_window(15.0, 10.0));
        assert!(!found.iter().any(|f| f.id == "lock-contention" && f.reportable()), "few events: {found:?}");
    }

    #[test]
    fn missing_families_say_not_measured() {
        let found = evaluate(&window(3, 10, |i| http(i as f64 * 100.0, i as f64)));
        let f = found.iter().find(|f| f.id == "lock-contention").unwrap();
        assert_eq!(f.note.as_deref(), Some("not measured: pinchpoint_lock_acquire_total"));
        assert!(!f.reportable());
    }

    #[test]
    fn pool_saturation_recommends_a_size_from_in_use_and_waiters() {
        let w = window(3, 10, |i| {
            let i = i as f64;
            format!(
                "pinchpoint_pool_acquire_total{{pool=\"redis\",outcome=\"waited\"}} {}\n\
                 pinchpoint_pool_in_use_seconds_total{{pool=\"redis\"}} {}\n\
                 pinchpoint_pool_max_size{{pool=\"redis\"}} 1\n{}{}",
                i * 1_000.0,
                i * 10.0,
                hist("pinchpoint_pool_acquire_wait_seconds", "pool=\"redis\"", 0.01, i * 1_000.0, i * 30.0),
                http(i * 1_000.0, i * 40.0),
            )
        });
        let found = evaluate(&w);
        let f = found.iter().find(|f| f.id == "pool-saturated").unwrap();
        assert_eq!(f.severity, Severity::Warning);
        // (1 in use + 3 waiting) / 0.7 = 5.7 → 6.
        assert!(f.recommendation.contains("from 1 to 6"), "{}", f.recommendation);
    }

    #[test]
    fn a_new_connection_per_use_is_churn_and_reuse_is_not() {
        let pool = |opened_per_acquire: f64| {
            window(3, 10, move |i| {
                let i = i as f64;
                format!(
                    "pinchpoint_pool_acquire_total{{pool=\"rpc\",outcome=\"immediate\"}} {}\n\
                     pinchpoint_pool_opened_total{{pool=\"rpc\"}} {}\n{}",
                    i * 1_000.0,
                    i * 1_000.0 * opened_per_acquire,
                    http(i * 1_000.0, i * 5.0)
                )
            })
        };
        let churn = evaluate(&pool(1.0));
        assert_eq!(churn.iter().find(|f| f.id == "connection-churn").unwrap().severity, Severity::Warning);
        let reuse = evaluate(&pool(0.0));
        assert!(!reuse.iter().any(|f| f.id == "connection-churn" && f.reportable()));
    }
}
