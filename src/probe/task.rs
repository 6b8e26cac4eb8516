//! Task tracking: spawn by name or site, live-task registry, leak suspects, [`LeakCheck`].
//!
//! [`spawn`] / [`spawn_tracked`] wrap the future so that its state (name, spawn site, spawn
//! time, last poll) lives in the live-task table (`task_table.rs`) from spawn to finish;
//! a poll only stores a timestamp into the task's own slot. Tasks spawned with plain
//! `tokio::spawn` are tracked too when the runtime was built with [`install_hooks`] (tokio's
//! task hooks, `tokio_unstable`), labelled by spawn site: the hooks find the task's slot from
//! its id without a shared lock. Gauges (`tasks_alive`, `task_leak_suspects`,
//! `task_oldest_seconds`) are computed from the table at scrape time.
//!
//! A task remembers the [`LeakCheck`] active in the context that spawned it (inherited by
//! tasks it spawns in turn), so a check blames only its own tasks even with tests running in
//! parallel.

use std::cell::Cell;
use std::collections::HashMap;
use std::future::Future;
use std::panic::Location;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use prometheus_client::encoding::DescriptorEncoder;
use serde::Serialize;
use tokio::task::JoinHandle;

use super::clock_ns;
use super::task_table::{self as table, Entry, TaskView};
use crate::metrics::catalog::{TASKS_ALIVE, TASK_LEAK_SUSPECTS, TASK_OLDEST};
use crate::metrics::describe;

pub use super::leak::{LeakCheck, LeakReport, LeakedTask};

impl TaskView {
    pub fn name(&self) -> Option<&'static str> {
        self.site.name
    }

    /// `task` label: the name, or `file:line` of the spawn site.
    pub fn label(&self) -> String {
        match self.site.name {
            Some(n) => n.to_string(),
            None => site_label(self.site.location),
        }
    }

    pub fn age(&self, now_ns: u64) -> Duration {
        Duration::from_nanos(now_ns.saturating_sub(self.spawned_ns))
    }

    pub fn since_last_poll(&self, now_ns: u64) -> Option<Duration> {
        match self.last_poll_ns {
            0 => None,
            t => Some(Duration::from_nanos(now_ns.saturating_sub(t))),
        }
    }
}

pub(crate) fn site_label(l: &Location<'_>) -> String {
    format!("{}:{}", short_file(l.file()), l.line())
}

/// A spawn site's file, short and free of the building machine's directories: a dependency's
/// path starts at its crate directory (`hyper-util-0.1.21/src/rt/tokio.rs`, not
/// `/root/.cargo/registry/src/index.crates.io-…/hyper-util-0.1.21/…`); git dependencies start
/// at their checkout directory; any other absolute path (a path dependency, such as pinchpoint
/// itself in a user's service) starts at the directory holding its `src/` (or `tests/`,
/// `examples/`, `benches/`); relative project paths stay as they are.
pub(crate) fn short_file(file: &str) -> &str {
    for (marker, skip_index_dir) in [("registry/src/", true), ("git/checkouts/", false)] {
        for sep in ['/', '\\'] {
            let marker = if sep == '/' { marker.to_string() } else { marker.replace('/', "\\") };
            if let Some(i) = file.find(&marker) {
                let rest = &file[i + marker.len()..];
                return if skip_index_dir { rest.split_once(sep).map_or(rest, |(_, r)| r) } else { rest };
            }
        }
    }
    let absolute = file.starts_with('/') || file.starts_with('\\') || file.get(1..3) == Some(":\\");
    if !absolute {
        return file;
    }
    let sep = if file.starts_with('/') { '/' } else { '\\' };
    // The last source-tree directory, so a checkout under `~/src/` still keeps its own name.
    let tree =
        ["src", "tests", "examples", "benches"].iter().filter_map(|d| file.rfind(&format!("{sep}{d}{sep}"))).max();
    let cut = match tree {
        // Keep the crate directory: `wt-embed/src/probe/task.rs`.
        Some(i) => file[..i].rfind(sep).map_or(0, |j| j + 1),
        // No source tree: the file name alone.
        None => file.rfind(sep).map_or(0, |j| j + 1),
    };
    &file[cut..]
}

/// Calls `f` for every live task (tracked and hooked).
pub(crate) fn for_each_task(f: impl FnMut(TaskView)) {
    table::for_each(f)
}

static LEAK_THRESHOLD_NS: AtomicU64 = AtomicU64::new(60_000_000_000);

/// Tasks alive and unpolled for longer than this are leak suspects (default 60 s).
pub fn set_leak_threshold(d: Duration) {
    LEAK_THRESHOLD_NS.store(d.as_nanos().min(u64::MAX as u128) as u64, Relaxed);
}

/// The age past which an idle task of a growing label counts as a leak suspect (see [`set_leak_threshold`]).
pub fn leak_threshold() -> Duration {
    Duration::from_nanos(LEAK_THRESHOLD_NS.load(Relaxed))
}

fn is_suspect(t: &TaskView, now_ns: u64, threshold: Duration) -> bool {
    t.age(now_ns) > threshold && t.since_last_poll(now_ns).is_none_or(|d| d > threshold)
}

thread_local! {
    /// The leak check of the code running on this thread (0 = none).
    static CURRENT_CHECK: Cell<u64> = const { Cell::new(0) };
    /// Set while `spawn` calls `tokio::spawn`, so the spawn hook skips the task.
    static SPAWNING_TRACKED: Cell<bool> = const { Cell::new(false) };
}

pub(crate) fn current_check() -> u64 {
    CURRENT_CHECK.try_with(Cell::get).unwrap_or(0)
}

pub(crate) fn set_current_check(id: u64) -> u64 {
    CURRENT_CHECK.try_with(|c| c.replace(id)).unwrap_or(0)
}

/// The clock for a spawn time: the start of the poll that is spawning, when a hooked runtime
/// is polling the caller (off by at most that poll's length, far below any threshold that
/// reads it), else a clock read.
#[inline]
fn spawn_time_ns() -> u64 {
    match super::runtime::poll_started_ns() {
        0 => clock_ns(),
        now => now,
    }
}

/// Spawns a task labelled `name` (a bounded, static name such as `flush` or `conn`).
///
/// The task counts in `tasks_*{task="NAME"}` and `/debug/tasks` while it lives, and
/// tokio-console shows it under its name at the caller's file and line.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let flush = pinchpoint::probe::task::spawn("docs.flush", async { 2 + 2 });
/// assert_eq!(flush.await.unwrap(), 4);
/// let families = pinchpoint::metrics::families();
/// assert_eq!(families.tasks_spawned.get(["docs.flush"]).get(), 1);
/// assert_eq!(families.tasks_finished.get(["docs.flush"]).get(), 1);
/// # }
/// ```
#[track_caller]
pub fn spawn<F>(name: &'static str, fut: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    spawn_inner(Some(name), Location::caller(), fut)
}

/// Spawns a task labelled by its spawn site (`src/file.rs:42`).
#[track_caller]
pub fn spawn_tracked<F>(fut: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    spawn_inner(None, Location::caller(), fut)
}

// `#[track_caller]` down to tokio's spawn, so tokio-console shows the caller's file:line.
#[track_caller]
fn spawn_inner<F>(name: Option<&'static str>, site: &'static Location<'static>, fut: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    // The uninstrumented twin (`--cfg pinchpoint_bare`): a plain spawn, tracked nowhere.
    if cfg!(pinchpoint_bare) {
        let _ = (name, site);
        return tokio::spawn(fut);
    }
    let site = table::site(name, site);
    #[cfg(tokio_unstable)]
    if super::runtime::poll_started_ns() != 0 {
        // A hooked runtime is polling the caller, and `tokio::spawn` spawns onto it: its spawn
        // hook records the task under its tokio id with this site, so no wrapper is needed.
        let _ = HOOK_SITE.try_with(|s| s.set(Some(site)));
        let handle = spawn_named(name, fut);
        // Still set only if the caller had entered another, unhooked runtime: then the task
        // goes untracked rather than mislabel the next plain spawn.
        let _ = HOOK_SITE.try_with(|s| s.set(None));
        return handle;
    }
    // Keys of tracked tasks: their own sequence, kept apart from tokio's task ids by bit 62.
    static NEXT_KEY: AtomicU64 = AtomicU64::new(1);
    let key = NEXT_KEY.fetch_add(1, Relaxed) | 1 << 62;
    site.spawned.inc();
    let entry = table::insert(key, site, spawn_time_ns(), current_check());
    let _ = SPAWNING_TRACKED.try_with(|s| s.set(true));
    let handle = spawn_named(name, Tracked { fut, entry, key });
    let _ = SPAWNING_TRACKED.try_with(|s| s.set(false));
    handle
}

/// `tokio::spawn`, naming the task for tokio-console (task names need `tokio_unstable`,
/// like the runtime hooks this module relies on).
#[track_caller]
fn spawn_named<F>(name: Option<&'static str>, fut: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    // `tokio::task::Builder` exists only with `tokio_unstable` and tokio's `tracing` feature,
    // which the `console` feature (console-subscriber) turns on; without them tokio-console is
    // not there to show names.
    #[cfg(all(feature = "console", tokio_unstable))]
    if let Some(name) = name {
        // Fails only outside a runtime, where tokio::spawn panics too.
        return tokio::task::Builder::new().name(name).spawn(fut).expect("spawn inside a Tokio runtime");
    }
    #[cfg(not(all(feature = "console", tokio_unstable)))]
    let _ = name;
    tokio::spawn(fut)
}

/// The wrapper future of a tracked task.
struct Tracked<F> {
    fut: F,
    entry: Entry,
    key: u64,
}

struct RestoreCheck(u64);

impl Drop for RestoreCheck {
    fn drop(&mut self) {
        set_current_check(self.0);
    }
}

impl<F: Future> Future for Tracked<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // SAFETY: `fut` is structurally pinned: never moved out of `self`, and Drop below
        // does not touch it.
        let this = unsafe { self.get_unchecked_mut() };
        let now = match super::runtime::poll_started_ns() {
            0 => clock_ns().max(1),
            hooked => hooked,
        };
        let check = this.entry.fields().polled(now);
        let _restore = RestoreCheck(set_current_check(check));
        unsafe { Pin::new_unchecked(&mut this.fut) }.poll(cx)
    }
}

impl<F> Drop for Tracked<F> {
    fn drop(&mut self) {
        // Runs when the task completes or is aborted (tokio drops the future either way).
        table::release(self.key, &self.entry);
        self.entry.fields().site().finished.inc();
    }
}

// ---- hooks for plain tokio::spawn ----------------------------------------------------------

#[cfg(tokio_unstable)]
thread_local! {
    /// The check to restore after this poll, if the poll changed it.
    static SAVED_CHECK: Cell<Option<u64>> = const { Cell::new(None) };
    /// Set while `spawn` hands a named task to the spawn hook.
    static HOOK_SITE: Cell<Option<&'static table::Site>> = const { Cell::new(None) };
}

#[cfg(tokio_unstable)]
pub(crate) fn hook_spawn(meta: &tokio::runtime::TaskMeta<'_>) {
    if SPAWNING_TRACKED.try_with(Cell::get).unwrap_or(false) {
        return; // tracked by `spawn`'s wrapper
    }
    let site = match HOOK_SITE.try_with(Cell::take) {
        Ok(Some(named)) => named,
        _ => table::site(None, meta.spawned_at()),
    };
    site.spawned.inc();
    table::insert(table::task_key(meta.id()), site, spawn_time_ns(), current_check());
}

#[cfg(tokio_unstable)]
pub(crate) fn hook_terminate(meta: &tokio::runtime::TaskMeta<'_>) {
    if let Some(site) = table::remove(table::task_key(meta.id())) {
        site.finished.inc();
    }
}

/// `now_ns` is the poll's start ([`clock_ns`]), read once for this and the poll timer.
#[cfg(tokio_unstable)]
pub(crate) fn hook_before_poll(meta: &tokio::runtime::TaskMeta<'_>, now_ns: u64) {
    let Some(check) = table::with(table::task_key(meta.id()), |f| f.polled(now_ns)) else { return };
    let prev = set_current_check(check);
    if prev != check {
        let _ = SAVED_CHECK.try_with(|s| s.set(Some(prev)));
    }
}

#[cfg(tokio_unstable)]
pub(crate) fn hook_after_poll() {
    if let Some(prev) = SAVED_CHECK.try_with(Cell::take).ok().flatten() {
        set_current_check(prev);
    }
}

/// Installs task tracking (and poll timing, see [`super::runtime`]) on a runtime builder, so
/// plain `tokio::spawn` calls are tracked by spawn site.
pub fn install_hooks(builder: &mut tokio::runtime::Builder) -> &mut tokio::runtime::Builder {
    super::runtime::install_hooks(builder)
}

// ---- views ---------------------------------------------------------------------------------

#[derive(Default)]
struct Group {
    label: String,
    alive: i64,
    suspects: i64,
    oldest: Duration,
}

fn groups() -> Vec<Group> {
    let now = Instant::now();
    let now_ns = clock_ns();
    let threshold = leak_threshold();
    let mut by_key: HashMap<(bool, usize), Group> = HashMap::new();
    for_each_task(|t| {
        let g = by_key.entry(t.site.key()).or_insert_with(|| Group { label: t.label(), ..Group::default() });
        g.alive += 1;
        g.suspects += is_suspect(&t, now_ns, threshold) as i64;
        g.oldest = g.oldest.max(t.age(now_ns));
    });
    // Distinct sites with the same label (same name from several places) merge here.
    let mut by_label: HashMap<String, Group> = HashMap::new();
    for g in by_key.into_values() {
        let e = by_label.entry(g.label.clone()).or_insert_with(|| Group { label: g.label.clone(), ..Group::default() });
        e.alive += g.alive;
        e.suspects += g.suspects;
        e.oldest = e.oldest.max(g.oldest);
    }
    let spacing = threshold / 2;
    for g in by_label.values_mut() {
        if !super::leak_growth::growing(&g.label, g.alive, now, spacing) {
            g.suspects = 0;
        }
    }
    let mut v: Vec<Group> = by_label.into_values().collect();
    v.sort_by(|a, b| b.alive.cmp(&a.alive).then(a.label.cmp(&b.label)));
    v
}

/// The live tasks' families, read at scrape time (part of the probes' metrics source).
pub(super) fn encode(enc: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
    let groups = groups();
    if groups.is_empty() {
        return Ok(());
    }
    for (spec, pick) in [(&TASKS_ALIVE, 0), (&TASK_LEAK_SUSPECTS, 1), (&TASK_OLDEST, 2)] {
        let mut m = describe(enc, spec)?;
        for g in &groups {
            let labels = [("task", g.label.as_str())];
            let mut s = m.encode_family(&labels)?;
            match pick {
                0 => s.encode_gauge(&g.alive)?,
                1 => s.encode_gauge(&g.suspects)?,
                _ => s.encode_gauge(&g.oldest.as_secs_f64())?,
            }
        }
    }
    Ok(())
}

/// Live tasks of one label, for `/debug/tasks`.
#[derive(Debug, Clone, Serialize)]
pub struct TaskGroupReport {
    /// The label: the task's name, or its spawn site.
    pub task: String,
    /// Live tasks of the label.
    pub alive: i64,
    /// Of those, leak suspects.
    pub leak_suspects: i64,
    /// Age of the oldest, in seconds.
    pub oldest_seconds: f64,
}

/// One live task, for `/debug/tasks`.
#[derive(Debug, Clone, Serialize)]
pub struct TaskRow {
    /// The label: the task's name, or its spawn site.
    pub task: String,
    /// `file:line` of the spawn.
    pub site: String,
    /// Its age, in seconds.
    pub age_seconds: f64,
    /// `None`: never polled.
    pub since_last_poll_seconds: Option<f64>,
}

/// `/debug/tasks`: live tasks by label, and the oldest few.
#[derive(Debug, Clone, Serialize)]
pub struct TasksReport {
    /// [`leak_threshold`], in seconds.
    pub leak_threshold_seconds: f64,
    /// Live tasks by label, most first.
    pub by_task: Vec<TaskGroupReport>,
    /// The oldest live tasks.
    pub oldest: Vec<TaskRow>,
}

/// Live tasks by label, and the `oldest` oldest ones (`/debug/tasks`).
pub fn report(oldest: usize) -> TasksReport {
    let by_task = groups()
        .into_iter()
        .map(|g| TaskGroupReport {
            task: g.label,
            alive: g.alive,
            leak_suspects: g.suspects,
            oldest_seconds: g.oldest.as_secs_f64(),
        })
        .collect();
    let mut all: Vec<TaskView> = Vec::new();
    for_each_task(|t| all.push(t));
    all.sort_by_key(|t| t.spawned_ns);
    let now_ns = clock_ns();
    let oldest = all
        .iter()
        .take(oldest)
        .map(|t| TaskRow {
            task: t.label(),
            site: site_label(t.site.location),
            age_seconds: t.age(now_ns).as_secs_f64(),
            since_last_poll_seconds: t.since_last_poll(now_ns).map(|d| d.as_secs_f64()),
        })
        .collect();
    TasksReport { leak_threshold_seconds: leak_threshold().as_secs_f64(), by_task, oldest }
}

#[cfg(test)]
mod tests {
    use super::short_file;

    #[test]
    fn spawn_sites_in_dependencies_start_at_the_crate_directory() {
        assert_eq!(
            short_file("/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/hyper-util-0.1.21/src/rt/tokio.rs"),
            "hyper-util-0.1.21/src/rt/tokio.rs"
        );
        assert_eq!(
            short_file(r"C:\Users\me\.cargo\registry\src\index.crates.io-1949cf8c6b5b557f\tokio-1.47.0\src\lib.rs"),
            r"tokio-1.47.0\src\lib.rs"
        );
        assert_eq!(
            short_file("/home/me/.cargo/git/checkouts/tonic-abc123/def456/tonic/src/x.rs"),
            "tonic-abc123/def456/tonic/src/x.rs"
        );
        assert_eq!(short_file("/home/me/src/pinchpoint/src/probe/worker.rs"), "pinchpoint/src/probe/worker.rs");
        assert_eq!(short_file("/work/svc/tests/it.rs"), "svc/tests/it.rs");
        assert_eq!(short_file("/tmp/generated.rs"), "generated.rs");
        assert_eq!(short_file(r"C:\work\svc\src\main.rs"), r"svc\src\main.rs");
        assert_eq!(short_file("src/counter/gateway.rs"), "src/counter/gateway.rs");
        assert_eq!(short_file("tests/probe_tasks.rs"), "tests/probe_tasks.rs");
    }
}
