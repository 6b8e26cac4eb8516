//! The gateway's field-report features over real processes: balancing, failover,
//! breaker, retries, write buffer, coalescing, rate limiting, read cache.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_services_share_traffic_and_hash_keeps_a_key_on_one() {
    let a = service(&[]);
    let b = service(&[]);
    let urls = format!("{},{}", a.grpc_url(), b.grpc_url());
    let rr = gateway(&urls, &["--pool-size", "2"]);
    let api = Api::new(rr.http_url());
    let r = fresh("spread");
    for i in 0..40 {
        assert_eq!(api.increment(&r, &format!("k{i}"), 1, None).await.0, 200);
    }
    for svc in [&a, &b] {
        let served = metric_sum(
            &scrape(&svc.admin_url()).await,
            "pinchpoint_rpc_server_requests_total",
            &[("method", "Increment")],
        );
        assert!(served >= 10.0, "round-robin left a service with {served} of 40 calls");
    }

    let hashed = gateway(&urls, &["--balance", "hash"]);
    let api = Api::new(hashed.http_url());
    // 32 random keys: the chance that hashing puts them all on one of two instances is 2^-31.
    let keys: Vec<String> = (0..32).map(|i| fresh(&format!("sticky{i}"))).collect();
    for _ in 0..5 {
        for k in &keys {
            assert_eq!(api.increment(k, "n", 1, None).await.0, 200);
        }
    }
    let mut owners = BTreeSet::new();
    for k in &keys {
        let (va, vb) = (service_value(&a.grpc_url(), k, "n").await, service_value(&b.grpc_url(), k, "n").await);
        assert!((va, vb) == (5, 0) || (va, vb) == (0, 5), "{k} was split across instances: {va} + {vb}");
        owners.insert(va == 5);
    }
    assert_eq!(owners.len(), 2, "hash put all 32 keys on one instance");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_one_instance_mid_load_loses_no_acknowledged_increment() {
    let (redis_a, redis_b) = (Redis::start(), Redis::start());
    let a = service(&["--store", &redis_a.url()]);
    let mut b = service(&["--store", &redis_b.url()]);
    let gw = gateway(&format!("{},{}", a.grpc_url(), b.grpc_url()), &["--health-interval", "100ms"]);
    let api = Api::new(gw.http_url());
    let r = fresh("failover");
    let acked: Arc<Vec<AtomicI64>> = Arc::new((0..16).map(|_| AtomicI64::new(0)).collect());
    let total = Arc::new(AtomicI64::new(0));
    let mut clients = Vec::new();
    for c in 0..16 {
        let (api, r, acked, total) = (api.clone(), r.clone(), acked.clone(), total.clone());
        clients.push(tokio::spawn(async move {
            let mut failures_after = Vec::new();
            for _ in 0..150 {
                let (status, body) = api.increment(&r, &format!("c{c}"), 1, None).await;
                if status == 200 {
                    acked[c].fetch_add(1, Ordering::SeqCst);
                } else {
                    failures_after.push(format!("{status} {body}"));
                }
                total.fetch_add(1, Ordering::SeqCst);
            }
            failures_after
        }));
    }
    let t = total.clone();
    eventually(Duration::from_secs(30), "load under way", || {
        let n = t.load(Ordering::SeqCst);
        async move { (n >= 300).then_some(()) }
    })
    .await;
    let stopped = tokio::task::spawn_blocking(move || {
        let s = b.terminate(Duration::from_secs(10));
        (s, b)
    })
    .await
    .unwrap();
    assert!(stopped.0.success());
    let mut failures = Vec::new();
    for c in clients {
        failures.extend(c.await.unwrap());
    }
    // Retries carry requests to the surviving instance.
    assert!(failures.is_empty(), "requests failed although one instance stayed up: {failures:?}");
    let b_values = |c: usize| redis_b.command(&["GET", &format!("pp:c:{r}/c{c}")]);
    for (c, acked) in acked.iter().enumerate() {
        let on_a = service_value(&a.grpc_url(), &r, &format!("c{c}")).await;
        let raw = b_values(c);
        let on_b: i64 = raw.lines().nth(1).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
        assert_eq!(on_a + on_b, acked.load(Ordering::SeqCst), "client {c}: stores hold {on_a} + {on_b}");
    }
    drop(stopped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaker_fails_fast_while_the_service_hangs_and_recovers() {
    let svc = service(&[]);
    let gw = gateway(
        &svc.grpc_url(),
        &[
            "--timeout",
            "1s",
            "--retries",
            "0",
            "--breaker-threshold",
            "2",
            "--breaker-cooldown",
            "500ms",
            "--health-interval",
            "1h",
        ],
    );
    let api = Api::new(gw.http_url());
    let r = fresh("breaker");
    assert_eq!(api.increment(&r, "n", 1, None).await.0, 200);

    // A hung service: connections are accepted by the kernel, nothing answers.
    stop_process(svc.child.id());
    for _ in 0..2 {
        assert_eq!(api.increment(&r, "n", 1, None).await.0, 503, "a hung call times out as 503");
    }
    assert_eq!(metric_sum(&scrape(&gw.admin_url()).await, "pinchpoint_breaker_state", &[]), 2.0, "breaker open");
    for _ in 0..5 {
        let started = Instant::now();
        let (status, body) = api.increment(&r, "n", 1, None).await;
        assert_eq!(status, 503);
        assert!(body["error"]["message"].as_str().unwrap().contains("circuit breaker"), "{body}");
        assert!(started.elapsed() < Duration::from_millis(250), "open breaker took {:?}", started.elapsed());
    }

    signal(svc.child.id(), "CONT");
    eventually(Duration::from_secs(15), "recovery after the service resumes", || {
        let api = api.clone();
        let r = r.clone();
        async move { (api.increment(&r, "n", 1, None).await.0 == 200).then_some(()) }
    })
    .await;
    assert_eq!(metric_sum(&scrape(&gw.admin_url()).await, "pinchpoint_breaker_state", &[]), 0.0, "breaker closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_after_applied_failures_never_double_count() {
    // Every second call fails after the store applied it; the gateway retries it.
    let svc = service(&["--fault-after-apply", "2"]);
    let gw = gateway(&svc.grpc_url(), &["--retries", "3"]);
    let api = Api::new(gw.http_url());
    let r = fresh("retry");
    let mut values = Vec::new();
    for _ in 0..20 {
        let (status, body) = api.increment(&r, "n", 1, None).await;
        assert_eq!(status, 200, "{body}");
        values.push(body["value"].as_i64().unwrap());
    }
    assert_eq!(values, (1..=20).collect::<Vec<_>>(), "each retry answered its first attempt's value");
    assert_eq!(api.get_value(&r, "n").await, 20);
    let retries = metric_sum(&scrape(&gw.admin_url()).await, "pinchpoint_rpc_client_retries_total", &[]);
    assert!(retries >= 10.0, "expected a retry per injected failure, saw {retries}");

    // A slow service: every attempt times out after applying; the value still moves once.
    let slow = service(&["--fault-delay", "600ms"]);
    let gw = gateway(&slow.grpc_url(), &["--retries", "2", "--timeout", "200ms", "--breaker-threshold", "100"]);
    let api = Api::new(gw.http_url());
    let (status, _) = api.increment(&r, "slow", 1, None).await;
    assert_eq!(status, 503);
    assert_eq!(service_value(&slow.grpc_url(), &r, "slow").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_buffer_answers_202_and_flushes_including_on_sigterm() {
    let svc = service(&[]);
    let mut gw = gateway(&svc.grpc_url(), &["--write-buffer", "--flush-workers", "2"]);
    let api = Api::new(gw.http_url());
    let r = fresh("wb");
    let ops: Vec<_> =
        (0..50).map(|i| json!({"resource_id": r, "counter_type": format!("t{}", i % 5), "delta": 2})).collect();
    let (status, body) =
        api.post_raw("/api/v1/counter/batch-increment", json!({"operations": ops, "async": true}).to_string()).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body, json!({"accepted": 50}));
    eventually(Duration::from_secs(10), "flushed values", || {
        let r = r.clone();
        let url = svc.grpc_url();
        async move { (service_value(&url, &r, "t0").await == 20).then_some(()) }
    })
    .await;
    let text = scrape(&gw.admin_url()).await;
    assert!(metric_sum(&text, "pinchpoint_write_buffer_flushes_total", &[]) >= 1.0);

    // Accepted right before SIGTERM: flushed before the gateway exits.
    let r2 = fresh("wb-term");
    let ops: Vec<_> = (0..30).map(|_| json!({"resource_id": r2, "counter_type": "n", "delta": 1})).collect();
    let (status, _) =
        api.post_raw("/api/v1/counter/batch-increment", json!({"operations": ops, "async": true}).to_string()).await;
    assert_eq!(status, 202);
    assert!(gw.terminate(Duration::from_secs(10)).success());
    assert_eq!(service_value(&svc.grpc_url(), &r2, "n").await, 30, "accepted increments lost at shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coalescing_sends_fewer_rpcs_and_every_caller_gets_its_own_value() {
    coalesce_via("batch").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coalescing_over_streams_keeps_every_value_exact() {
    coalesce_via("stream").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coalescing_in_one_lane_over_several_channels_keeps_every_value_exact() {
    coalesce_with(&["--coalesce", "--pool-size", "4", "--coalesce-lanes", "1"]).await;
}

async fn coalesce_via(via: &str) {
    coalesce_with(&["--coalesce", "--coalesce-via", via, "--pool-size", "2"]).await;
}

async fn coalesce_with(flags: &[&str]) {
    let svc = service(&[]);
    let gw = gateway(&svc.grpc_url(), flags);
    let api = Api::new(gw.http_url());
    let r = fresh("coalesce");
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let (api, r) = (api.clone(), r.clone());
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            for _ in 0..5 {
                let (status, body) = api.increment(&r, "n", 1, None).await;
                assert_eq!(status, 200, "{body}");
                mine.push(body["value"].as_i64().unwrap());
            }
            mine
        }));
    }
    let mut values = Vec::new();
    for t in tasks {
        values.extend(t.await.unwrap());
    }
    values.sort();
    assert_eq!(values, (1..=500).collect::<Vec<_>>(), "values returned for one key are exactly 1..N");
    let text = scrape(&gw.admin_url()).await;
    let rpcs = metric_sum(&text, "pinchpoint_rpc_client_requests_total", &[]);
    let http = metric_sum(&text, "pinchpoint_http_requests_total", &[("route", "/api/v1/counter/increment")]);
    assert_eq!(http, 500.0);
    assert!(rpcs < http, "coalescing sent {rpcs} RPCs for {http} HTTP requests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limiter_answers_429_per_client_and_forgets_idle_clients() {
    let svc = service(&[]);
    // 0.2/s: a bucket takes 5 s to refill, long enough that no test step races the sweep.
    let gw = gateway(&svc.grpc_url(), &["--rate-limit", "0.2"]);
    let api = Api::new(gw.http_url());
    let send = |client: String| {
        let api = api.clone();
        async move {
            api.http.get(format!("{}/api/v1/counter/x/y", api.base)).header("x-client-id", client).send().await.unwrap()
        }
    };
    let mut limited = 0;
    for _ in 0..20 {
        let resp = send("greedy".into()).await;
        if resp.status() == 429 {
            limited += 1;
            let after: u64 = resp.headers()["retry-after"].to_str().unwrap().parse().unwrap();
            assert!(after >= 1);
            let body: serde_json::Value = resp.json().await.unwrap();
            assert_eq!(body["error"]["code"], "rate_limited");
        }
    }
    assert!(limited >= 10, "only {limited} of 20 requests limited at 0.2/s");
    assert_eq!(send("polite".into()).await.status(), 200, "another client is not limited");

    for i in 0..500 {
        send(format!("one-off-{i}")).await;
    }
    let tracked = metric_sum(&scrape(&gw.admin_url()).await, "pinchpoint_ratelimit_tracked_keys", &[]);
    assert!(tracked >= 500.0, "tracked {tracked}");
    eventually(Duration::from_secs(20), "idle clients evicted", || {
        let url = gw.admin_url();
        async move { (metric_sum(&scrape(&url).await, "pinchpoint_ratelimit_tracked_keys", &[]) == 0.0).then_some(()) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_cache_serves_hits_and_sees_own_increments() {
    let svc = service(&[]);
    let gw = gateway(&svc.grpc_url(), &["--cache-ttl", "1h"]);
    let api = Api::new(gw.http_url());
    let r = fresh("cache");
    assert_eq!(api.get_value(&r, "n").await, 0);
    api.increment(&r, "n", 3, None).await;
    for _ in 0..5 {
        assert_eq!(api.get_value(&r, "n").await, 3, "the gateway's own increment refreshed the entry");
    }
    let text = scrape(&gw.admin_url()).await;
    assert_eq!(metric_sum(&text, "pinchpoint_cache_requests_total", &[("outcome", "hit")]), 5.0);
    assert_eq!(metric_sum(&text, "pinchpoint_cache_requests_total", &[("outcome", "miss")]), 1.0);
    let gets =
        metric_sum(&scrape(&svc.admin_url()).await, "pinchpoint_rpc_server_requests_total", &[("method", "Get")]);
    assert_eq!(gets, 1.0, "hits never reached the service");
}
