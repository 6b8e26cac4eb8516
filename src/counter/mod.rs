//! The lab's subject: a counter gateway (HTTP), a counter service (gRPC) and a monolith,
//! instrumented with the probes, with switchable bottlenecks.

pub mod balance;
pub mod breaker;
pub mod cache;
pub mod client_pool;
pub mod coalesce;
pub mod faults;
pub mod gateway;
pub mod http_api;
pub mod limiter;
pub mod model;
pub mod process;
pub mod proto;
pub mod retry;
pub mod service;
pub mod store;
pub mod write_buffer;
