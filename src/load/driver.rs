//! The request engine: HTTP/1.1 keep-alive connections on hyper, one per worker, closed and
//! open loop.
//!
//! Each worker owns its connection and drives it in its own task (the hyper `Connection` future
//! is polled together with the request, not spawned), so a request costs no cross-task wake-up.
//! Each worker owns its statistics; they are merged once at the end.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use bytes::Bytes;
use crossbeam_utils::CachePadded;
use futures_util::FutureExt;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE, HOST};
use http::{Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::stats::{merge, Merged, Outcome, WorkerStats};
use super::{CustomRequest, LoadPlan, Mix, Mode, STOP_GRACE};

type Body = Full<Bytes>;

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Where requests go: the resolved socket address, the `Host` header and the URL's path.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) addr: SocketAddr,
    host: HeaderValue,
    /// The URL's path without a trailing slash ("" for `http://host:port`).
    base: String,
    /// The URL's path and query as given (`/` when it has neither), for [`Mix::Url`].
    path_and_query: Uri,
}

/// An `http://host[:port][/path][?query]` URL in parts.
#[derive(Debug, Clone)]
pub(crate) struct ParsedUrl {
    host: String,
    port: u16,
    host_header: HeaderValue,
    base: String,
    pub(crate) query: Option<String>,
    path_and_query: Uri,
}

impl ParsedUrl {
    /// Whether the URL names more than the server (a path other than `/`, or a query).
    pub(crate) fn has_path_or_query(&self) -> bool {
        !self.base.is_empty() || self.query.is_some()
    }
}

/// Parses an `http://host[:port][/path][?query]` URL into its parts (no resolution).
pub(crate) fn parse_url(url: &str) -> anyhow::Result<ParsedUrl> {
    let uri: Uri = url.parse().with_context(|| format!("invalid URL {url:?}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some(other) => bail!("unsupported scheme {other:?} in {url:?} (only http)"),
        None => bail!("URL {url:?} needs a scheme, e.g. http://127.0.0.1:8080"),
    }
    let authority = uri.authority().ok_or_else(|| anyhow!("URL {url:?} has no host"))?;
    let host = authority.host().trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        bail!("URL {url:?} has no host");
    }
    let port = authority.port_u16().unwrap_or(80);
    let host_header = HeaderValue::from_str(authority.as_str())?;
    let base = uri.path().trim_end_matches('/').to_string();
    let path_and_query = match uri.path_and_query() {
        Some(pq) => pq.as_str().parse()?,
        None => Uri::from_static("/"),
    };
    Ok(ParsedUrl {
        host: host.to_string(),
        port,
        host_header,
        base,
        query: uri.query().map(str::to_string),
        path_and_query,
    })
}

/// Parses and resolves the target URL.
pub(crate) async fn resolve(url: &str) -> anyhow::Result<Target> {
    let u = parse_url(url)?;
    let addr = tokio::net::lookup_host((u.host.as_str(), u.port))
        .await
        .with_context(|| format!("cannot resolve {}", u.host))?
        .next()
        .ok_or_else(|| anyhow!("{} resolves to no address", u.host))?;
    Ok(Target { addr, host: u.host_header, base: u.base, path_and_query: u.path_and_query })
}

/// Requests finished so far, sharded so workers do not fight over one cache line.
pub(crate) struct Progress {
    done: Vec<CachePadded<AtomicU64>>,
}

impl Progress {
    const SHARDS: usize = 16;

    pub(crate) fn new() -> Self {
        Progress { done: (0..Self::SHARDS).map(|_| CachePadded::new(AtomicU64::new(0))).collect() }
    }

    fn add(&self, worker: usize) {
        self.done[worker % Self::SHARDS].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn done(&self) -> u64 {
        self.done.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

/// Everything the workers share (read-only, except the closed loop's request counter).
struct Ctx {
    target: Target,
    mix: Mix,
    /// Operations per request (1, or the batch size for batches).
    ops: u64,
    /// How a batch body ends: with `"async": false` or `true`.
    batch_suffix: &'static str,
    keys: u64,
    prefix: String,
    /// Request ids are `{run_id}-{seq}`: unique across runs even when a prefix is reused (the
    /// service applies each id once, so a repeated id would be acknowledged but not counted).
    run_id: String,
    counter_type: String,
    timeout: Duration,
    uri_increment: Uri,
    uri_batch: Uri,
    uri_health: Uri,
    custom: CustomRequest,
    json: HeaderValue,
    /// Closed loop: next sequence number to claim, and where to stop.
    next: AtomicU64,
    total: u64,
    deadline: Option<Instant>,
    progress: Arc<Progress>,
    /// Cancelled by a stop signal: no new requests; in-flight ones get [`STOP_GRACE`].
    stop: CancellationToken,
}

/// The `(key index, delta)` of operation `op` of the whole run. Deltas cycle through 1..=5 so a
/// store that counts requests instead of summing deltas is caught.
fn op_key_delta(ctx: &Ctx, op: u64) -> (u32, i64) {
    ((op % ctx.keys) as u32, (op % 5 + 1) as i64)
}

impl Ctx {
    fn new(plan: &LoadPlan, target: Target, progress: Arc<Progress>, stop: CancellationToken) -> anyhow::Result<Self> {
        let uri = |path: &str| -> anyhow::Result<Uri> { Ok(format!("{}{}", target.base, path).parse()?) };
        let (total, deadline) = match plan.mode {
            Mode::Closed { requests, max_duration, .. } => (requests, max_duration.map(|d| Instant::now() + d)),
            Mode::Open { .. } => (plan.mode.total_requests(), None),
        };
        Ok(Ctx {
            uri_increment: uri("/api/v1/counter/increment")?,
            uri_batch: uri("/api/v1/counter/batch-increment")?,
            uri_health: uri("/health")?,
            custom: plan.request.clone(),
            target,
            mix: plan.mix,
            ops: if plan.mix == Mix::Batch { plan.batch_size as u64 } else { 1 },
            batch_suffix: if plan.asynchronous { r#"],"async":true}"# } else { r#"],"async":false}"# },
            keys: u64::from(plan.keys.max(1)),
            prefix: plan.prefix.clone(),
            run_id: LoadPlan::fresh_prefix(),
            counter_type: plan.counter_type.clone(),
            timeout: plan.timeout,
            json: HeaderValue::from_static("application/json"),
            next: AtomicU64::new(0),
            total,
            deadline,
            progress,
            stop,
        })
    }

    /// The request with sequence number `seq` (unique in the run).
    fn build(&self, seq: u64) -> Request<Body> {
        let (method, uri, body) = match self.mix {
            Mix::Url => return self.build_custom(),
            Mix::Increment => {
                let (key, delta) = op_key_delta(self, seq);
                let body = format!(
                    r#"{{"resource_id":"{}-{}","counter_type":"{}","delta":{}}}"#,
                    self.prefix, key, self.counter_type, delta
                );
                (Method::POST, self.uri_increment.clone(), Bytes::from(body))
            }
            Mix::Batch => {
                let mut body = String::with_capacity(32 + self.ops as usize * 64);
                body.push_str(r#"{"operations":["#);
                for j in 0..self.ops {
                    let (key, delta) = op_key_delta(self, seq * self.ops + j);
                    if j > 0 {
                        body.push(',');
                    }
                    body.push_str(&format!(
                        r#"{{"resource_id":"{}-{}","counter_type":"{}","delta":{}}}"#,
                        self.prefix, key, self.counter_type, delta
                    ));
                }
                body.push_str(self.batch_suffix);
                (Method::POST, self.uri_batch.clone(), Bytes::from(body))
            }
            Mix::Read => {
                let key = seq % self.keys;
                let uri = format!("{}/api/v1/counter/{}-{}/{}", self.target.base, self.prefix, key, self.counter_type)
                    .parse()
                    .expect("validated ids make a valid path");
                (Method::GET, uri, Bytes::new())
            }
            Mix::Health => (Method::GET, self.uri_health.clone(), Bytes::new()),
        };
        let has_body = !body.is_empty();
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = method;
        *req.uri_mut() = uri;
        let headers = req.headers_mut();
        headers.insert(HOST, self.target.host.clone());
        if has_body {
            headers.insert(CONTENT_TYPE, self.json.clone());
            let id = format!("{}-{}", self.run_id, seq);
            headers.insert(X_REQUEST_ID.clone(), HeaderValue::try_from(id).expect("validated prefix"));
        }
        req
    }

    /// The request of [`Mix::Url`]: the URL's path and query, `-m`, `-H`, `-d` as given.
    fn build_custom(&self) -> Request<Body> {
        let mut req = Request::new(Full::new(self.custom.body.clone()));
        *req.method_mut() = self.custom.method.clone();
        *req.uri_mut() = self.target.path_and_query.clone();
        let headers = req.headers_mut();
        headers.insert(HOST, self.target.host.clone());
        for (name, value) in &self.custom.headers {
            if name == HOST {
                headers.insert(HOST, value.clone());
            } else {
                headers.append(name.clone(), value.clone());
            }
        }
        req
    }

    /// Records the deltas of request `seq` as acknowledged.
    fn ack(&self, seq: u64, stats: &mut WorkerStats) {
        if !matches!(self.mix, Mix::Increment | Mix::Batch) {
            return;
        }
        for j in 0..self.ops {
            let (key, delta) = op_key_delta(self, seq * self.ops + j);
            stats.ack(key, delta);
        }
    }
}

/// One keep-alive HTTP/1.1 connection; its driver future is polled by the owning worker.
struct Conn {
    sender: http1::SendRequest<Body>,
    driver: Pin<Box<http1::Connection<TokioIo<TcpStream>, Body>>>,
}

impl Conn {
    async fn open(addr: SocketAddr) -> anyhow::Result<Conn> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let (sender, driver) = http1::handshake(TokioIo::new(tcp)).await?;
        Ok(Conn { sender, driver: Box::pin(driver) })
    }

    /// Sends `req`, reads the whole response, returns its status. Any error leaves the
    /// connection unusable.
    async fn exchange(&mut self, req: Request<Body>) -> Result<u16, ()> {
        let Conn { sender, driver } = self;
        let request = async {
            sender.ready().await?;
            let resp = sender.send_request(req).await?;
            let status = resp.status().as_u16();
            let mut body = resp.into_body();
            while let Some(frame) = body.frame().await {
                frame?;
            }
            Ok::<u16, hyper::Error>(status)
        };
        let mut request = std::pin::pin!(request);
        tokio::select! {
            biased;
            r = &mut request => r.map_err(|_| ()),
            // The connection ended, possibly right after delivering the whole response
            // (`Connection: close`): what it delivered is buffered, and if it failed hyper has
            // already answered the request with an error. (The caller's timeout bounds this.)
            _ = driver.as_mut() => request.await.map_err(|_| ()),
        }
    }

    /// Whether the peer already closed the connection (e.g. after `Connection: close`).
    fn is_finished(&mut self) -> bool {
        self.sender.is_closed() || self.driver.as_mut().now_or_never().is_some()
    }
}

/// Sends request `seq` on `conn` (opening it if needed) within the timeout.
async fn execute(ctx: &Ctx, conn: &mut Option<Conn>, stats: &mut WorkerStats, seq: u64) -> Outcome {
    let deadline = Instant::now() + ctx.timeout;
    if conn.as_mut().is_some_and(Conn::is_finished) {
        *conn = None;
    }
    let c = match conn {
        Some(c) => c,
        None => match tokio::time::timeout_at(deadline, Conn::open(ctx.target.addr)).await {
            Ok(Ok(c)) => {
                stats.connections_opened += 1;
                conn.insert(c)
            }
            Ok(Err(_)) => return Outcome::Connect,
            Err(_) => return Outcome::Timeout,
        },
    };
    let req = ctx.build(seq);
    let outcome = match tokio::time::timeout_at(deadline, c.exchange(req)).await {
        Ok(Ok(status)) => Outcome::Status(status),
        Ok(Err(())) => Outcome::Io,
        Err(_) => Outcome::Timeout,
    };
    if !matches!(outcome, Outcome::Status(_)) {
        *conn = None;
    } else if matches!(outcome, Outcome::Status(200 | 202)) {
        ctx.ack(seq, stats);
    }
    outcome
}

/// Closed-loop worker: claim the next request, send it, wait for the answer, repeat.
async fn closed_worker(ctx: Arc<Ctx>, id: usize) -> WorkerStats {
    let mut stats = WorkerStats::new(false);
    let mut conn = None;
    loop {
        if ctx.stop.is_cancelled() || ctx.deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let seq = ctx.next.fetch_add(1, Ordering::Relaxed);
        if seq >= ctx.total {
            break;
        }
        let start = Instant::now();
        let Some(outcome) = within_stop_grace(&ctx, execute(&ctx, &mut conn, &mut stats, seq)).await else {
            stats.abandoned += 1;
            break;
        };
        let took = start.elapsed();
        stats.record(outcome, took, took);
        ctx.progress.add(id);
    }
    stats
}

/// Runs a request to its end, unless the run was stopped more than [`STOP_GRACE`] ago (None).
async fn within_stop_grace(ctx: &Ctx, request: impl std::future::Future<Output = Outcome>) -> Option<Outcome> {
    tokio::select! {
        biased;
        outcome = request => Some(outcome),
        _ = async {
            ctx.stop.cancelled().await;
            tokio::time::sleep(STOP_GRACE).await;
        } => None,
    }
}

/// One open-loop request: its sequence number and when it should have been sent.
struct Job {
    seq: u64,
    intended: Instant,
}

/// Open-loop worker: sends the jobs it is handed; latency counts from the intended send time.
async fn open_worker(
    ctx: Arc<Ctx>,
    id: usize,
    mut jobs: mpsc::Receiver<Job>,
    idle: mpsc::UnboundedSender<usize>,
) -> WorkerStats {
    let mut stats = WorkerStats::new(true);
    let mut conn = None;
    while let Some(job) = jobs.recv().await {
        let sent = Instant::now();
        let Some(outcome) = within_stop_grace(&ctx, execute(&ctx, &mut conn, &mut stats, job.seq)).await else {
            stats.abandoned += 1;
            continue;
        };
        let done = Instant::now();
        stats.record(outcome, done - job.intended, done - sent);
        ctx.progress.add(id);
        // The dispatcher may have finished; then nobody needs to know we are idle.
        let _ = idle.send(id);
    }
    stats
}

/// What the engine measured.
pub(crate) struct RunResult {
    pub(crate) merged: Merged,
    pub(crate) elapsed: Duration,
    pub(crate) late: u64,
    pub(crate) max_dispatch_lag: Duration,
    pub(crate) concurrency: usize,
}

async fn join_all(handles: Vec<tokio::task::JoinHandle<WorkerStats>>) -> anyhow::Result<Vec<WorkerStats>> {
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.context("load worker panicked")?);
    }
    Ok(out)
}

/// Runs the closed-loop workers like wrk does: one OS thread per core, each with its own
/// single-threaded runtime owning a share of the connections, so a request never wakes another
/// thread (the caller's runtime may be busy serving the target itself, as in tests).
async fn run_closed_threads(ctx: &Arc<Ctx>, workers: usize) -> anyhow::Result<Vec<WorkerStats>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(workers);
    let mut results = Vec::with_capacity(threads);
    for t in 0..threads {
        let ctx = ctx.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name(format!("pinchpoint-load-{t}"))
            .spawn(move || {
                let result = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .context("cannot start a load runtime")
                    .and_then(|rt| {
                        rt.block_on(async {
                            let handles = (t..workers)
                                .step_by(threads)
                                .map(|id| tokio::spawn(closed_worker(ctx.clone(), id)))
                                .collect();
                            join_all(handles).await
                        })
                    });
                let _ = tx.send(result);
            })
            .context("cannot start a load thread")?;
        results.push(rx);
    }
    let mut stats = Vec::with_capacity(workers);
    for rx in results {
        stats.extend(rx.await.context("load thread died")??);
    }
    Ok(stats)
}

/// Runs `plan` against `target`.
pub(crate) async fn drive(
    plan: &LoadPlan,
    target: Target,
    progress: Arc<Progress>,
    stop: CancellationToken,
) -> anyhow::Result<RunResult> {
    let ctx = Arc::new(Ctx::new(plan, target, progress, stop)?);
    let start = Instant::now();
    match plan.mode {
        Mode::Closed { requests, concurrency, .. } => {
            let workers = concurrency.clamp(1, requests.max(1) as usize);
            let stats = run_closed_threads(&ctx, workers).await?;
            Ok(RunResult {
                elapsed: start.elapsed(),
                merged: merge(stats, false),
                late: 0,
                max_dispatch_lag: Duration::ZERO,
                concurrency: workers,
            })
        }
        Mode::Open { rate, max_in_flight, .. } => {
            let cap = max_in_flight.max(1);
            let (idle_tx, mut idle_rx) = mpsc::unbounded_channel::<usize>();
            let mut senders: Vec<mpsc::Sender<Job>> = Vec::new();
            let mut handles = Vec::new();
            let mut late = 0u64;
            let mut max_lag = Duration::ZERO;
            let interval = 1.0 / rate;
            for seq in 0..ctx.total {
                let intended = start + Duration::from_secs_f64(seq as f64 * interval);
                if Instant::now() < intended {
                    tokio::select! {
                        _ = tokio::time::sleep_until(intended) => {}
                        _ = ctx.stop.cancelled() => {}
                    }
                }
                if ctx.stop.is_cancelled() {
                    break;
                }
                let worker = match idle_rx.try_recv() {
                    Ok(w) => w,
                    Err(_) if senders.len() < cap => {
                        let (tx, rx) = mpsc::channel(1);
                        let id = senders.len();
                        senders.push(tx);
                        handles.push(tokio::spawn(open_worker(ctx.clone(), id, rx, idle_tx.clone())));
                        id
                    }
                    Err(_) => {
                        // Every slot is busy: this request cannot go out on time.
                        late += 1;
                        tokio::select! {
                            w = idle_rx.recv() => w.expect("the dispatcher holds a sender"),
                            _ = ctx.stop.cancelled() => break,
                        }
                    }
                };
                max_lag = max_lag.max(Instant::now().saturating_duration_since(intended));
                senders[worker]
                    .try_send(Job { seq, intended })
                    .map_err(|_| anyhow!("load worker {worker} stopped early"))?;
            }
            drop(senders);
            drop(idle_tx);
            let stats = join_all(handles).await?;
            let workers = stats.len();
            Ok(RunResult {
                elapsed: start.elapsed(),
                merged: merge(stats, true),
                late,
                max_dispatch_lag: max_lag,
                concurrency: workers,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let u = parse_url("http://127.0.0.1:8080").unwrap();
        assert_eq!((u.host.as_str(), u.port, u.base.as_str()), ("127.0.0.1", 8080, ""));
        assert_eq!(u.host_header, "127.0.0.1:8080");
        assert_eq!(u.path_and_query, "/");
        assert!(!u.has_path_or_query());
        let u = parse_url("http://localhost/gw/").unwrap();
        assert_eq!((u.port, u.base.as_str()), (80, "/gw"));
        assert!(u.has_path_or_query());
        assert_eq!(parse_url("http://[::1]:9000").unwrap().host, "::1");
        assert!(parse_url("https://x:1").is_err());
        assert!(parse_url("127.0.0.1:8080").is_err());
        let u = parse_url("http://x:1/any/path?q=1&r=%20").unwrap();
        assert_eq!(
            (u.path_and_query.to_string().as_str(), u.query.as_deref()),
            ("/any/path?q=1&r=%20", Some("q=1&r=%20"))
        );
    }

    fn ctx(mix: Mix, ops: u64) -> Ctx {
        let mut plan = LoadPlan::closed("http://127.0.0.1:9/base", 10, 1);
        plan.mix = mix;
        plan.batch_size = ops as usize;
        plan.keys = 3;
        plan.prefix = "pfx".into();
        let u = parse_url(&plan.url).unwrap();
        let target = Target {
            addr: "127.0.0.1:9".parse().unwrap(),
            host: u.host_header,
            base: u.base,
            path_and_query: u.path_and_query,
        };
        Ctx::new(&plan, target, Arc::new(Progress::new()), CancellationToken::new()).unwrap()
    }

    async fn body_json(req: Request<Body>) -> serde_json::Value {
        let bytes = req.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn builds_increment_requests() {
        let c = ctx(Mix::Increment, 1);
        let req = c.build(4);
        assert_eq!(req.method(), Method::POST);
        assert_eq!(req.uri(), "/base/api/v1/counter/increment");
        assert_eq!(req.headers()["host"], "127.0.0.1:9");
        assert_eq!(req.headers()["x-request-id"], format!("{}-4", c.run_id));
        assert_ne!(c.run_id, ctx(Mix::Increment, 1).run_id, "request ids differ between runs");
        assert_eq!(req.headers()["content-type"], "application/json");
        let v = body_json(req).await;
        assert_eq!(v, serde_json::json!({"resource_id":"pfx-1","counter_type":"hits","delta":5}));
    }

    #[tokio::test]
    async fn builds_batches_and_acks_every_op() {
        let c = ctx(Mix::Batch, 4);
        let v = body_json(c.build(1)).await;
        let ops = v["operations"].as_array().unwrap();
        assert_eq!(ops.len(), 4);
        assert_eq!(v["async"], false);
        let mut stats = WorkerStats::new(false);
        c.ack(1, &mut stats);
        let mut expect = std::collections::HashMap::new();
        for op in ops {
            let rid = op["resource_id"].as_str().unwrap();
            let key: u32 = rid.strip_prefix("pfx-").unwrap().parse().unwrap();
            *expect.entry(key).or_insert(0) += op["delta"].as_i64().unwrap();
        }
        assert_eq!(stats.acked, expect);
        assert_eq!(stats.acked_ops, 4);
    }

    #[test]
    fn builds_reads_and_health() {
        let c = ctx(Mix::Read, 1);
        let req = c.build(5);
        assert_eq!(req.method(), Method::GET);
        assert_eq!(req.uri(), "/base/api/v1/counter/pfx-2/hits");
        assert!(req.headers().get("x-request-id").is_none());
        let mut stats = WorkerStats::new(false);
        c.ack(5, &mut stats);
        assert!(stats.acked.is_empty());
        let c = ctx(Mix::Health, 1);
        assert_eq!(c.build(0).uri(), "/base/health");
    }
}
