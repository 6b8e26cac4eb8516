//! A process observed over a window: its snapshots in time order, cut into slices.
//!
//! Every rule is evaluated over the whole window (the evidence) and over each slice (the
//! guard: a finding must hold in at least two of three slices, so one burst or one ramp-up
//! is not a verdict).

use std::time::SystemTime;

use super::snapshot::Snapshot;

/// One process's snapshots over the window.
#[derive(Debug, Clone)]
pub struct ProcessWindow {
    /// How the report names the process: a lab role, an admin address, or `job/instance`.
    pub name: String,
    /// The admin listener, when known, for the `pinchpoint flame` pointers.
    pub admin_url: Option<String>,
    /// At least two, oldest first.
    pub snapshots: Vec<Snapshot>,
}

impl ProcessWindow {
    /// A window of process `name` over `snapshots` (sorted here, oldest first).
    pub fn new(name: impl Into<String>, admin_url: Option<String>, mut snapshots: Vec<Snapshot>) -> Self {
        snapshots.sort_by_key(|s| s.taken_at);
        ProcessWindow { name: name.into(), admin_url, snapshots }
    }

    /// The first and last snapshot (None with fewer than two).
    pub fn whole(&self) -> Option<Slice<'_>> {
        match (self.snapshots.first(), self.snapshots.last()) {
            (Some(b), Some(a)) if self.snapshots.len() >= 2 => Some(Slice::new(b, a)),
            _ => None,
        }
    }

    /// Consecutive pairs of snapshots.
    pub fn slices(&self) -> Vec<Slice<'_>> {
        self.snapshots.windows(2).map(|w| Slice::new(&w[0], &w[1])).collect()
    }

    /// The newest snapshot.
    pub fn last(&self) -> Option<&Snapshot> {
        self.snapshots.last()
    }

    /// Whether any snapshot has a sample of `name`.
    pub fn has(&self, name: &str) -> bool {
        self.last().is_some_and(|s| s.has(name))
    }

    /// The `pinchpoint flame` command that shows this process.
    pub fn flame_command(&self, kind: &str) -> String {
        let target = self.admin_url.as_deref().unwrap_or("<admin-url>");
        let file: String = self.name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
        format!("pinchpoint flame --target {target} --kind {kind} --seconds 10 -o {file}-{kind}.svg")
    }
}

/// Two snapshots of one process and the time between them.
#[derive(Debug, Clone, Copy)]
pub struct Slice<'a> {
    /// The earlier snapshot.
    pub before: &'a Snapshot,
    /// The later snapshot.
    pub after: &'a Snapshot,
    /// Seconds between the two (at least a millisecond).
    pub secs: f64,
}

impl<'a> Slice<'a> {
    /// The slice from `before` to `after`.
    pub fn new(before: &'a Snapshot, after: &'a Snapshot) -> Self {
        let secs = after.taken_at.duration_since(before.taken_at).map(|d| d.as_secs_f64()).unwrap_or(0.0).max(1e-3);
        Slice { before, after, secs }
    }

    /// Increase of a counter-like sum. A sum that went down means the process restarted:
    /// the increase is then what it counted since.
    pub fn delta(&self, name: &str, filter: &[(&str, &str)]) -> f64 {
        let (b, a) = (self.before.sum(name, filter), self.after.sum(name, filter));
        if a < b {
            a
        } else {
            a - b
        }
    }

    /// Per second over the slice.
    pub fn rate(&self, name: &str, filter: &[(&str, &str)]) -> f64 {
        self.delta(name, filter) / self.secs
    }

    /// A gauge's value at the end of the slice.
    pub fn gauge(&self, name: &str, filter: &[(&str, &str)]) -> f64 {
        self.after.sum(name, filter)
    }

    /// A gauge's value at the start of the slice.
    pub fn gauge_before(&self, name: &str, filter: &[(&str, &str)]) -> f64 {
        self.before.sum(name, filter)
    }

    /// Mean observation of a histogram over the slice (None without observations).
    pub fn mean(&self, hist: &str, filter: &[(&str, &str)]) -> Option<f64> {
        let count = self.delta(&format!("{hist}_count"), filter);
        (count > 0.0).then(|| self.delta(&format!("{hist}_sum"), filter) / count)
    }

    /// The `q` quantile of a histogram over the slice (bucket upper bound).
    pub fn quantile(&self, hist: &str, filter: &[(&str, &str)], q: f64) -> Option<f64> {
        super::snapshot::quantile_between(self.before, self.after, hist, filter, q).filter(|v| v.is_finite())
    }

    /// Seconds spent in observations above `threshold`, estimated from the buckets with each
    /// observation counted at its bucket's lower bound (a floor, never an overstatement).
    pub fn seconds_above(&self, hist: &str, filter: &[(&str, &str)], threshold: f64) -> Option<f64> {
        let bucket = format!("{hist}_bucket");
        let cumulative = |snap: &Snapshot| -> Vec<(f64, f64)> {
            let mut v: Vec<(f64, f64)> = Vec::new();
            for s in snap.matching(&bucket, filter) {
                let le = s.labels.get("le").unwrap_or("");
                let bound = if le == "+Inf" { f64::INFINITY } else { le.parse().unwrap_or(f64::NAN) };
                match v.iter_mut().find(|(b, _)| *b == bound) {
                    Some(e) => e.1 += s.value,
                    None => v.push((bound, s.value)),
                }
            }
            v.sort_by(|a, b| a.0.total_cmp(&b.0));
            v
        };
        let (b, a) = (cumulative(self.before), cumulative(self.after));
        if a.is_empty() {
            return None;
        }
        let count_at = |v: &[(f64, f64)], bound: f64| v.iter().find(|(x, _)| *x == bound).map_or(0.0, |e| e.1);
        let mut total = 0.0;
        let mut prev_bound = 0.0;
        let mut prev_count = 0.0;
        for (bound, count) in &a {
            let c = count - count_at(&b, *bound);
            let in_bucket = (c - prev_count).max(0.0);
            if prev_bound >= threshold {
                total += in_bucket * prev_bound;
            }
            prev_bound = *bound;
            prev_count = c;
        }
        Some(total)
    }

    /// Distinct values of `label` on `name` in either snapshot.
    pub fn label_values(&self, name: &str, label: &str) -> Vec<String> {
        let mut v = self.after.label_values(name, label);
        v.extend(self.before.label_values(name, label));
        v.sort();
        v.dedup();
        v
    }
}

/// Seconds since the Unix epoch, for reports.
pub fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn snap(text: &str, at: u64) -> Snapshot {
        let mut s = Snapshot::parse(text);
        s.taken_at = SystemTime::UNIX_EPOCH + Duration::from_secs(at);
        s
    }

    #[test]
    fn rates_survive_a_restart_and_slices_cut_the_window() {
        let w = ProcessWindow::new(
            "p",
            None,
            vec![snap("x_total 100\n", 10), snap("x_total 160\n", 20), snap("x_total 30\n", 30)],
        );
        let whole = w.whole().unwrap();
        assert_eq!(whole.secs, 20.0);
        assert_eq!(whole.delta("x_total", &[]), 30.0, "restart: count since it");
        let slices = w.slices();
        assert_eq!(slices.len(), 2);
        assert_eq!(slices[0].rate("x_total", &[]), 6.0);
    }

    #[test]
    fn seconds_above_counts_slow_observations_at_their_lower_bound() {
        let before = snap("", 0);
        let after = snap(
            "h_bucket{le=\"0.001\"} 100\nh_bucket{le=\"0.0025\"} 110\nh_bucket{le=\"0.005\"} 112\nh_bucket{le=\"+Inf\"} 112\n",
            1,
        );
        let s = Slice::new(&before, &after);
        let got = s.seconds_above("h", &[], 0.001).unwrap();
        // 10 in (1ms, 2.5ms] at 1 ms, 2 in (2.5ms, 5ms] at 2.5 ms.
        assert!((got - (10.0 * 0.001 + 2.0 * 0.0025)).abs() < 1e-12, "{got}");
    }
}
