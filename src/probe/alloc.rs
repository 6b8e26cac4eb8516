//! A counting global allocator and per-request allocation bytes.
//!
//! ```ignore
//! #[global_allocator]
//! static ALLOC: pinchpoint::probe::alloc::CountingAlloc = pinchpoint::probe::alloc::CountingAlloc::system();
//! ```
//!
//! No shared atomic per allocation: each thread owns a slot of counters (claimed on its first
//! allocation) and updates it with plain relaxed load+store, which compiles to ordinary moves;
//! a scrape folds the slots. Threads past [`SLOTS`] share slots and fall back to atomic adds.
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
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::task::{Context, Poll};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;

use crate::metrics::catalog::*;
use crate::metrics::{emit_counter, emit_gauge, families, Histogram};

/// Threads that get a slot of their own.
pub const SLOTS: usize = 512;
/// Allocations at least this large are counted in `alloc_large_total` and update the peak.
pub const LARGE: usize = 1 << 20;

const SHARED: usize = 1 << (usize::BITS - 1);
const UNSET: usize = usize::MAX;

#[repr(align(64))]
struct Slot {
    allocs: AtomicU64,
    alloc_bytes: AtomicU64,
    frees: AtomicU64,
    free_bytes: AtomicU64,
    large: AtomicU64,
}

impl Slot {
    const fn new() -> Self {
        Self {
            allocs: AtomicU64::new(0),
            alloc_bytes: AtomicU64::new(0),
            frees: AtomicU64::new(0),
            free_bytes: AtomicU64::new(0),
            large: AtomicU64::new(0),
        }
    }
}

static SLOT_ARRAY: [Slot; SLOTS] = [const { Slot::new() }; SLOTS];
static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);
static INSTALLED: AtomicBool = AtomicBool::new(false);
static PEAK: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static MY_SLOT: Cell<usize> = const { Cell::new(UNSET) };
}

/// This thread's slot index, with the `SHARED` bit if the slot is shared. Only the allocator
/// calls it: claiming a slot is how `INSTALLED` learns that a `CountingAlloc` is in use.
#[inline]
fn my_slot() -> usize {
    MY_SLOT
        .try_with(|s| {
            let v = s.get();
            if v != UNSET {
                return v;
            }
            claim_slot(s)
        })
        .unwrap_or(SHARED) // no thread-local: use slot 0, shared
}

#[cold]
#[inline(never)]
fn claim_slot(s: &Cell<usize>) -> usize {
    INSTALLED.store(true, Relaxed);
    let n = NEXT_SLOT.fetch_add(1, Relaxed);
    let v = if n < SLOTS { n } else { (n % SLOTS) | SHARED };
    s.set(v);
    v
}

/// This thread's slot and whether it is shared.
#[inline]
fn slot() -> (&'static Slot, bool) {
    let s = my_slot();
    // SAFETY: an index without the SHARED bit is below SLOTS (see `claim_slot`; SHARED alone
    // masks to 0), so the bounds check can go.
    (unsafe { SLOT_ARRAY.get_unchecked(s & !SHARED) }, s & SHARED != 0)
}

#[inline]
fn add(a: &AtomicU64, v: u64, shared: bool) {
    if shared {
        a.fetch_add(v, Relaxed);
    } else {
        // Only this thread writes this slot: a plain load+store is exact and cheap.
        a.store(a.load(Relaxed).wrapping_add(v), Relaxed);
    }
}

#[inline]
fn record_alloc(size: usize) {
    let (slot, shared) = slot();
    add(&slot.allocs, 1, shared);
    add(&slot.alloc_bytes, size as u64, shared);
    if size >= LARGE {
        add(&slot.large, 1, shared);
        update_peak();
    }
}

#[inline]
fn record_free(size: usize) {
    let (slot, shared) = slot();
    add(&slot.frees, 1, shared);
    add(&slot.free_bytes, size as u64, shared);
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

// SAFETY: every method forwards to the inner allocator unchanged; the bookkeeping neither
// allocates nor unwinds.
unsafe impl<A: GlobalAlloc> GlobalAlloc for CountingAlloc<A> {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = self.inner.alloc(layout);
        if !p.is_null() {
            record_alloc(layout.size());
        }
        p
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = self.inner.alloc_zeroed(layout);
        if !p.is_null() {
            record_alloc(layout.size());
        }
        p
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        self.inner.dealloc(ptr, layout);
        record_free(layout.size());
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
    pub allocs: u64,
    pub alloc_bytes: u64,
    pub frees: u64,
    pub free_bytes: u64,
    pub large: u64,
    pub live_bytes: u64,
    pub peak_bytes: u64,
}

fn fold() -> AllocStats {
    let used = NEXT_SLOT.load(Relaxed).clamp(1, SLOTS);
    let mut s = AllocStats::default();
    for slot in &SLOT_ARRAY[..used] {
        s.allocs += slot.allocs.load(Relaxed);
        s.alloc_bytes += slot.alloc_bytes.load(Relaxed);
        s.frees += slot.frees.load(Relaxed);
        s.free_bytes += slot.free_bytes.load(Relaxed);
        s.large += slot.large.load(Relaxed);
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
    // Not `my_slot`: this thread may not have allocated yet, and only the allocator claims.
    let s = MY_SLOT.try_with(Cell::get).ok().filter(|&s| s != UNSET && s & SHARED == 0)?;
    Some(SLOT_ARRAY[s].alloc_bytes.load(Relaxed))
}

thread_local! {
    static ROUTES: RefCell<HashMap<String, Histogram>> = RefCell::new(HashMap::new());
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
    TrackAlloc { fut, hist: is_installed().then(|| route_histogram(route)), bytes: 0 }
}

/// Future returned by [`track_request`].
pub struct TrackAlloc<F> {
    fut: F,
    hist: Option<Histogram>,
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

#[derive(Debug)]
pub(crate) struct AllocCollector;

impl Collector for AllocCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(s) = stats() else {
            return Ok(());
        };
        emit_counter(&mut enc, &ALLOC, s.allocs)?;
        emit_counter(&mut enc, &ALLOC_BYTES, s.alloc_bytes)?;
        emit_counter(&mut enc, &ALLOC_LARGE, s.large)?;
        emit_counter(&mut enc, &FREE, s.frees)?;
        emit_counter(&mut enc, &FREE_BYTES, s.free_bytes)?;
        emit_gauge(&mut enc, &HEAP_LIVE, s.live_bytes as i64)?;
        emit_gauge(&mut enc, &HEAP_PEAK, s.peak_bytes as i64)?;
        Ok(())
    }
}
