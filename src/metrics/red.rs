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
use std::fmt::Write as _;
use std::thread::LocalKey;
use std::time::Duration;

use super::{families, Counter, Histogram};

/// Entries a thread caches per family before it stops caching (protects memory if a
/// caller passes unbounded labels; such labels fold into `other` anyway).
const THREAD_CACHE_CAP: usize = 1024;

type Cache<V> = RefCell<HashMap<String, V>>;

thread_local! {
    static KEY: RefCell<String> = const { RefCell::new(String::new()) };
    static HTTP: Cache<(Counter, Histogram)> = RefCell::new(HashMap::new());
    static RPC_SERVER: Cache<(Counter, Histogram)> = RefCell::new(HashMap::new());
    static RPC_CLIENT: Cache<(Counter, Histogram)> = RefCell::new(HashMap::new());
    static RETRY: Cache<Counter> = RefCell::new(HashMap::new());
    static STORE: Cache<Histogram> = RefCell::new(HashMap::new());
}

/// Looks `key(parts)` up in the thread's cache, creating with `make` on a miss.
fn cached<V: Clone>(
    cache: &'static LocalKey<Cache<V>>,
    build_key: impl FnOnce(&mut String),
    make: impl FnOnce() -> V,
) -> V {
    let mut make = Some(make);
    let hit = KEY.try_with(|k| {
        let mut k = k.borrow_mut();
        k.clear();
        build_key(&mut k);
        cache
            .try_with(|c| {
                if let Some(v) = c.borrow().get(k.as_str()) {
                    return v.clone();
                }
                let v = (make.take().expect("make once"))();
                let mut c = c.borrow_mut();
                if c.len() < THREAD_CACHE_CAP {
                    c.insert(k.clone(), v.clone());
                }
                v
            })
            .ok()
    });
    match hit {
        Ok(Some(v)) => v,
        // Thread-locals are being torn down: go to the family directly.
        _ => (make.take().expect("make once"))(),
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
    let (count, hist) = cached(
        &HTTP,
        |k| {
            key2(k, route, method);
            let _ = write!(k, "\u{1f}{status}");
        },
        || {
            let f = families();
            let status = status.to_string();
            (f.http_requests.get([route, method, &status]), f.http_duration.get([route, method]))
        },
    );
    count.inc();
    // The current span's trace id, when it is sampled for export, becomes the exemplar.
    hist.observe_duration_traced(elapsed, crate::telemetry::sampled_trace_id());
}

fn rpc(
    cache: &'static LocalKey<Cache<(Counter, Histogram)>>,
    client: bool,
    method: &str,
    code: &str,
    elapsed: Duration,
) {
    let (count, hist) = cached(
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
    );
    count.inc();
    // The current span's trace id, when it is sampled for export, becomes the exemplar.
    hist.observe_duration_traced(elapsed, crate::telemetry::sampled_trace_id());
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
    cached(&RETRY, |k| k.push_str(method), || families().rpc_client_retries.get([method])).inc();
}

/// One store operation: `backend` memory|redis, `op` increment|batch|get.
pub fn store_op(backend: &str, op: &str, elapsed: Duration) {
    cached(&STORE, |k| key2(k, backend, op), || families().store_op.get([backend, op])).observe_duration(elapsed);
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
}
