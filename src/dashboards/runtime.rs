//! Runtime: busy ratio per worker, poll-time heatmap, global queue, blocking pool, CPU
//! against cores and preemption.

use super::panel::{Dashboard, Panel, Target, Viz};
use super::promql::{rate, sel, sum_by};
use crate::diagnose::findings::{CPU_SHARE_INFO, CPU_SHARE_WARNING};
use crate::metrics::catalog::*;

const BY: &str = "job, instance";

pub fn dashboard() -> Dashboard {
    let panels = vec![
        Panel::timeseries(
            "Busy ratio per worker",
            "percentunit",
            "Share of time each runtime worker spends polling tasks. All workers near 100% while requests queue is a \
             CPU-bound or blocked runtime; one worker pinned while others idle is one task hogging it.",
            vec![Target::range(sum_by("job, instance, worker", &rate(&RUNTIME_WORKER_BUSY, "", "")), "worker {{worker}} ({{instance}})")],
        )
        .thresholds(&[(0.9, "red")]),
        Panel::new(
            Viz::Heatmap,
            "Poll time",
            "s",
            "Distribution of task poll durations (needs tokio_unstable). Polls above 1 ms hold a worker that other tasks \
             are waiting for: a blocking call (std::thread::sleep, sync I/O, heavy CPU) in async code. Move it to \
             spawn_blocking; PinchpointRuntimeBlocked fires when slow polls fill 30% of worker time. If involuntary \
             context switches are high too, the cause may be preemption instead (more threads than cores).",
            vec![super::panel::Target::heatmap(sum_by("le", &rate(&RUNTIME_POLL, "_bucket", "")))],
        ),
        Panel::timeseries(
            "Global queue depth",
            "short",
            "Tasks waiting in the runtime's injection queue for a worker. Growing means the workers cannot keep up.",
            vec![Target::range(sum_by(BY, &sel(&RUNTIME_GLOBAL_QUEUE, "", "")), "{{instance}}")],
        ),
        Panel::timeseries(
            "Blocking pool: threads and queue",
            "short",
            "Threads in the blocking pool and blocking tasks waiting for one. A queue here means spawn_blocking work \
             exceeds the pool's limit.",
            vec![
                Target::range(sum_by(BY, &sel(&RUNTIME_BLOCKING_THREADS, "", "")), "threads ({{instance}})"),
                Target::range(sum_by(BY, &sel(&RUNTIME_BLOCKING_QUEUE, "", "")), "queued ({{instance}})"),
            ],
        ),
        Panel::timeseries(
            "CPU",
            "percentunit",
            "CPU used divided by the cores the process may run on. Orange from the doctor's info (80%), red from warning \
             (95%), where PinchpointCpuSaturated fires: then the fix is less work per request (CPU flamegraph) or more \
             cores, not more threads.",
            vec![Target::range(
                format!("{} / {}", sum_by(BY, &rate(&PROCESS_CPU, "", "")), sum_by(BY, &sel(&CPU_CORES, "", ""))),
                "{{instance}}",
            )],
        )
        .thresholds(&[(CPU_SHARE_INFO, "orange"), (CPU_SHARE_WARNING, "red")]),
        Panel::timeseries(
            "Context switches per second",
            "ops",
            "Voluntary switches (a thread blocked or parked) and involuntary ones (the OS preempted a runnable thread). \
             Many involuntary switches mean more runnable threads than cores, which lengthens polls and lock holds \
             without any blocking call.",
            vec![
                Target::range(sum_by(BY, &rate(&CONTEXT_SWITCHES, "", r#"kind="involuntary""#)), "involuntary ({{instance}})"),
                Target::range(sum_by(BY, &rate(&CONTEXT_SWITCHES, "", r#"kind="voluntary""#)), "voluntary ({{instance}})"),
            ],
        ),
        Panel::timeseries(
            "Workers and threads",
            "short",
            "Runtime workers, cores available and OS threads of the process.",
            vec![
                Target::range(sum_by(BY, &sel(&RUNTIME_WORKERS, "", "")), "runtime workers ({{instance}})"),
                Target::range(sum_by(BY, &sel(&CPU_CORES, "", "")), "cores ({{instance}})"),
                Target::range(sum_by(BY, &sel(&PROCESS_THREADS, "", "")), "threads ({{instance}})"),
            ],
        ),
        Panel::timeseries(
            "Worker parks per second",
            "ops",
            "How often workers go idle. Near zero with high busy ratios: the runtime never rests.",
            vec![Target::range(sum_by(BY, &rate(&RUNTIME_WORKER_PARK, "", "")), "{{instance}}")],
        ),
    ];
    Dashboard {
        uid: "pinchpoint-runtime",
        title: "pinchpoint / Runtime",
        description: "The tokio runtime: worker busy time, poll durations, queues, blocking pool, CPU and preemption.",
        variables: Vec::new(),
        panels,
    }
}
