//! A counting global allocator and per-request allocation bytes.
//!
//! ```ignore
//! #[global_allocator]
//! static ALLOC: pinchpoint::probe::alloc::CountingAlloc = pinchpoint::probe::alloc::CountingAlloc::system();
//! ```
//!
//! No shared atomic per allocation: each thread owns a slot of counters (claimed on its first
//! allocation) and updates it with one plain load and store of a word that packs a count and
//! bytes; a scrape folds the slots. Threads past [`SLOTS`] share one set of atomic counters.
//! Slots are never released (claiming one must not allocate, and a thread-exit hook would),
//! so counts of exited threads stay in the totals, as they should.
//!
//! The allocator never allocates and touches only const-initialised thread-locals without
//! destructors, through `try_with`.
//!
//! `heap_peak_bytes` is approximate: the peak is updated at each scrape and on each
//! allocation of at least [`LARGE`] bytes, so short spikes made of small allocations between
//! scrapes are missed.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{
    fence, AtomicBool, AtomicU64, AtomicUsize,
    Ordering::{Acquire, Relaxed, Release},
};
use std::task::{Context, Poll};

use prometheus_client::encoding::DescriptorEncoder;

use super::families;
use crate::metrics::catalog::*;
use crate::metrics::red::LabelMap;
use crate::metrics::Recent;
use crate::metrics::{emit_counter, emit_gauge, Histogram};

/// Threads that get a slot of their own; later threads share one set of atomic counters.
pub const SLOTS: usize = 512;
/// Allocations at least this large are counted in `alloc_large_total` and update the peak.
pub const LARGE: usize = 1 << 20;

/// How a thread's slot is kept in [`MY_SLOT`]: the slot's address once the thread owns one,
/// [`SHARED`] past [`SLOTS`] threads, [`UNSET`] before its first allocation. Both rare states
/// have the top bit set, so the hot path tests one sign bit.
const SHARED: usize = 1 << (usize::BITS - 1);
const UNSET: usize = usize::MAX;

/// A packed word holds a count in its top 16 bits and bytes below them, so one allocation
/// costs one load, one add and one store: the add carries out of the word exactly when the
/// count would wrap, and the owner then moves the word into the wide totals ("spill"). Every
/// 2^16 small allocations add under 2^36 bytes, so the byte field never reaches the count.
const BYTE_BITS: u32 = 48;
const ONE_COUNT: u64 = 1 << BYTE_BITS;
const BYTE_MASK: u64 = ONE_COUNT - 1;

#[inline]
fn count_of(w: u64) -> u64 {
    w >> BYTE_BITS
}

#[inline]
fn bytes_of(w: u64) -> u64 {
    w & BYTE_MASK
}

/// One thread's counters. Only the owner writes; a scrape reads the packed words and the
/// totals under `seq` (a seqlock: odd while a spill is in progress).
#[repr(align(64))]
struct Slot {
    allocs_packed: AtomicU64,
    frees_packed: AtomicU64,
    seq: AtomicU64,
    totals: Totals,
}

/// Wide counters: a slot's spilled totals, or the shared overflow slot.
struct Totals {
    allocs: AtomicU64,
    alloc_bytes: AtomicU64,
    frees: AtomicU64,
    free_bytes: AtomicU64,
    large: AtomicU64,
}

impl Totals {
    const fn new() -> Self {
        Self {
            allocs: AtomicU64::new(0),
            alloc_bytes: AtomicU64::new(0),
            frees: AtomicU64::new(0),
            free_bytes: AtomicU64::new(0),
            large: AtomicU64::new(0),
        }
    }

    /// From the shared overflow slot, where any thread may add.
    fn add_shared(&self, alloc: bool, size: usize) {
        let (count, bytes) = if alloc { (&self.allocs, &self.alloc_bytes) } else { (&self.frees, &self.free_bytes) };
        count.fetch_add(1, Relaxed);
        bytes.fetch_add(size as u64, Relaxed);
        if alloc && size >= LARGE {
            self.large.fetch_add(1, Relaxed);
        }
    }

    fn read(&self) -> AllocStats {
        AllocStats {
            allocs: self.allocs.load(Relaxed),
            alloc_bytes: self.alloc_bytes.load(Relaxed),
            frees: self.frees.load(Relaxed),
            free_bytes: self.free_bytes.load(Relaxed),
            large: self.large.load(Relaxed),
            ..AllocStats::default()
        }
    }
}

impl Slot {
    const fn new() -> Self {
        Self {
            allocs_packed: AtomicU64::new(0),
            frees_packed: AtomicU64::new(0),
            seq: AtomicU64::new(0),
            totals: Totals::new(),
        }
    }

    /// The owner's rare path: a count about to wrap, or a large block. Folds the packed word
    /// and this operation into the totals under the seqlock.
    fn spill(&self, alloc: bool, size: usize) {
        let (packed, count, bytes) = if alloc {
            (&self.allocs_packed, &self.totals.allocs, &self.totals.alloc_bytes)
        } else {
            (&self.frees_packed, &self.totals.frees, &self.totals.free_bytes)
        };
        let w = packed.load(Relaxed);
        let s = self.seq.load(Relaxed);
        self.seq.store(s + 1, Relaxed);
        fence(Release);
        bump(count, count_of(w) + 1);
        bump(bytes, bytes_of(w) + size as u64);
        packed.store(0, Relaxed);
        if alloc && size >= LARGE {
            bump(&self.totals.large, 1);
        }
        self.seq.store(s + 2, Release);
    }

    /// A consistent reading from another thread.
    fn read(&self) -> AllocStats {
        loop {
            let s1 = self.seq.load(Acquire);
            if s1 % 2 == 0 {
                let a = self.allocs_packed.load(Relaxed);
                let f = self.frees_packed.load(Relaxed);
                let mut t = self.totals.read();
                fence(Acquire);
                if self.seq.load(Relaxed) == s1 {
                    t.allocs += count_of(a);
                    t.alloc_bytes += bytes_of(a);
                    t.frees += count_of(f);
                    t.free_bytes += bytes_of(f);
                    return t;
                }
            }
            // The owner is inside a spill (a few stores); it may have been preempted there.
            std::thread::yield_now();
        }
    }
}

static SLOT_ARRAY: [Slot; SLOTS] = [const { Slot::new() }; SLOTS];
static OVERFLOW: Totals = Totals::new();
static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);
static INSTALLED: AtomicBool = AtomicBool::new(false);
static PEAK: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static MY_SLOT: Cell<usize> = const { Cell::new(UNSET) };
}

/// The calling thread's own slot, if it has one; otherwise the raw [`MY_SLOT`] value.
#[inline]
fn own_slot() -> Result<&'static Slot, usize> {
    // With a const initialiser and no destructor, `try_with` never fails: one %fs load.
    let v = MY_SLOT.try_with(Cell::get).unwrap_or(SHARED);
    if v & SHARED == 0 {
        // SAFETY: values without the SHARED bit are only ever set from `&SLOT_ARRAY[i]`.
        Ok(unsafe { &*(v as *const Slot) })
    } else {
        Err(v)
    }
}

/// The thread's first allocation: claim a slot, or join the shared one past [`SLOTS`].
fn claim_slot() -> Option<&'static Slot> {
    if MY_SLOT.try_with(|_| ()).is_err() {
        return None;
    }
    INSTALLED.store(true, Relaxed);
    // Lock- and allocation-free: safe inside the allocator.
    super::export();
    let n = NEXT_SLOT.fetch_add(1, Relaxed);
    let slot = SLOT_ARRAY.get(n);
    let v = slot.map_or(SHARED, |s| s as *const Slot as usize);
    MY_SLOT.with(|m| m.set(v));
    slot
}

/// Only the owner writes its slot: a relaxed load+store is exact and compiles to one add.
#[inline]
fn bump(a: &AtomicU64, v: u64) {
    a.store(a.load(Relaxed).wrapping_add(v), Relaxed);
}

#[cold]
#[inline(never)]
fn record_slow(v: Result<&'static Slot, usize>, alloc: bool, size: usize) {
    let slot = match v {
        Ok(slot) => Some(slot),
        Err(UNSET) => claim_slot(),
        Err(_) => None,
    };
    match slot {
        Some(slot) => slot.spill(alloc, size),
        None => OVERFLOW.add_shared(alloc, size),
    }
    if alloc && size >= LARGE {
        update_peak();
    }
}

/// Counts one small operation in the thread's own slot, if that is all it takes (the thread
/// has a slot, its count is not about to wrap, the block is under [`LARGE`]).
#[inline(always)]
fn record_fast(alloc: bool, size: usize) -> bool {
    if let Ok(slot) = own_slot() {
        let packed = if alloc { &slot.allocs_packed } else { &slot.frees_packed };
        let w = packed.load(Relaxed);
        let (next, wrapped) = w.overflowing_add(ONE_COUNT + size as u64);
        if !wrapped && size < LARGE {
            packed.store(next, Relaxed);
            return true;
        }
    }
    false
}

#[inline]
fn record(alloc: bool, size: usize) {
    if !record_fast(alloc, size) {
        record_slow(own_slot(), alloc, size);
    }
}

#[inline]
fn record_alloc(size: usize) {
    record(true, size)
}

#[inline]
fn record_free(size: usize) {
    record(false, size)
}

/// A `GlobalAlloc` wrapper counting allocations into per-thread slots.
#[derive(Debug, Default, Clone, Copy)]
pub struct CountingAlloc<A = System> {
    inner: A,
}

impl CountingAlloc<System> {
    /// Counting over the system allocator.
    pub const fn system() -> Self {
        Self { inner: System }
    }
}

impl<A> CountingAlloc<A> {
    /// Counting over any allocator.
    pub const fn new(inner: A) -> Self {
        Self { inner }
    }
}

impl<A: GlobalAlloc> CountingAlloc<A> {
    /// Everything but a counted-in-place small block: a thread's first allocation, a count
    /// about to wrap, a large block, a thread without a slot of its own.
    #[cold]
    #[inline(never)]
    unsafe fn alloc_slow(&self, layout: Layout, zeroed: bool) -> *mut u8 {
        let size = layout.size();
        if size < LARGE {
            record_alloc(size);
        }
        let p = if zeroed { self.inner.alloc_zeroed(layout) } else { self.inner.alloc(layout) };
        if size >= LARGE && !p.is_null() {
            record_alloc(size);
        }
        p
    }

    #[cold]
    #[inline(never)]
    unsafe fn dealloc_slow(&self, ptr: *mut u8, layout: Layout) {
        record_free(layout.size());
        self.inner.dealloc(ptr, layout);
    }
}

// SAFETY: every method forwards to the inner allocator unchanged; the bookkeeping neither
// allocates nor unwinds.
//
// The common case (a small block, counted in the thread's own slot) is counted before the
// inner allocator runs, so the call to it is the method's last act and compiles to a jump:
// no stack frame to build, no result to test. The price: a small allocation that fails is
// counted as made. In Rust that aborts the process unless the caller used `try_reserve`, and
// then it is one block under `LARGE` bytes; large blocks, the ones a `try_reserve` might be
// refused, are counted only when they succeed.
unsafe impl<A: GlobalAlloc> GlobalAlloc for CountingAlloc<A> {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if record_fast(true, layout.size()) {
            return self.inner.alloc(layout);
        }
        self.alloc_slow(layout, false)
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if record_fast(true, layout.size()) {
            return self.inner.alloc_zeroed(layout);
        }
        self.alloc_slow(layout, true)
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if record_fast(false, layout.size()) {
            return self.inner.dealloc(ptr, layout);
        }
        self.dealloc_slow(ptr, layout)
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = self.inner.realloc(ptr, layout, new_size);
        if !p.is_null() {
            record_free(layout.size());
            record_alloc(new_size);
        }
        p
    }
}

/// Whether a [`CountingAlloc`] is the global allocator (it has seen an allocation). When it
/// is not, the allocation families are absent from `/metrics` ("not measured").
pub fn is_installed() -> bool {
    INSTALLED.load(Relaxed)
}

/// Totals over all threads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AllocStats {
    /// Allocations (including reallocations).
    pub allocs: u64,
    /// Bytes allocated.
    pub alloc_bytes: u64,
    /// Deallocations.
    pub frees: u64,
    /// Bytes freed.
    pub free_bytes: u64,
    /// Allocations of at least the large threshold.
    pub large: u64,
    /// Bytes allocated and not yet freed.
    pub live_bytes: u64,
    /// The most `live_bytes` seen at a read.
    pub peak_bytes: u64,
}

fn fold() -> AllocStats {
    let used = NEXT_SLOT.load(Relaxed).min(SLOTS);
    let mut s = OVERFLOW.read();
    for t in SLOT_ARRAY[..used].iter().map(Slot::read) {
        s.allocs += t.allocs;
        s.alloc_bytes += t.alloc_bytes;
        s.frees += t.frees;
        s.free_bytes += t.free_bytes;
        s.large += t.large;
    }
    s.live_bytes = s.alloc_bytes.saturating_sub(s.free_bytes);
    s
}

fn update_peak() -> u64 {
    let live = fold().live_bytes;
    PEAK.fetch_max(live, Relaxed).max(live)
}

/// Current totals (also updates the approximate peak). `None` if not installed.
pub fn stats() -> Option<AllocStats> {
    if !is_installed() {
        return None;
    }
    let mut s = fold();
    s.peak_bytes = PEAK.fetch_max(s.live_bytes, Relaxed).max(s.live_bytes);
    Some(s)
}

/// Bytes allocated by the calling thread so far; `None` if not installed or if this thread
/// shares its slot (beyond [`SLOTS`] threads), where per-thread numbers are not available.
pub fn thread_allocated_bytes() -> Option<u64> {
    if !is_installed() {
        return None;
    }
    // Not claiming: this thread may not have allocated yet, and only the allocator claims.
    let slot = own_slot().ok()?;
    let packed = slot.allocs_packed.load(Relaxed);
    Some(slot.totals.alloc_bytes.load(Relaxed) + bytes_of(packed))
}

thread_local! {
    static ROUTES: RefCell<LabelMap<Histogram>> = RefCell::new(LabelMap::default());
}

fn route_histogram(route: &str) -> Histogram {
    let make = || families().request_alloc.get([route]);
    ROUTES
        .try_with(|r| {
            if let Some(h) = r.borrow().get(route) {
                return h.clone();
            }
            let h = make();
            let mut r = r.borrow_mut();
            if r.len() < 1024 {
                r.insert(route.to_string(), h.clone());
            }
            h
        })
        .unwrap_or_else(|_| make())
}

/// Measures the bytes allocated while polling `fut` (on whatever threads poll it) and
/// records them in `request_alloc_bytes{route}` when it completes. Allocations made by other
/// tasks on its behalf (spawned work, I/O drivers) are not attributed to it.
pub fn track_request<F: Future>(route: &str, fut: F) -> TrackAlloc<F> {
    TrackAlloc { fut, hist: is_installed().then(|| Hist::Owned(route_histogram(route))), bytes: 0 }
}

/// [`track_request`] for an interned route ([`crate::metrics::intern`]): the thread finds
/// the route's histogram by its address among the last few it used, and borrows it, so a
/// request bumps no shared reference count.
pub(crate) fn track_request_interned<F: Future>(route: &'static str, fut: F) -> TrackAlloc<F> {
    thread_local! {
        static RECENT: Cell<Recent<(usize, &'static Histogram), 4>> = const { Cell::new(Recent::new()) };
    }
    if !is_installed() {
        return TrackAlloc { fut, hist: None, bytes: 0 };
    }
    let addr = route.as_ptr() as usize;
    let recent = RECENT.try_with(Cell::get).unwrap_or(Recent::new());
    let hist = match recent.find(|&(a, _)| a == addr) {
        Some((_, h)) => h,
        None => {
            let h = interned_route_histogram(route);
            let _ = RECENT.try_with(|r| {
                let mut recent = r.get();
                recent.remember((addr, h));
                r.set(recent);
            });
            h
        }
    };
    TrackAlloc { fut, hist: Some(Hist::Static(hist)), bytes: 0 }
}

/// One histogram per interned route for the life of the process (routes are bounded by the
/// interner's cap).
fn interned_route_histogram(route: &'static str) -> &'static Histogram {
    static KEPT: parking_lot::Mutex<Option<HashMap<usize, &'static Histogram>>> = parking_lot::Mutex::new(None);
    let mut kept = KEPT.lock();
    let kept = kept.get_or_insert_with(HashMap::new);
    kept.entry(route.as_ptr() as usize).or_insert_with(|| Box::leak(Box::new(route_histogram(route))))
}

/// A route's histogram, owned or kept for the process's life.
enum Hist {
    Owned(Histogram),
    Static(&'static Histogram),
}

impl std::ops::Deref for Hist {
    type Target = Histogram;
    fn deref(&self) -> &Histogram {
        match self {
            Hist::Owned(h) => h,
            Hist::Static(h) => h,
        }
    }
}

/// Future returned by [`track_request`].
pub struct TrackAlloc<F> {
    fut: F,
    hist: Option<Hist>,
    bytes: u64,
}

impl<F: Future> Future for TrackAlloc<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // SAFETY: `fut` is structurally pinned and never moved; other fields are Unpin.
        let this = unsafe { self.get_unchecked_mut() };
        let fut = unsafe { Pin::new_unchecked(&mut this.fut) };
        let Some(hist) = &this.hist else {
            return fut.poll(cx);
        };
        let before = thread_allocated_bytes();
        let out = fut.poll(cx);
        if let (Some(b), Some(a)) = (before, thread_allocated_bytes()) {
            this.bytes += a.wrapping_sub(b);
        }
        if out.is_ready() {
            hist.observe_raw(this.bytes);
        }
        out
    }
}

/// The allocator's families, read at scrape time (part of the probes' metrics source).
pub(super) fn encode(enc: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
    let Some(s) = stats() else {
        return Ok(());
    };
    emit_counter(enc, &ALLOC, s.allocs)?;
    emit_counter(enc, &ALLOC_BYTES, s.alloc_bytes)?;
    emit_counter(enc, &ALLOC_LARGE, s.large)?;
    emit_counter(enc, &FREE, s.frees)?;
    emit_counter(enc, &FREE_BYTES, s.free_bytes)?;
    emit_gauge(enc, &HEAP_LIVE, s.live_bytes as i64)?;
    emit_gauge(enc, &HEAP_PEAK, s.peak_bytes as i64)?;
    Ok(())
}
