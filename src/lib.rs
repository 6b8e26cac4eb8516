//! pinchpoint: find where async services pinch.
//!
//! Two halves in one package:
//! - [`probe`] and [`metrics`]: instrumented locks, pools, worker pools, allocation and task
//!   tracking a tokio service embeds, exported through [`admin`] as Prometheus metrics and
//!   `/debug/*` JSON views.
//! - the lab (`lab` feature): an instrumented counter gateway and service with switchable
//!   bottlenecks, used to reproduce and diagnose the field reports' failures.
#![warn(missing_docs)]

pub mod admin;
pub mod diagnose;
pub mod init;
pub mod layer;
pub mod metrics;
pub mod probe;
#[cfg(feature = "profiling")]
pub mod profile;
pub mod telemetry;

pub use init::{init, Guard, Init, InitError};

// The lab's modules are the parts of the `pinchpoint` binary (gateway, service, load driver,
// lab runner, dashboards generator), documented module by module; their items are not the
// library a service embeds, so they are exempt from item-level docs.
#[cfg(feature = "lab")]
#[allow(missing_docs)]
pub mod consumer;
#[cfg(feature = "lab")]
#[allow(missing_docs)]
pub mod counter;
#[cfg(feature = "lab")]
#[allow(missing_docs)]
pub mod dashboards;
#[cfg(feature = "lab")]
#[allow(missing_docs)]
pub mod lab;
#[cfg(feature = "lab")]
#[allow(missing_docs)]
pub mod load;
#[cfg(feature = "lab")]
#[allow(missing_docs)]
pub mod shutdown;
