//! The probes' clock: nanoseconds on a monotonic clock, for timestamps kept in atomics (only
//! differences mean anything).
//!
//! The task hooks read it twice per poll, so its cost is paid on every poll of every task.
//! `clock_gettime(CLOCK_MONOTONIC)` costs 19 ns here even through the vDSO: the kernel's
//! seqlock and scaling around the CPU's timestamp counter (TSC), which alone reads in 8 ns.
//! Where the kernel itself keeps time with the TSC (its clocksource is `tsc`: the counter is
//! invariant and synchronised across CPUs, which the kernel checked), this clock reads the TSC
//! and scales it with a rate it measured against `CLOCK_MONOTONIC`. Elsewhere, and until that
//! measurement has run for [`CALIBRATION_NS`], it is `CLOCK_MONOTONIC` itself.
//!
//! The scaled TSC is anchored at the moment of calibration, so the two readings agree there.
//! Its rate error is what 50 ms of the OS clock can resolve (well under a part per million);
//! NTP slewing of `CLOCK_MONOTONIC` (at most 500 ppm) is not followed, which a clock read only
//! for durations and ages within one process does not need.

use std::sync::OnceLock;
use std::time::Duration;

/// How long the TSC is measured against the OS clock before it is trusted.
const CALIBRATION_NS: u64 = 50_000_000;

/// When something started, on the probes' clock: what the layers and the store time a call
/// with, at half the cost of two `Instant` reads.
#[derive(Debug, Clone, Copy)]
pub struct Stopwatch(u64);

impl Stopwatch {
    /// Starts now.
    #[inline]
    pub fn start() -> Self {
        Stopwatch(now_ns())
    }

    /// Time since [`start`](Self::start).
    #[inline]
    pub fn elapsed(self) -> Duration {
        Duration::from_nanos(now_ns().saturating_sub(self.0))
    }
}

/// `ns = base_ns + (tsc - base_tsc) * mult >> 32`.
#[cfg_attr(not(all(target_os = "linux", target_arch = "x86_64")), allow(dead_code))]
#[derive(Debug, Clone, Copy)]
struct Scale {
    base_tsc: u64,
    base_ns: u64,
    /// Nanoseconds per tick, in 32.32 fixed point.
    mult: u64,
}

impl Scale {
    #[inline]
    fn ns(&self, tsc: u64) -> u64 {
        let ticks = tsc.saturating_sub(self.base_tsc);
        self.base_ns + ((u128::from(ticks) * u128::from(self.mult)) >> 32) as u64
    }
}

/// `Some` once the TSC is calibrated; `None` forever where it is not to be used.
static SCALE: OnceLock<Option<Scale>> = OnceLock::new();

/// Now, in nanoseconds; never 0.
#[inline]
pub(crate) fn now_ns() -> u64 {
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    if let Some(Some(scale)) = SCALE.get() {
        // SAFETY: RDTSC exists on every x86_64 CPU.
        return scale.ns(unsafe { core::arch::x86_64::_rdtsc() });
    }
    calibrating()
}

#[cold]
#[inline(never)]
fn calibrating() -> u64 {
    let ns = os_ns();
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    calibrate(ns);
    ns
}

/// Measures the TSC's rate from the first reading of the OS clock to one taken at least
/// [`CALIBRATION_NS`] later; the first caller past that point settles it for every thread.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
fn calibrate(ns: u64) {
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    // SAFETY: RDTSC exists on every x86_64 CPU.
    let tsc = unsafe { core::arch::x86_64::_rdtsc() };
    static START: OnceLock<Option<(u64, u64)>> = OnceLock::new();
    static TRIED: AtomicU64 = AtomicU64::new(0);
    let Some((tsc0, ns0)) = *START.get_or_init(|| kernel_uses_tsc().then_some((tsc, ns))) else {
        let _ = SCALE.set(None);
        return;
    };
    if ns.saturating_sub(ns0) < CALIBRATION_NS || TRIED.swap(1, Relaxed) == 1 {
        return;
    }
    let scale = (tsc > tsc0).then(|| {
        let mult = (u128::from(ns - ns0) << 32) / u128::from(tsc - tsc0);
        Scale { base_tsc: tsc, base_ns: ns, mult: mult as u64 }
    });
    // A counter that did not move is not a clock: stay on the OS's.
    let _ = SCALE.set(scale.filter(|s| s.mult > 0 && s.mult >> 32 < 1000));
}

/// The kernel keeps time with the TSC only when it found it invariant and in step on all
/// CPUs; a VM or machine where it is not gets `hpet`, `kvm-clock`, `acpi_pm` and the like.
#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
fn kernel_uses_tsc() -> bool {
    std::fs::read_to_string("/sys/devices/system/clocksource/clocksource0/current_clocksource")
        .is_ok_and(|s| s.trim() == "tsc")
}

/// `CLOCK_MONOTONIC` (what `Instant` reads, without its `Duration` arithmetic); never 0 on
/// Linux, since it counts from boot.
fn os_ns() -> u64 {
    #[cfg(target_os = "linux")]
    {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: `ts` is a valid out-pointer and CLOCK_MONOTONIC always exists on Linux.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
    }
    #[cfg(not(target_os = "linux"))]
    {
        super::epoch().elapsed().as_nanos() as u64 + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn scale_maps_ticks_to_nanoseconds() {
        // 2.5 ticks per ns.
        let s = Scale { base_tsc: 1000, base_ns: 7, mult: (1u64 << 32) * 2 / 5 };
        assert_eq!(s.ns(1000), 7);
        // The 32.32 rate rounds down: within a nanosecond.
        assert!(s.ns(3500).abs_diff(7 + 1000) <= 1, "{}", s.ns(3500));
        assert_eq!(s.ns(500), 7, "a reading behind the base does not go back");
    }

    #[test]
    fn agrees_with_the_os_clock_after_calibration() {
        let deadline = Instant::now() + Duration::from_secs(5);
        // Calibration settles on the first read past CALIBRATION_NS.
        while SCALE.get().is_none() {
            assert!(Instant::now() < deadline, "calibration never settled");
            now_ns();
            std::thread::yield_now();
        }
        let mut last = now_ns();
        for _ in 0..1000 {
            let (os, ours) = (os_ns(), now_ns());
            assert!(ours >= last, "went back from {last} to {ours}");
            last = ours;
            // Within 2 ms of CLOCK_MONOTONIC, shortly after calibration.
            assert!(os.abs_diff(ours) < 2_000_000, "os {os} vs probe clock {ours}");
        }
        let (o0, p0) = (os_ns(), now_ns());
        std::thread::sleep(Duration::from_millis(30));
        let (o1, p1) = (os_ns(), now_ns());
        let (os, ours) = ((o1 - o0) as f64, (p1 - p0) as f64);
        assert!((ours / os - 1.0).abs() < 0.01, "30 ms on the OS clock read as {ours} ns");
    }
}
