//! The three processes of the counter system — service, gateway, monolith — as library
//! functions, so the CLI and the lab start them the same way.
//!
//! Each binds its listeners first and prints one line per listener
//! (`gateway http listening on 127.0.0.1:8080`), so scripts that ask for port 0 can read
//! the ports chosen. Each runs until its [`Shutdown`] fires, then drains.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;

use crate::admin::{self, AdminOptions};
use crate::counter::cache::ReadCache;
use crate::counter::client_pool::{ServicePool, ServicePoolConfig};
use crate::counter::faults::GatewayFaults;
use crate::counter::gateway::Gateway;
use crate::counter::http_api::{self, ApiOptions, Backend};
use crate::counter::limiter::RateLimiter;
use crate::counter::model::Key;
use crate::counter::service::{self, ServeOptions};
use crate::counter::store::{
    Backend as StoreBackend, LockMode, MemoryConfig, MemoryStore, RedisConfig, RedisStore, Store, StoreSpec,
};
use crate::counter::write_buffer::{WriteBuffer, WriteBufferConfig};
use crate::shutdown::{Shutdown, DRAIN_DEADLINE};

/// Why a process could not start. The CLI prints it on one line and exits 2.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr} ({what}): {source}; pick another address or free the port")]
    Bind { addr: SocketAddr, what: &'static str, source: std::io::Error },
    #[error("admin listener {0} is not a loopback address: pass --admin-token to protect it")]
    AdminNeedsToken(SocketAddr),
    #[error("{0}")]
    Config(String),
    #[error("store: {0}")]
    Store(#[from] crate::counter::model::CounterError),
}

#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub addr: SocketAddr,
    pub token: Option<String>,
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub spec: StoreSpec,
    pub lock: LockMode,
    pub redis_pool: usize,
    pub dedup_ttl: Duration,
    /// Counters set at start (`--seed resource/type=value`).
    pub seed: Vec<(Key, i64)>,
    /// CPU work under the memory store's lock per increment (`--store-work`).
    pub work_under_lock: Duration,
    /// Added to every store operation (`--store-delay`).
    pub delay: Option<Duration>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            spec: StoreSpec::Memory,
            lock: LockMode::Sharded,
            redis_pool: 8,
            dedup_ttl: Duration::from_secs(600),
            seed: Vec::new(),
            work_under_lock: Duration::ZERO,
            delay: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub listen: SocketAddr,
    pub admin: AdminConfig,
    pub store: StoreConfig,
    pub max_streams: Option<u32>,
    /// Fault injection: every Nth increment call fails after applying.
    pub fail_after_apply_every: Option<u64>,
    /// Fault injection: each increment call is answered this much later.
    pub delay_after_apply: Option<Duration>,
}

#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub listen: SocketAddr,
    pub admin: AdminConfig,
    pub pool: ServicePoolConfig,
    /// Serve GETs from a local cache for this long (`--cache-ttl`).
    pub cache_ttl: Option<Duration>,
    pub cache_capacity: usize,
    /// Answer async batches at once and flush them in the background (`--write-buffer`).
    pub write_buffer: Option<WriteBufferConfig>,
    /// Requests per second per client (`--rate-limit`).
    pub rate_limit: Option<f64>,
    /// The lab's deliberate mistakes (`--fault-*`).
    pub faults: GatewayFaults,
}

#[derive(Debug, Clone)]
pub struct MonolithConfig {
    pub listen: SocketAddr,
    pub admin: AdminConfig,
    pub store: StoreConfig,
}

/// Pending connections the kernel queues per listener. std and tokio use 128; a load of
/// 200–500 clients connecting at once overflows that, the kernel drops SYNs, and clients
/// wait out the 1 s retransmit timer (the lab's L4/L5 showed a 1.02 s max latency in every
/// scenario). The kernel caps it at net.core.somaxconn.
const LISTEN_BACKLOG: u32 = 4096;

fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

async fn bind(role: &str, what: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    let listener = listen(addr).map_err(|source| StartError::Bind { addr, what, source })?;
    let local = listener.local_addr().map_err(|source| StartError::Bind { addr, what, source })?;
    let mut out = std::io::stdout().lock();
    // A line per listener on stdout is part of the contract: scripts parse it.
    let _ = writeln!(out, "{role} {what} listening on {local}");
    let _ = out.flush();
    Ok(listener)
}

pub(crate) async fn bind_admin(role: &str, config: &AdminConfig) -> Result<(TcpListener, axum::Router), StartError> {
    if !config.addr.ip().is_loopback() && config.token.is_none() {
        return Err(StartError::AdminNeedsToken(config.addr));
    }
    let listener = bind(role, "admin", config.addr).await?;
    Ok((listener, admin::router(AdminOptions { bearer_token: config.token.clone() })))
}

async fn open_store(config: &StoreConfig) -> Result<Arc<Store>, StartError> {
    let backend = match &config.spec {
        StoreSpec::Memory => StoreBackend::Memory(MemoryStore::new(MemoryConfig {
            lock: config.lock,
            dedup_ttl: config.dedup_ttl,
            work_under_lock: config.work_under_lock,
            ..MemoryConfig::default()
        })),
        StoreSpec::Redis(url) => StoreBackend::Redis(
            RedisStore::connect(RedisConfig {
                url: url.clone(),
                pool_size: config.redis_pool,
                dedup_ttl: config.dedup_ttl,
                acquire_timeout: Duration::from_secs(5),
            })
            .await?,
        ),
    };
    let store = Store::new(backend, config.delay);
    for (key, value) in &config.seed {
        store.seed(key, *value).await?;
    }
    Ok(Arc::new(store))
}

/// Serves an axum router until shutdown, with graceful draining.
pub(crate) fn spawn_http(
    name: &'static str,
    listener: TcpListener,
    router: axum::Router,
    shutdown: &Shutdown,
) -> tokio::task::JoinHandle<()> {
    let wait = shutdown.wait();
    crate::probe::task::spawn(name, async move {
        let app = router.into_make_service_with_connect_info::<SocketAddr>();
        if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(wait).await {
            tracing::error!("http server failed: {e}");
        }
    })
}

/// Waits for shutdown, then for the servers to drain, at most `deadline`.
async fn drain(shutdown: &Shutdown, servers: Vec<tokio::task::JoinHandle<()>>, deadline: Duration) {
    shutdown.wait().await;
    let all = futures_util::future::join_all(servers);
    if tokio::time::timeout(deadline, all).await.is_err() {
        tracing::warn!("some requests were still running after {deadline:?}; exiting anyway");
    }
}

pub async fn run_service(config: ServiceConfig, shutdown: Shutdown) -> Result<(), StartError> {
    let store = open_store(&config.store).await?;
    let grpc = bind("service", "grpc", config.listen).await?;
    let (admin_listener, admin_router) = bind_admin("service", &config.admin).await?;
    let options = ServeOptions {
        max_streams: config.max_streams,
        fail_after_apply_every: config.fail_after_apply_every,
        delay_after_apply: config.delay_after_apply,
    };
    let wait = shutdown.wait();
    let grpc_task = crate::probe::task::spawn("grpc.server", async move {
        if let Err(e) = service::serve(grpc, store, options, wait).await {
            tracing::error!("grpc server failed: {e}");
        }
    });
    let admin_task = spawn_http("admin.server", admin_listener, admin_router, &shutdown);
    drain(&shutdown, vec![grpc_task, admin_task], DRAIN_DEADLINE).await;
    Ok(())
}

pub async fn run_gateway(config: GatewayConfig, shutdown: Shutdown) -> Result<(), StartError> {
    let pool = ServicePool::new(config.pool).map_err(StartError::Config)?;
    // Warm-up: connect and health-check every channel before the listener opens, so the
    // first requests do not pay for connecting.
    let started = Instant::now();
    let (ok, total) = pool.warm_up().await;
    let services = pool.config().urls.len();
    if ok == total {
        tracing::info!(
            "warm-up: {ok}/{total} channels to {services} service(s) connected and healthy in {:?}",
            started.elapsed()
        );
    } else {
        tracing::warn!("warm-up: only {ok}/{total} channels to {services} service(s) answered in {:?}; serving anyway, /health tells", started.elapsed());
    }
    pool.spawn_health_checks(shutdown.wait());
    let buffer = config.write_buffer.map(|c| {
        let b = WriteBuffer::new(pool.clone(), c);
        b.spawn_flusher();
        b
    });
    let cache = config.cache_ttl.map(|ttl| ReadCache::new(ttl, config.cache_capacity));
    let limiter = config.rate_limit.map(|rate| {
        let l = Arc::new(RateLimiter::new(rate));
        l.spawn_sweeper(shutdown.wait());
        l
    });
    let gateway = Arc::new(Gateway { pool: pool.clone(), cache, buffer: buffer.clone() });
    let http = bind("gateway", "http", config.listen).await?;
    let (admin_listener, admin_router) = bind_admin("gateway", &config.admin).await?;
    let http_task = spawn_http(
        "http.server",
        http,
        http_api::router(
            Backend::Remote(gateway),
            ApiOptions { limiter, faults: config.faults.any().then(|| Arc::new(config.faults.clone())) },
        ),
        &shutdown,
    );
    let admin_task = spawn_http("admin.server", admin_listener, admin_router, &shutdown);
    // Leave the write buffer time to flush what the drained requests handed it.
    let flush_time = if buffer.is_some() { Duration::from_secs(3) } else { Duration::ZERO };
    drain(&shutdown, vec![http_task, admin_task], DRAIN_DEADLINE - flush_time).await;
    if let Some(buffer) = buffer {
        buffer.close_and_flush(flush_time).await;
    }
    pool.close();
    Ok(())
}

pub async fn run_monolith(config: MonolithConfig, shutdown: Shutdown) -> Result<(), StartError> {
    let store = open_store(&config.store).await?;
    let http = bind("monolith", "http", config.listen).await?;
    let (admin_listener, admin_router) = bind_admin("monolith", &config.admin).await?;
    let http_task =
        spawn_http("http.server", http, http_api::router(Backend::Local(store), ApiOptions::default()), &shutdown);
    let admin_task = spawn_http("admin.server", admin_listener, admin_router, &shutdown);
    drain(&shutdown, vec![http_task, admin_task], DRAIN_DEADLINE).await;
    Ok(())
}
