//! The HTTP API of DESIGN.md, shared by the gateway (store behind gRPC) and the monolith
//! (store in process): same routes, same validation, same JSON errors.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::counter::faults::{gateway_faults, GatewayFaults};
use crate::counter::gateway::Gateway;
use crate::counter::limiter::{Decision, RateLimiter};
use crate::counter::model::{self, check_batch_len, ApplyId, CounterError, Key, Op, MAX_BODY_BYTES};
use crate::counter::store::Store;

/// Where the HTTP API sends its work.
pub enum Backend {
    /// The monolith: the store lives in this process.
    Local(Arc<Store>),
    /// The gateway: the store is behind the counter service.
    Remote(Arc<Gateway>),
}

impl Backend {
    async fn increment(&self, op: &Op, request_id: &str) -> Result<i64, CounterError> {
        match self {
            Backend::Local(s) => s.increment(op, ApplyId { request_id, index: 0 }).await,
            Backend::Remote(g) => g.increment(op, request_id).await,
        }
    }

    async fn batch(&self, ops: &[Op], request_id: &str) -> Result<Vec<Result<i64, CounterError>>, CounterError> {
        match self {
            Backend::Local(s) => s.batch(ops, &ApplyId::for_batch(request_id, ops.len())).await,
            Backend::Remote(g) => g.batch(ops, request_id).await,
        }
    }

    async fn get(&self, key: &Key) -> Result<i64, CounterError> {
        match self {
            Backend::Local(s) => s.get(key).await,
            Backend::Remote(g) => g.get(key).await,
        }
    }

    async fn healthy(&self) -> bool {
        match self {
            Backend::Local(_) => true,
            Backend::Remote(g) => g.pool.healthy().await,
        }
    }
}

/// An error as the HTTP API answers it: a status and `{"error":{"code","message"}}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into() }
    }
}

impl From<CounterError> for ApiError {
    fn from(e: CounterError) -> Self {
        let status = match &e {
            CounterError::Invalid(_) | CounterError::TooManyOperations(_) => StatusCode::BAD_REQUEST,
            CounterError::Overflow(_) => StatusCode::CONFLICT,
            CounterError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            CounterError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.code(), e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({"error": {"code": self.code, "message": self.message}}))).into_response()
    }
}

#[derive(Deserialize)]
struct IncrementBody {
    resource_id: String,
    counter_type: String,
    delta: i64,
}

impl IncrementBody {
    fn into_op(self) -> Result<Op, CounterError> {
        Op::new(self.resource_id, self.counter_type, self.delta)
    }
}

#[derive(Deserialize)]
struct BatchBody {
    operations: Vec<IncrementBody>,
    #[serde(default, rename = "async")]
    asynchronous: bool,
}

#[derive(Serialize)]
struct CounterValue {
    resource_id: String,
    counter_type: String,
    value: i64,
}

type AppState = Arc<Backend>;

/// Optional layers around the API routes.
#[derive(Default, Clone)]
pub struct ApiOptions {
    /// Rate limit every route but `/health`.
    pub limiter: Option<Arc<RateLimiter>>,
    /// Commit the lab's deliberate mistakes on every API request.
    pub faults: Option<Arc<GatewayFaults>>,
}

/// The API's routes.
pub fn router(backend: Backend, options: ApiOptions) -> Router {
    let mut api = Router::new()
        .route("/api/v1/counter/increment", post(increment))
        .route("/api/v1/counter/batch-increment", post(batch_increment))
        .route("/api/v1/counter/{resource_id}/{counter_type}", get(read_counter));
    if let Some(faults) = options.faults {
        api = api.layer(middleware::from_fn_with_state(faults, gateway_faults));
    }
    if let Some(limiter) = options.limiter {
        api = api.layer(middleware::from_fn_with_state(limiter, rate_limit));
    }
    api.route("/health", get(health))
        .fallback(not_found)
        .layer(crate::layer::HttpMetricsLayer::new())
        .with_state(Arc::new(backend))
}

/// 429 with `Retry-After` for a client over its rate. The client is `x-client-id` when
/// sent, else the peer IP.
async fn rate_limit(State(limiter): State<Arc<RateLimiter>>, req: Request, next: Next) -> Response {
    let peer = req.extensions().get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip());
    let client = match req.headers().get("x-client-id").and_then(|v| v.to_str().ok()) {
        Some(id) => id.chars().take(128).collect::<String>(),
        None => peer.map(|ip| ip.to_string()).unwrap_or_else(|| "unknown".into()),
    };
    match limiter.check(&client) {
        Decision::Allowed => next.run(req).await,
        Decision::Limited(after) => {
            let secs = after.as_secs_f64().ceil().max(1.0) as u64;
            let mut resp = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("client {client:?} is over the rate limit; retry after {secs} s"),
            )
            .into_response();
            resp.headers_mut().insert("retry-after", HeaderValue::from(secs));
            resp
        }
    }
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route; see DESIGN.md's HTTP API")
}

/// How much of an oversized body is read and thrown away so the client, still sending,
/// gets the 413 instead of a reset connection. Beyond it the connection is just closed.
const OVERSIZE_DRAIN: usize = 8 << 20;

/// Reads the body with the 1 MiB cap and parses it, telling malformed JSON apart from
/// well-formed JSON of the wrong shape.
async fn parse_body<T: serde::de::DeserializeOwned>(body: Body) -> Result<T, ApiError> {
    use http_body_util::BodyExt;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("request body is over the {MAX_BODY_BYTES}-byte limit"),
        )
    };
    let mut body = body;
    let mut bytes = Vec::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", format!("reading body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            seen += data.len();
            if seen <= MAX_BODY_BYTES {
                bytes.extend_from_slice(&data);
            } else if seen > MAX_BODY_BYTES + OVERSIZE_DRAIN {
                break;
            }
        }
    }
    if seen > MAX_BODY_BYTES {
        return Err(too_large());
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        use serde_json::error::Category;
        let code = match e.classify() {
            Category::Data => "invalid_argument",
            Category::Syntax | Category::Eof | Category::Io => "invalid_json",
        };
        ApiError::new(StatusCode::BAD_REQUEST, code, format!("request body: {e}"))
    })
}

/// The caller's `x-request-id`, validated, or a fresh one.
fn request_id(headers: &HeaderMap) -> Result<String, ApiError> {
    match headers.get("x-request-id") {
        Some(v) => {
            let id = v
                .to_str()
                .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "invalid_argument", "x-request-id is not ASCII"))?;
            model::check_request_id(id)?;
            Ok(id.to_string())
        }
        None => Ok(uuid::Uuid::new_v4().to_string()),
    }
}

fn with_request_id(mut response: Response, id: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(id) {
        response.headers_mut().insert("x-request-id", v);
    }
    response
}

async fn increment(State(backend): State<AppState>, headers: HeaderMap, body: Body) -> Result<Response, ApiError> {
    let id = request_id(&headers)?;
    let op = parse_body::<IncrementBody>(body).await?.into_op()?;
    let value = backend.increment(&op, &id).await?;
    let body = CounterValue { resource_id: op.key.resource_id, counter_type: op.key.counter_type, value };
    Ok(with_request_id(Json(body).into_response(), &id))
}

async fn batch_increment(
    State(backend): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let id = request_id(&headers)?;
    let batch = parse_body::<BatchBody>(body).await?;
    check_batch_len(batch.operations.len())?;
    // Every operation is validated before any is applied: a bad batch changes nothing.
    let ops = batch.operations.into_iter().map(IncrementBody::into_op).collect::<Result<Vec<_>, _>>()?;
    if batch.asynchronous {
        if let Backend::Remote(gateway) = &*backend {
            if let Some(accepted) = gateway.accept_async(&ops) {
                let response = (StatusCode::ACCEPTED, Json(json!({"accepted": accepted?}))).into_response();
                return Ok(with_request_id(response, &id));
            }
        }
    }
    let outcomes = backend.batch(&ops, &id).await?;
    if batch.asynchronous {
        // Without a write buffer the batch was applied before answering; 202 still means
        // "accepted", and nothing accepted can be lost.
        let response = (StatusCode::ACCEPTED, Json(json!({"accepted": ops.len()}))).into_response();
        return Ok(with_request_id(response, &id));
    }
    let mut first_error: Option<CounterError> = None;
    let results: Vec<_> = ops
        .iter()
        .zip(outcomes)
        .map(|(op, outcome)| match outcome {
            Ok(value) => {
                json!({"resource_id": op.key.resource_id, "counter_type": op.key.counter_type, "value": value})
            }
            Err(e) => {
                let item = json!({"resource_id": op.key.resource_id, "counter_type": op.key.counter_type,
                                  "error": {"code": e.code(), "message": e.to_string()}});
                first_error.get_or_insert(e);
                item
            }
        })
        .collect();
    // Operations are applied one by one: when some fail (overflow), the others stand, and
    // the answer says which is which.
    let response = match first_error {
        None => Json(json!({ "results": results })).into_response(),
        Some(e) => {
            let err = ApiError::from(e);
            (err.status, Json(json!({"error": {"code": err.code, "message": err.message}, "results": results})))
                .into_response()
        }
    };
    Ok(with_request_id(response, &id))
}

async fn read_counter(
    State(backend): State<AppState>,
    Path((resource_id, counter_type)): Path<(String, String)>,
) -> Result<Json<CounterValue>, ApiError> {
    let key = Key::new(resource_id, counter_type)?;
    let value = backend.get(&key).await?;
    Ok(Json(CounterValue { resource_id: key.resource_id, counter_type: key.counter_type, value }))
}

async fn health(State(backend): State<AppState>) -> Response {
    if backend.healthy().await {
        Json(json!({"status": "ok"})).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unavailable", "reason": "no counter service answers its health check"})),
        )
            .into_response()
    }
}
