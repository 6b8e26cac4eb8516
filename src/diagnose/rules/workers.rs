//! Worker pools sized wrong: worker-pool-undersized and worker-pool-oversized.
//!
//! Utilization is the busy integral over the workers (`rate(worker_busy_seconds_total) /
//! workers`); the job time is busy seconds per job. A pool is undersized when it is nearly
//! always busy and jobs wait longer in its queue than they take to run; oversized when a
//! large pool idles under real load (the load gate keeps an idle process from being judged).

use super::{guard, m};
use crate::diagnose::findings::*;
use crate::diagnose::verdict::{Evidence, Finding, Where};
use crate::diagnose::window::{ProcessWindow, Slice};

struct Shape {
    workers: f64,
    jobs: f64,
    busy: f64,
    utilization: f64,
    job_time: f64,
    queue_wait: f64,
}

fn shape(s: &Slice, pool: &str) -> Shape {
    let f = [("pool", pool)];
    let workers = s.gauge(m::WORKERS, &f).max(s.gauge_before(m::WORKERS, &f));
    let jobs = s.delta(m::WORKER_JOBS, &[("pool", pool), ("outcome", "done")])
        + s.delta(m::WORKER_JOBS, &[("pool", pool), ("outcome", "panicked")]);
    let busy_seconds = s.delta(m::WORKER_BUSY, &f);
    let busy = busy_seconds / s.secs;
    Shape {
        workers,
        jobs,
        busy,
        utilization: if workers > 0.0 { busy / workers } else { 0.0 },
        job_time: if jobs > 0.0 { busy_seconds / jobs } else { 0.0 },
        queue_wait: s.mean(m::WORKER_QUEUE_WAIT, &f).unwrap_or(0.0),
    }
}

fn undersized_score(s: &Shape, part: f64) -> f64 {
    if s.jobs < MIN_JOBS * part || s.utilization < UNDERSIZED_UTILIZATION || s.job_time <= 0.0 {
        return 0.0;
    }
    score_between(s.queue_wait / s.job_time, UNDERSIZED_WAIT_PER_SERVICE, UNDERSIZED_WAIT_PER_SERVICE_WARNING)
}

fn oversized_score(s: &Shape, part: f64) -> f64 {
    if s.jobs < LOAD_GATE_JOBS * part || s.workers < OVERSIZED_MIN_WORKERS || s.utilization >= OVERSIZED_UTILIZATION {
        return 0.0;
    }
    // Idle workers cost memory and wakeups, not request time: never more than info.
    score_between(s.workers / needed(s), 8.0, 64.0).min(WARNING - 1.0)
}

/// Workers that would run this load at the target utilization.
fn needed(s: &Shape) -> f64 {
    (s.busy / TARGET_UTILIZATION).ceil().max(1.0)
}

pub(super) fn pools(w: &ProcessWindow, whole: &Slice, out: &mut Vec<Finding>) {
    if !w.has(m::WORKER_JOBS) {
        return; // a process without worker pools: nothing to check, not a gap
    }
    for pool in whole.label_values(m::WORKER_JOBS, "pool") {
        let s = shape(whole, &pool);
        let place = || Where { process: w.name.clone(), kind: "worker pool", resource: pool.clone() };
        let evidence = |f: &mut Finding| {
            f.evidence.push(Evidence::new("workers", s.workers, ""));
            f.evidence.push(Evidence::new("utilization", s.utilization, "share"));
            f.evidence.push(Evidence::new("jobs", s.jobs / whole.secs, "/s"));
            f.evidence.push(Evidence::new("job time", s.job_time, "s"));
            f.evidence.push(Evidence::new("queue wait mean", s.queue_wait, "s"));
            let depth = whole.gauge(m::WORKER_QUEUE_DEPTH, &[("pool", pool.as_str())]);
            let capacity = whole.gauge(m::WORKER_QUEUE_CAPACITY, &[("pool", pool.as_str())]);
            if capacity > 0.0 {
                f.evidence.push(Evidence::new("queue at the end", depth, "jobs"));
                f.evidence.push(Evidence::new("queue capacity", capacity, "jobs"));
            }
            let rejected = whole.delta(m::WORKER_JOBS, &[("pool", pool.as_str()), ("outcome", "rejected")]);
            if rejected > 0.0 {
                f.evidence.push(Evidence::new("rejected", rejected / whole.secs, "/s"));
            }
            f.flame = w.flame_command("cpu");
        };

        let mut under = Finding::new("worker-pool-undersized", place(), undersized_score(&s, 1.0));
        evidence(&mut under);
        under.recommendation = format!(
            "raise `{pool}` from {:.0} to {:.0} workers ({:.0} jobs/s × {:.1} ms each / {TARGET_UTILIZATION}), \
             or make each job cheaper: jobs wait {:.1} ms in the queue for {:.1} ms of work",
            s.workers,
            needed(&s).max(s.workers + 1.0),
            s.jobs / whole.secs,
            s.job_time * 1e3,
            s.queue_wait * 1e3,
            s.job_time * 1e3
        );
        guard(&mut under, w, whole, |sl, part| undersized_score(&shape(sl, &pool), part));
        out.push(under);

        let mut over = Finding::new("worker-pool-oversized", place(), oversized_score(&s, 1.0));
        evidence(&mut over);
        over.recommendation = format!(
            "lower `{pool}` from {:.0} to {:.0} workers: {:.1} are busy on average ({:.0} jobs/s × {:.1} ms each)",
            s.workers,
            needed(&s),
            s.busy,
            s.jobs / whole.secs,
            s.job_time * 1e3
        );
        if s.jobs < LOAD_GATE_JOBS {
            over.note = Some(format!("load gate: {:.0} jobs in the window, fewer than {LOAD_GATE_JOBS:.0}", s.jobs));
        }
        guard(&mut over, w, whole, |sl, part| oversized_score(&shape(sl, &pool), part));
        out.push(over);
    }
}

#[cfg(test)]
mod tests {
    use super::super::evaluate;
    use super::super::test_support::{hist, window};
    use crate::diagnose::findings::Severity;

    /// A pool of `workers` running `jobs_per_s` jobs of `job_ms`, queueing `wait_ms` each.
    fn pool(workers: f64, jobs_per_s: f64, job_ms: f64, wait_ms: f64) -> crate::diagnose::window::ProcessWindow {
        window(3, 10, move |i| {
            let jobs = i as f64 * 10.0 * jobs_per_s;
            format!(
                "pinchpoint_workers{{pool=\"flush\"}} {workers}\n\
                 pinchpoint_worker_jobs_total{{pool=\"flush\",outcome=\"done\"}} {jobs}\n\
                 pinchpoint_worker_busy_seconds_total{{pool=\"flush\"}} {}\n{}",
                jobs * job_ms / 1e3,
                hist("pinchpoint_worker_queue_wait_seconds", "pool=\"flush\"", 0.1, jobs, jobs * wait_ms / 1e3)
            )
        })
    }

    #[test]
    fn a_busy_pool_with_a_long_queue_is_undersized() {
        // 1 worker, 48 jobs/s of 20 ms: 96% busy, jobs wait 160 ms.
        let found = evaluate(&pool(1.0, 48.0, 20.0, 160.0));
        let f = found.iter().find(|f| f.id == "worker-pool-undersized").unwrap();
        assert_eq!(f.severity, Severity::Warning, "{f:?}");
        assert!(f.recommendation.contains("from 1 to 2 workers"), "{}", f.recommendation);
        assert!(!found.iter().any(|f| f.id == "worker-pool-oversized" && f.reportable()));
    }

    #[test]
    fn a_busy_pool_without_a_queue_is_fine() {
        let found = evaluate(&pool(4.0, 180.0, 20.0, 1.0));
        assert!(!found.iter().any(|f| f.reportable()), "{found:?}");
    }

    #[test]
    fn a_large_idle_pool_under_load_is_oversized_but_an_idle_process_is_not_judged() {
        let found = evaluate(&pool(256.0, 50.0, 10.0, 0.0));
        let f = found.iter().find(|f| f.id == "worker-pool-oversized").unwrap();
        assert_eq!(f.severity, Severity::Info, "{f:?}");
        assert!(f.recommendation.contains("from 256 to 1 workers"), "{}", f.recommendation);
        let idle = evaluate(&pool(256.0, 0.5, 10.0, 0.0));
        let f = idle.iter().find(|f| f.id == "worker-pool-oversized").unwrap();
        assert!(!f.reportable() && f.note.as_deref().unwrap_or("").contains("load gate"), "{f:?}");
    }
}
