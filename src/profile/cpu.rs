//! CPU profiles with pprof-rs: `setitimer(ITIMER_PROF)` sends SIGPROF every 1/hz s of process
//! CPU time, and the handler records the interrupted thread's stack.
//!
//! # Unwinder and blocklist (why)
//!
//! The stack is taken *inside the signal handler*, so the unwinder must be async-signal-safe.
//! pprof-rs's default (backtrace-rs → libgcc's `_Unwind_Backtrace`) is not: it takes the
//! loader lock in `dl_iterate_phdr` and libgcc's own object lock, and may allocate, so a tick
//! that lands while the thread holds one of those (a panic unwinding, a `dlopen`, a backtrace
//! the contention probe is taking, malloc) deadlocks or crashes the process (pprof-rs issue
//! #36 "Signal handler is unsafe"; the same class as gperftools #1188/#1210). A deadlocked
//! server under load is the worst thing a profiler can do, so we build pprof-rs with its
//! **frame-pointer** walker: no locks, no allocation, and every read of a frame is validated
//! first (a `write()` of the address to a pipe, which fails with EFAULT instead of faulting).
//! That needs frame pointers in our code, hence `-C force-frame-pointers=yes` in
//! `.cargo/config.toml` (about 1% in hot paths; the overhead bench measures with it on both
//! sides). Known cost of this walker: it starts at the saved frame pointer, so the function
//! the tick interrupted is counted in its caller's frame (a leaf that runs a loop shows up
//! as its caller; anything it calls out of line still appears under it).
//!
//! The blocklist drops a tick whose program counter is inside `libc.so` (and the merged
//! `libpthread`), `libgcc` or the `vdso`, and stops a walk that reaches them. Those are built
//! without frame pointers, so the frame-pointer register there may hold anything: the walk
//! would stay memory-safe but could invent a plausible, wrong stack. We prefer losing those
//! ticks (time inside syscall wrappers, `memcpy`, clock reads: it shows as a lower sample
//! total than process CPU time) to drawing a wrong flamegraph. Names are matched precisely
//! (`libc.so`, not `libc`, which would also catch `libcrypto`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use super::{display_name, Error, Frame, Kind, Sample, StackProfile};

/// Default sampling rate: 99 Hz, like Go and perf (not 100, to avoid lockstep with timers).
pub const DEFAULT_HZ: u32 = 99;
/// Highest rate accepted: above this the handler's cost starts to show in throughput.
pub const MAX_HZ: u32 = 1000;

/// Shared objects whose ticks are dropped (see the module docs).
pub const BLOCKLIST: &[&str] = &["libc.so", "libpthread", "libgcc", "vdso"];

/// The profiler is process-wide (one SIGPROF handler, one timer): one capture at a time.
static BUSY: AtomicBool = AtomicBool::new(false);

/// Holds the one-at-a-time slot; released on drop.
struct Slot;

impl Slot {
    fn take() -> Option<Slot> {
        BUSY.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire).ok().map(|_| Slot)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        BUSY.store(false, Ordering::Release);
    }
}

/// Whether a CPU capture is running now.
pub fn busy() -> bool {
    BUSY.load(Ordering::Acquire)
}

/// A running CPU capture. Dropping it stops the profiler and frees the slot (so a client
/// that goes away ends its capture).
pub struct CpuCapture {
    guard: pprof::ProfilerGuard<'static>,
    hz: u32,
    start: SystemTime,
    started: std::time::Instant,
    _slot: Slot,
}

impl std::fmt::Debug for CpuCapture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpuCapture").field("hz", &self.hz).field("start", &self.start).finish()
    }
}

/// Starts sampling at `hz` (clamped to 1..=[`MAX_HZ`]); [`Error::Busy`] if a capture runs.
pub fn start(hz: u32) -> Result<CpuCapture, Error> {
    let slot = Slot::take().ok_or(Error::Busy)?;
    let hz = hz.clamp(1, MAX_HZ);
    let guard = pprof::ProfilerGuardBuilder::default()
        .frequency(hz as i32)
        .blocklist(BLOCKLIST)
        .build()
        .map_err(|e| Error::Profiler(e.to_string()))?;
    Ok(CpuCapture { guard, hz, start: SystemTime::now(), started: std::time::Instant::now(), _slot: slot })
}

impl CpuCapture {
    /// Stops sampling and symbolizes. Slow (reads debug info): call it off the async workers.
    pub fn finish(self) -> Result<StackProfile, Error> {
        let duration = self.started.elapsed();
        let report = self.guard.report().build().map_err(|e| Error::Profiler(e.to_string()))?;
        drop(self.guard);
        let period = 1_000_000_000 / i64::from(self.hz);
        // pprof-rs keys by thread id too: merge equal stacks of equally named threads.
        let mut agg: HashMap<(String, Vec<Frame>), i64> = HashMap::new();
        for (frames, count) in &report.data {
            // Innermost first, inlined frames of one address innermost first too.
            let mut stack: Vec<Frame> = frames
                .frames
                .iter()
                .flat_map(|symbols| symbols.iter())
                .map(|s| {
                    let file = s.filename.as_ref().map(|p| p.to_string_lossy().into_owned());
                    Frame { function: display_name(&s.name(), file.as_deref()), file, line: s.lineno.unwrap_or(0) }
                })
                .collect();
            stack.reverse();
            *agg.entry((frames.thread_name_or_id(), stack)).or_default() += *count as i64;
        }
        let mut samples: Vec<Sample> = agg
            .into_iter()
            .map(|((thread, frames), count)| Sample {
                frames,
                values: vec![count, count * period],
                labels: vec![("thread".to_string(), thread)],
            })
            .collect();
        samples.sort_by(|a, b| b.values[0].cmp(&a.values[0]));
        Ok(StackProfile {
            kind: Kind::Cpu,
            sample_types: vec![("samples".into(), "count".into()), ("cpu".into(), "nanoseconds".into())],
            default_sample_type: 0,
            period_type: ("cpu".into(), "nanoseconds".into()),
            period,
            start: self.start,
            duration,
            comments: vec![format!("{} Hz of process CPU time, frame-pointer unwinder", self.hz)],
            samples,
        })
    }
}

/// Samples for `duration` at `hz` and returns the profile. Dropping the future stops it.
pub async fn capture(duration: Duration, hz: u32) -> Result<StackProfile, Error> {
    let c = start(hz)?;
    tokio::time::sleep(duration).await;
    tokio::task::spawn_blocking(move || c.finish()).await.map_err(|e| Error::Profiler(e.to_string()))?
}

/// Same as [`capture`] for callers without a tokio runtime.
pub fn capture_blocking(duration: Duration, hz: u32) -> Result<StackProfile, Error> {
    let c = start(hz)?;
    std::thread::sleep(duration);
    c.finish()
}
