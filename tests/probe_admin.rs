//! The admin router: `/metrics` exposition and the debug views.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use pinchpoint::admin::{router, AdminOptions};
use pinchpoint::metrics::catalog;
use tower::ServiceExt;

async fn get(app: axum::Router, path: &str, token: Option<&str>) -> (StatusCode, String, String) {
    let mut req = Request::get(path);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = app.oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
    let status = resp.status();
    let ct = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    let body = axum::body::to_bytes(resp.into_body(), 16 << 20).await.unwrap();
    (status, ct, String::from_utf8(body.to_vec()).unwrap())
}

fn exercise_probes() -> pinchpoint::probe::pool::PoolProbe {
    let m = pinchpoint::probe::lock::Mutex::new("admin.lock", 0);
    *m.lock() += 1;
    let p = pinchpoint::probe::pool::PoolProbe::new("admin.pool", 2);
    p.opened(std::time::Duration::from_millis(1));
    p.closed("idle");
    drop(p.acquire_started().acquired());
    pinchpoint::metrics::red::http_request("/x", "GET", 200, std::time::Duration::from_millis(1));
    p
}

#[tokio::test]
async fn metrics_is_openmetrics_with_help_and_type_for_catalog_families() {
    let _pool = exercise_probes();
    let (status, ct, body) = get(router(AdminOptions::default()), "/metrics", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ct, pinchpoint::metrics::CONTENT_TYPE);
    assert!(body.ends_with("# EOF\n"));

    // Parse: every sample belongs to a family with HELP and TYPE, from the catalog.
    let mut families: std::collections::HashMap<String, String> = Default::default();
    let mut helped = std::collections::HashSet::new();
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap();
            assert!(!help.is_empty(), "{name} has empty help");
            helped.insert(name.to_string());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, ty) = rest.split_once(' ').unwrap();
            families.insert(name.to_string(), ty.to_string());
        } else if line.starts_with('#') || line.is_empty() {
            continue;
        } else {
            let name = line.split(['{', ' ']).next().unwrap();
            let family = families
                .keys()
                .filter(|f| name.starts_with(f.as_str()))
                .max_by_key(|f| f.len())
                .unwrap_or_else(|| panic!("sample {name} without TYPE"));
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "bad value in {line}");
            match families[family].as_str() {
                "counter" => assert!(name.ends_with("_total"), "{name}"),
                "histogram" => assert!(["_bucket", "_sum", "_count"].iter().any(|s| name.ends_with(s)), "{name}"),
                _ => assert_eq!(name, family),
            }
        }
    }
    for (name, ty) in &families {
        assert!(helped.contains(name), "{name} lacks HELP");
        let exposed = if ty == "counter" { format!("{name}_total") } else { name.clone() };
        assert!(catalog::ALL.iter().any(|s| s.exposed_name() == exposed), "{exposed} is not in the catalog");
    }
    for must in [
        "pinchpoint_lock_acquire_total{lock=\"admin.lock\",mode=\"exclusive\"} ",
        "pinchpoint_pool_opened_total{pool=\"admin.pool\"} ",
        "pinchpoint_pool_closed_total{pool=\"admin.pool\",reason=\"idle\"} ",
        "pinchpoint_http_requests_total{route=\"/x\",method=\"GET\",status=\"200\"} ",
        "pinchpoint_build_info{version=",
        "process_resident_memory_bytes ",
        "# UNIT pinchpoint_lock_wait_seconds seconds",
    ] {
        assert!(body.contains(must), "missing {must}");
    }
    // Not installed in this binary: "not measured", not zeros.
    assert!(!body.contains("pinchpoint_alloc_total"));
}

#[tokio::test]
async fn debug_views_are_json() {
    let _pool = exercise_probes();
    let app = router(AdminOptions::default());
    let (s, _, locks) = get(app.clone(), "/debug/locks", None).await;
    assert_eq!(s, StatusCode::OK);
    let v: serde_json::Value = serde_json::from_str(&locks).unwrap();
    assert!(v["locks"].as_array().unwrap().iter().any(|l| l["lock"] == "admin.lock"));
    let (_, _, pools) = get(app.clone(), "/debug/pools", None).await;
    let v: serde_json::Value = serde_json::from_str(&pools).unwrap();
    assert!(v["pools"].as_array().unwrap().iter().any(|p| p["pool"] == "admin.pool"));
    let (_, _, tasks) = get(app, "/debug/tasks", None).await;
    let v: serde_json::Value = serde_json::from_str(&tasks).unwrap();
    assert!(v["by_task"].is_array() && v["oldest"].is_array());
}

#[tokio::test]
async fn token_is_required_when_configured() {
    let app = router(AdminOptions { bearer_token: Some("s3cret".into()) });
    for path in ["/metrics", "/debug/locks", "/debug/pools", "/debug/tasks"] {
        assert_eq!(get(app.clone(), path, None).await.0, StatusCode::UNAUTHORIZED);
        assert_eq!(get(app.clone(), path, Some("wrong")).await.0, StatusCode::UNAUTHORIZED);
        assert_eq!(get(app.clone(), path, Some("s3cret")).await.0, StatusCode::OK);
    }
}
