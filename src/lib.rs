//! pinchpoint: find where async services pinch.
//!
//! Two halves in one package:
//! - [`probe`] and [`metrics`]: instrumented locks, pools, worker pools, allocation and task
//!   tracking a tokio service embeds, exported through [`admin`] as Prometheus metrics and
//!   `/debug/*` JSON views.
//! - the lab (`lab` feature): an instrumented counter gateway and service with switchable
//!   bottlenecks, used to reproduce and diagnose the field reports' failures.

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

#[cfg(feature = "lab")]
pub mod consumer;
#[cfg(feature = "lab")]
pub mod counter;
#[cfg(feature = "lab")]
pub mod dashboards;
#[cfg(feature = "lab")]
pub mod lab;
#[cfg(feature = "lab")]
pub mod load;
#[cfg(feature = "lab")]
pub mod shutdown;
