//! CPU each lab process spends per request: user + system seconds from `/proc/PID/stat`
//! before and after a run, divided by the requests the run sent. On a machine whose cores are
//! shared by the load driver and every process of the system, throughput is CPU per request
//! turned upside down, so this is what says where a split system's extra cost sits.

use std::collections::BTreeMap;

/// The kernel's USER_HZ: 100 on every Linux platform Rust targets.
const TICKS_PER_SECOND: f64 = 100.0;

/// User + system CPU seconds of `pid` (every thread, live ones and reaped ones); None when
/// the process is gone or this is not Linux.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

fn parse_stat(stat: &str) -> Option<f64> {
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let mut f = rest.split_whitespace().skip(11); // field 3 is state; utime is field 14
    let utime: f64 = f.next()?.parse().ok()?;
    let stime: f64 = f.next()?.parse().ok()?;
    Some((utime + stime) / TICKS_PER_SECOND)
}

/// CPU readings of named processes, taken at the start of a run.
pub struct CpuMeter {
    start: Vec<(String, u32, Option<f64>)>,
}

impl CpuMeter {
    /// Starts measuring `(role, pid)`; the lab itself is the load driver (`driver`).
    pub fn start(processes: impl IntoIterator<Item = (String, u32)>) -> Self {
        let mut all: Vec<(String, u32)> = vec![("driver".into(), std::process::id())];
        all.extend(processes);
        CpuMeter { start: all.into_iter().map(|(role, pid)| (role, pid, cpu_seconds(pid))).collect() }
    }

    /// Microseconds of CPU per request of each process since `start`, and their sum (`total`).
    /// Empty when nothing could be read or no request was sent.
    pub fn per_request(&self, requests: u64) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        if requests == 0 {
            return out;
        }
        let mut total = 0.0;
        for (role, pid, before) in &self.start {
            if let (Some(before), Some(after)) = (before, cpu_seconds(*pid)) {
                let us = (after - before) / requests as f64 * 1e6;
                total += us;
                out.insert(role.clone(), us);
            }
        }
        if !out.is_empty() {
            out.insert("total".into(), total);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_utime_and_stime_past_a_name_with_parentheses() {
        let stat = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 1234 1000 10";
        assert_eq!(parse_stat(stat), Some(3.0));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn own_cpu_grows_with_work() {
        let me = std::process::id();
        let meter = CpuMeter::start([]);
        let before = cpu_seconds(me).expect("own /proc stat");
        // Spin until the kernel has counted 50 ms of CPU (in 10 ms ticks), however busy the
        // machine is; the deadline only guards against a clock that never moves.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while cpu_seconds(me).unwrap_or(before) - before < 0.05 {
            assert!(std::time::Instant::now() < deadline, "own CPU time never advanced");
            std::hint::black_box((0..10_000u64).sum::<u64>());
        }
        let cpu = meter.per_request(2);
        assert!(cpu["driver"] >= 25_000.0, "{cpu:?}");
        assert_eq!(cpu["total"], cpu["driver"]);
        assert!(meter.per_request(0).is_empty());
    }
}
