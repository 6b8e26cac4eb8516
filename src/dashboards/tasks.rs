//! Tasks: alive by spawn site, spawned minus finished, leaks as growth, oldest age.

use super::panel::{Dashboard, Panel, Target};
use super::promql::{increase, rate, sel, sum_by};
use crate::metrics::catalog::*;

const BY: &str = "job, instance, task";

pub fn dashboard() -> Dashboard {
    let panels = vec![
        Panel::timeseries(
            "Alive by spawn site",
            "short",
            "Tasks alive per name or spawn site. Flat lines are long-lived tasks (accept loops, tickers); a line that \
             climbs with traffic and never comes down is a leak: tasks that wait forever on something that never comes.",
            vec![Target::range(sum_by(BY, &sel(&TASKS_ALIVE, "", "")), "{{task}} ({{instance}})")],
        )
        .stacked(),
        Panel::timeseries(
            "Growth: spawned minus finished per interval",
            "short",
            "Tasks a site gained in each interval. A healthy site hovers around zero; a site that gains in every interval \
             leaks (PinchpointTaskLeak fires when a site gains 20 or more tasks over 5 minutes and keeps most of what it \
             spawned). The spawn site names the code.",
            vec![Target::range(
                format!("{} - {}", sum_by(BY, &increase(&TASKS_SPAWNED, "", "")), sum_by(BY, &increase(&TASKS_FINISHED, "", ""))),
                "{{task}} ({{instance}})",
            )],
        ),
        Panel::timeseries(
            "Spawned and finished per second",
            "ops",
            "Spawn and finish rates per site; equal rates mean tasks end as fast as they start.",
            vec![
                Target::range(sum_by(BY, &rate(&TASKS_SPAWNED, "", "")), "spawned {{task}} ({{instance}})"),
                Target::range(sum_by(BY, &rate(&TASKS_FINISHED, "", "")), "finished {{task}} ({{instance}})"),
            ],
        ),
        Panel::timeseries(
            "Oldest live task",
            "s",
            "Age of the oldest live task per site. Age alone is not a leak (an accept loop lives as long as the process); \
             an old task at a site that should finish per request is.",
            vec![Target::range(sum_by(BY, &sel(&TASK_OLDEST, "", "")), "{{task}} ({{instance}})")],
        ),
        Panel::timeseries(
            "Leak suspects",
            "short",
            "Tasks of a site whose population keeps growing while it spawns; 0 on a healthy process. Open \
             /debug/tasks on the process to see where each suspect was spawned.",
            vec![Target::range(sum_by(BY, &sel(&TASK_LEAK_SUSPECTS, "", "")), "{{task}} ({{instance}})")],
        )
        .thresholds(&[(1.0, "red")]),
        Panel::timeseries(
            "Runtime tasks alive",
            "short",
            "Every task the tokio runtime holds, tracked or not; far above the sum of tracked sites means untracked spawns.",
            vec![Target::range(sum_by("job, instance", &sel(&RUNTIME_ALIVE_TASKS, "", "")), "{{instance}}")],
        ),
    ];
    Dashboard {
        uid: "pinchpoint-tasks",
        title: "pinchpoint / Tasks",
        description: "Tasks by spawn site: what is alive, what grows, what never ends.",
        variables: Vec::new(),
        panels,
    }
}
