//! From every process's findings to one verdict: symptoms point to their cause, the cause
//! ranks first, and request time no resource explains is reported as such.
//!
//! Cause over symptom:
//! - in a caller (a process that makes RPCs) pool waits, retries, an open breaker or a
//!   saturated worker pool are symptoms when a process it calls (one that serves RPCs) has a
//!   finding of its own: the caller waits because the callee is slow;
//! - in one process, unbounded heap growth is a symptom of a task leak, and a blocked or busy
//!   runtime a symptom of lock contention (waiters on a blocking lock hold their worker
//!   thread) or else of allocation churn.

use super::findings::{Severity, INFO};
use super::rules::{self, in_flight, m};
use super::verdict::{Finding, Unattributed, Verdict};
use super::window::ProcessWindow;

const CALLER_SYMPTOMS: &[&str] = &["pool-saturated", "retry-amplification", "breaker-open", "worker-pool-undersized"];

/// Callee findings that make its answers slow, and so can cause a caller's waits and retries.
const SLOW_CALLEE: &[&str] =
    &["lock-contention", "pool-saturated", "worker-pool-undersized", "runtime-blocked", "cpu-saturated", "task-leak"];

/// Runs every rule on every process and ranks the findings.
pub fn diagnose(processes: &[ProcessWindow]) -> Verdict {
    let mut findings: Vec<Finding> = processes.iter().flat_map(rules::evaluate).collect();
    link_symptoms(processes, &mut findings);
    rank(findings, processes)
}

/// A fleet: windows are instances (`job/instance`). The same finding on the same resource
/// in one job is one row, named by its worst instance, counting the instances that share it.
pub fn diagnose_fleet(instances: &[ProcessWindow]) -> Verdict {
    let mut findings: Vec<Finding> = instances.iter().flat_map(rules::evaluate).collect();
    link_symptoms(instances, &mut findings);
    let job = |process: &str| process.split_once('/').map_or(process, |(j, _)| j).to_string();
    let mut merged: Vec<Finding> = Vec::new();
    findings.sort_by(|a, b| b.score.total_cmp(&a.score));
    for f in findings {
        let same = merged.iter_mut().find(|g| {
            g.id == f.id
                && g.place.kind == f.place.kind
                && g.place.resource == f.place.resource
                && job(&g.place.process) == job(&f.place.process)
        });
        match same {
            Some(g) => g.instances += usize::from(f.reportable()),
            None => {
                let mut f = f;
                f.instances = usize::from(f.reportable()).max(1);
                merged.push(f);
            }
        }
    }
    rank(merged, instances)
}

/// Ranks findings someone else evaluated (a fleet, lab facts added) into a verdict.
pub fn rank(mut findings: Vec<Finding>, processes: &[ProcessWindow]) -> Verdict {
    findings.sort_by(|a, b| {
        b.reportable()
            .cmp(&a.reportable())
            .then(b.severity.eq(&Severity::Critical).cmp(&a.severity.eq(&Severity::Critical)))
            .then(a.cause.is_some().cmp(&b.cause.is_some()))
            .then(b.score.total_cmp(&a.score))
            .then(b.impact.unwrap_or(0.0).total_cmp(&a.impact.unwrap_or(0.0)))
    });
    let unattributed = processes.iter().filter_map(unattributed).collect();
    let window_seconds = processes.iter().filter_map(|p| p.whole()).map(|w| w.secs).fold(0.0, f64::max);
    let mut v = Verdict { headline: String::new(), findings, unattributed, window_seconds };
    v.headline = headline(&v);
    v
}

fn calls_out(p: &ProcessWindow) -> bool {
    p.whole().is_some_and(|w| w.delta(m::RPC_CLIENT_REQUESTS, &[]) > 0.0)
}

fn serves_rpc(p: &ProcessWindow) -> bool {
    p.whole().is_some_and(|w| w.delta(m::RPC_SERVER_REQUESTS, &[]) > 0.0)
}

fn link_symptoms(processes: &[ProcessWindow], findings: &mut [Finding]) {
    let callers: Vec<&str> = processes.iter().filter(|p| calls_out(p)).map(|p| p.name.as_str()).collect();
    let callees: Vec<&str> = processes.iter().filter(|p| serves_rpc(p)).map(|p| p.name.as_str()).collect();
    let best = |findings: &[Finding], pick: &dyn Fn(&Finding) -> bool| -> Option<String> {
        findings
            .iter()
            .filter(|f| f.score >= INFO && f.cause.is_none() && pick(f))
            .max_by(|a, b| a.score.total_cmp(&b.score))
            .map(Finding::key)
    };
    // Callee causes first, so a caller's symptom points at the callee's own top finding.
    let callee_cause = best(findings, &|f| callees.contains(&f.place.process.as_str()) && SLOW_CALLEE.contains(&f.id));
    // Retried attempts are load the callee serves and the caller abandons: what the callee
    // allocates per completed request is inflated by them.
    let caller_retries =
        best(findings, &|f| f.id == "retry-amplification" && callers.contains(&f.place.process.as_str()));
    for i in 0..findings.len() {
        let f = &findings[i];
        if f.score < INFO {
            continue;
        }
        let process = f.place.process.clone();
        let cause = if CALLER_SYMPTOMS.contains(&f.id) && callers.contains(&process.as_str()) {
            callee_cause
                .clone()
                .filter(|c| !c.contains(&format!("@ {process} ")) && !c.ends_with(&format!("@ {process}")))
        } else if f.id == "allocation-churn"
            && callees.contains(&process.as_str())
            && !callers.contains(&process.as_str())
        {
            caller_retries.clone()
        } else if f.id == "unbounded-growth" && f.place.kind == "heap" {
            best(findings, &|g| g.id == "task-leak" && g.place.process == process)
        } else if f.id == "runtime-blocked" || f.id == "cpu-saturated" {
            // A contended lock's waiters block their worker threads (a blocking lock) or spin:
            // the lock is the cause; otherwise allocation work can be.
            best(findings, &|g| g.id == "lock-contention" && g.place.process == process)
                .or_else(|| best(findings, &|g| g.id == "allocation-churn" && g.place.process == process))
        } else {
            None
        };
        findings[i].cause = cause;
    }
}

fn unattributed(p: &ProcessWindow) -> Option<Unattributed> {
    let whole = p.whole()?;
    let (busy, _) = in_flight(&whole)?;
    let mut explained = whole.rate(m::LOCK_WAIT_SUM, &[]) + whole.rate(m::POOL_WAIT_SUM, &[]);
    // Time in calls to another process is that process's to explain.
    explained += whole.rate(m::RPC_CLIENT_DURATION_SUM, &[]);
    Some(Unattributed {
        process: p.name.clone(),
        share: (1.0 - explained / busy).clamp(0.0, 1.0),
        in_flight: busy,
        flame: p.flame_command("cpu"),
    })
}

fn headline(v: &Verdict) -> String {
    let Some(top) = v.top() else {
        let biggest = v.unattributed.iter().max_by(|a, b| a.in_flight.total_cmp(&b.in_flight));
        return match biggest {
            Some(u) => format!(
                "No pinch at info or above over {:.0} s. {:.0}% of {}'s request time is not spent waiting on any \
                 measured lock, pool or call: it is CPU work or waiting the probes do not see; `{}` shows it.",
                v.window_seconds,
                u.share * 100.0,
                u.process,
                u.flame
            ),
            None => format!("No pinch at info or above over {:.0} s.", v.window_seconds),
        };
    };
    let impact = match top.impact {
        Some(share) => format!(", {:.0}% of its request time", share * 100.0),
        None => top.evidence.first().map(|e| format!(", {}", e.formatted())).unwrap_or_default(),
    };
    format!(
        "The pinch: {} in {}{} ({}). Change: {}.",
        top.id,
        top.place,
        impact,
        top.severity.as_str(),
        top.recommendation
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnose::rules::test_support::{hist, http, window};

    /// A gateway whose rpc pool waits, and a service with a contended lock.
    fn split() -> Vec<ProcessWindow> {
        let mut gw = window(3, 10, |i| {
            let i = i as f64;
            format!(
                "pinchpoint_pool_acquire_total{{pool=\"rpc\",outcome=\"waited\"}} {}\n\
                 pinchpoint_pool_in_use_seconds_total{{pool=\"rpc\"}} {}\npinchpoint_pool_max_size{{pool=\"rpc\"}} 8\n\
                 pinchpoint_rpc_client_requests_total{{method=\"Increment\",code=\"ok\"}} {}\n\
                 pinchpoint_rpc_client_duration_seconds_sum{{method=\"Increment\"}} {}\n{}{}",
                i * 2_000.0,
                i * 78.0,
                i * 10_000.0,
                i * 78.0,
                hist("pinchpoint_pool_acquire_wait_seconds", "pool=\"rpc\"", 0.01, i * 2_000.0, i * 60.0),
                http(i * 10_000.0, i * 150.0)
            )
        });
        gw.name = "gateway".into();
        let mut svc = window(3, 10, |i| {
            let i = i as f64;
            format!(
                "pinchpoint_lock_acquire_total{{lock=\"store.global\",mode=\"exclusive\"}} {}\n\
                 pinchpoint_lock_contended_total{{lock=\"store.global\",mode=\"exclusive\"}} {}\n\
                 pinchpoint_rpc_server_requests_total{{method=\"Increment\",code=\"ok\"}} {}\n\
                 pinchpoint_rpc_server_duration_seconds_sum{{method=\"Increment\"}} {}\n{}",
                i * 10_000.0,
                i * 9_000.0,
                i * 10_000.0,
                i * 70.0,
                hist(
                    "pinchpoint_lock_wait_seconds",
                    "lock=\"store.global\",mode=\"exclusive\"",
                    0.01,
                    i * 9_000.0,
                    i * 60.0
                ),
            )
        });
        svc.name = "service".into();
        vec![gw, svc]
    }

    #[test]
    fn the_callee_cause_ranks_before_the_callers_symptom() {
        let v = diagnose(&split());
        let reported: Vec<&Finding> = v.reported().collect();
        assert_eq!(reported[0].id, "lock-contention", "{reported:#?}");
        assert_eq!(reported[0].place.process, "service");
        let pool = reported.iter().find(|f| f.id == "pool-saturated").expect("the gateway's pool waits are reported");
        assert_eq!(pool.cause.as_deref(), Some("lock-contention @ service lock store.global"));
        assert!(v.headline.starts_with("The pinch: lock-contention in service lock store.global"), "{}", v.headline);
    }

    #[test]
    fn without_a_callee_finding_the_callers_pool_is_the_cause() {
        let mut procs = split();
        procs.truncate(1);
        let v = diagnose(&procs);
        let top = v.top().unwrap();
        assert_eq!((top.id, top.cause.as_deref()), ("pool-saturated", None));
    }

    #[test]
    fn a_healthy_process_gets_an_unattributed_share_not_an_unknown_issue() {
        let v = diagnose(&[window(3, 10, |i| http(i as f64 * 1_000.0, i as f64 * 2.0))]);
        assert!(v.top().is_none());
        assert!(v.headline.starts_with("No pinch"), "{}", v.headline);
        assert_eq!(v.unattributed[0].share, 1.0);
        assert!(v.headline.contains("pinchpoint flame --target http://127.0.0.1:9464 --kind cpu"), "{}", v.headline);
    }
}
