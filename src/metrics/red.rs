//! RED metrics (rate, errors, duration) for the counter system's HTTP, gRPC and store layers.
//!
//! Callers pass labels as `&str` (route templates, method names: bounded sets). The series
//! handles for a label tuple are cached per thread, so a repeat call is a thread-local hash
//! lookup plus a striped counter increment and a lock-free histogram observation: no lock and
//! no shared atomic on the request path. The first call for a tuple on a thread goes to the
//! family (a lock); label values past the cap fold into `other` there.
//!
//! HTTP and RPC durations carry the current span's trace id as an OpenMetrics exemplar when
//! the span is sampled for OTLP export (see [`crate::telemetry`]); with no exporter that
//! costs one relaxed load.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::thread::LocalKey;
use std::time::Duration;

use super::{families, Counter, Histogram};

/// Entries a thread caches per family before it stops caching (protects memory if a
/// caller passes unbounded labels; such labels fold into `other` anyway).
const THREAD_CACHE_CAP: usize = 1024;

type Cache<V> = RefCell<LabelMap<V>>;

/// A thread's cache of series handles by label key.
pub(crate) type LabelMap<V> = HashMap<String, V, BuildHasherDefault<LabelHasher>>;

/// The caches' hash: their keys are short label strings from code (route templates, method
/// names), at most [`THREAD_CACHE_CAP`] per thread, so a multiply-rotate hash over 8-byte words
/// serves; SipHash's flooding resistance cost more than the rest of the lookup.
#[derive(Default, Clone, Copy)]
pub(crate) struct LabelHasher(u64);

impl LabelHasher {
    const K: u64 = 0xf135_7aea_2e62_a9c5;

    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(26) ^ word).wrapping_mul(Self::K);
    }
}

impl Hasher for LabelHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for w in &mut words {
            self.add(u64::from_le_bytes(w.try_into().expect("8 bytes")));
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            let mut last = [0u8; 8];
            last[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(last));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn finish(&self) -> u64 {
        // hashbrown picks buckets from the low bits and tags from the top 7: fold both in.
        self.0 ^ (self.0 >> 29)
    }
}

thread_local! {
    static KEY: RefCell<String> = const { RefCell::new(String::new()) };
    static HTTP: Cache<(Counter, Histogram)> = RefCell::new(LabelMap::default());
    static RPC_SERVER: Cache<(Counter, Histogram)> = RefCell::new(LabelMap::default());
    static RPC_CLIENT: Cache<(Counter, Histogram)> = RefCell::new(LabelMap::default());
    static RETRY: Cache<Counter> = RefCell::new(LabelMap::default());
    static STORE: Cache<Histogram> = RefCell::new(LabelMap::default());
}

/// Looks `key(parts)` up in the thread's cache, creating with `make` on a miss, and hands the
/// handles to `record` by reference: cloning them would bump their `Arc` counts, a shared
/// atomic every thread recording the same series writes.
fn cached<V>(
    cache: &'static LocalKey<Cache<V>>,
    build_key: impl FnOnce(&mut String),
    make: impl FnOnce() -> V,
    record: impl FnOnce(&V),
) {
    let mut make = Some(make);
    let mut record = Some(record);
    let done = KEY.try_with(|k| {
        let mut k = k.borrow_mut();
        k.clear();
        build_key(&mut k);
        cache
            .try_with(|c| {
                if let Some(v) = c.borrow().get(k.as_str()) {
                    return (record.take().expect("record once"))(v);
                }
                let v = (make.take().expect("make once"))();
                (record.take().expect("record once"))(&v);
                let mut c = c.borrow_mut();
                if c.len() < THREAD_CACHE_CAP {
                    c.insert(k.clone(), v);
                }
            })
            .is_ok()
    });
    if !matches!(done, Ok(true)) {
        // Thread-locals are being torn down: go to the family directly.
        if let (Some(make), Some(record)) = (make.take(), record.take()) {
            record(&make());
        }
    }
}

/// An HTTP status as three digits, without the formatting machinery.
fn push_status(k: &mut String, status: u16) {
    if (100..1000).contains(&status) {
        for d in [status / 100, status / 10 % 10, status % 10] {
            k.push(char::from(b'0' + d as u8));
        }
    } else {
        k.push_str(&status.to_string());
    }
}

fn key2(k: &mut String, a: &str, b: &str) {
    k.push_str(a);
    k.push('\u{1f}');
    k.push_str(b);
}

/// One HTTP request served: `route` is the route template (`/api/v1/counter/{id}/{type}`),
/// never the raw path.
pub fn http_request(route: &str, method: &str, status: u16, elapsed: Duration) {
    // The uninstrumented twin (`--cfg pinchpoint_bare`) records nothing.
    if cfg!(pinchpoint_bare) {
        return;
    }
    cached(
        &HTTP,
        |k| {
            key2(k, route, method);
            k.push('\u{1f}');
            push_status(k, status);
        },
        || {
            let f = families();
            let status = status.to_string();
            (f.http_requests.get([route, method, &status]), f.http_duration.get([route, method]))
        },
        |(count, hist)| {
            count.inc();
            // The current span's trace id, when it is sampled for export, becomes the exemplar.
            hist.observe_duration_traced(elapsed, crate::telemetry::sampled_trace_id());
        },
    );
}

fn rpc(
    cache: &'static LocalKey<Cache<(Counter, Histogram)>>,
    client: bool,
    method: &str,
    code: &str,
    elapsed: Duration,
) {
    // The uninstrumented twin (`--cfg pinchpoint_bare`) records nothing.
    if cfg!(pinchpoint_bare) {
        return;
    }
    cached(
        cache,
        |k| key2(k, method, code),
        || {
            let f = families();
            if client {
                // The method's retry series exists from its first call, at 0: the retry
                // amplification (retries / requests) then reads 0 instead of "no data".
                let _ = f.rpc_client_retries.get([method]);
                (f.rpc_client_requests.get([method, code]), f.rpc_client_duration.get([method]))
            } else {
                (f.rpc_server_requests.get([method, code]), f.rpc_server_duration.get([method]))
            }
        },
        |(count, hist)| {
            count.inc();
            // The current span's trace id, when it is sampled for export, becomes the exemplar.
            hist.observe_duration_traced(elapsed, crate::telemetry::sampled_trace_id());
        },
    );
}

/// One gRPC call served; `code` in snake case (`ok`, `invalid_argument`, ...).
pub fn rpc_server(method: &str, code: &str, elapsed: Duration) {
    rpc(&RPC_SERVER, false, method, code, elapsed);
}

/// One gRPC call attempt made (a retry is an attempt of its own).
pub fn rpc_client(method: &str, code: &str, elapsed: Duration) {
    rpc(&RPC_CLIENT, true, method, code, elapsed);
}

/// One retry of a gRPC call.
pub fn rpc_client_retry(method: &str) {
    // The uninstrumented twin (`--cfg pinchpoint_bare`) records nothing.
    if cfg!(pinchpoint_bare) {
        return;
    }
    cached(&RETRY, |k| k.push_str(method), || families().rpc_client_retries.get([method]), Counter::inc);
}

/// One store operation: `backend` memory|redis, `op` increment|batch|get.
pub fn store_op(backend: &str, op: &str, elapsed: Duration) {
    // The uninstrumented twin (`--cfg pinchpoint_bare`) records nothing.
    if cfg!(pinchpoint_bare) {
        return;
    }
    cached(
        &STORE,
        |k| key2(k, backend, op),
        || families().store_op.get([backend, op]),
        |h| h.observe_duration(elapsed),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeat_calls_hit_the_same_series() {
        http_request("/red-test", "GET", 200, Duration::from_millis(3));
        http_request("/red-test", "GET", 200, Duration::from_millis(3));
        let c = families().http_requests.get(["/red-test", "GET", "200"]);
        assert_eq!(c.get(), 2);
        let h = families().http_duration.get(["/red-test", "GET"]);
        assert_eq!(h.count(), 2);
        store_op("memory", "red-test", Duration::from_micros(10));
        assert_eq!(families().store_op.get(["memory", "red-test"]).count(), 1);
    }

    #[test]
    fn label_hash_sees_every_byte_including_a_short_tail() {
        use std::hash::BuildHasher;
        let h = |s: &str| BuildHasherDefault::<LabelHasher>::default().hash_one(s);
        let keys = [
            "/api/v1/counter/increment\u{1f}POST\u{1f}200",
            "/api/v1/counter/increment\u{1f}POST\u{1f}201",
            "a",
            "b",
            "ab",
            "",
        ];
        let hashes: std::collections::HashSet<u64> = keys.iter().map(|k| h(k)).collect();
        assert_eq!(hashes.len(), keys.len());
        assert_eq!(h("memory\u{1f}get"), h("memory\u{1f}get"));
    }
}
