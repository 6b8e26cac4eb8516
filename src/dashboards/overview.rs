//! Overview, "Where does it pinch?": the doctor's ranking of waiting resources on the first
//! screen, then RED per route and saturation per resource.

use super::panel::{Dashboard, Panel, Target, Viz};
use super::promql::{increase, quantile, rate, requests_in_flight, sel, sum_by, SCOPE};
use crate::diagnose::findings::{INFO_SHARE, WARNING_SHARE};
use crate::metrics::catalog::*;
use serde_json::json;

/// Colour steps of a share of request time: the doctor's info and warning thresholds.
pub fn share_steps() -> [(f64, &'static str); 2] {
    [(INFO_SHARE, "orange"), (WARNING_SHARE, "red")]
}

/// One ranked kind of resource: tasks waiting on it on average, labelled with `kind`, the
/// `resource` name and the `dashboard` that details it.
fn waiting(kind: &str, resource_label: &str, dashboard: &str, per_resource: String) -> String {
    let labelled = format!(
        r#"label_replace(label_replace(label_replace({per_resource}, "resource", "$1", "{resource_label}", "(.*)"), "kind", "{kind}", "", ""), "dashboard", "{dashboard}", "", "")"#
    );
    sum_by("job, instance, kind, resource, dashboard", &labelled)
}

/// Every lock, connection pool, worker pool and the runtime's global queue, by tasks waiting
/// on average (seconds waited per second).
pub fn waiting_by_resource() -> String {
    let lock = sum_by("job, instance, lock", &rate(&LOCK_WAIT, "_sum", ""));
    let pool = sum_by("job, instance, pool", &rate(&POOL_ACQUIRE_WAIT, "_sum", ""));
    let worker = sum_by("job, instance, pool", &rate(&WORKER_QUEUE_WAIT, "_sum", ""));
    // The runtime has no wait histogram; tasks sitting in its global queue are tasks waiting
    // for a worker, averaged over the interval like the seconds-per-second above.
    let runtime = format!(
        r#"label_replace({}, "runtime", "tokio global queue", "", "")"#,
        sum_by("job, instance", &format!("avg_over_time({}[$__rate_interval])", sel(&RUNTIME_GLOBAL_QUEUE, "", "")))
    );
    [
        waiting("lock", "lock", "pinchpoint-locks", lock),
        waiting("connection pool", "pool", "pinchpoint-pools", pool),
        waiting("worker pool", "pool", "pinchpoint-pools", worker),
        waiting("runtime", "runtime", "pinchpoint-runtime", runtime),
    ]
    .join(" or ")
}

/// [`waiting_by_resource`] as a share of the process's request time.
pub fn share_by_resource() -> String {
    format!(
        "({}) / on (job, instance) group_left() {}",
        waiting_by_resource(),
        requests_in_flight(SCOPE, "$__rate_interval")
    )
}

fn ranking() -> Panel {
    let mut p = Panel::new(
        Viz::Table,
        "Where does it pinch? Resources ranked by share of request time spent waiting",
        "short",
        "Every lock, connection pool, worker pool and the runtime's global queue of every process, ranked by the share of \
         request time spent waiting on it (waiting / requests in flight, both from Little's law). 'Waiting' is seconds \
         waited per second = tasks blocked on the resource on average. Orange from the doctor's info threshold \
         (12.5% of request time), red from its warning (37.5%, where PinchpointLockContention and \
         PinchpointPoolSaturated fire). The top row is the pinch: click its name for its dashboard, then take a \
         contention flamegraph (row link) to see who holds it. `pinchpoint diagnose` ranks the same way.",
        vec![Target::table(format!("sort_desc({})", waiting_by_resource())), Target::table(share_by_resource())],
    )
    .sized(12, 10);
    p.transformations = vec![
        json!({"id": "merge", "options": {}}),
        json!({"id": "organize", "options": {
            "excludeByName": {"Time": true},
            "indexByName": {"resource": 0, "kind": 1, "Value #B": 2, "Value #A": 3, "instance": 4, "job": 5, "dashboard": 6},
            "renameByName": {"Value #A": "Waiting (tasks)", "Value #B": "Share of request time"}
        }}),
        json!({"id": "sortBy", "options": {"sort": [{"field": "Share of request time", "desc": true}]}}),
    ];
    let steps: Vec<_> = std::iter::once(json!({"color": "green", "value": null}))
        .chain(share_steps().iter().map(|(v, c)| json!({"color": c, "value": v})))
        .collect();
    p.overrides = vec![
        json!({"matcher": {"id": "byName", "options": "Share of request time"}, "properties": [
            {"id": "unit", "value": "percentunit"},
            {"id": "thresholds", "value": {"mode": "absolute", "steps": steps}},
            {"id": "custom.cellOptions", "value": {"type": "color-background", "mode": "basic"}}
        ]}),
        json!({"matcher": {"id": "byName", "options": "resource"}, "properties": [
            {"id": "links", "value": [{"title": "Open ${__data.fields.resource} in its dashboard",
              "url": "/d/${__data.fields.dashboard}?var-datasource=${datasource}&var-job=${__data.fields.job}&var-instance=${__data.fields.instance}&var-lock=${__data.fields.resource}&var-pool=${__data.fields.resource}&${__url_time_range}"}]}
        ]}),
        json!({"matcher": {"id": "byName", "options": "dashboard"}, "properties": [{"id": "custom.hidden", "value": true}]}),
    ];
    p
}

fn waiting_over_time() -> Panel {
    Panel::timeseries(
        "Tasks waiting, by resource",
        "short",
        "The ranking over time: seconds waited per second on each resource (= tasks blocked on it on average). A line that \
         rises with load while QPS flattens is the pinch; compare with the latency panels below.",
        vec![Target::range(waiting_by_resource(), "{{kind}} {{resource}} ({{instance}})")],
    )
}

fn http_red() -> Vec<Panel> {
    let by = "job, instance, route";
    let all = sum_by(by, &rate(&HTTP_REQUESTS, "", ""));
    let errors = sum_by(by, &rate(&HTTP_REQUESTS, "", r#"status=~"5..""#));
    vec![
        Panel::timeseries(
            "HTTP requests per second, by route and status",
            "reqps",
            "Rate of HTTP requests served per route and status. Throughput flattening while concurrency grows means a \
             resource is saturated: look at the ranking above.",
            vec![Target::range(
                sum_by("job, instance, route, status", &rate(&HTTP_REQUESTS, "", "")),
                "{{route}} {{status}} ({{instance}})",
            )],
        )
        .sized(8, 8),
        Panel::timeseries(
            "HTTP error ratio, by route",
            "percentunit",
            "Share of HTTP answers with a 5xx status (0 when there are none). Errors rising with latency usually are \
             timeouts on a saturated pool or an open breaker: see the Counter system dashboard.",
            vec![Target::range(format!("({errors} or {all} * 0) / {all}"), "{{route}} ({{instance}})")],
        )
        .sized(8, 8),
        Panel::timeseries(
            "HTTP latency p50 / p99, by route",
            "s",
            "Request latency quantiles from the histogram; dots are exemplars, click one to open its trace. A p99 far \
             above p50 is queueing: some requests wait on a lock or pool the others did not.",
            vec![
                Target::range(
                    quantile(0.5, &HTTP_DURATION, "", "job, instance, route"),
                    "p50 {{route}} ({{instance}})",
                ),
                Target::range(
                    quantile(0.99, &HTTP_DURATION, "", "job, instance, route"),
                    "p99 {{route}} ({{instance}})",
                ),
            ],
        )
        .with_exemplars()
        .sized(8, 8),
    ]
}

fn grpc_red() -> Vec<Panel> {
    let by = "job, instance, method";
    let all = sum_by(by, &rate(&RPC_SERVER_REQUESTS, "", ""));
    let errors = sum_by(by, &rate(&RPC_SERVER_REQUESTS, "", r#"code!="ok""#));
    vec![
        Panel::timeseries(
            "gRPC calls served per second, by method and code",
            "reqps",
            "Rate of gRPC calls the service answered, per method and status code.",
            vec![Target::range(sum_by("job, instance, method, code", &rate(&RPC_SERVER_REQUESTS, "", "")), "{{method}} {{code}} ({{instance}})")],
        )
        .sized(8, 8),
        Panel::timeseries(
            "gRPC error ratio, by method",
            "percentunit",
            "Share of gRPC calls answered with a code other than ok (0 when there are none).",
            vec![Target::range(format!("({errors} or {all} * 0) / {all}"), "{{method}} ({{instance}})")],
        )
        .sized(8, 8),
        Panel::timeseries(
            "gRPC server latency p50 / p99, by method",
            "s",
            "Latency inside the service; dots are exemplars. If the gateway's HTTP latency is much higher than this, the \
             time goes between them (connection pool, dialing, retries); if it is as high, the service itself waits.",
            vec![
                Target::range(quantile(0.5, &RPC_SERVER_DURATION, "", by), "p50 {{method}} ({{instance}})"),
                Target::range(quantile(0.99, &RPC_SERVER_DURATION, "", by), "p99 {{method}} ({{instance}})"),
            ],
        )
        .with_exemplars()
        .sized(8, 8),
    ]
}

fn saturation() -> Panel {
    let pools = format!(
        "{} / {}",
        sum_by("job, instance, pool", &rate(&POOL_IN_USE_SECONDS, "", "")),
        sum_by("job, instance, pool", &sel(&POOL_MAX_SIZE, "", ""))
    );
    let workers = format!(
        "{} / {}",
        sum_by("job, instance, pool", &rate(&WORKER_BUSY, "", "")),
        sum_by("job, instance, pool", &sel(&WORKER_COUNT, "", ""))
    );
    let runtime = format!(
        "{} / {}",
        sum_by("job, instance", &rate(&RUNTIME_WORKER_BUSY, "", "")),
        sum_by("job, instance", &sel(&RUNTIME_WORKERS, "", ""))
    );
    let cpu = format!(
        "{} / {}",
        sum_by("job, instance", &rate(&PROCESS_CPU, "", "")),
        sum_by("job, instance", &sel(&CPU_CORES, "", ""))
    );
    Panel::timeseries(
        "Saturation (USE): utilization of every pool, worker pool, the runtime and the CPU",
        "percentunit",
        "Utilization per resource: connection pools (in use / capacity), worker pools (busy / workers), the tokio \
         runtime (busy / workers) and the CPU (used / cores the process may run on). Near 100% the resource is \
         saturated and work queues in front of it; the ranking above says whether that queueing costs request time.",
        vec![
            Target::range(pools, "pool {{pool}} ({{instance}})"),
            Target::range(workers, "worker pool {{pool}} ({{instance}})"),
            Target::range(runtime, "runtime ({{instance}})"),
            Target::range(cpu, "cpu ({{instance}})"),
        ],
    )
    .thresholds(&[(0.8, "orange"), (0.95, "red")])
    .sized(12, 8)
}

fn contention() -> Panel {
    let contended = sum_by("job, instance, lock", &increase(&LOCK_CONTENDED, "", ""));
    let acquired = sum_by("job, instance, lock", &increase(&LOCK_ACQUIRE, "", ""));
    Panel::timeseries(
        "Lock contention ratio",
        "percentunit",
        "Share of lock acquisitions that found the lock taken. High ratio with little waiting is harmless; the ranking \
         above weighs both.",
        vec![Target::range(format!("{contended} / {acquired}"), "{{lock}} ({{instance}})")],
    )
    .sized(12, 8)
}

pub fn dashboard() -> Dashboard {
    let mut panels = vec![ranking(), waiting_over_time()];
    panels.extend(http_red());
    panels.extend(grpc_red());
    panels.push(saturation());
    panels.push(contention());
    Dashboard {
        uid: "pinchpoint-overview",
        title: "pinchpoint / Overview: where does it pinch?",
        description: "Which lock, pool, worker pool or runtime queue costs request time, then RED per route and USE per resource.",
        variables: Vec::new(),
        panels,
    }
}
