//! Calls to a downstream: retry-amplification and breaker-open.

use super::{guard, m, min_events};
use crate::diagnose::findings::*;
use crate::diagnose::verdict::{Evidence, Finding, Where};
use crate::diagnose::window::{ProcessWindow, Slice};

fn retry_share(s: &Slice, part: f64) -> Option<f64> {
    let attempts = s.delta(m::RPC_CLIENT_REQUESTS, &[]);
    (attempts >= min_events(part)).then(|| s.delta(m::RPC_CLIENT_RETRIES, &[]) / attempts)
}

fn retry_score(s: &Slice, part: f64) -> f64 {
    retry_share(s, part).map_or(0.0, |r| score_between(r, RETRY_SHARE_INFO, RETRY_SHARE_WARNING))
}

pub(super) fn retries(w: &ProcessWindow, whole: &Slice, out: &mut Vec<Finding>) {
    if !w.has(m::RPC_CLIENT_REQUESTS) {
        return; // makes no calls
    }
    if !w.has(m::RPC_CLIENT_RETRIES) {
        out.push(Finding::not_measured("retry-amplification", &w.name, m::RPC_CLIENT_RETRIES));
        return;
    }
    let Some(share) = retry_share(whole, 0.0) else { return };
    let attempts = whole.delta(m::RPC_CLIENT_REQUESTS, &[]);
    let retries = whole.delta(m::RPC_CLIENT_RETRIES, &[]);
    let method = whole
        .label_values(m::RPC_CLIENT_RETRIES, "method")
        .into_iter()
        .max_by(|a, b| {
            let d = |x: &str| whole.delta(m::RPC_CLIENT_RETRIES, &[("method", x)]);
            d(a).total_cmp(&d(b))
        })
        .unwrap_or_default();
    let place = Where { process: w.name.clone(), kind: "rpc", resource: method };
    let mut f = Finding::new("retry-amplification", place, retry_score(whole, 1.0));
    f.evidence.push(Evidence::new("retries per attempt", share, "share"));
    let calls = (attempts - retries).max(1.0);
    f.evidence.push(Evidence::new("attempts per call", attempts / calls, "x"));
    f.evidence.push(Evidence::new("retries", retries / whole.secs, "/s"));
    let deadline = whole.delta(m::RPC_CLIENT_REQUESTS, &[("code", "deadline_exceeded")]);
    if attempts > 0.0 {
        f.evidence.push(Evidence::new("attempts that timed out", deadline / attempts, "share"));
    }
    let p50 = whole.quantile(m::RPC_CLIENT_DURATION, &[], 0.5);
    let p99 = whole.quantile(m::RPC_CLIENT_DURATION, &[], 0.99);
    if let Some(p99) = p99 {
        f.evidence.push(Evidence::new("call duration p99 ≤", p99, "s"));
    }
    f.recommendation = format!(
        "retries multiply the load on a slow downstream ({:.2} attempts per call): set the call timeout above the \
         downstream's p99{} instead of retrying it, cap retries with a budget (a tenth of calls), and fix the \
         downstream's latency (see its own findings)",
        attempts / calls,
        p50.map(|p| format!(" (the median attempt takes {:.1} ms)", p * 1e3)).unwrap_or_default()
    );
    f.flame = w.flame_command("cpu");
    guard(&mut f, w, whole, retry_score);
    out.push(f);
}

pub(super) fn breaker(w: &ProcessWindow, whole: &Slice, out: &mut Vec<Finding>) {
    if !w.has(m::BREAKER_STATE) {
        return;
    }
    for target in whole.label_values(m::BREAKER_STATE, "target") {
        let f = [("target", target.as_str())];
        let states: Vec<f64> = w.snapshots.iter().skip(1).map(|s| s.sum(m::BREAKER_STATE, &f)).collect();
        let open = states.iter().filter(|s| **s >= 2.0).count();
        let half = states.iter().filter(|s| (1.0..2.0).contains(*s)).count();
        let held = open + half;
        let score = if open >= super::required(states.len()).max(1) {
            85.0
        } else if held >= super::required(states.len()).max(1) {
            40.0
        } else {
            0.0
        };
        let place = Where { process: w.name.clone(), kind: "breaker", resource: target.clone() };
        let mut finding = Finding::new("breaker-open", place, score);
        finding.slices = states.len();
        finding.slices_held = held;
        finding.evidence.push(Evidence::new("snapshots with the breaker open", open as f64, ""));
        finding.evidence.push(Evidence::new("half-open", half as f64, ""));
        finding.recommendation = format!(
            "the breaker to `{target}` is open, so calls fail fast: fix what made `{target}` fail (its own findings), \
             not the breaker"
        );
        finding.flame = w.flame_command("cpu");
        out.push(finding);
    }
}

#[cfg(test)]
mod tests {
    use super::super::evaluate;
    use super::super::test_support::window;
    use crate::diagnose::findings::Severity;

    #[test]
    fn retries_on_a_third_of_attempts_amplify() {
        let f = evaluate(&window(3, 10, |i| {
            let n = i as f64 * 1_000.0;
            format!(
                "pinchpoint_rpc_client_requests_total{{method=\"Increment\",code=\"deadline_exceeded\"}} {}\n\
                 pinchpoint_rpc_client_requests_total{{method=\"Increment\",code=\"ok\"}} {}\n\
                 pinchpoint_rpc_client_retries_total{{method=\"Increment\"}} {}\n",
                n * 0.66,
                n * 0.34,
                n * 0.66
            )
        }));
        let r = f.iter().find(|f| f.id == "retry-amplification").unwrap();
        assert_eq!(r.severity, Severity::Warning);
        assert_eq!(r.place.resource, "Increment");
        let quiet = evaluate(&window(3, 10, |i| {
            format!(
                "pinchpoint_rpc_client_requests_total{{method=\"Increment\",code=\"ok\"}} {}\n\
                 pinchpoint_rpc_client_retries_total{{method=\"Increment\"}} {}\n",
                i as f64 * 1_000.0,
                i as f64
            )
        }));
        assert!(!quiet.iter().any(|f| f.reportable()), "{quiet:?}");
    }

    #[test]
    fn an_open_breaker_in_most_snapshots_is_a_warning() {
        let f = evaluate(&window(3, 10, |i| {
            format!("pinchpoint_breaker_state{{target=\"svc\"}} {}\n", if i == 0 { 0 } else { 2 })
        }));
        assert_eq!(f.iter().find(|f| f.id == "breaker-open").unwrap().severity, Severity::Warning);
        let closed = evaluate(&window(3, 10, |_| "pinchpoint_breaker_state{target=\"svc\"} 0\n".into()));
        assert!(!closed.iter().any(|f| f.reportable()));
    }
}
