//! The counter system end to end over loopback: gateway → service → memory or a real
//! redis-server, the monolith, exactly-once, concurrency, and graceful shutdown.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

async fn roundtrip(api: &Api) {
    let r = fresh("rt");
    assert_eq!(api.health().await, 200);
    assert_eq!(api.get_value(&r, "views").await, 0, "never-written counter reads 0");

    let (status, body) = api.increment(&r, "views", 5, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"resource_id": r, "counter_type": "views", "value": 5}));
    let (_, body) = api.increment(&r, "views", -2, None).await;
    assert_eq!(body["value"], 3);

    let batch = json!({"operations": [
        {"resource_id": r, "counter_type": "views", "delta": 10},
        {"resource_id": r, "counter_type": "likes", "delta": 1},
        {"resource_id": r, "counter_type": "views", "delta": 1},
    ]});
    let (status, body) = api.post_raw("/api/v1/counter/batch-increment", batch.to_string()).await;
    assert_eq!(status, 200, "{body}");
    let values: Vec<i64> = body["results"].as_array().unwrap().iter().map(|x| x["value"].as_i64().unwrap()).collect();
    assert_eq!(values, vec![13, 1, 14], "per-op results in order");
    assert_eq!(body["results"][1]["counter_type"], "likes");

    let async_batch = json!({"operations": [{"resource_id": r, "counter_type": "likes", "delta": 2}], "async": true});
    let (status, body) = api.post_raw("/api/v1/counter/batch-increment", async_batch.to_string()).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body, json!({"accepted": 1}));

    assert_eq!(api.get_value(&r, "views").await, 14);
    assert_eq!(api.get_value(&r, "likes").await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_to_service_on_memory() {
    let mut svc = service(&[]);
    let mut gw = gateway(&svc.grpc_url(), &[]);
    roundtrip(&Api::new(gw.http_url())).await;
    assert!(gw.terminate(Duration::from_secs(10)).success());
    assert!(svc.terminate(Duration::from_secs(10)).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_to_service_on_redis() {
    let redis = Redis::start();
    let mut svc = service(&["--store", &redis.url(), "--store-pool", "4"]);
    let mut gw = gateway(&svc.grpc_url(), &[]);
    let api = Api::new(gw.http_url());
    roundtrip(&api).await;
    // The value really lives in Redis.
    let r = fresh("in-redis");
    api.increment(&r, "n", 7, None).await;
    assert!(redis.command(&["GET", &format!("pp:c:{r}/n")]).contains("\r\n7\r\n"));
    assert!(gw.terminate(Duration::from_secs(10)).success());
    assert!(svc.terminate(Duration::from_secs(10)).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monolith_serves_the_same_api() {
    let mut mono = monolith(&[]);
    roundtrip(&Api::new(mono.http_url())).await;
    assert!(mono.terminate(Duration::from_secs(10)).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_503_when_no_service_answers() {
    // A port that nothing listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let gw = gateway(&format!("http://{dead}"), &["--timeout", "500ms"]);
    let api = Api::new(gw.http_url());
    assert_eq!(api.health().await, 503);
    let (status, body) = api.increment("a", "b", 1, None).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "unavailable");
}

/// 200 clients × 50 increments on one key: the final value equals the number of 200s.
async fn concurrent_clients_on_one_key(api: Api) {
    let r = fresh("hot");
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let api = api.clone();
        let r = r.clone();
        tasks.push(tokio::spawn(async move {
            let mut ok = 0i64;
            for _ in 0..50 {
                if api.increment(&r, "hits", 1, None).await.0 == 200 {
                    ok += 1;
                }
            }
            ok
        }));
    }
    let mut acknowledged = 0;
    for t in tasks {
        acknowledged += t.await.unwrap();
    }
    assert!(acknowledged > 0);
    assert_eq!(api.get_value(&r, "hits").await, acknowledged);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_increments_through_gateway_match_acknowledgements() {
    let svc = service(&[]);
    let gw = gateway(&svc.grpc_url(), &["--pool-size", "4"]);
    concurrent_clients_on_one_key(Api::new(gw.http_url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_increments_on_global_lock_monolith_match_acknowledgements() {
    let mono = monolith(&["--lock", "global"]);
    concurrent_clients_on_one_key(Api::new(mono.http_url())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_request_id_is_applied_once_on_memory() {
    let svc = service(&[]);
    let gw = gateway(&svc.grpc_url(), &[]);
    let api = Api::new(gw.http_url());
    let r = fresh("dup");
    let (_, first) = api.increment(&r, "n", 5, Some("req-dup-1")).await;
    api.increment(&r, "n", 1, None).await;
    // The retry answers what the first attempt answered, and does not count again.
    let (status, again) = api.increment(&r, "n", 5, Some("req-dup-1")).await;
    assert_eq!(status, 200);
    assert_eq!(first["value"], 5);
    assert_eq!(again["value"], 5);
    assert_eq!(api.get_value(&r, "n").await, 6);

    // Batches: each operation is applied once under the batch's request id.
    let batch = json!({"operations": [{"resource_id": r, "counter_type": "m", "delta": 2},
                                      {"resource_id": r, "counter_type": "m", "delta": 3}]});
    for _ in 0..2 {
        let resp = api
            .http
            .post(format!("{}/api/v1/counter/batch-increment", api.base))
            .header("x-request-id", "req-batch-1")
            .json(&batch)
            .send()
            .await
            .unwrap();
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["results"][1]["value"], 5);
    }
    assert_eq!(api.get_value(&r, "m").await, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_service_restart_is_applied_once_on_redis() {
    let redis = Redis::start();
    let r = fresh("restart");
    let mut svc = service(&["--store", &redis.url()]);
    let gw = gateway(&svc.grpc_url(), &[]);
    let api = Api::new(gw.http_url());
    let (status, first) = api.increment(&r, "n", 4, Some("req-restart-1")).await;
    assert_eq!(status, 200);
    assert!(svc.terminate(Duration::from_secs(10)).success());

    // A new service process on the same Redis sees the request id and does not re-apply.
    let svc2 = service(&["--store", &redis.url()]);
    let gw2 = gateway(&svc2.grpc_url(), &[]);
    let api2 = Api::new(gw2.http_url());
    let (status, retried) = api2.increment(&r, "n", 4, Some("req-restart-1")).await;
    assert_eq!(status, 200);
    assert_eq!(retried["value"], first["value"]);
    assert_eq!(api2.get_value(&r, "n").await, 4);
    drop(gw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_load_finishes_in_flight_requests_and_exits_zero() {
    let svc = service(&[]);
    let mut gw = gateway(&svc.grpc_url(), &[]);
    let api = Api::new(gw.http_url());
    let r = fresh("drain");
    let acked = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(0));
    let mut clients = Vec::new();
    for _ in 0..32 {
        let (api, r, acked) = (api.clone(), r.clone(), acked.clone());
        clients.push(tokio::spawn(async move {
            // Bounded: stops at the first refused request, or after 2000 requests.
            for _ in 0..2000 {
                let sent = api
                    .http
                    .post(format!("{}/api/v1/counter/increment", api.base))
                    .json(&json!({"resource_id": r, "counter_type": "n", "delta": 1}))
                    .send()
                    .await;
                match sent {
                    Ok(resp) if resp.status() == 200 => {
                        let body: serde_json::Value = resp.json().await.expect("a complete answer");
                        assert!(body["value"].is_i64());
                        acked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                    Ok(resp) => panic!("unexpected status {} during drain", resp.status()),
                    Err(_) => return, // the listener is closed: the gateway stopped accepting
                }
            }
        }));
    }
    eventually(Duration::from_secs(30), "some acknowledged increments", || {
        let n = acked.load(std::sync::atomic::Ordering::SeqCst);
        async move { (n >= 200).then_some(()) }
    })
    .await;
    let status = tokio::task::spawn_blocking(move || {
        let s = gw.terminate(Duration::from_secs(10));
        (s, gw)
    })
    .await
    .unwrap();
    assert!(status.0.success(), "gateway exit status {:?}", status.0);
    for c in clients {
        c.await.expect("no client saw a broken answer");
    }
    // Everything the service applied was acknowledged to a client, and vice versa.
    let reader = gateway(&svc.grpc_url(), &[]);
    let value = Api::new(reader.http_url()).get_value(&r, "n").await;
    assert_eq!(value, acked.load(std::sync::atomic::Ordering::SeqCst));
}
