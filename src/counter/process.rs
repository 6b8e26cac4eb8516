//! The three processes of the counter system — service, gateway, monolith — as library
//! functions, so the CLI and the lab start them the same way.
//!
//! Each binds its listeners first and prints one line per listener
//! (`gateway http listening on 127.0.0.1:8080`), so scripts that ask for port 0 can read
//! the ports chosen. Each runs until its [`Shutdown`] fires, then drains.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::counter::client_pool::{ServicePool, ServicePoolConfig};
use crate::counter::http_api::{self, Backend};
use crate::counter::model::Key;
use crate::counter::service::{self, ServeOptions};
use crate::counter::store::{LockMode, MemoryConfig, MemoryStore, RedisConfig, RedisStore, Store, StoreSpec};
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
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            spec: StoreSpec::Memory,
            lock: LockMode::Sharded,
            redis_pool: 8,
            dedup_ttl: Duration::from_secs(600),
            seed: Vec::new(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub listen: SocketAddr,
    pub admin: AdminConfig,
    pub store: StoreConfig,
    pub max_streams: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub listen: SocketAddr,
    pub admin: AdminConfig,
    pub pool: ServicePoolConfig,
}

#[derive(Debug, Clone)]
pub struct MonolithConfig {
    pub listen: SocketAddr,
    pub admin: AdminConfig,
    pub store: StoreConfig,
}

async fn bind(role: &str, what: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    let listener = TcpListener::bind(addr).await.map_err(|source| StartError::Bind { addr, what, source })?;
    let local = listener.local_addr().map_err(|source| StartError::Bind { addr, what, source })?;
    let mut out = std::io::stdout().lock();
    // A line per listener on stdout is part of the contract: scripts parse it.
    let _ = writeln!(out, "{role} {what} listening on {local}");
    let _ = out.flush();
    Ok(listener)
}

async fn bind_admin(role: &str, config: &AdminConfig) -> Result<(TcpListener, axum::Router), StartError> {
    if !config.addr.ip().is_loopback() && config.token.is_none() {
        return Err(StartError::AdminNeedsToken(config.addr));
    }
    let listener = bind(role, "admin", config.addr).await?;
    Ok((listener, crate::counter::instrument::admin_router(config.token.clone())))
}

async fn open_store(config: &StoreConfig) -> Result<Arc<Store>, StartError> {
    let store = match &config.spec {
        StoreSpec::Memory => Store::Memory(MemoryStore::new(MemoryConfig {
            lock: config.lock,
            dedup_ttl: config.dedup_ttl,
            ..MemoryConfig::default()
        })),
        StoreSpec::Redis(url) => Store::Redis(
            RedisStore::connect(RedisConfig {
                url: url.clone(),
                pool_size: config.redis_pool,
                dedup_ttl: config.dedup_ttl,
                acquire_timeout: Duration::from_secs(5),
            })
            .await?,
        ),
    };
    for (key, value) in &config.seed {
        store.seed(key, *value).await?;
    }
    Ok(Arc::new(store))
}

/// Serves an axum router until shutdown, with graceful draining.
fn spawn_http(listener: TcpListener, router: axum::Router, shutdown: &Shutdown) -> tokio::task::JoinHandle<()> {
    let wait = shutdown.wait();
    tokio::spawn(async move {
        let app = router.into_make_service_with_connect_info::<SocketAddr>();
        if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(wait).await {
            tracing::error!("http server failed: {e}");
        }
    })
}

/// Waits for shutdown, then for the servers to drain, at most [`DRAIN_DEADLINE`].
async fn drain(shutdown: &Shutdown, servers: Vec<tokio::task::JoinHandle<()>>) {
    shutdown.wait().await;
    let all = futures_util::future::join_all(servers);
    if tokio::time::timeout(DRAIN_DEADLINE, all).await.is_err() {
        tracing::warn!("some requests were still running after {DRAIN_DEADLINE:?}; exiting anyway");
    }
}

pub async fn run_service(config: ServiceConfig, shutdown: Shutdown) -> Result<(), StartError> {
    let store = open_store(&config.store).await?;
    let grpc = bind("service", "grpc", config.listen).await?;
    let (admin_listener, admin_router) = bind_admin("service", &config.admin).await?;
    let options = ServeOptions { max_streams: config.max_streams };
    let wait = shutdown.wait();
    let grpc_task = tokio::spawn(async move {
        if let Err(e) = service::serve(grpc, store, options, wait).await {
            tracing::error!("grpc server failed: {e}");
        }
    });
    let admin_task = spawn_http(admin_listener, admin_router, &shutdown);
    drain(&shutdown, vec![grpc_task, admin_task]).await;
    Ok(())
}

pub async fn run_gateway(config: GatewayConfig, shutdown: Shutdown) -> Result<(), StartError> {
    let pool = Arc::new(ServicePool::new(config.pool).map_err(StartError::Config)?);
    let http = bind("gateway", "http", config.listen).await?;
    let (admin_listener, admin_router) = bind_admin("gateway", &config.admin).await?;
    let http_task = spawn_http(http, http_api::router(Backend::Remote(pool.clone())), &shutdown);
    let admin_task = spawn_http(admin_listener, admin_router, &shutdown);
    drain(&shutdown, vec![http_task, admin_task]).await;
    pool.close();
    Ok(())
}

pub async fn run_monolith(config: MonolithConfig, shutdown: Shutdown) -> Result<(), StartError> {
    let store = open_store(&config.store).await?;
    let http = bind("monolith", "http", config.listen).await?;
    let (admin_listener, admin_router) = bind_admin("monolith", &config.admin).await?;
    let http_task = spawn_http(http, http_api::router(Backend::Local(store)), &shutdown);
    let admin_task = spawn_http(admin_listener, admin_router, &shutdown);
    drain(&shutdown, vec![http_task, admin_task]).await;
    Ok(())
}
