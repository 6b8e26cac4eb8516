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

use super::{families, Counter, Histogram, Recent};

/// Entries a thread caches per family before it stops caching (protects memory if a
/// caller passes unbounded labels; such labels fold into `other` anyway).
const THREAD_CACHE_CAP: usize = 1024;

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
    static HTTP: RefCell<Cache<(Counter, Histogram)>> = RefCell::new(Cache::default());
    static RPC_SERVER: RefCell<Cache<(Counter, Histogram)>> = RefCell::new(Cache::default());
    static RPC_CLIENT: RefCell<Cache<(Counter, Histogram)>> = RefCell::new(Cache::default());
    static RETRY: RefCell<Cache<Counter>> = RefCell::new(Cache::default());
    static STORE: RefCell<Cache<Histogram>> = RefCell::new(Cache::default());
}

/// Separates label values in a cache key.
const SEP: u8 = 0x1f;

/// Label tuples a thread remembers having recorded last, per family.
const RECENT: usize = 4;

/// One cached series: its key and handles. Boxed in the map, so [`Cache::recent`] can point at
/// it while the map grows.
struct Entry<V> {
    key: Box<str>,
    value: V,
}

impl<V> Entry<V> {
    /// Whether this entry's key is `parts` joined by [`SEP`], compared in place.
    fn is(&self, parts: &[&str]) -> bool {
        let mut rest = self.key.as_bytes();
        for (i, part) in parts.iter().enumerate() {
            if i > 0 {
                match rest.split_first() {
                    Some((&SEP, tail)) => rest = tail,
                    _ => return false,
                }
            }
            match rest.strip_prefix(part.as_bytes()) {
                Some(tail) => rest = tail,
                None => return false,
            }
        }
        rest.is_empty()
    }
}

/// A thread's series handles for one family, by label key. A request path records the same
/// few tuples over and over: those are found among the [`RECENT`] ones by comparing the labels
/// in place, without building and hashing a key, or, for a caller whose labels are interned,
/// by one integer standing for the tuple.
struct Cache<V> {
    map: LabelMap<Box<Entry<V>>>,
    /// Entries of `map`, which never drops one while the cache lives.
    recent: Recent<*const Entry<V>, RECENT>,
    /// `(id, entry)` for tuples recorded by id ([`cached`]'s `id`).
    by_id: Recent<(u64, *const Entry<V>), RECENT>,
}

impl<V> Default for Cache<V> {
    fn default() -> Self {
        Cache { map: LabelMap::default(), recent: Recent::new(), by_id: Recent::new() }
    }
}

impl<V> Cache<V> {
    fn recent(&self, parts: &[&str]) -> Option<*const Entry<V>> {
        // SAFETY: pointers in `recent` point into boxes `map` owns and never drops while
        // `self` lives.
        self.recent.find(|&e| unsafe { &*e }.is(parts))
    }

    fn by_id(&self, id: u64) -> Option<*const Entry<V>> {
        self.by_id.find(|&(i, _)| i == id).map(|(_, e)| e)
    }

    /// The entry of `parts` from the map, made with `make` when it is new; `None` when the
    /// map is full.
    fn find_or_insert(&mut self, parts: &[&str], make: &mut Option<impl FnOnce() -> V>) -> Option<*const Entry<V>> {
        let e = KEY
            .try_with(|k| {
                let mut k = k.borrow_mut();
                k.clear();
                for (i, part) in parts.iter().enumerate() {
                    if i > 0 {
                        k.push(char::from(SEP));
                    }
                    k.push_str(part);
                }
                if let Some(e) = self.map.get(k.as_str()) {
                    return Some(&**e as *const Entry<V>);
                }
                if self.map.len() >= THREAD_CACHE_CAP {
                    return None;
                }
                let value = (make.take().expect("make once"))();
                let e = Box::new(Entry { key: k.as_str().into(), value });
                let ptr: *const Entry<V> = &*e;
                self.map.insert(k.clone(), e);
                Some(ptr)
            })
            .ok()??;
        self.recent.remember(e);
        Some(e)
    }
}

/// Looks the label tuple `parts` up in the thread's cache, creating its handles with `make` on
/// a miss, and hands them to `record` by reference: cloning them would bump their `Arc` counts,
/// a shared atomic every thread recording the same series writes. `id`, when given, must stand
/// for `parts` and nothing else for the life of the process (built from interned labels).
fn cached<V>(
    cache: &'static LocalKey<RefCell<Cache<V>>>,
    id: Option<u64>,
    parts: &[&str],
    make: impl FnOnce() -> V,
    record: impl FnOnce(&V),
) {
    let mut make = Some(make);
    let mut record = Some(record);
    let _ = cache.try_with(|c| {
        let mut c = c.borrow_mut();
        let known = id.and_then(|id| c.by_id(id));
        let Some(e) = known.or_else(|| c.recent(parts)).or_else(|| c.find_or_insert(parts, &mut make)) else {
            return;
        };
        if let (Some(id), None) = (id, known) {
            c.by_id.remember((id, e));
        }
        // SAFETY: `e` points into a box `c.map` owns; `c` stays borrowed while it is used.
        (record.take().expect("record once"))(unsafe { &(*e).value });
    });
    // A full cache, or thread-locals being torn down: go to the family directly.
    if let Some(record) = record.take() {
        let make = make.take().expect("make unused while record is");
        record(&make());
    }
}

/// An HTTP status as three digits, without the formatting machinery.
fn status_digits(status: u16) -> Option<[u8; 3]> {
    (100..1000).contains(&status).then(|| [status / 100, status / 10 % 10, status % 10].map(|d| b'0' + d as u8))
}

/// One HTTP request served: `route` is the route template (`/api/v1/counter/{id}/{type}`),
/// never the raw path.
pub fn http_request(route: &str, method: &str, status: u16, elapsed: Duration) {
    http_request_with_id(None, route, method, status, elapsed)
}

/// [`http_request`] for a layer whose route is interned
/// ([`intern`](super::intern)): the route's address, the method and the status make the
/// cache's id, so a repeat compares one integer.
pub(crate) fn http_request_interned(route: &'static str, method: &http::Method, status: u16, elapsed: Duration) {
    const STANDARD: [http::Method; 9] = [
        http::Method::GET,
        http::Method::POST,
        http::Method::PUT,
        http::Method::DELETE,
        http::Method::PATCH,
        http::Method::HEAD,
        http::Method::OPTIONS,
        http::Method::CONNECT,
        http::Method::TRACE,
    ];
    // Route addresses are aligned neither way: keep all their bits, fold the rest above.
    let id = STANDARD
        .iter()
        .position(|m| m == method)
        .filter(|_| status < 1000)
        .map(|m| (route.as_ptr() as u64) ^ ((m as u64 + 1) << 48) ^ (u64::from(status) << 52));
    http_request_with_id(id, route, method.as_str(), status, elapsed)
}

fn http_request_with_id(id: Option<u64>, route: &str, method: &str, status: u16, elapsed: Duration) {
    // The uninstrumented twin (`--cfg pinchpoint_bare`) records nothing.
    if cfg!(pinchpoint_bare) {
        return;
    }
    let digits = status_digits(status);
    let owned;
    let status_label = match &digits {
        // SAFETY: ASCII digits.
        Some(d) => unsafe { std::str::from_utf8_unchecked(d) },
        None => {
            owned = status.to_string();
            owned.as_str()
        }
    };
    cached(
        &HTTP,
        id,
        &[route, method, status_label],
        || {
            let f = families();
            (f.http_requests.get([route, method, status_label]), f.http_duration.get([route, method]))
        },
        |(count, hist)| {
            count.inc();
            // The current span's trace id, when it is sampled for export, becomes the exemplar.
            hist.observe_duration_traced(elapsed, crate::telemetry::sampled_trace_id());
        },
    );
}

fn rpc(
    cache: &'static LocalKey<RefCell<Cache<(Counter, Histogram)>>>,
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
        None,
        &[method, code],
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
    cached(&RETRY, None, &[method], || families().rpc_client_retries.get([method]), Counter::inc);
}

/// One store operation: `backend` memory|redis, `op` increment|batch|get.
pub fn store_op(backend: &str, op: &str, elapsed: Duration) {
    // The uninstrumented twin (`--cfg pinchpoint_bare`) records nothing.
    if cfg!(pinchpoint_bare) {
        return;
    }
    cached(&STORE, None, &[backend, op], || families().store_op.get([backend, op]), |h| h.observe_duration(elapsed));
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

    #[test]
    fn recent_tuples_are_told_apart_by_every_label() {
        // More tuples than a thread remembers, sharing prefixes, recorded in turn.
        let tuples = [
            ("/rt/a", "GET", 200),
            ("/rt/a", "GET", 201),
            ("/rt/ab", "GET", 200),
            ("/rt/a", "POST", 200),
            ("/rt/a", "GETX", 200),
            ("/rt/b", "GET", 200),
        ];
        for round in 1..=3 {
            for (route, method, status) in tuples {
                http_request(route, method, status, Duration::from_micros(1));
            }
            for (route, method, status) in tuples {
                let c = families().http_requests.get([route, method, &status.to_string()]);
                assert_eq!(c.get(), round, "{route} {method} {status}");
            }
        }
    }

    #[test]
    fn a_buffer_reused_for_other_labels_is_not_mistaken_for_the_old_ones() {
        let mut route = String::from("/reuse/x");
        store_op("memory", &route, Duration::from_micros(1));
        route.replace_range(.., "/reuse/y");
        store_op("memory", &route, Duration::from_micros(1));
        assert_eq!(families().store_op.get(["memory", "/reuse/x"]).count(), 1);
        assert_eq!(families().store_op.get(["memory", "/reuse/y"]).count(), 1);
    }

    #[test]
    fn interned_routes_record_into_the_same_series() {
        let route = super::super::intern("/interned/{id}").unwrap();
        http_request_interned(route, &http::Method::GET, 200, Duration::from_micros(1));
        http_request_interned(route, &http::Method::GET, 404, Duration::from_micros(1));
        http_request_interned(route, &http::Method::GET, 200, Duration::from_micros(1));
        http_request("/interned/{id}", "GET", 200, Duration::from_micros(1));
        http_request_interned(route, &http::Method::from_bytes(b"PURGE").unwrap(), 200, Duration::from_micros(1));
        let f = families();
        assert_eq!(f.http_requests.get(["/interned/{id}", "GET", "200"]).get(), 3);
        assert_eq!(f.http_requests.get(["/interned/{id}", "GET", "404"]).get(), 1);
        assert_eq!(f.http_requests.get(["/interned/{id}", "PURGE", "200"]).get(), 1);
        assert_eq!(f.http_duration.get(["/interned/{id}", "GET"]).count(), 4);
    }
}
