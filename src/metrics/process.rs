//! The standard `process_*` families, read from `/proc/self` at scrape time (Linux; on other
//! systems the collector emits nothing rather than zeros), and pinchpoint's own CPU families
//! (context switches, cores), which carry the `pinchpoint_` prefix like the catalog says.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;

use super::catalog::{
    CONTEXT_SWITCHES, CPU_CORES, PROCESS_CPU, PROCESS_FDS, PROCESS_RSS, PROCESS_START, PROCESS_THREADS, SCHEDULER_WAIT,
};
use super::{emit_counter, emit_gauge};

/// The standard families, registered without a prefix.
#[derive(Debug)]
pub(crate) struct ProcessCollector;

#[derive(Debug, Default, PartialEq)]
pub(crate) struct ProcStat {
    pub cpu_seconds: f64,
    pub threads: i64,
    pub rss_bytes: i64,
    pub start_time_seconds: f64,
}

// The kernel's USER_HZ is 100 on every Linux platform Rust targets, and the page size is 4 KiB
// on x86_64/aarch64 defaults; reading them needs libc (sysconf), which we avoid.
const TICKS_PER_SECOND: f64 = 100.0;
const PAGE_SIZE: i64 = 4096;

/// Parses `/proc/self/stat` (fields after the parenthesised command name) with the boot time
/// from `/proc/stat`.
pub(crate) fn parse_stat(stat: &str, boot_time: f64) -> Option<ProcStat> {
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime is field 14 → index 11.
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    let threads: i64 = f.get(17)?.parse().ok()?;
    let start_ticks: f64 = f.get(19)?.parse().ok()?;
    let rss_pages: i64 = f.get(21)?.parse().ok()?;
    Some(ProcStat {
        cpu_seconds: (utime + stime) / TICKS_PER_SECOND,
        threads,
        rss_bytes: rss_pages * PAGE_SIZE,
        start_time_seconds: boot_time + start_ticks / TICKS_PER_SECOND,
    })
}

fn boot_time() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/stat").ok()?;
    s.lines().find_map(|l| l.strip_prefix("btime ")).and_then(|v| v.trim().parse().ok())
}

/// `(voluntary, involuntary)` context switches of every thread the process has had.
/// getrusage sums dead threads too, so the counters never go back when a blocking-pool
/// thread exits (summing `/proc/self/task/*/status` would).
fn context_switches() -> Option<(u64, u64)> {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a whole rusage into the pointer it is given.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: rc == 0, so the struct is initialised.
    let usage = unsafe { usage.assume_init() };
    Some((usage.ru_nvcsw.max(0) as u64, usage.ru_nivcsw.max(0) as u64))
}

/// Run-queue delay of every thread the process has had, in nanoseconds.
///
/// `/proc/self/task/*/schedstat` has it per live thread; a thread that exits takes its count
/// with it, so the last value read of each thread is kept and, once the thread is gone, added
/// to what exited threads waited. The counter stays monotone; it misses only what an exited
/// thread waited between the last scrape and its exit.
fn scheduler_wait_ns() -> Option<u64> {
    use std::collections::HashMap;
    use std::sync::Mutex;
    static SEEN: Mutex<Option<(HashMap<u64, u64>, u64)>> = Mutex::new(None);
    let dir = std::fs::read_dir("/proc/self/task").ok()?;
    let mut live: HashMap<u64, u64> = HashMap::new();
    for entry in dir.flatten() {
        let Some(tid) = entry.file_name().to_str().and_then(|s| s.parse::<u64>().ok()) else { continue };
        let Ok(text) = std::fs::read_to_string(entry.path().join("schedstat")) else { continue };
        if let Some(delay) = text.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()) {
            live.insert(tid, delay);
        }
    }
    if live.is_empty() {
        return None; // kernel without schedstats
    }
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    let (last, exited) = seen.get_or_insert_with(Default::default);
    for (tid, delay) in last.iter() {
        if !live.contains_key(tid) {
            *exited += delay;
        }
    }
    *last = live;
    Some(*exited + last.values().sum::<u64>())
}

/// What the scheduler does to the process (context switches, run-queue delay) and the cores
/// it may use: pinchpoint's own families (prefixed), read at scrape time like `process_*`.
#[derive(Debug)]
pub(crate) struct SchedulerCollector;

impl Collector for SchedulerCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if let Some((voluntary, involuntary)) = context_switches() {
            let mut m = super::describe(&mut enc, &CONTEXT_SWITCHES)?;
            for (kind, n) in [("voluntary", voluntary), ("involuntary", involuntary)] {
                m.encode_family(&[("kind", kind)])?
                    .encode_counter::<prometheus_client::encoding::NoLabelSet, _, u64>(&n, None)?;
            }
        }
        if let Some(ns) = scheduler_wait_ns() {
            emit_counter(&mut enc, &SCHEDULER_WAIT, ns as f64 / 1e9)?;
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as i64;
        emit_gauge(&mut enc, &CPU_CORES, cores)?;
        Ok(())
    }
}

impl Collector for ProcessCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(stat) =
            std::fs::read_to_string("/proc/self/stat").ok().and_then(|s| parse_stat(&s, boot_time().unwrap_or(0.0)))
        else {
            return Ok(());
        };
        emit_counter(&mut enc, &PROCESS_CPU, stat.cpu_seconds)?;
        emit_gauge(&mut enc, &PROCESS_RSS, stat.rss_bytes)?;
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            emit_gauge(&mut enc, &PROCESS_FDS, dir.count() as i64)?;
        }
        emit_gauge(&mut enc, &PROCESS_THREADS, stat.threads)?;
        emit_gauge(&mut enc, &PROCESS_START, stat.start_time_seconds)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_spaces_in_name() {
        let s = "1234 (my proc) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 7 0 \
                 1000 123456789 300 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0";
        let p = parse_stat(s, 1_000_000.0).unwrap();
        assert_eq!(p.cpu_seconds, 3.0);
        assert_eq!(p.threads, 7);
        assert_eq!(p.rss_bytes, 300 * 4096);
        assert_eq!(p.start_time_seconds, 1_000_010.0);
    }
}
