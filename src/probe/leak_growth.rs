//! Which spawn sites are growing: the gate on `task_leak_suspects`.
//!
//! Age alone is not a leak: an accept loop, a ticker or a signal waiter lives as long as the
//! process, is old, and is rarely polled. A site leaks when its population keeps growing. Each
//! time the task views are built (a scrape, `/debug/tasks`), the alive count of every site is
//! recorded, at most once per half leak threshold; a site's old, idle tasks count as suspects
//! only while its last [`GROWING_SAMPLES`] recorded counts rise strictly. A healthy process reads 0.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Recorded counts that must rise in a row.
pub(crate) const GROWING_SAMPLES: usize = 3;

#[derive(Default)]
struct History {
    counts: VecDeque<(Instant, i64)>,
}

static HISTORY: Mutex<Option<HashMap<String, History>>> = Mutex::new(None);

/// Records `alive` for `site` (when `spacing` has passed since its last record) and returns
/// whether the site has grown over its last recorded counts.
pub(crate) fn growing(site: &str, alive: i64, now: Instant, spacing: Duration) -> bool {
    let mut all = HISTORY.lock().unwrap_or_else(|e| e.into_inner());
    let h = all.get_or_insert_with(HashMap::new).entry(site.to_string()).or_default();
    if h.counts.back().is_none_or(|(at, _)| now.duration_since(*at) >= spacing) {
        h.counts.push_back((now, alive));
        while h.counts.len() > GROWING_SAMPLES {
            h.counts.pop_front();
        }
    }
    h.counts.len() == GROWING_SAMPLES && h.counts.iter().zip(h.counts.iter().skip(1)).all(|(a, b)| b.1 > a.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_site_that_keeps_growing_counts() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let at = |i: u64| t0 + Duration::from_secs(i);
        // A steady accept loop: never growing.
        for i in 0..5 {
            assert!(!growing("test.accept", 1, at(i), s));
        }
        // A leak: 10, 20, 30 → growing from the third record on.
        assert!(!growing("test.leak", 10, at(0), s));
        assert!(!growing("test.leak", 20, at(1), s));
        assert!(growing("test.leak", 30, at(2), s));
        // Records closer than the spacing do not count.
        assert!(growing("test.leak", 30, at(2) + Duration::from_millis(10), s));
        // It stopped growing: no longer suspect.
        assert!(!growing("test.leak", 30, at(3), s));
    }
}
