//! The gateway's way to the counter service: a pool of gRPC channels, or — with
//! `--dial-per-request` — a fresh connection for every request (the field report's
//! 738-QPS design, kept so the lab can show what it costs).
//!
//! Each pooled channel is its own HTTP/2 connection. A semaphore bounds the calls in
//! flight to `pool_size × streams_per_channel`, so when the pool is too small callers
//! wait *here*, where `pinchpoint_pool_*{pool="rpc"}` can see it, instead of inside h2.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tonic::transport::{Channel, Endpoint};

use crate::counter::instrument::red;
use crate::counter::instrument::PoolProbe;
use crate::counter::model::{CounterError, Key, Op};
use crate::counter::proto::{self, counter_service_client::CounterServiceClient};

#[derive(Debug, Clone)]
pub struct ServicePoolConfig {
    /// One or more `http://host:port` URLs of counter services.
    pub urls: Vec<String>,
    /// Channels (connections) per service URL.
    pub pool_size: usize,
    /// Calls allowed in flight on one channel before callers queue.
    pub streams_per_channel: usize,
    pub dial_per_request: bool,
    /// Deadline for connecting and for each call.
    pub timeout: Duration,
}

impl Default for ServicePoolConfig {
    fn default() -> Self {
        ServicePoolConfig {
            urls: vec!["http://127.0.0.1:50051".into()],
            pool_size: 8,
            streams_per_channel: 100,
            dial_per_request: false,
            timeout: Duration::from_secs(5),
        }
    }
}

pub struct ServicePool {
    endpoints: Vec<Endpoint>,
    channels: Vec<Channel>,
    next: AtomicUsize,
    dial_per_request: bool,
    slots: Arc<Semaphore>,
    timeout: Duration,
    probe: PoolProbe,
}

/// A client for one call, holding its in-flight slot until dropped.
struct Checkout {
    client: CounterServiceClient<Channel>,
    dialed: bool,
    _slot: tokio::sync::OwnedSemaphorePermit,
    _in_use: crate::counter::instrument::InUse,
}

impl ServicePool {
    /// Builds the pool. Channels connect lazily, so a gateway starts even when the service
    /// is not up yet; `/health` tells whether it is.
    pub fn new(config: ServicePoolConfig) -> Result<Self, String> {
        if config.urls.is_empty() {
            return Err("at least one --service URL is needed".into());
        }
        let endpoints = config
            .urls
            .iter()
            .map(|u| {
                Endpoint::from_shared(u.clone())
                    .map_err(|e| format!("bad --service URL {u:?}: {e} (expected http://HOST:PORT)"))
                    .map(|e| e.connect_timeout(config.timeout).timeout(config.timeout).tcp_nodelay(true))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let pool_size = config.pool_size.max(1);
        let channels = if config.dial_per_request {
            Vec::new()
        } else {
            (0..pool_size).flat_map(|_| endpoints.iter().map(|e| e.connect_lazy())).collect()
        };
        let connections = if config.dial_per_request { pool_size } else { channels.len() };
        let max_in_flight = connections * config.streams_per_channel.max(1);
        let probe = PoolProbe::new("rpc", max_in_flight);
        Ok(ServicePool {
            endpoints,
            channels,
            next: AtomicUsize::new(0),
            dial_per_request: config.dial_per_request,
            slots: Arc::new(Semaphore::new(max_in_flight)),
            timeout: config.timeout,
            probe,
        })
    }

    async fn checkout(&self) -> Result<Checkout, CounterError> {
        let acquiring = self.probe.acquire_started();
        let slot = match self.slots.clone().try_acquire_owned() {
            Ok(s) => s,
            Err(_) => match tokio::time::timeout(self.timeout, self.slots.clone().acquire_owned()).await {
                Ok(Ok(s)) => s,
                Ok(Err(_)) => {
                    acquiring.failed();
                    return Err(CounterError::Unavailable("gateway is shutting down".into()));
                }
                Err(_) => {
                    acquiring.timed_out();
                    return Err(CounterError::Unavailable(format!(
                        "no free channel slot within {:?}: the rpc pool is saturated",
                        self.timeout
                    )));
                }
            },
        };
        let turn = self.next.fetch_add(1, Ordering::Relaxed);
        let (channel, dialed) = if self.dial_per_request {
            let endpoint = &self.endpoints[turn % self.endpoints.len()];
            let started = Instant::now();
            match endpoint.connect().await {
                Ok(c) => {
                    self.probe.opened(started.elapsed());
                    (c, true)
                }
                Err(e) => {
                    acquiring.failed();
                    return Err(CounterError::Unavailable(format!("cannot connect to {}: {e}", endpoint.uri())));
                }
            }
        } else {
            (self.channels[turn % self.channels.len()].clone(), false)
        };
        Ok(Checkout { client: CounterServiceClient::new(channel), dialed, _slot: slot, _in_use: acquiring.acquired() })
    }

    fn finish<T>(
        &self,
        method: &'static str,
        started: Instant,
        checkout: Checkout,
        r: Result<T, tonic::Status>,
    ) -> Result<T, CounterError> {
        if checkout.dialed {
            // The connection closes when the client (its only channel) drops here.
            self.probe.closed("per_request");
        }
        drop(checkout);
        let code = match &r {
            Ok(_) => tonic::Code::Ok,
            Err(s) => s.code(),
        };
        red::rpc_client(method, proto::code_label(code), started.elapsed());
        r.map_err(|s| proto::from_status(&s))
    }

    pub async fn increment(&self, op: &Op, request_id: &str) -> Result<i64, CounterError> {
        let started = Instant::now();
        let mut c = self.checkout().await?;
        let req = proto::IncrementRequest {
            resource_id: op.key.resource_id.clone(),
            counter_type: op.key.counter_type.clone(),
            delta: op.delta,
            request_id: request_id.to_string(),
        };
        let r = c.client.increment(req).await.map(|r| r.into_inner().value);
        self.finish("Increment", started, c, r)
    }

    pub async fn batch(&self, ops: &[Op], request_id: &str) -> Result<Vec<Result<i64, CounterError>>, CounterError> {
        let started = Instant::now();
        let mut c = self.checkout().await?;
        let req = proto::BatchIncrementRequest {
            operations: ops.iter().map(proto::Operation::from).collect(),
            request_id: request_id.to_string(),
        };
        let r = c.client.batch_increment(req).await.map(|r| r.into_inner().results);
        let results = self.finish("BatchIncrement", started, c, r)?;
        if results.len() != ops.len() {
            return Err(CounterError::Internal(format!(
                "service answered {} results for {} operations",
                results.len(),
                ops.len()
            )));
        }
        Ok(results.iter().map(proto::OpResult::outcome).collect())
    }

    pub async fn get(&self, key: &Key) -> Result<i64, CounterError> {
        let started = Instant::now();
        let mut c = self.checkout().await?;
        let req = proto::GetRequest { resource_id: key.resource_id.clone(), counter_type: key.counter_type.clone() };
        let r = c.client.get(req).await.map(|r| r.into_inner().value);
        self.finish("Get", started, c, r)
    }

    /// True when at least one service answers its gRPC health check as SERVING.
    pub async fn healthy(&self) -> bool {
        use tonic_health::pb::{health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest};
        let deadline = self.timeout.min(Duration::from_secs(2));
        for (i, endpoint) in self.endpoints.iter().enumerate() {
            let channel = if self.dial_per_request {
                match tokio::time::timeout(deadline, endpoint.connect()).await {
                    Ok(Ok(c)) => c,
                    _ => continue,
                }
            } else {
                self.channels[i].clone()
            };
            let mut client = HealthClient::new(channel);
            let check = client.check(HealthCheckRequest { service: String::new() });
            if let Ok(Ok(resp)) = tokio::time::timeout(deadline, check).await {
                if resp.into_inner().status == ServingStatus::Serving as i32 {
                    return true;
                }
            }
        }
        false
    }

    /// Refuses new calls; calls already holding a slot finish normally.
    pub fn close(&self) {
        self.slots.close();
    }
}
