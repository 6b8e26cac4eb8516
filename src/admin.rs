//! The admin router: `/metrics` (OpenMetrics) and the `/debug/*` JSON views of the probes.
//!
//! ```ignore
//! let app = pinchpoint::admin::router(AdminOptions::default());
//! axum::serve(admin_listener, app).await?;
//! ```
//!
//! With a bearer token set, every endpoint requires `Authorization: Bearer <token>` and
//! answers 401 otherwise (DESIGN.md: a non-loopback admin bind requires a token).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use crate::metrics;
use crate::probe::{lock, pool, task};

/// Options of [`router`].
#[derive(Debug, Clone, Default)]
pub struct AdminOptions {
    /// When set, every endpoint requires `Authorization: Bearer <token>`.
    pub bearer_token: Option<String>,
}

/// The admin endpoints: `GET /metrics`, `/debug/locks`, `/debug/pools`, `/debug/tasks`,
/// `/debug/doctor?window=5s` (the doctor's rules on this process).
pub fn router(opts: AdminOptions) -> Router {
    let r = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/debug/locks", get(locks_handler))
        .route("/debug/pools", get(pools_handler))
        .route("/debug/tasks", get(tasks_handler))
        .route("/debug/doctor", get(doctor_handler));
    // CPU and contention profiles (pprof protobuf, svg or folded): see crate::profile::http.
    #[cfg(feature = "profiling")]
    let r = r
        .route("/debug/pprof/profile", get(crate::profile::http::cpu_handler))
        .route("/debug/pprof/contention", get(crate::profile::http::contention_handler));
    match opts.bearer_token {
        Some(token) => r.layer(middleware::from_fn_with_state(Arc::<str>::from(token), require_token)),
        None => r,
    }
}

async fn require_token(State(token): State<Arc<str>>, req: Request, next: Next) -> Response {
    let presented =
        req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(p) if constant_time_eq(p.as_bytes(), token.as_bytes()) => next.run(req).await,
        _ => {
            let mut resp = (StatusCode::UNAUTHORIZED, "missing or wrong bearer token\n").into_response();
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            resp
        }
    }
}

/// Compares without an early exit, so response time does not reveal the matching prefix.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// OpenMetrics (with exemplars) by default and whenever the client accepts it, as Prometheus
/// does; the classic text format 0.0.4 when the client asks for `text/plain` without
/// OpenMetrics (`curl -H 'Accept: text/plain' .../metrics | promtool check metrics`).
async fn metrics_handler(headers: axum::http::HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let classic = accept.contains("text/plain") && !accept.contains("application/openmetrics-text");
    // Encoding walks the task registry and /proc: keep it off the async workers.
    let (encode, content_type): (fn() -> String, _) = if classic {
        (metrics::encode_text, metrics::TEXT_CONTENT_TYPE)
    } else {
        (metrics::encode, metrics::CONTENT_TYPE)
    };
    let body = tokio::task::spawn_blocking(encode).await.unwrap_or_default();
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

#[derive(Serialize)]
struct LocksView {
    locks: Vec<lock::LockReport>,
    /// Contention samples currently held, per resource, with their weights.
    samples: Vec<SampleRow>,
}

#[derive(Serialize)]
struct SampleRow {
    resource: String,
    samples: usize,
    events: u64,
    wait_seconds: f64,
}

async fn locks_handler() -> Json<LocksView> {
    let mut rows: std::collections::BTreeMap<String, SampleRow> = Default::default();
    for s in crate::probe::contention::samples_since(crate::probe::epoch()) {
        let row = rows.entry(s.resource.to_string()).or_insert_with(|| SampleRow {
            resource: s.resource.to_string(),
            samples: 0,
            events: 0,
            wait_seconds: 0.0,
        });
        row.samples += 1;
        row.events += s.events;
        row.wait_seconds += s.weight.as_secs_f64();
    }
    let mut samples: Vec<SampleRow> = rows.into_values().collect();
    samples.sort_by(|a, b| b.wait_seconds.total_cmp(&a.wait_seconds));
    Json(LocksView { locks: lock::report(), samples })
}

#[derive(Serialize)]
struct PoolsView {
    pools: Vec<pool::PoolReport>,
}

async fn pools_handler() -> Json<PoolsView> {
    Json(PoolsView { pools: pool::report() })
}

async fn tasks_handler() -> Json<task::TasksReport> {
    Json(task::report(20))
}

#[derive(serde::Deserialize)]
struct DoctorQuery {
    window: Option<String>,
    format: Option<String>,
}

/// Longest window `/debug/doctor` watches, so a request cannot hold a connection for long.
const DOCTOR_MAX_WINDOW: std::time::Duration = std::time::Duration::from_secs(60);

/// `GET /debug/doctor?window=5s[&format=text]`: scrapes this process's own metrics four times
/// over the window and runs the doctor's rules on them, for services that embed the probes.
async fn doctor_handler(
    headers: axum::http::HeaderMap,
    axum::extract::Query(q): axum::extract::Query<DoctorQuery>,
) -> Response {
    let window = match q.window.as_deref().map(parse_window).unwrap_or(Ok(std::time::Duration::from_secs(5))) {
        Ok(w) if w >= std::time::Duration::from_millis(300) && w <= DOCTOR_MAX_WINDOW => w,
        Ok(_) => {
            return (StatusCode::BAD_REQUEST, "window must be between 300ms and 60s\n").into_response();
        }
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).map(|h| format!("http://{h}"));
    const SLICES: u32 = 3;
    let mut snapshots = Vec::new();
    for i in 0..=SLICES {
        if i > 0 {
            tokio::time::sleep(window / SLICES).await;
        }
        let text = tokio::task::spawn_blocking(metrics::encode).await.unwrap_or_default();
        snapshots.push(crate::diagnose::snapshot::Snapshot::parse(&text));
    }
    let process = crate::diagnose::ProcessWindow::new("self", host, snapshots);
    let verdict = crate::diagnose::diagnose(&[process]);
    if q.format.as_deref() == Some("text") {
        return crate::diagnose::report::render(&verdict, true, false).into_response();
    }
    Json(verdict).into_response()
}

/// `500ms`, `5s`, `1m`.
fn parse_window(s: &str) -> Result<std::time::Duration, String> {
    let bad = || format!("window {s:?} is not a duration like 500ms, 5s or 1m");
    let (num, unit) = s.find(|c: char| !c.is_ascii_digit() && c != '.').map(|i| s.split_at(i)).ok_or_else(bad)?;
    let n: f64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "ms" => n / 1e3,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(bad()),
    };
    std::time::Duration::try_from_secs_f64(secs).map_err(|_| bad())
}
