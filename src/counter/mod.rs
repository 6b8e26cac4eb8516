//! The lab's subject: a counter gateway (HTTP), a counter service (gRPC) and a monolith,
//! instrumented with the probes, with switchable bottlenecks.

pub mod client_pool;
pub mod http_api;
pub mod instrument;
pub mod model;
pub mod process;
pub mod proto;
pub mod service;
pub mod store;
