//! `alerts.yml`: one Prometheus alert per finding of the doctor that PromQL can express, with
//! the doctor's thresholds from [`crate::diagnose::findings`], and `alerts_test.yml`, the
//! `promtool test rules` cases that check each alert fires on its case, stays quiet on a
//! healthy series and stays quiet on a process that just restarted.
//!
//! Each alert fires where the doctor's finding reaches warning (score 75), except
//! worker-pool-oversized, which the doctor scores at info only and which alerts at info.
//! Every alert is guarded like the doctor's rules: a minimum number of events in the window
//! ([`MIN_EVENTS`]), a process older than the window (a just-restarted process has too little
//! history to judge), and `for: 2m` (the condition held over several evaluations, like the
//! doctor's "in at least 2 of 3 slices").

use crate::diagnose::findings::*;
use crate::diagnose::findings::{self, FindingKind};
use crate::metrics::catalog::{self, Spec};

use super::promql::series;

/// The window every alert looks back over.
pub const WINDOW: &str = "5m";
/// How long a condition must hold before the alert fires.
pub const FOR: &str = "2m";
/// Where `runbook_url` points: the doctor's manual, one section per finding id.
pub const RUNBOOK_BASE: &str = "https://github.com/pinchpoint/pinchpoint/blob/main/docs/doctor.md";

/// Test processes: the admin listeners of DESIGN.md's default ports.
const SERVICE: [(&str, &str); 2] = [("job", "pinchpoint"), ("instance", "127.0.0.1:9465")];
const GATEWAY: [(&str, &str); 2] = [("job", "pinchpoint"), ("instance", "127.0.0.1:9464")];

/// One series of a `promtool test rules` case: a name with labels, and its values in
/// promtool's expanding notation (`0+6x40`: start at 0, add 6 per step, 40 steps).
#[derive(Clone, Debug)]
pub struct Input {
    pub series: String,
    pub values: String,
}

/// An alert rule and its test cases.
#[derive(Clone, Debug)]
pub struct Alert {
    pub kind: &'static FindingKind,
    pub severity: &'static str,
    pub expr: String,
    /// Annotation templates; they use only `{{ $labels.NAME }}` so tests can render them.
    pub summary: String,
    pub description: String,
    /// The process the test series belong to, and the resource labels the alert carries.
    pub process: [(&'static str, &'static str); 2],
    pub resource: Vec<(&'static str, &'static str)>,
    pub firing: Vec<Input>,
    pub healthy: Vec<Input>,
}

impl Alert {
    pub fn name(&self) -> String {
        self.kind.alert_name()
    }

    pub fn runbook_url(&self) -> String {
        format!("{RUNBOOK_BASE}#{}", self.kind.id)
    }

    /// The alert's labels as a firing instance carries them (without `alertname`).
    pub fn labels(&self) -> Vec<(&'static str, &'static str)> {
        let mut l = vec![("severity", self.severity)];
        l.extend(self.process);
        l.extend(self.resource.iter().copied());
        l
    }

    /// Renders an annotation template for the test's labels.
    pub fn render(&self, template: &str) -> String {
        let mut s = template.to_string();
        for (k, v) in self.labels() {
            s = s.replace(&format!("{{{{ $labels.{k} }}}}"), v);
        }
        s
    }
}

/// `name{matchers}` for alert expressions (no dashboard variables).
fn s(spec: &Spec, suffix: &str, matchers: &str) -> String {
    let name = series(spec, suffix);
    if matchers.is_empty() {
        name
    } else {
        format!("{name}{{{matchers}}}")
    }
}

fn sum_rate(by: &str, spec: &Spec, suffix: &str, matchers: &str) -> String {
    format!("sum by ({by}) (rate({}[{WINDOW}]))", s(spec, suffix, matchers))
}

fn sum_increase(by: &str, spec: &Spec, suffix: &str, matchers: &str) -> String {
    format!("sum by ({by}) (increase({}[{WINDOW}]))", s(spec, suffix, matchers))
}

/// The restart guard: the process started more than one window ago.
fn started_before_window() -> String {
    format!(
        "on (job, instance) (time() - max by (job, instance) ({}) > {})",
        s(&catalog::PROCESS_START, "", ""),
        humantime::parse_duration(WINDOW).expect("window").as_secs()
    )
}

/// `cond and on (by) guard ... and restart guard`, one clause per line.
fn guarded(by: &str, cond: String, guards: &[String]) -> String {
    let mut e = cond;
    for g in guards {
        e.push_str(&format!("\nand on ({by}) {g}"));
    }
    e.push_str(&format!("\nand {}", started_before_window()));
    e
}

fn in_flight() -> String {
    super::promql::requests_in_flight("", WINDOW).replace("{}", "")
}

fn requests_increase() -> String {
    let one = |spec: &Spec| sum_increase("job, instance", spec, "", "");
    format!("({} or {})", one(&catalog::HTTP_REQUESTS), one(&catalog::RPC_SERVER_REQUESTS))
}

/// A series line for a test.
fn input(spec: &Spec, suffix: &str, process: &[(&str, &str)], labels: &[(&str, &str)], values: &str) -> Input {
    let all: Vec<String> = process.iter().chain(labels.iter()).map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    Input { series: format!("{}{{{}}}", series(spec, suffix), all.join(",")), values: values.to_string() }
}

fn kind(id: &str) -> &'static FindingKind {
    findings::kind(id).unwrap_or_else(|| panic!("{id} is not a finding"))
}

fn fmt_num(v: f64) -> String {
    format!("{v}")
}

fn lock_contention() -> Alert {
    let by = "job, instance, lock";
    let share = format!(
        "{}\n  / on (job, instance) group_left()\n{}\n>= {}",
        sum_rate(by, &catalog::LOCK_WAIT, "_sum", ""),
        in_flight(),
        fmt_num(WARNING_SHARE)
    );
    let res = [("lock", "store.global")];
    let both = |wait: &str| {
        vec![
            input(&catalog::LOCK_WAIT, "_sum", &SERVICE, &[("lock", "store.global"), ("mode", "exclusive")], wait),
            input(
                &catalog::LOCK_CONTENDED,
                "",
                &SERVICE,
                &[("lock", "store.global"), ("mode", "exclusive")],
                "0+10x40",
            ),
            input(&catalog::RPC_SERVER_DURATION, "_sum", &SERVICE, &[("method", "Increment")], "0+15x40"),
        ]
    };
    Alert {
        kind: kind("lock-contention"),
        severity: "warning",
        expr: guarded(by, share, &[format!("{} >= {}", sum_increase(by, &catalog::LOCK_CONTENDED, "", ""), fmt_num(MIN_EVENTS))]),
        summary: "Lock {{ $labels.lock }} on {{ $labels.instance }} costs over 37.5% of request time".into(),
        description: format!(
            "Tasks of {{{{ $labels.instance }}}} spend at least {:.1}% of request time queued on lock {{{{ $labels.lock }}}} \
             (rate of lock_wait_seconds_sum over requests in flight). Shard the lock or shorten what runs under it; \
             `pinchpoint flame --kind contention` on the process shows who waits and who holds.",
            WARNING_SHARE * 100.0
        ),
        process: SERVICE,
        resource: res.to_vec(),
        firing: both("0+6x40"),
        healthy: both("0+1.5x40"),
    }
}

fn pool_saturated() -> Alert {
    let by = "job, instance, pool";
    let share = format!(
        "{}\n  / on (job, instance) group_left()\n{}\n>= {}",
        sum_rate(by, &catalog::POOL_ACQUIRE_WAIT, "_sum", ""),
        in_flight(),
        fmt_num(WARNING_SHARE)
    );
    let case = |wait: &str| {
        vec![
            input(&catalog::POOL_ACQUIRE_WAIT, "_sum", &GATEWAY, &[("pool", "rpc")], wait),
            input(&catalog::POOL_ACQUIRE, "", &GATEWAY, &[("pool", "rpc"), ("outcome", "waited")], "0+10x40"),
            input(
                &catalog::HTTP_DURATION,
                "_sum",
                &GATEWAY,
                &[("route", "/api/v1/counter/increment"), ("method", "POST")],
                "0+15x40",
            ),
        ]
    };
    Alert {
        kind: kind("pool-saturated"),
        severity: "warning",
        expr: guarded(
            by,
            share,
            &[format!("{} >= {}", sum_increase(by, &catalog::POOL_ACQUIRE, "", ""), fmt_num(MIN_EVENTS))],
        ),
        summary: "Pool {{ $labels.pool }} on {{ $labels.instance }} is saturated: requests queue for it".into(),
        description: format!(
            "Requests of {{{{ $labels.instance }}}} spend at least {:.1}% of their time waiting to acquire from pool \
             {{{{ $labels.pool }}}}. Grow the pool to (in use + waiters) / 0.7, or hold its resources for less time.",
            WARNING_SHARE * 100.0
        ),
        process: GATEWAY,
        resource: vec![("pool", "rpc")],
        firing: case("0+6x40"),
        healthy: case("0+1.5x40"),
    }
}

fn connection_churn() -> Alert {
    let by = "job, instance, pool";
    let ratio = format!(
        "{}\n  / {}\n>= {}",
        sum_rate(by, &catalog::POOL_OPENED, "", ""),
        sum_rate(by, &catalog::POOL_ACQUIRE, "", ""),
        fmt_num(CHURN_OPENS_PER_ACQUIRE_WARNING)
    );
    let case = |opened: &str| {
        vec![
            input(&catalog::POOL_OPENED, "", &GATEWAY, &[("pool", "rpc")], opened),
            input(&catalog::POOL_ACQUIRE, "", &GATEWAY, &[("pool", "rpc"), ("outcome", "immediate")], "0+10x40"),
        ]
    };
    Alert {
        kind: kind("connection-churn"),
        severity: "warning",
        expr: guarded(
            by,
            ratio,
            &[format!("{} >= {}", sum_increase(by, &catalog::POOL_ACQUIRE, "", ""), fmt_num(MIN_EVENTS))],
        ),
        summary: "Pool {{ $labels.pool }} on {{ $labels.instance }} opens a connection for most uses".into(),
        description: format!(
            "Pool {{{{ $labels.pool }}}} of {{{{ $labels.instance }}}} opens at least {} connections per acquisition: \
             connections are dialed per request instead of reused. Keep them open in a pool.",
            CHURN_OPENS_PER_ACQUIRE_WARNING
        ),
        process: GATEWAY,
        resource: vec![("pool", "rpc")],
        firing: case("0+10x40"),
        healthy: case("0+0x40"),
    }
}

fn worker_busy_ratio(by: &str) -> String {
    format!(
        "{}\n  / {}",
        sum_rate(by, &catalog::WORKER_BUSY, "", ""),
        format_args!("sum by ({by}) ({})", series(&catalog::WORKER_COUNT, ""))
    )
}

fn jobs_increase(by: &str) -> String {
    sum_increase(by, &catalog::WORKER_JOBS, "", "outcome!=\"rejected\"")
}

fn worker_pool_undersized() -> Alert {
    let by = "job, instance, pool";
    let mean_wait = format!(
        "{} / {}",
        sum_rate(by, &catalog::WORKER_QUEUE_WAIT, "_sum", ""),
        sum_rate(by, &catalog::WORKER_QUEUE_WAIT, "_count", "")
    );
    let job_time = format!(
        "{} / {}",
        sum_rate(by, &catalog::WORKER_BUSY, "", ""),
        sum_rate(by, &catalog::WORKER_JOBS, "", "outcome!=\"rejected\"")
    );
    let l = [("pool", "flush")];
    let case = |wait: &str| {
        vec![
            input(&catalog::WORKER_BUSY, "", &GATEWAY, &l, "0+15x40"),
            input(&catalog::WORKER_COUNT, "", &GATEWAY, &l, "1x40"),
            input(&catalog::WORKER_QUEUE_WAIT, "_sum", &GATEWAY, &l, wait),
            input(&catalog::WORKER_QUEUE_WAIT, "_count", &GATEWAY, &l, "0+10x40"),
            input(&catalog::WORKER_JOBS, "", &GATEWAY, &[("pool", "flush"), ("outcome", "done")], "0+10x40"),
        ]
    };
    Alert {
        kind: kind("worker-pool-undersized"),
        severity: "warning",
        expr: guarded(
            by,
            format!("{}\n>= {}", worker_busy_ratio(by), fmt_num(UNDERSIZED_UTILIZATION)),
            &[
                format!("(({mean_wait})\n  / ({job_time}))\n>= {}", fmt_num(UNDERSIZED_WAIT_PER_SERVICE_WARNING)),
                format!("{} >= {}", jobs_increase(by), fmt_num(MIN_EVENTS)),
            ],
        ),
        summary: "Worker pool {{ $labels.pool }} on {{ $labels.instance }} is undersized: jobs wait longer than they run"
            .into(),
        description: format!(
            "Worker pool {{{{ $labels.pool }}}} of {{{{ $labels.instance }}}} is at least {:.0}% busy and its jobs wait \
             in the queue at least {} times as long as they take. Add workers: jobs per second x job time / {}.",
            UNDERSIZED_UTILIZATION * 100.0,
            UNDERSIZED_WAIT_PER_SERVICE_WARNING,
            TARGET_UTILIZATION
        ),
        process: GATEWAY,
        resource: l.to_vec(),
        firing: case("0+60x40"),
        healthy: case("0+5x40"),
    }
}

fn worker_pool_oversized() -> Alert {
    let by = "job, instance, pool";
    let l = [("pool", "consumer")];
    let case = |workers: &str| {
        vec![
            input(&catalog::WORKER_BUSY, "", &SERVICE, &l, "0+0.15x40"),
            input(&catalog::WORKER_COUNT, "", &SERVICE, &l, workers),
            input(&catalog::WORKER_JOBS, "", &SERVICE, &[("pool", "consumer"), ("outcome", "done")], "0+10x40"),
        ]
    };
    Alert {
        kind: kind("worker-pool-oversized"),
        severity: "info",
        expr: guarded(
            by,
            format!("{}\n< {}", worker_busy_ratio(by), fmt_num(OVERSIZED_UTILIZATION)),
            &[
                format!("sum by ({by}) ({}) >= {}", series(&catalog::WORKER_COUNT, ""), fmt_num(OVERSIZED_MIN_WORKERS)),
                format!("{} >= {}", jobs_increase(by), fmt_num(LOAD_GATE_JOBS)),
            ],
        ),
        summary: "Worker pool {{ $labels.pool }} on {{ $labels.instance }} is far larger than its load".into(),
        description: format!(
            "Worker pool {{{{ $labels.pool }}}} of {{{{ $labels.instance }}}} has at least {} workers and is less than \
             {:.0}% busy under load. Idle workers cost memory and wakeups: shrink it to jobs per second x job time / {}.",
            OVERSIZED_MIN_WORKERS,
            OVERSIZED_UTILIZATION * 100.0,
            TARGET_UTILIZATION
        ),
        process: SERVICE,
        resource: l.to_vec(),
        firing: case("32x40"),
        healthy: case("4x40"),
    }
}

fn task_leak() -> Alert {
    let by = "job, instance, task";
    let growth = format!(
        "({}\n  - {})",
        sum_increase(by, &catalog::TASKS_SPAWNED, "", ""),
        sum_increase(by, &catalog::TASKS_FINISHED, "", "")
    );
    let retained_warning = LEAK_FULL_SCALE_RETAINED * WARNING / 100.0;
    let l = [("task", "src/counter/gateway.rs:120")];
    let case = |finished: &str| {
        vec![
            input(&catalog::TASKS_SPAWNED, "", &GATEWAY, &l, "0+10x40"),
            input(&catalog::TASKS_FINISHED, "", &GATEWAY, &l, finished),
        ]
    };
    Alert {
        kind: kind("task-leak"),
        severity: "warning",
        expr: guarded(
            by,
            format!("{growth}\n>= {}", fmt_num(LEAK_MIN_GROWTH)),
            &[format!(
                "({growth}\n  / {})\n>= {}",
                sum_increase(by, &catalog::TASKS_SPAWNED, "", ""),
                fmt_num(retained_warning)
            )],
        ),
        summary: "Tasks spawned at {{ $labels.task }} on {{ $labels.instance }} keep piling up".into(),
        description: format!(
            "Spawn site {{{{ $labels.task }}}} of {{{{ $labels.instance }}}} gained at least {} tasks in {WINDOW} and \
             keeps at least {:.1}% of what it spawns alive: tasks that wait on something that never comes. Open \
             /debug/tasks on the process to see them.",
            LEAK_MIN_GROWTH,
            retained_warning * 100.0
        ),
        process: GATEWAY,
        resource: l.to_vec(),
        firing: case("0+2x40"),
        healthy: case("0+10x40"),
    }
}

fn allocation_churn() -> Alert {
    let by = "job, instance";
    let per_request = format!(
        "{}\n  / on (job, instance)\n{}\n>= {}",
        sum_rate(by, &catalog::ALLOC_BYTES, "", ""),
        super::promql::requests_per_second("", WINDOW).replace("{}", ""),
        fmt_num(ALLOC_BYTES_PER_REQUEST_WARNING)
    );
    let case = |bytes: &str| {
        vec![
            input(&catalog::ALLOC_BYTES, "", &GATEWAY, &[], bytes),
            input(
                &catalog::HTTP_REQUESTS,
                "",
                &GATEWAY,
                &[("route", "/api/v1/counter/increment"), ("method", "POST"), ("status", "200")],
                "0+10x40",
            ),
        ]
    };
    Alert {
        kind: kind("allocation-churn"),
        severity: "warning",
        expr: guarded(by, per_request, &[format!("{} >= {}", requests_increase(), fmt_num(MIN_EVENTS))]),
        summary: "{{ $labels.instance }} allocates over 1 MiB per request".into(),
        description:
            "{{ $labels.instance }} allocates at least 1 MiB per request served (rate of alloc_bytes_total over \
                      the request rate). Look for clones, boxing and buffers rebuilt per request in a CPU flamegraph."
                .into(),
        process: GATEWAY,
        resource: Vec::new(),
        firing: case("0+20971520x40"),
        healthy: case("0+102400x40"),
    }
}

/// The upper bounds of the duration layout from [`SLOW_POLL_SECONDS`] up, as the exposition
/// writes them (`le="0.0025"`, `le="1.0"`).
fn slow_poll_bounds() -> Vec<f64> {
    let mut v = Vec::new();
    let mut decade = SLOW_POLL_SECONDS;
    while decade <= 10.0 {
        for m in [1.0, 2.5, 5.0] {
            let b = (decade * m * 1e6).round() / 1e6;
            if b <= 10.0 {
                v.push(b);
            }
        }
        decade *= 10.0;
    }
    v
}

/// Worker-seconds per second spent in polls longer than [`SLOW_POLL_SECONDS`], counting each
/// poll at its bucket's lower bound (so never more than the truth).
fn slow_poll_seconds(by: &str) -> String {
    let bounds = slow_poll_bounds();
    let bucket = |i: usize| match bounds.get(i) {
        Some(b) => sum_rate(by, &catalog::RUNTIME_POLL, "_bucket", &format!("le=\"{b:?}\"")),
        None => sum_rate(by, &catalog::RUNTIME_POLL, "_count", ""),
    };
    let terms: Vec<String> =
        (1..=bounds.len()).map(|i| format!("{:?} * ({} - {})", bounds[i - 1], bucket(i), bucket(i - 1))).collect();
    format!("(\n    {}\n  )", terms.join("\n  + "))
}

fn runtime_blocked() -> Alert {
    let by = "job, instance";
    let share = format!(
        "{}\n  / sum by ({by}) ({})\n>= {}",
        slow_poll_seconds(by),
        series(&catalog::RUNTIME_WORKERS, ""),
        fmt_num(BLOCKED_SHARE_WARNING)
    );
    let case = |slow: u32| {
        let mut v: Vec<Input> = slow_poll_bounds()
            .iter()
            .map(|b| {
                let per_step = if *b >= 0.05 { 1000 + slow } else { 1000 };
                input(
                    &catalog::RUNTIME_POLL,
                    "_bucket",
                    &GATEWAY,
                    &[("le", &format!("{b:?}"))],
                    &format!("0+{per_step}x40"),
                )
            })
            .collect();
        v.push(input(&catalog::RUNTIME_POLL, "_bucket", &GATEWAY, &[("le", "+Inf")], &format!("0+{}x40", 1000 + slow)));
        v.push(input(&catalog::RUNTIME_POLL, "_count", &GATEWAY, &[], &format!("0+{}x40", 1000 + slow)));
        v.push(input(&catalog::RUNTIME_WORKERS, "", &GATEWAY, &[], "1x40"));
        v
    };
    Alert {
        kind: kind("runtime-blocked"),
        severity: "warning",
        expr: guarded(
            by,
            share,
            &[format!("{} >= {}", sum_increase(by, &catalog::RUNTIME_POLL, "_count", ""), fmt_num(MIN_EVENTS))],
        ),
        summary: "Blocking calls stall the runtime of {{ $labels.instance }}".into(),
        description: format!(
            "Polls longer than {} ms fill at least {:.0}% of the runtime workers' time on {{{{ $labels.instance }}}} \
             (estimated from runtime_poll_seconds buckets at their lower bounds). A blocking call runs in async code: \
             move it to spawn_blocking. Preemption (many involuntary context switches) lengthens polls too; the doctor \
             subtracts it, this alert does not.",
            SLOW_POLL_SECONDS * 1000.0,
            BLOCKED_SHARE_WARNING * 100.0
        ),
        process: GATEWAY,
        resource: Vec::new(),
        // 300 polls of 25-50 ms per 15 s step: at least 7.5 s of every 15 s of one worker.
        firing: case(300),
        healthy: case(0),
    }
}

fn retry_amplification() -> Alert {
    let by = "job, instance";
    let ratio = format!(
        "{}\n  / {}\n>= {}",
        sum_rate(by, &catalog::RPC_CLIENT_RETRIES, "", ""),
        sum_rate(by, &catalog::RPC_CLIENT_REQUESTS, "", ""),
        fmt_num(RETRY_SHARE_WARNING)
    );
    let case = |retries: &str| {
        vec![
            input(&catalog::RPC_CLIENT_RETRIES, "", &GATEWAY, &[("method", "Increment")], retries),
            input(&catalog::RPC_CLIENT_REQUESTS, "", &GATEWAY, &[("method", "Increment"), ("code", "ok")], "0+10x40"),
        ]
    };
    Alert {
        kind: kind("retry-amplification"),
        severity: "warning",
        expr: guarded(
            by,
            ratio,
            &[format!("{} >= {}", sum_increase(by, &catalog::RPC_CLIENT_REQUESTS, "", ""), fmt_num(MIN_EVENTS))],
        ),
        summary: "Retries amplify the load {{ $labels.instance }} sends downstream".into(),
        description: format!(
            "At least {:.0}% of the RPC attempts of {{{{ $labels.instance }}}} are retries. Retries multiply load on a \
             downstream that is already slow: lengthen the timeout or cut retries before adding capacity.",
            RETRY_SHARE_WARNING * 100.0
        ),
        process: GATEWAY,
        resource: Vec::new(),
        firing: case("0+3x40"),
        healthy: case("0+0x40"),
    }
}

fn breaker_open() -> Alert {
    let by = "job, instance, target";
    let l = [("target", "http://127.0.0.1:50051")];
    Alert {
        kind: kind("breaker-open"),
        severity: "warning",
        expr: guarded(by, format!("max by ({by}) ({}) == 2", series(&catalog::BREAKER_STATE, "")), &[]),
        summary: "The breaker of {{ $labels.instance }} to {{ $labels.target }} is open".into(),
        description:
            "The circuit breaker of {{ $labels.instance }} for {{ $labels.target }} is open: requests to it fail \
                      fast. It opened because calls failed; the target's own alerts and dashboards say why."
                .into(),
        process: GATEWAY,
        resource: l.to_vec(),
        firing: vec![input(&catalog::BREAKER_STATE, "", &GATEWAY, &l, "2x40")],
        healthy: vec![input(&catalog::BREAKER_STATE, "", &GATEWAY, &l, "0x40")],
    }
}

fn unbounded_growth() -> Alert {
    let by = "job, instance";
    let heap = series(&catalog::HEAP_LIVE, "");
    let growth = format!("sum by ({by}) (delta({heap}[{WINDOW}]))");
    Alert {
        kind: kind("unbounded-growth"),
        severity: "warning",
        expr: guarded(
            by,
            format!("{growth}\n>= {}", fmt_num(GROWTH_MIN_HEAP_BYTES)),
            &[format!("{growth}\n  / sum by ({by}) ({heap} offset {WINDOW})\n>= {}", fmt_num(GROWTH_SHARE_INFO))],
        ),
        summary: "The heap of {{ $labels.instance }} keeps growing".into(),
        description: format!(
            "The live heap of {{{{ $labels.instance }}}} grew by at least {} MiB and {:.0}% within {WINDOW}, and kept \
             growing for {FOR}: a cache, queue or map without a bound, or a leak.",
            GROWTH_MIN_HEAP_BYTES / 1024.0 / 1024.0,
            GROWTH_SHARE_INFO * 100.0
        ),
        process: GATEWAY,
        resource: Vec::new(),
        firing: vec![input(&catalog::HEAP_LIVE, "", &GATEWAY, &[], "104857600+1048576x40")],
        healthy: vec![input(&catalog::HEAP_LIVE, "", &GATEWAY, &[], "104857600x40")],
    }
}

fn cpu_saturated() -> Alert {
    let by = "job, instance";
    let share = format!(
        "{}\n  / sum by ({by}) ({})\n>= {}",
        sum_rate(by, &catalog::PROCESS_CPU, "", ""),
        series(&catalog::CPU_CORES, ""),
        fmt_num(CPU_SHARE_WARNING)
    );
    let case = |cpu: &str| {
        vec![
            input(&catalog::PROCESS_CPU, "", &SERVICE, &[], cpu),
            input(&catalog::CPU_CORES, "", &SERVICE, &[], "2x40"),
        ]
    };
    Alert {
        kind: kind("cpu-saturated"),
        severity: "warning",
        expr: guarded(by, share, &[]),
        summary: "{{ $labels.instance }} uses all the CPU it may use".into(),
        description: format!(
            "{{{{ $labels.instance }}}} uses at least {:.0}% of the cores it may run on. More threads will not help: \
             cut work per request (CPU flamegraph) or give it more cores.",
            CPU_SHARE_WARNING * 100.0
        ),
        process: SERVICE,
        resource: Vec::new(),
        firing: case("0+30x40"),
        healthy: case("0+15x40"),
    }
}

/// Every alert, in the finding catalog's order.
pub fn all() -> Vec<Alert> {
    let made = [
        pool_saturated(),
        connection_churn(),
        lock_contention(),
        worker_pool_undersized(),
        worker_pool_oversized(),
        task_leak(),
        allocation_churn(),
        runtime_blocked(),
        retry_amplification(),
        breaker_open(),
        unbounded_growth(),
        cpu_saturated(),
    ];
    findings::KINDS
        .iter()
        .filter(|k| !k.lab_only)
        .map(|k| {
            made.iter()
                .find(|a| a.kind.id == k.id)
                .unwrap_or_else(|| panic!("finding {} has no alert: add one or mark it lab_only", k.id))
                .clone()
        })
        .collect()
}

fn quote(s: &str) -> String {
    serde_json::to_string(s).expect("string")
}

fn block(text: &str, indent: usize) -> String {
    let pad = " ".repeat(indent);
    text.lines().map(|l| format!("{pad}{l}\n")).collect()
}

/// `alerts.yml`.
pub fn rules_yaml(alerts: &[Alert]) -> String {
    let mut y = String::from(
        "# Generated by `pinchpoint dashboards` from src/dashboards/alerts.rs (thresholds from\n\
         # src/diagnose/findings.rs); edit those, not this file.\n\
         groups:\n  - name: pinchpoint\n    rules:\n",
    );
    for a in alerts {
        y.push_str(&format!("      - alert: {}\n        expr: |\n", a.name()));
        y.push_str(&block(&a.expr, 10));
        y.push_str(&format!("        for: {FOR}\n        labels:\n          severity: {}\n", a.severity));
        y.push_str("        annotations:\n");
        y.push_str(&format!("          summary: {}\n", quote(&a.summary)));
        y.push_str(&format!("          description: {}\n", quote(&a.description)));
        y.push_str(&format!("          runbook_url: {}\n", quote(&a.runbook_url())));
    }
    y
}

fn test_case(y: &mut String, a: &Alert, name: &str, inputs: &[Input], fires: bool) {
    y.push_str(&format!("  - name: {}\n    interval: 15s\n    input_series:\n", quote(name)));
    for i in inputs {
        y.push_str(&format!("      - series: {}\n        values: {}\n", quote(&i.series), quote(&i.values)));
    }
    y.push_str(&format!(
        "    alert_rule_test:\n      - eval_time: 10m\n        alertname: {}\n        exp_alerts:",
        a.name()
    ));
    if !fires {
        y.push_str(" []\n");
        return;
    }
    y.push_str("\n          - exp_labels:\n");
    for (k, v) in a.labels() {
        y.push_str(&format!("              {k}: {}\n", quote(v)));
    }
    y.push_str("            exp_annotations:\n");
    y.push_str(&format!("              summary: {}\n", quote(&a.render(&a.summary))));
    y.push_str(&format!("              description: {}\n", quote(&a.render(&a.description))));
    y.push_str(&format!("              runbook_url: {}\n", quote(&a.runbook_url())));
}

fn start_time(process: &[(&str, &str)], started_at: &str) -> Input {
    input(&catalog::PROCESS_START, "", process, &[], &format!("{started_at}x40"))
}

/// `alerts_test.yml`: per alert, its firing case, a healthy process, and the firing series on
/// a process that started 200 s before the evaluation: longer ago than `for:` (so `for:` alone
/// would let it fire) but within the window.
pub fn tests_yaml(alerts: &[Alert]) -> String {
    let mut y = String::from(
        "# Generated by `pinchpoint dashboards` from src/dashboards/alerts.rs; run with\n\
         # `promtool test rules dashboards/alerts_test.yml`.\n\
         rule_files:\n  - alerts.yml\nevaluation_interval: 15s\ntests:\n",
    );
    for a in alerts {
        let mut firing = a.firing.clone();
        firing.push(start_time(&a.process, "0"));
        test_case(&mut y, a, &format!("{} fires on its case", a.name()), &firing, true);
        let mut healthy = a.healthy.clone();
        healthy.push(start_time(&a.process, "0"));
        test_case(&mut y, a, &format!("{} stays quiet on a healthy process", a.name()), &healthy, false);
        let mut restarted = a.firing.clone();
        restarted.push(start_time(&a.process, "400"));
        test_case(&mut y, a, &format!("{} stays quiet on a process that just restarted", a.name()), &restarted, false);
    }
    y
}
