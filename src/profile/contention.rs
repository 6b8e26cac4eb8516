//! Contention profiles: where time is lost *waiting* — what a CPU profile cannot see.
//!
//! The lock, pool and worker probes keep a sampled record of contended acquisitions
//! ([`crate::probe::contention`]): at most one sample per resource per window (1 ms by default),
//! each carrying the count and total wait of every contended acquisition since that resource's
//! previous sample. A capture polls that ring for `seconds` (often enough that it never
//! overflows under load) and weights each sample's stack by the wait it stands for, so the
//! flamegraph's total is the true total wait, not the sampled one.
//!
//! Stacks are `waiter frames…;RESOURCE[;held by: FILE:LINE]`:
//! - the waiter's stack, root first, with the probe's own frames cut off;
//! - a frame naming the resource (`lock:store.global`, `pool:rpc`, `worker:write_buffer.flush`);
//! - for exclusive locks where the probe saw it, one more frame with the *holder's* acquire
//!   site, so the resource's box splits by who was holding it while others waited.
//!
//! pb output has sample types `samples/count` (stacks kept), `contentions/count` and
//! `delay/nanoseconds` (both already scaled to include the unsampled acquisitions; period 1),
//! like Go's mutex and block profiles; the sampling window is in the profile's comments.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use crate::probe::contention::{self as probe, ContentionSample};

use super::{display_name, Frame, Kind, Sample, StackProfile};

/// How often a capture drains new samples from the probes' ring. The ring holds
/// [`probe::CAPACITY`] samples and a hot resource adds at most 1000/s at the default window, so
/// 100 ms keeps up with up to ~20 hot resources at once.
const POLL: Duration = Duration::from_millis(100);

/// Collects samples over a window. Feed it with [`ContentionCapture::poll`].
#[derive(Debug)]
pub struct ContentionCapture {
    start: SystemTime,
    started: Instant,
    cursor: Instant,
    samples: Vec<ContentionSample>,
}

impl ContentionCapture {
    /// Starts a window now.
    pub fn start() -> Self {
        let now = Instant::now();
        ContentionCapture { start: SystemTime::now(), started: now, cursor: now, samples: Vec::new() }
    }

    /// Takes the samples recorded since the last poll.
    pub fn poll(&mut self) {
        let new = probe::samples_since(self.cursor);
        if let Some(last) = new.last() {
            // `samples_since` is inclusive: step past the newest one we hold.
            self.cursor = last.at + Duration::from_nanos(1);
        }
        self.samples.extend(new);
    }

    /// Ends the window and builds the profile. Resolves symbols: slow, call it off the async
    /// workers.
    pub fn finish(mut self) -> StackProfile {
        self.poll();
        build(self.samples, self.start, self.started.elapsed())
    }
}

/// Captures for `duration` (async; dropping the future ends the capture).
pub async fn capture(duration: Duration) -> StackProfile {
    let mut c = ContentionCapture::start();
    let end = tokio::time::Instant::now() + duration;
    while tokio::time::Instant::now() < end {
        tokio::time::sleep_until(end.min(tokio::time::Instant::now() + POLL)).await;
        c.poll();
    }
    tokio::task::spawn_blocking(move || c.finish()).await.expect("symbolizing contention samples panicked")
}

/// Same as [`capture`] without a runtime.
pub fn capture_blocking(duration: Duration) -> StackProfile {
    let mut c = ContentionCapture::start();
    let end = Instant::now() + duration;
    while Instant::now() < end {
        std::thread::sleep(POLL.min(end.saturating_duration_since(Instant::now())));
        c.poll();
    }
    c.finish()
}

/// The waiter's frames, innermost first, without the probe's and the backtrace crate's own.
///
/// Cuts by source file as well as by name: in release builds (line tables only) inlined frames
/// carry bare names (`trace`, `record`), so only their file says they are the probe's.
fn waiter_frames(s: &ContentionSample) -> Vec<Frame> {
    let Some(bt) = &s.waiter else {
        return Vec::new();
    };
    let mut bt = bt.clone();
    bt.resolve();
    let frames: Vec<Frame> = bt
        .frames()
        .iter()
        .flat_map(|f| f.symbols())
        .map(|sym| {
            let name = sym.name().map(|n| format!("{n:#}")).unwrap_or_else(|| "??".to_string());
            let file = sym.filename().map(|p| p.to_string_lossy().into_owned());
            Frame { function: display_name(&name, file.as_deref()), file, line: sym.lineno().unwrap_or(0) }
        })
        .collect();
    let ours = |f: &Frame| {
        let file = f.file.as_deref().unwrap_or("");
        file.contains("/src/probe/")
            || file.contains("/backtrace-0.")
            || f.function.starts_with("backtrace::")
            || f.function.contains("probe::contention::")
            || f.function.ends_with("_slow")
    };
    // Standard-library frames sit between the probe's (closures, `bool::then`, drop glue).
    let std_lib = |f: &Frame| {
        let file = f.file.as_deref().unwrap_or("");
        file.contains("/rustc/") || file.contains("/library/") || f.function == "??"
    };
    // From the leaf: the run of probe and std frames, up to the last probe frame in it. (Not
    // the outermost probe frame overall: the allocation and task probes wrap whole requests.)
    let mut cut = 0;
    for (i, f) in frames.iter().enumerate() {
        if ours(f) {
            cut = i + 1;
        } else if !std_lib(f) {
            break;
        }
    }
    let mut rest = &frames[cut..];
    // The guard's drop glue, when the probe recorded the wait on release.
    while rest.first().is_some_and(|f| f.function.contains("drop_in_place")) {
        rest = &rest[1..];
    }
    rest.to_vec()
}

/// The stack of one sample, root first, ending in the resource (and holder) frame.
pub fn stack_of(s: &ContentionSample) -> Vec<Frame> {
    let mut frames = waiter_frames(s);
    frames.reverse();
    frames.push(Frame::synthetic(s.resource.to_string()));
    if let Some(site) = s.holder_site {
        frames.push(Frame::synthetic(format!("held by: {}:{}", site.file(), site.line())));
    }
    frames
}

/// Builds the profile from samples taken over `duration`.
pub fn build(samples: Vec<ContentionSample>, start: SystemTime, duration: Duration) -> StackProfile {
    // Resolving a backtrace costs ~100 µs: aggregate equal stacks, resolve each sample once.
    let mut agg: HashMap<Vec<Frame>, (i64, i64, i64, String)> = HashMap::new();
    for s in &samples {
        let e = agg.entry(stack_of(s)).or_insert_with(|| (0, 0, 0, s.resource.to_string()));
        e.0 += 1;
        e.1 += s.events as i64;
        e.2 += s.weight.as_nanos().min(i64::MAX as u128) as i64;
    }
    let mut out: Vec<Sample> = agg
        .into_iter()
        .map(|(frames, (n, events, wait, resource))| Sample {
            frames,
            values: vec![n, events, wait],
            labels: vec![("resource".to_string(), resource)],
        })
        .collect();
    out.sort_by(|a, b| b.values[2].cmp(&a.values[2]));
    let window = probe::window();
    StackProfile {
        kind: Kind::Contention,
        sample_types: vec![
            ("samples".into(), "count".into()),
            ("contentions".into(), "count".into()),
            ("delay".into(), "nanoseconds".into()),
        ],
        default_sample_type: 2,
        period_type: ("contentions".into(), "count".into()),
        period: 1,
        start,
        duration,
        comments: vec![
            format!(
                "sampled: at most one stack per resource per {} µs; contentions and delay are scaled to every \
                 contended acquisition",
                window.as_micros()
            ),
            format!("{} stacks kept over {:.1} s", samples.len(), duration.as_secs_f64()),
        ],
        samples: out,
    }
}
