//! The gateway's way to the counter services: one or more instances, each with a pool of
//! gRPC channels, a circuit breaker and a health flag; a balancer choosing between them;
//! retries with backoff. With `--dial-per-request` every call opens a fresh connection
//! and closes it after (the field report's 738-QPS design, kept so the lab can show what it
//! costs).
//!
//! A semaphore bounds the calls in flight to `channels × streams_per_channel`, so when the
//! pool is too small callers wait *here*, where `pinchpoint_pool_*{pool="rpc"}` sees it,
//! instead of invisibly inside h2.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tonic::transport::{Channel, Endpoint};
use tower::Layer;

use crate::counter::balance::{self, Balance, Candidate};
use crate::counter::breaker::{Breaker, BreakerConfig};
use crate::counter::coalesce::{CoalesceVia, Lane};
use crate::counter::model::{CounterError, Key, Op};
use crate::counter::proto::{self, counter_service_client::CounterServiceClient};
use crate::counter::retry::{retriable, RetryPolicy};
use crate::layer::{Attempt, RpcClient, RpcClientLayer};
use crate::probe::pool::PoolProbe;
use crate::telemetry::Propagate;

#[derive(Debug, Clone)]
pub struct ServicePoolConfig {
    /// One or more `http://host:port` URLs of counter services.
    pub urls: Vec<String>,
    /// Channels (HTTP/2 connections) per service URL.
    pub pool_size: usize,
    /// Calls allowed in flight on one channel before callers queue.
    pub streams_per_channel: usize,
    pub dial_per_request: bool,
    /// Deadline for connecting and for each call attempt.
    pub timeout: Duration,
    pub balance: Balance,
    pub retry: RetryPolicy,
    pub breaker: BreakerConfig,
    /// How often each instance's gRPC health is checked.
    pub health_interval: Duration,
    /// Group concurrent increments into one BatchIncrement per channel (group commit).
    pub coalesce: bool,
    /// How coalesced groups travel.
    pub coalesce_via: CoalesceVia,
    /// Coalescing lanes per service instance (None: one per channel). Fewer lanes make
    /// larger groups, so each RPC's fixed cost is shared by more requests.
    pub coalesce_lanes: Option<usize>,
}

impl Default for ServicePoolConfig {
    fn default() -> Self {
        ServicePoolConfig {
            urls: vec!["http://127.0.0.1:50051".into()],
            pool_size: 8,
            streams_per_channel: 100,
            dial_per_request: false,
            timeout: Duration::from_secs(5),
            balance: Balance::RoundRobin,
            retry: RetryPolicy::default(),
            breaker: BreakerConfig::default(),
            health_interval: Duration::from_secs(1),
            coalesce: false,
            coalesce_via: CoalesceVia::default(),
            coalesce_lanes: None,
        }
    }
}

/// One counter service process as the gateway sees it.
pub struct Instance {
    url: String,
    endpoint: Endpoint,
    /// Each wrapped once, for the life of its connection (see `Propagate`).
    channels: Vec<Propagate<Channel>>,
    /// Health checks get their own connection with their own deadline, so a short call
    /// timeout or a saturated data path does not make a live service look dead.
    health_channel: Channel,
    next_channel: AtomicUsize,
    in_flight: AtomicUsize,
    healthy: AtomicBool,
    breaker: Breaker,
    lanes: Vec<Lane>,
    next_lane: AtomicUsize,
}

impl Candidate for Instance {
    fn available(&self) -> bool {
        self.healthy.load(Ordering::Relaxed) && !self.breaker.is_open()
    }
    fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }
    fn id(&self) -> &str {
        &self.url
    }
}

pub struct ServicePool {
    instances: Vec<Instance>,
    turn: AtomicUsize,
    config: ServicePoolConfig,
    slots: Arc<Semaphore>,
    probe: PoolProbe,
}

/// A client for one attempt: [`RpcClient`] records its `rpc_client_*` RED (and the retry,
/// for an attempt after the first).
type Client = CounterServiceClient<RpcClient<Propagate<Channel>>>;

/// How long a health check may take before the instance counts as down.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(1);

impl ServicePool {
    /// Builds the pool. Channels connect lazily; [`ServicePool::warm_up`] connects them.
    pub fn new(config: ServicePoolConfig) -> Result<Arc<Self>, String> {
        if config.urls.is_empty() {
            return Err("at least one --service URL is needed".into());
        }
        let pool_size = config.pool_size.max(1);
        let mut instances = Vec::new();
        for url in &config.urls {
            let endpoint = Endpoint::from_shared(url.clone())
                .map_err(|e| format!("bad --service URL {url:?}: {e} (expected http://HOST:PORT)"))?
                .connect_timeout(config.timeout)
                .timeout(config.timeout)
                .tcp_nodelay(true)
                .http2_keep_alive_interval(Duration::from_secs(30))
                .keep_alive_timeout(Duration::from_secs(10))
                .keep_alive_while_idle(true);
            let channels = if config.dial_per_request {
                Vec::new()
            } else {
                (0..pool_size).map(|_| Propagate::new(endpoint.connect_lazy())).collect()
            };
            let health_channel =
                endpoint.clone().timeout(HEALTH_TIMEOUT).connect_timeout(HEALTH_TIMEOUT).connect_lazy();
            instances.push(Instance {
                url: url.clone(),
                endpoint,
                channels,
                health_channel,
                next_channel: AtomicUsize::new(0),
                in_flight: AtomicUsize::new(0),
                healthy: AtomicBool::new(true),
                breaker: Breaker::new(url, config.breaker),
                lanes: if config.coalesce {
                    (0..config.coalesce_lanes.unwrap_or(pool_size).max(1)).map(|_| Lane::default()).collect()
                } else {
                    Vec::new()
                },
                next_lane: AtomicUsize::new(0),
            });
        }
        let max_in_flight = instances.len() * pool_size * config.streams_per_channel.max(1);
        let probe = PoolProbe::new("rpc", max_in_flight);
        if !config.dial_per_request {
            probe.set_size(instances.len() * pool_size);
        }
        Ok(Arc::new(ServicePool {
            instances,
            turn: AtomicUsize::new(0),
            slots: Arc::new(Semaphore::new(max_in_flight)),
            probe,
            config,
        }))
    }

    pub fn config(&self) -> &ServicePoolConfig {
        &self.config
    }

    /// Connects every channel and checks every instance's health, at most `timeout` long;
    /// returns (healthy channels, all channels).
    pub async fn warm_up(&self) -> (usize, usize) {
        let mut checks = Vec::new();
        for inst in &self.instances {
            let channels: Vec<Option<Channel>> = if inst.channels.is_empty() {
                vec![None]
            } else {
                inst.channels.iter().map(|c| Some(c.get_ref().clone())).collect()
            };
            for ch in channels {
                checks.push(async move { (inst, self.check_health(inst, ch).await) });
            }
        }
        let results = futures_util::future::join_all(checks).await;
        let total = results.len();
        let mut ok = 0;
        for inst in &self.instances {
            let mine: Vec<bool> =
                results.iter().filter(|(i, _)| std::ptr::eq(*i, inst)).map(|(_, healthy)| *healthy).collect();
            inst.healthy.store(mine.iter().any(|h| *h), Ordering::Relaxed);
            ok += mine.iter().filter(|h| **h).count();
        }
        (ok, total)
    }

    async fn check_health(&self, inst: &Instance, channel: Option<Channel>) -> bool {
        use tonic_health::pb::{health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest};
        // Independent of the per-call timeout: a service that answers health checks in a
        // second is up, even when the configured call deadline is much shorter.
        let deadline = HEALTH_TIMEOUT;
        let check = async {
            let channel = match channel {
                Some(c) => c,
                None => inst.endpoint.connect().await.ok()?,
            };
            let resp = HealthClient::new(channel).check(HealthCheckRequest { service: String::new() }).await.ok()?;
            Some(resp.into_inner().status == ServingStatus::Serving as i32)
        };
        matches!(tokio::time::timeout(deadline, check).await, Ok(Some(true)))
    }

    /// Checks each instance every `health_interval` until `stop` resolves: an instance that
    /// fails leaves the rotation, and comes back when it answers again.
    pub fn spawn_health_checks(self: &Arc<Self>, stop: impl Future<Output = ()> + Send + 'static) {
        let pool = self.clone();
        crate::probe::task::spawn("gateway.health_check", async move {
            tokio::pin!(stop);
            // The first check is one interval away: `warm_up` has just checked every instance,
            // and a second check at once would only race whatever the service does next.
            let every = pool.config.health_interval;
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = &mut stop => return,
                    _ = tick.tick() => {}
                }
                for inst in &pool.instances {
                    let healthy = pool.check_health(inst, Some(inst.health_channel.clone())).await;
                    if inst.healthy.swap(healthy, Ordering::Relaxed) != healthy {
                        if healthy {
                            tracing::info!(service = %inst.url, "service answers its health check again: back in rotation");
                        } else {
                            tracing::warn!(service = %inst.url, "service fails its health check: out of rotation");
                        }
                    }
                }
            }
        });
    }

    /// True when at least one instance is in rotation and answers its health check now.
    pub async fn healthy(&self) -> bool {
        for inst in &self.instances {
            if self.check_health(inst, Some(inst.health_channel.clone())).await {
                return true;
            }
        }
        false
    }

    fn no_instance(&self) -> CounterError {
        let open = self.instances.iter().filter(|i| i.breaker.is_open()).count();
        let down = self.instances.iter().filter(|i| !i.healthy.load(Ordering::Relaxed)).count();
        CounterError::Unavailable(format!(
            "no counter service available ({} configured: {down} failing health checks, {open} with an open circuit breaker)",
            self.instances.len()
        ))
    }

    /// Picks an instance for a call on `key`, preferring one other than `avoid`.
    pub(crate) fn pick(&self, key: Option<&str>, avoid: Option<usize>) -> Option<usize> {
        let b = self.config.balance;
        balance::pick(b, &self.instances, &self.turn, key, avoid)
            .or_else(|| avoid.and_then(|_| balance::pick(b, &self.instances, &self.turn, key, None)))
    }

    /// Runs `rpc` against a balanced instance, retrying passing failures (with backoff, on
    /// another instance when there is one). Safe because every increment carries a request
    /// id the service applies at most once.
    pub(crate) async fn call<T, F, Fut>(
        &self,
        method: &'static str,
        key: Option<&str>,
        rpc: F,
    ) -> Result<T, CounterError>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, tonic::Status>>,
    {
        let mut avoid = None;
        let mut last = None;
        for attempt in 0..=self.config.retry.max_retries {
            if attempt > 0 {
                tokio::time::sleep(self.config.retry.backoff(attempt)).await;
            }
            let Some(i) = self.pick(key, avoid) else { return Err(self.no_instance()) };
            let inst = &self.instances[i];
            if !inst.breaker.allow() {
                // Another caller holds the half-open probe: fail over or fail fast.
                avoid = Some(i);
                last.get_or_insert_with(|| self.no_instance());
                continue;
            }
            // One client span per attempt; the request carries it as `traceparent`.
            let mut span = crate::telemetry::grpc_client_span(method, attempt);
            let result = span.run(self.attempt(inst, &rpc, Attempt(attempt))).await;
            span.record_grpc_status(result.as_ref().map_or_else(|s| s.code() as i32, |_| 0));
            drop(span);
            match result {
                Ok(v) => {
                    inst.breaker.on_success();
                    return Ok(v);
                }
                Err(status) if retriable(&status) => {
                    inst.breaker.on_failure();
                    avoid = Some(i);
                    last = Some(proto::from_status(&status));
                }
                Err(status) => {
                    // The service answered: it is up, the request was wrong.
                    inst.breaker.on_success();
                    return Err(proto::from_status(&status));
                }
            }
        }
        Err(last.unwrap_or_else(|| self.no_instance()))
    }

    async fn attempt<T, F, Fut>(&self, inst: &Instance, rpc: &F, attempt: Attempt) -> Result<T, tonic::Status>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, tonic::Status>>,
    {
        let acquiring = self.probe.acquire_started();
        let slot = match self.slots.clone().try_acquire_owned() {
            Ok(s) => Ok(s),
            Err(_) => match tokio::time::timeout(self.config.timeout, self.slots.clone().acquire_owned()).await {
                Ok(s) => s.map_err(|_| tonic::Status::unavailable("gateway is shutting down")),
                Err(_) => Err(tonic::Status::resource_exhausted(format!(
                    "no free rpc slot within {:?}: the channel pool is saturated",
                    self.config.timeout
                ))),
            },
        };
        let slot = match slot {
            Ok(s) => s,
            Err(e) => {
                if e.code() == tonic::Code::ResourceExhausted {
                    acquiring.timed_out()
                } else {
                    acquiring.failed()
                }
                return Err(e);
            }
        };
        let (channel, dialed) = if self.config.dial_per_request {
            let started = Instant::now();
            match inst.endpoint.connect().await {
                Ok(c) => {
                    self.probe.opened(started.elapsed());
                    (Propagate::new(c), true)
                }
                Err(e) => {
                    acquiring.failed();
                    return Err(tonic::Status::unavailable(format!("cannot connect to {}: {e}", inst.url)));
                }
            }
        } else {
            let n = inst.next_channel.fetch_add(1, Ordering::Relaxed);
            (inst.channels[n % inst.channels.len()].clone(), false)
        };
        let lease = acquiring.acquired();
        inst.in_flight.fetch_add(1, Ordering::Relaxed);
        let result = rpc(CounterServiceClient::new(RpcClientLayer::new().layer(channel).with_attempt(attempt))).await;
        inst.in_flight.fetch_sub(1, Ordering::Relaxed);
        drop(lease);
        drop(slot);
        if dialed {
            // The connection closes as its only channel was just dropped with the client.
            self.probe.closed("per_request");
        }
        result
    }

    pub async fn increment(self: &Arc<Self>, op: &Op, request_id: &str) -> Result<i64, CounterError> {
        if self.config.coalesce {
            return crate::counter::coalesce::increment(self, op, request_id).await;
        }
        let req = proto::IncrementRequest {
            resource_id: op.key.resource_id.clone(),
            counter_type: op.key.counter_type.clone(),
            delta: op.delta,
            request_id: request_id.to_string(),
        };
        self.call("Increment", Some(&op.key.resource_id), |mut c| {
            let req = req.clone();
            async move { c.increment(req).await.map(|r| r.into_inner().value) }
        })
        .await
    }

    /// One BatchIncrement; `ops` may carry their own request ids (see the proto).
    pub async fn batch_ops(
        &self,
        operations: Vec<proto::Operation>,
        request_id: &str,
    ) -> Result<Vec<Result<i64, CounterError>>, CounterError> {
        let key = operations.first().map(|o| o.resource_id.clone());
        let req = proto::BatchIncrementRequest { operations, request_id: request_id.to_string() };
        self.batch_request(req.operations.len(), key.as_deref(), || req.clone()).await
    }

    /// One BatchIncrement of `n` operations, `request` building it afresh for each attempt.
    pub(crate) async fn batch_request(
        &self,
        n: usize,
        key: Option<&str>,
        request: impl Fn() -> proto::BatchIncrementRequest,
    ) -> Result<Vec<Result<i64, CounterError>>, CounterError> {
        let results = self
            .call("BatchIncrement", key, |mut c| {
                let req = request();
                async move { c.batch_increment(req).await.map(|r| r.into_inner().results) }
            })
            .await?;
        if results.len() != n {
            return Err(CounterError::Internal(format!(
                "service answered {} results for {n} operations",
                results.len()
            )));
        }
        Ok(results.iter().map(proto::OpResult::outcome).collect())
    }

    pub async fn batch(&self, ops: &[Op], request_id: &str) -> Result<Vec<Result<i64, CounterError>>, CounterError> {
        self.batch_ops(ops.iter().map(proto::Operation::from).collect(), request_id).await
    }

    pub async fn get(&self, key: &Key) -> Result<i64, CounterError> {
        let req = proto::GetRequest { resource_id: key.resource_id.clone(), counter_type: key.counter_type.clone() };
        self.call("Get", Some(&key.resource_id), |mut c| {
            let req = req.clone();
            async move { c.get(req).await.map(|r| r.into_inner().value) }
        })
        .await
    }

    /// Picks the coalescing lane (instance index, lane index) for an increment on `key`.
    pub(crate) fn lane_for(&self, key: &str) -> Option<(usize, usize)> {
        let i = self.pick(Some(key), None)?;
        let inst = &self.instances[i];
        let n = inst.next_lane.fetch_add(1, Ordering::Relaxed);
        Some((i, n % inst.lanes.len().max(1)))
    }

    pub(crate) fn lane(&self, (instance, lane): (usize, usize)) -> &Lane {
        &self.instances[instance].lanes[lane]
    }

    /// The channel a lane's stream runs on (one per lane, as lanes are per channel).
    pub(crate) fn lane_channel(&self, (instance, lane): (usize, usize)) -> Channel {
        let inst = &self.instances[instance];
        match inst.channels.get(lane % inst.channels.len().max(1)) {
            Some(c) => c.get_ref().clone(),
            None => inst.endpoint.connect_lazy(),
        }
    }

    /// Refuses new calls; calls already holding a slot finish normally.
    pub fn close(&self) {
        self.slots.close();
    }
}
