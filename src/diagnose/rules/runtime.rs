//! The runtime: runtime-blocked and cpu-saturated.
//!
//! A poll that lasts over a millisecond either blocked (a sleep, a blocking read, a std lock,
//! heavy CPU work) or was preempted: with more runnable threads than cores, the kernel takes
//! a worker off its CPU mid-poll and the poll looks long without any blocking call. The
//! process's run-queue delay (`scheduler_wait_seconds_total`) is the time its threads were
//! runnable and waiting for a CPU; slow-poll time beyond it is blocking.

use super::{guard, m};
use crate::diagnose::findings::*;
use crate::diagnose::verdict::{Evidence, Finding, Where};
use crate::diagnose::window::{ProcessWindow, Slice};

struct Polls {
    workers: f64,
    /// Worker-seconds per second spent in polls over the threshold (a floor).
    slow: f64,
    /// Thread-seconds per second waiting for a CPU (None: not measured).
    waiting_for_cpu: Option<f64>,
}

impl Polls {
    fn blocked_share(&self) -> f64 {
        if self.workers <= 0.0 {
            return 0.0;
        }
        ((self.slow - self.waiting_for_cpu.unwrap_or(0.0)).max(0.0) / self.workers).min(1.0)
    }
}

fn polls(s: &Slice) -> Option<Polls> {
    let slow = s.seconds_above(m::RUNTIME_POLL, &[], SLOW_POLL_SECONDS)? / s.secs;
    Some(Polls {
        workers: s.gauge(m::RUNTIME_WORKERS, &[]).max(1.0),
        slow,
        waiting_for_cpu: s.after.has(m::SCHEDULER_WAIT).then(|| s.rate(m::SCHEDULER_WAIT, &[])),
    })
}

fn blocked_score(s: &Slice) -> f64 {
    polls(s).map_or(0.0, |p| score_between(p.blocked_share(), BLOCKED_SHARE_INFO, BLOCKED_SHARE_WARNING))
}

pub(super) fn blocked(w: &ProcessWindow, whole: &Slice, out: &mut Vec<Finding>) {
    let Some(p) = polls(whole) else {
        out.push(Finding::not_measured("runtime-blocked", &w.name, m::RUNTIME_POLL));
        return;
    };
    let place = Where { process: w.name.clone(), kind: "runtime", resource: "tokio workers".into() };
    let mut f = Finding::new("runtime-blocked", place, blocked_score(whole));
    f.evidence.push(Evidence::new("runtime workers", p.workers, ""));
    f.evidence.push(Evidence::new("worker time in polls over 1 ms (at least)", (p.slow / p.workers).min(1.0), "share"));
    match p.waiting_for_cpu {
        Some(cpu_wait) => {
            f.evidence.push(Evidence::new("threads waiting for a CPU", cpu_wait, ""));
            f.evidence.push(Evidence::new("blocked after preemption is subtracted", p.blocked_share(), "share"));
        }
        None => f.note = Some(format!("not measured: {} (preemption cannot be told from blocking)", m::SCHEDULER_WAIT)),
    }
    let busy = whole.rate(m::RUNTIME_BUSY, &[]);
    if busy > 0.0 {
        f.evidence.push(Evidence::new("workers busy", (busy / p.workers).min(1.0), "share"));
    }
    if p.slow > 0.0 && f.score < INFO && p.waiting_for_cpu.is_some_and(|c| c >= p.slow) {
        f.note = Some(format!(
            "polls over 1 ms ({:.2} worker-s/s) are explained by preemption ({:.2} threads waiting for a CPU): not blocking",
            p.slow,
            p.waiting_for_cpu.unwrap_or(0.0)
        ));
    }
    f.recommendation = format!(
        "move the blocking call off the async workers (tokio::task::spawn_blocking, or an async API for the I/O): \
         {:.0}% of worker time goes to polls over 1 ms that preemption does not explain; \
         the CPU flamegraph's frames under a poll show the call (a sleep shows as off-CPU time: look for it in the code \
         those frames lead to)",
        p.blocked_share() * 100.0
    );
    f.flame = w.flame_command("cpu");
    guard(&mut f, w, whole, |s, _| blocked_score(s));
    out.push(f);
}

fn cpu_share(s: &Slice) -> Option<f64> {
    let cores = s.gauge(m::CPU_CORES, &[]);
    (cores > 0.0 && s.after.has(m::PROCESS_CPU)).then(|| s.rate(m::PROCESS_CPU, &[]) / cores)
}

fn cpu_score(s: &Slice) -> f64 {
    cpu_share(s).map_or(0.0, |c| score_between(c, CPU_SHARE_INFO, CPU_SHARE_WARNING))
}

pub(super) fn cpu(w: &ProcessWindow, whole: &Slice, out: &mut Vec<Finding>) {
    let Some(share) = cpu_share(whole) else {
        let missing = if w.has(m::PROCESS_CPU) { m::CPU_CORES } else { m::PROCESS_CPU };
        out.push(Finding::not_measured("cpu-saturated", &w.name, missing));
        return;
    };
    let cores = whole.gauge(m::CPU_CORES, &[]);
    let place = Where { process: w.name.clone(), kind: "process", resource: "cpu".into() };
    let mut f = Finding::new("cpu-saturated", place, cpu_score(whole));
    f.evidence.push(Evidence::new("cores in use", share * cores, ""));
    f.evidence.push(Evidence::new("cores it may use", cores, ""));
    f.evidence.push(Evidence::new("CPU saturation", share, "share"));
    if let Some((_, requests)) = super::in_flight(whole) {
        f.evidence.push(Evidence::new("CPU per request", whole.delta(m::PROCESS_CPU, &[]) / requests, "s"));
    }
    f.recommendation = format!(
        "the process uses {:.1} of its {cores:.0} cores: cut CPU per request (the CPU flamegraph shows where it goes) \
         or give it more cores",
        share * cores
    );
    f.flame = w.flame_command("cpu");
    guard(&mut f, w, whole, |s, _| cpu_score(s));
    out.push(f);
}

#[cfg(test)]
mod tests {
    use super::super::evaluate;
    use super::super::test_support::window;
    use crate::diagnose::findings::Severity;

    /// 2 workers; each second `slow` polls of 2.5–5 ms; `cpu_wait` thread-seconds waiting.
    fn runtime(slow_per_s: f64, cpu_wait: f64) -> Vec<crate::diagnose::verdict::Finding> {
        evaluate(&window(3, 10, move |i| {
            let t = i as f64 * 10.0;
            let slow = slow_per_s * t;
            let fast = 10_000.0 * t;
            format!(
                "pinchpoint_runtime_workers 2\n\
                 pinchpoint_runtime_poll_seconds_bucket{{le=\"0.001\"}} {fast}\n\
                 pinchpoint_runtime_poll_seconds_bucket{{le=\"0.0025\"}} {fast}\n\
                 pinchpoint_runtime_poll_seconds_bucket{{le=\"0.005\"}} {}\n\
                 pinchpoint_runtime_poll_seconds_bucket{{le=\"+Inf\"}} {}\n\
                 pinchpoint_scheduler_wait_seconds_total {}\n",
                fast + slow,
                fast + slow,
                cpu_wait * t
            )
        }))
    }

    #[test]
    fn long_polls_without_cpu_waiting_are_blocking() {
        // 600 polls/s of at least 2.5 ms on 2 workers: 75% of worker time.
        let f = runtime(600.0, 0.05);
        let b = f.iter().find(|f| f.id == "runtime-blocked").unwrap();
        assert_eq!(b.severity, Severity::Warning, "{b:?}");
    }

    #[test]
    fn long_polls_explained_by_preemption_are_not_blocking() {
        let f = runtime(600.0, 2.0);
        let b = f.iter().find(|f| f.id == "runtime-blocked").unwrap();
        assert!(!b.reportable(), "{b:?}");
        assert!(b.note.as_deref().unwrap_or("").contains("preemption"), "{b:?}");
    }

    #[test]
    fn without_the_poll_histogram_it_is_not_measured() {
        let f = evaluate(&window(3, 10, |_| "pinchpoint_runtime_workers 2\n".into()));
        let b = f.iter().find(|f| f.id == "runtime-blocked").unwrap();
        assert_eq!(b.note.as_deref(), Some("not measured: pinchpoint_runtime_poll_seconds"));
    }

    #[test]
    fn a_process_on_all_its_cores_is_cpu_saturated() {
        let f = evaluate(&window(3, 10, |i| {
            format!("pinchpoint_cpu_cores 2\nprocess_cpu_seconds_total {}\n", i as f64 * 19.6)
        }));
        assert_eq!(f.iter().find(|f| f.id == "cpu-saturated").unwrap().severity, Severity::Warning);
        let f = evaluate(&window(3, 10, |i| {
            format!("pinchpoint_cpu_cores 2\nprocess_cpu_seconds_total {}\n", i as f64 * 10.0)
        }));
        assert!(!f.iter().any(|f| f.id == "cpu-saturated" && f.reportable()));
    }
}
