//! task-leak: a spawn site whose alive tasks keep growing while it keeps spawning.
//!
//! Growth, not age: accept loops, tickers and signal waiters live as long as the process and
//! are old without being leaks. A site leaks when, slice after slice, it spawns tasks and
//! fewer of them finish: `increase(spawned) − increase(finished)` stays positive. A ramp-up
//! (connections opening at the start of a load) grows in one slice and stops, so it does not
//! hold in two of three.

use super::{guard, m};
use crate::diagnose::findings::*;
use crate::diagnose::verdict::{Evidence, Finding, Where};
use crate::diagnose::window::{ProcessWindow, Slice};

fn growth(s: &Slice, task: &str) -> (f64, f64) {
    let f = [("task", task)];
    let spawned = s.delta(m::TASKS_SPAWNED, &f);
    (spawned - s.delta(m::TASKS_FINISHED, &f), spawned)
}

fn score(s: &Slice, task: &str, part: f64) -> f64 {
    let (grew, spawned) = growth(s, task);
    if grew < LEAK_MIN_GROWTH * part || spawned <= 0.0 {
        return 0.0;
    }
    let retained = (grew / spawned).min(1.0);
    score_between(retained, LEAK_FULL_SCALE_RETAINED * INFO / 100.0, LEAK_FULL_SCALE_RETAINED * WARNING / 100.0)
}

pub(super) fn leaks(w: &ProcessWindow, whole: &Slice, out: &mut Vec<Finding>) {
    if !w.has(m::TASKS_SPAWNED) {
        out.push(Finding::not_measured("task-leak", &w.name, m::TASKS_SPAWNED));
        return;
    }
    let mut sites: Vec<(String, f64)> = whole
        .label_values(m::TASKS_SPAWNED, "task")
        .into_iter()
        .map(|t| (growth(whole, &t).0, t))
        .map(|(g, t)| (t, g))
        .collect();
    // The sites that grew most; a process has dozens of sites and only growing ones matter.
    sites.sort_by(|a, b| b.1.total_cmp(&a.1));
    for (task, grew) in sites.into_iter().take(5) {
        let (_, spawned) = growth(whole, &task);
        let f = [("task", task.as_str())];
        let place = Where { process: w.name.clone(), kind: "spawn site", resource: task.clone() };
        let mut finding = Finding::new("task-leak", place, score(whole, &task, 1.0));
        finding.evidence.push(Evidence::new("spawned", spawned / whole.secs, "/s"));
        finding.evidence.push(Evidence::new("alive grew by", grew, "tasks"));
        if spawned > 0.0 {
            finding.evidence.push(Evidence::new("spawns still alive", (grew / spawned).max(0.0), "share"));
        }
        finding.evidence.push(Evidence::new("alive now", whole.gauge(m::TASKS_ALIVE, &f), "tasks"));
        if let Some(oldest) = Some(whole.gauge(m::TASK_OLDEST, &f)).filter(|v| *v > 0.0) {
            finding.evidence.push(Evidence::new("oldest", oldest, "s"));
        }
        if w.has(m::TASK_LEAK_SUSPECTS) {
            finding.evidence.push(Evidence::new(
                "leak suspects (gauge)",
                whole.gauge(m::TASK_LEAK_SUSPECTS, &f),
                "tasks",
            ));
        }
        finding.recommendation = format!(
            "give the tasks spawned at `{task}` an end: {:.0} a second start and {:.0}% of them never finish; \
             tie each to its owner (keep the JoinHandle and abort it on drop, or pass a cancellation token / timeout)",
            spawned / whole.secs,
            100.0 * (grew / spawned.max(1.0)).max(0.0)
        );
        finding.flame = w.flame_command("cpu");
        guard(&mut finding, w, whole, |s, part| score(s, &task, part));
        out.push(finding);
    }
}

#[cfg(test)]
mod tests {
    use super::super::evaluate;
    use super::super::test_support::window;
    use crate::diagnose::findings::Severity;

    fn site(
        spawned: impl Fn(usize) -> f64 + 'static,
        finished: impl Fn(usize) -> f64 + 'static,
    ) -> Vec<crate::diagnose::verdict::Finding> {
        evaluate(&window(3, 10, move |i| {
            format!(
                "pinchpoint_tasks_spawned_total{{task=\"src/watch.rs:12\"}} {}\n\
                 pinchpoint_tasks_finished_total{{task=\"src/watch.rs:12\"}} {}\n\
                 pinchpoint_tasks_spawned_total{{task=\"accept\"}} 1\npinchpoint_tasks_alive{{task=\"accept\"}} 1\n\
                 pinchpoint_task_oldest_seconds{{task=\"accept\"}} 3600\n",
                spawned(i),
                finished(i)
            )
        }))
    }

    #[test]
    fn a_site_that_keeps_growing_leaks() {
        let found = site(|i| i as f64 * 1_000.0, |_| 0.0);
        let f = found.iter().find(|f| f.id == "task-leak" && f.reportable()).unwrap();
        assert_eq!(f.place.resource, "src/watch.rs:12");
        assert_eq!(f.severity, Severity::Warning);
    }

    #[test]
    fn old_tasks_steady_sites_and_one_ramp_are_not_leaks() {
        // Every spawn finishes: steady.
        let steady = site(|i| i as f64 * 1_000.0, |i| i as f64 * 1_000.0);
        assert!(!steady.iter().any(|f| f.reportable()), "{steady:?}");
        // 2,000 connections opened in the first slice and kept, then a trickle that finishes:
        // most spawns are still alive over the window, but it grew in one slice of three.
        let ramp = site(
            |i| if i == 0 { 0.0 } else { 2_000.0 + i as f64 * 100.0 },
            |i| if i == 0 { 0.0 } else { i as f64 * 100.0 },
        );
        let f = ramp.iter().find(|f| f.id == "task-leak" && f.place.resource == "src/watch.rs:12").unwrap();
        assert!(!f.reportable() && f.note.as_deref().unwrap_or("").contains("1 of 3"), "{f:?}");
    }
}
