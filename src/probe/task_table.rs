//! The live-task table: what the task probes know about each live task, reachable from tokio's
//! task hooks without a shared lock.
//!
//! A hook only has the task's id. Ids come from one process-wide counter, so a task's home
//! slot is its id modulo [`CAPACITY`]: consecutive spawns land on consecutive slots, one cache
//! line each, and a hooked poll finds its task with one load and writes its poll time with one
//! store. Spawn claims a free slot with one compare-and-swap among [`PROBES`] neighbours of
//! the home slot; exit frees it with one store. A task that finds no free slot (thousands of
//! tasks alive, or long-lived ones sitting on its home slots) goes to a sharded, locked
//! overflow map instead, which costs what the map costs but loses nothing.
//!
//! Readers (a scrape, `/debug/tasks`, a `LeakCheck`) read a slot's fields between two loads
//! of its key: a key is never reused, so if both loads agree the fields belong to that task.
//! The table is a static array of atomics: pages the ids have not reached yet stay untouched.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::panic::Location;
use std::sync::atomic::{fence, AtomicPtr, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::Arc;

use parking_lot::Mutex;

use super::families;
use crate::metrics::Counter;

/// Slots in the table (64 bytes each: 256 KiB, touched as task ids advance).
pub(crate) const CAPACITY: usize = 4096;
/// Slots tried from a task's home slot before it goes to the overflow map.
const PROBES: usize = 4;
const MASK: u64 = CAPACITY as u64 - 1;
/// Key of a slot being filled. Free slots hold 0; task ids are never 0.
const BUSY: u64 = u64::MAX;

/// A label's identity and counters: one per task name or spawn site, kept for the life of the
/// process (spawn sites and names are code, so there are as many as the code has).
#[derive(Debug)]
pub(crate) struct Site {
    pub name: Option<&'static str>,
    pub location: &'static Location<'static>,
    pub spawned: Counter,
    pub finished: Counter,
}

impl Site {
    /// Groups tasks the way the metrics do: by name, else by spawn site.
    pub fn key(&self) -> (bool, usize) {
        site_key(self.name, self.location)
    }
}

fn site_key(name: Option<&'static str>, location: &'static Location<'static>) -> (bool, usize) {
    match name {
        Some(n) => (true, n.as_ptr() as usize),
        None => (false, location as *const _ as usize),
    }
}

/// Hashes label keys (addresses, never chosen by an outside party) with one multiply.
#[derive(Default, Clone, Copy)]
struct AddrHash(u64);

impl Hasher for AddrHash {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(b as u64);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

type AddrBuild = std::hash::BuildHasherDefault<AddrHash>;
type SiteMap = HashMap<(bool, usize), &'static Site, AddrBuild>;

thread_local! {
    /// This thread's view of [`SITES`], so a spawn takes no lock once its site is known.
    static LOCAL_SITES: std::cell::RefCell<SiteMap> = std::cell::RefCell::new(HashMap::default());
    /// The last site this thread asked for: a loop spawning from one place skips the map.
    static LAST_SITE: std::cell::Cell<Option<&'static Site>> = const { std::cell::Cell::new(None) };
}

static SITES: Mutex<Option<SiteMap>> = Mutex::new(None);

/// The [`Site`] of a name (or, without one, a spawn location); created on first use.
#[inline]
pub(crate) fn site(name: Option<&'static str>, location: &'static Location<'static>) -> &'static Site {
    let key = site_key(name, location);
    if let Ok(Some(last)) = LAST_SITE.try_with(std::cell::Cell::get) {
        if last.key() == key {
            return last;
        }
    }
    let s = site_slow(name, location, key);
    let _ = LAST_SITE.try_with(|l| l.set(Some(s)));
    s
}

#[inline(never)]
fn site_slow(name: Option<&'static str>, location: &'static Location<'static>, key: (bool, usize)) -> &'static Site {
    let global = || {
        *SITES.lock().get_or_insert_with(HashMap::default).entry(key).or_insert_with(|| {
            let label = name.map_or_else(|| super::task::site_label(location), str::to_string);
            let f = families();
            let site = Site {
                name,
                location,
                spawned: f.tasks_spawned.get([&label]),
                finished: f.tasks_finished.get([&label]),
            };
            Box::leak(Box::new(site))
        })
    };
    LOCAL_SITES
        .try_with(|m| {
            if let Some(s) = m.borrow().get(&key) {
                return *s;
            }
            let s = global();
            m.borrow_mut().insert(key, s);
            s
        })
        .unwrap_or_else(|_| global())
}

/// What the probes keep per live task.
#[derive(Debug, Default)]
pub(crate) struct Fields {
    site: AtomicPtr<Site>,
    /// [`clock_ns`](super::clock_ns) at spawn.
    spawned_ns: AtomicU64,
    /// [`clock_ns`](super::clock_ns) of the last poll start; 0 = never polled.
    last_poll_ns: AtomicU64,
    /// The [`LeakCheck`](super::task::LeakCheck) the task was spawned under (0 = none).
    check: AtomicU64,
}

impl Fields {
    fn fill(&self, site: &'static Site, spawned_ns: u64, check: u64) {
        self.site.store(site as *const Site as *mut Site, Relaxed);
        self.spawned_ns.store(spawned_ns, Relaxed);
        self.last_poll_ns.store(0, Relaxed);
        self.check.store(check, Relaxed);
    }

    /// Records a poll start and returns the task's leak check.
    #[inline]
    pub fn polled(&self, now_ns: u64) -> u64 {
        self.last_poll_ns.store(now_ns.max(1), Relaxed);
        self.check.load(Relaxed)
    }

    pub fn site(&self) -> &'static Site {
        // SAFETY: set by `fill` from a `&'static Site` before the key is published.
        unsafe { &*self.site.load(Relaxed) }
    }

    fn view(&self) -> TaskView {
        TaskView {
            site: self.site(),
            spawned_ns: self.spawned_ns.load(Relaxed),
            last_poll_ns: self.last_poll_ns.load(Relaxed),
            check: self.check.load(Relaxed),
        }
    }
}

/// A copy of one live task's fields, for the views.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TaskView {
    pub site: &'static Site,
    pub spawned_ns: u64,
    /// 0 = never polled.
    pub last_poll_ns: u64,
    pub check: u64,
}

#[repr(align(64))]
pub(crate) struct Slot {
    key: AtomicU64,
    fields: Fields,
}

impl Slot {
    const fn new() -> Self {
        Self {
            key: AtomicU64::new(0),
            fields: Fields {
                site: AtomicPtr::new(std::ptr::null_mut()),
                spawned_ns: AtomicU64::new(0),
                last_poll_ns: AtomicU64::new(0),
                check: AtomicU64::new(0),
            },
        }
    }
}

static TABLE: [Slot; CAPACITY] = [const { Slot::new() }; CAPACITY];

const SHARDS: usize = 64;

type OverflowShard = Mutex<HashMap<u64, Arc<Fields>, AddrBuild>>;

/// Tasks that found no free slot.
struct Overflow {
    shards: Box<[OverflowShard]>,
    /// Entries in all shards: lets a lookup that missed the table skip the locks when 0.
    len: AtomicUsize,
}

fn overflow() -> &'static Overflow {
    static O: std::sync::OnceLock<Overflow> = std::sync::OnceLock::new();
    O.get_or_init(|| Overflow {
        shards: (0..SHARDS).map(|_| Mutex::new(HashMap::default())).collect(),
        len: AtomicUsize::new(0),
    })
}

impl Overflow {
    fn shard(&self, key: u64) -> &OverflowShard {
        &self.shards[(AddrBuild::default().hash_one(key) >> 58) as usize % SHARDS]
    }
}

#[inline]
fn home(key: u64) -> usize {
    (key & MASK) as usize
}

/// Where a live task's fields are, for the one who inserted it.
pub(crate) enum Entry {
    Slot(&'static Slot),
    Overflow(Arc<Fields>),
}

impl Entry {
    #[inline]
    pub fn fields(&self) -> &Fields {
        match self {
            Entry::Slot(s) => &s.fields,
            Entry::Overflow(f) => f,
        }
    }
}

/// Adds a live task under `key` (unique for the life of the process, never 0 or `u64::MAX`).
pub(crate) fn insert(key: u64, site: &'static Site, spawned_ns: u64, check: u64) -> Entry {
    let h = home(key);
    for i in 0..PROBES {
        let slot = &TABLE[(h + i) & MASK as usize];
        if slot.key.load(Relaxed) == 0 && slot.key.compare_exchange(0, BUSY, Acquire, Relaxed).is_ok() {
            // Readers that saw the previous key see BUSY (or this key) on their second load.
            fence(Release);
            slot.fields.fill(site, spawned_ns, check);
            slot.key.store(key, Release);
            return Entry::Slot(slot);
        }
    }
    let fields = Arc::new(Fields::default());
    fields.fill(site, spawned_ns, check);
    let o = overflow();
    o.shard(key).lock().insert(key, fields.clone());
    o.len.fetch_add(1, Relaxed);
    Entry::Overflow(fields)
}

/// Runs `f` on the fields of the live task `key`, if it is in the table or the overflow.
#[inline]
#[cfg_attr(not(tokio_unstable), allow(dead_code))] // the runtime hooks' lookups
pub(crate) fn with<R>(key: u64, f: impl FnOnce(&Fields) -> R) -> Option<R> {
    let h = home(key);
    for i in 0..PROBES {
        let slot = &TABLE[(h + i) & MASK as usize];
        // Only the task itself (its hooks, in order) changes or frees its slot.
        if slot.key.load(Acquire) == key {
            return Some(f(&slot.fields));
        }
    }
    with_overflow(key, f)
}

#[cold]
#[cfg_attr(not(tokio_unstable), allow(dead_code))] // the runtime hooks' lookups
fn with_overflow<R>(key: u64, f: impl FnOnce(&Fields) -> R) -> Option<R> {
    let o = overflow();
    if o.len.load(Relaxed) == 0 {
        return None;
    }
    o.shard(key).lock().get(&key).map(|e| f(e))
}

/// Removes the live task `key`; returns its site if it was there.
#[cfg_attr(not(tokio_unstable), allow(dead_code))] // the runtime hooks' lookups
pub(crate) fn remove(key: u64) -> Option<&'static Site> {
    let h = home(key);
    for i in 0..PROBES {
        let slot = &TABLE[(h + i) & MASK as usize];
        if slot.key.load(Relaxed) == key {
            let site = slot.fields.site();
            slot.key.store(0, Release);
            return Some(site);
        }
    }
    remove_overflow(key)
}

#[cold]
#[cfg_attr(not(tokio_unstable), allow(dead_code))] // the runtime hooks' lookups
fn remove_overflow(key: u64) -> Option<&'static Site> {
    let o = overflow();
    if o.len.load(Relaxed) == 0 {
        return None;
    }
    let e = o.shard(key).lock().remove(&key)?;
    o.len.fetch_sub(1, Relaxed);
    Some(e.site())
}

/// Removes an entry returned by [`insert`]: no search.
pub(crate) fn release(key: u64, entry: &Entry) {
    match entry {
        Entry::Slot(slot) => slot.key.store(0, Release),
        Entry::Overflow(_) => {
            let o = overflow();
            if o.shard(key).lock().remove(&key).is_some() {
                o.len.fetch_sub(1, Relaxed);
            }
        }
    }
}

/// Calls `f` with a copy of every live task's fields.
pub(crate) fn for_each(mut f: impl FnMut(TaskView)) {
    for slot in TABLE.iter() {
        let k1 = slot.key.load(Acquire);
        if k1 == 0 || k1 == BUSY {
            continue;
        }
        let v = slot.fields.view();
        fence(Acquire);
        // A changed key: the task ended meanwhile (and the slot may hold another's fields).
        if slot.key.load(Relaxed) == k1 {
            f(v);
        }
    }
    let o = overflow();
    if o.len.load(Relaxed) == 0 {
        return;
    }
    for shard in o.shards.iter() {
        for e in shard.lock().values() {
            f(e.view());
        }
    }
}

/// A tokio task id as the `u64` tokio numbers it with (`Id` only exposes it through `Hash`).
#[cfg(tokio_unstable)]
#[inline]
pub(crate) fn task_key(id: tokio::task::Id) -> u64 {
    #[derive(Default)]
    struct Capture(u64);
    impl Hasher for Capture {
        fn write(&mut self, bytes: &[u8]) {
            for &b in bytes {
                self.0 = (self.0 << 8) | b as u64;
            }
        }
        fn write_u64(&mut self, n: u64) {
            self.0 = n;
        }
        fn finish(&self) -> u64 {
            self.0
        }
    }
    let mut h = Capture::default();
    std::hash::Hash::hash(&id, &mut h);
    h.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_site() -> &'static Site {
        site(Some("test.table"), Location::caller())
    }

    fn live(key: u64) -> bool {
        let mut found = false;
        for_each(|v| found |= v.spawned_ns == key);
        found
    }

    #[test]
    fn slots_and_overflow_hold_every_task_until_removed() {
        // Keys far above any real task id, all with the same home slot: the first PROBES fill
        // the neighbours, the rest overflow.
        let base = (1u64 << 60) + 2_000;
        let keys: Vec<u64> = (0..PROBES as u64 + 3).map(|i| base + i * CAPACITY as u64).collect();
        let entries: Vec<Entry> = keys.iter().map(|&k| insert(k, test_site(), k, 7)).collect();
        assert!(entries.iter().filter(|e| matches!(e, Entry::Overflow(_))).count() >= 3);
        for &k in &keys {
            assert_eq!(with(k, |f| f.polled(5)), Some(7), "key {k}");
            assert!(live(k));
        }
        // By search (the hooks' way) for the first and the last, by entry for the others.
        let last = keys.len() - 1;
        for i in [0, last] {
            assert_eq!(remove(keys[i]).map(|s| s.name), Some(Some("test.table")));
            assert!(remove(keys[i]).is_none());
            assert!(with(keys[i], |_| ()).is_none());
        }
        for (k, e) in keys.iter().zip(&entries).take(last).skip(1) {
            release(*k, e);
        }
        assert!(keys.iter().all(|&k| !live(k)));
    }

    #[cfg(tokio_unstable)]
    #[test]
    fn task_keys_are_tokio_task_ids() {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let h = rt.spawn(async {});
        let id = h.id();
        assert_eq!(task_key(id).to_string(), id.to_string());
        rt.block_on(h).unwrap();
    }
}
