//! The load ladder of DESIGN.md: L1 1k requests / 10 concurrent … L5 50k / 500, mirroring the
//! field reports, plus a shortened variant for `lab --quick`.

use serde::{Deserialize, Serialize};

use super::{LoadPlan, Mode};

/// One step of the ladder: a closed-loop run of `requests` over `concurrency` workers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Level {
    /// `L1` … `L5`.
    pub name: String,
    pub requests: u64,
    pub concurrency: usize,
}

impl Level {
    pub fn new(name: impl Into<String>, requests: u64, concurrency: usize) -> Self {
        Level { name: name.into(), requests, concurrency }
    }

    /// `base` (target, mix, keys, timeout…) run as this level: closed loop, a fresh copy
    /// keeping `base.prefix` (give each run its own prefix with [`LoadPlan::fresh_prefix`]).
    pub fn plan(&self, base: &LoadPlan) -> LoadPlan {
        let mut plan = base.clone();
        plan.mode = Mode::Closed { requests: self.requests, concurrency: self.concurrency, max_duration: None };
        plan
    }
}

/// The full ladder: L1 1k/10, L2 5k/50, L3 10k/100, L4 20k/200, L5 50k/500.
pub fn ladder() -> Vec<Level> {
    vec![
        Level::new("L1", 1_000, 10),
        Level::new("L2", 5_000, 50),
        Level::new("L3", 10_000, 100),
        Level::new("L4", 20_000, 200),
        Level::new("L5", 50_000, 500),
    ]
}

/// The ladder for `--quick`: a tenth of the requests at the same concurrency, so the shape of
/// the contention is kept and only the run is shorter (L1 100/10 … L5 5k/500).
pub fn ladder_quick() -> Vec<Level> {
    ladder_scaled(10)
}

/// The ladder with requests divided by `divisor` (at least as many requests as workers).
pub fn ladder_scaled(divisor: u64) -> Vec<Level> {
    let divisor = divisor.max(1);
    ladder()
        .into_iter()
        .map(|l| {
            let requests = (l.requests / divisor).max(l.concurrency as u64);
            Level { requests, ..l }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ladder_matches_design() {
        let l: Vec<(u64, usize)> = ladder().iter().map(|l| (l.requests, l.concurrency)).collect();
        assert_eq!(l, vec![(1_000, 10), (5_000, 50), (10_000, 100), (20_000, 200), (50_000, 500)]);
        let names: Vec<_> = ladder().into_iter().map(|l| l.name).collect();
        assert_eq!(names, ["L1", "L2", "L3", "L4", "L5"]);
    }

    #[test]
    fn quick_is_a_tenth() {
        let q = ladder_quick();
        assert_eq!(q.len(), 5);
        assert_eq!((q[0].requests, q[0].concurrency), (100, 10));
        assert_eq!((q[4].requests, q[4].concurrency), (5_000, 500));
        assert_eq!(ladder_scaled(1_000_000)[4].requests, 500);
    }

    #[test]
    fn level_plan_is_closed_loop() {
        let base = LoadPlan::closed("http://127.0.0.1:1", 1, 1);
        let p = ladder()[2].plan(&base);
        assert_eq!(p.mode, Mode::Closed { requests: 10_000, concurrency: 100, max_duration: None });
        assert_eq!(p.prefix, base.prefix);
    }
}
