//! Bad input: every malformed request gets its 4xx and a JSON error, and changes nothing.

mod common;

use common::*;
use serde_json::{json, Value};

const INC: &str = "/api/v1/counter/increment";
const BATCH: &str = "/api/v1/counter/batch-increment";

fn inc(r: &str, delta: Value) -> String {
    json!({"resource_id": r, "counter_type": "n", "delta": delta}).to_string()
}

async fn check_matrix(api: &Api, r: &str, near_max: &str) {
    let before_r = api.get_value(r, "n").await;
    let before_max = api.get_value(near_max, "n").await;
    let many: Vec<Value> = (0..1001).map(|_| json!({"resource_id": r, "counter_type": "n", "delta": 1})).collect();
    let huge = format!(r#"{{"resource_id":"{r}","counter_type":"n","delta":1,"pad":"{}"}}"#, "x".repeat(2 << 20));
    let cases: Vec<(&str, &str, String, u16, &str)> = vec![
        ("malformed json", INC, "{\"resource_id\":".into(), 400, "invalid_json"),
        ("not json at all", INC, "hello".into(), 400, "invalid_json"),
        ("delta as string", INC, inc(r, json!("5")), 400, "invalid_argument"),
        ("delta as float", INC, inc(r, json!(1.5)), 400, "invalid_argument"),
        (
            "delta beyond i64",
            INC,
            format!(r#"{{"resource_id":"{r}","counter_type":"n","delta":99999999999999999999}}"#),
            400,
            "invalid_argument",
        ),
        ("missing delta", INC, json!({"resource_id": r, "counter_type": "n"}).to_string(), 400, "invalid_argument"),
        ("missing resource", INC, json!({"counter_type": "n", "delta": 1}).to_string(), 400, "invalid_argument"),
        (
            "resource wrong type",
            INC,
            json!({"resource_id": 5, "counter_type": "n", "delta": 1}).to_string(),
            400,
            "invalid_argument",
        ),
        (
            "empty resource",
            INC,
            json!({"resource_id": "", "counter_type": "n", "delta": 1}).to_string(),
            400,
            "invalid_argument",
        ),
        (
            "resource too long",
            INC,
            json!({"resource_id": "a".repeat(129), "counter_type": "n", "delta": 1}).to_string(),
            400,
            "invalid_argument",
        ),
        (
            "resource bad chars",
            INC,
            json!({"resource_id": "a b/c", "counter_type": "n", "delta": 1}).to_string(),
            400,
            "invalid_argument",
        ),
        (
            "counter type too long",
            INC,
            json!({"resource_id": r, "counter_type": "t".repeat(65), "delta": 1}).to_string(),
            400,
            "invalid_argument",
        ),
        ("delta zero", INC, inc(r, json!(0)), 400, "invalid_argument"),
        ("delta too big", INC, inc(r, json!(1_000_000_001i64)), 400, "invalid_argument"),
        ("delta too small", INC, inc(r, json!(-1_000_000_001i64)), 400, "invalid_argument"),
        ("body over 1 MiB", INC, huge, 413, "payload_too_large"),
        (
            "overflow",
            INC,
            json!({"resource_id": near_max, "counter_type": "n", "delta": 10}).to_string(),
            409,
            "overflow",
        ),
        ("1001 operations", BATCH, json!({"operations": many}).to_string(), 400, "too_many_operations"),
        ("empty batch", BATCH, json!({"operations": []}).to_string(), 400, "invalid_argument"),
        ("operations not a list", BATCH, json!({"operations": 3}).to_string(), 400, "invalid_argument"),
        // One bad operation rejects the whole batch before anything is applied.
        (
            "batch with one bad op",
            BATCH,
            json!({"operations": [{"resource_id": r, "counter_type": "n", "delta": 1},
                               {"resource_id": r, "counter_type": "n", "delta": 0}]})
            .to_string(),
            400,
            "invalid_argument",
        ),
    ];
    for (name, path, body, want_status, want_code) in cases {
        let (status, reply) = api.post_raw(path, body).await;
        assert_eq!(status, want_status, "{name}: {reply}");
        assert_eq!(reply["error"]["code"], want_code, "{name}: {reply}");
        assert!(reply["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{name}: message");
    }

    // A bad request id header, and a bad path on the read endpoint.
    let resp = api
        .http
        .post(format!("{}{INC}", api.base))
        .header("x-request-id", "has space")
        .body(inc(r, json!(1)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let resp = api.http.get(format!("{}/api/v1/counter/bad%20id/n", api.base)).send().await.unwrap();
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["code"], "invalid_argument");

    assert_eq!(api.get_value(r, "n").await, before_r, "bad requests changed a counter");
    assert_eq!(api.get_value(near_max, "n").await, before_max, "overflow changed the counter");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_through_gateway_changes_nothing() {
    let near_max = fresh("max");
    let seed = format!("{near_max}/n={}", i64::MAX - 5);
    let svc = service(&["--seed", &seed]);
    let gw = gateway(&svc.grpc_url(), &[]);
    let api = Api::new(gw.http_url());
    let r = fresh("bad");
    api.increment(&r, "n", 3, None).await;
    check_matrix(&api, &r, &near_max).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_on_monolith_changes_nothing() {
    let near_max = fresh("max");
    let seed = format!("{near_max}/n={}", i64::MAX - 5);
    let mono = monolith(&["--seed", &seed]);
    let api = Api::new(mono.http_url());
    let r = fresh("bad");
    api.increment(&r, "n", 3, None).await;
    check_matrix(&api, &r, &near_max).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overflow_on_redis_is_409_and_changes_nothing() {
    let redis = Redis::start();
    let near_max = fresh("max");
    let seed = format!("{near_max}/n={}", i64::MAX - 5);
    let svc = service(&["--store", &redis.url(), "--seed", &seed]);
    let gw = gateway(&svc.grpc_url(), &[]);
    let api = Api::new(gw.http_url());
    let (status, body) = api.increment(&near_max, "n", 10, None).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "overflow");
    assert_eq!(api.get_value(&near_max, "n").await, i64::MAX - 5);
    let (status, body) = api.increment(&near_max, "n", 5, None).await;
    assert_eq!((status, body["value"].as_i64()), (200, Some(i64::MAX)), "exact near 2^63, no float rounding");
}

#[test]
fn bad_flags_exit_2_with_a_reason() {
    let out = std::process::Command::new(BIN).args(["service", "--store", "postgres://x"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("redis://"));
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = std::process::Command::new(BIN).args(["monolith", "--listen", &addr, "--admin", ":0"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot listen"), "{}", String::from_utf8_lossy(&out.stderr));
    let out =
        std::process::Command::new(BIN).args(["monolith", "--listen", ":0", "--admin", "0.0.0.0:0"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--admin-token"));
    let out = std::process::Command::new(BIN)
        .args(["gateway", "--listen", ":0", "--admin", ":0", "--coalesce", "--coalesce-lanes", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--coalesce-lanes"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
