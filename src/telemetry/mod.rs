//! The one tracing set-up of every pinchpoint process: [`init`] installs a
//! tracing-subscriber registry with
//!
//! - a fmt layer to **stderr** (stdout carries the `<role> <kind> listening on ADDR` lines
//!   scripts parse), filtered by `RUST_LOG` (default `info,h2=warn,tower=warn,async_nats=warn`);
//! - the **tokio-console** layer when asked for (`--console`, feature `console`), served on
//!   its own thread and runtime, bound before `init` returns so `:0` works and a taken port
//!   is an error, announced as `<role> console listening on ADDR`;
//! - **OTLP trace export** (feature `otlp`) when `OTEL_EXPORTER_OTLP_ENDPOINT` or
//!   `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set, honoring `OTEL_EXPORTER_OTLP_PROTOCOL`
//!   (`grpc`, `http/protobuf`), `OTEL_SERVICE_NAME` (default `pinchpoint-<role>`),
//!   `OTEL_TRACES_SAMPLER`/`OTEL_TRACES_SAMPLER_ARG`, `OTEL_BSP_*` and the other standard
//!   exporter variables: the request path's spans go to it directly, and a
//!   tracing-opentelemetry layer sends it the `tracing` spans `PINCHPOINT_OTEL_FILTER`
//!   selects (EnvFilter syntax; default `pinchpoint=debug`, so the exporter's own transport,
//!   tonic, hyper and h2, is never traced into itself).
//!
//! Each layer has its own filter. Without OTLP, the request spans are `tracing` spans at
//! `debug` level under the `pinchpoint` target: the fmt layer (at `info`) never sees them, so
//! their callsites are disabled and cost a cached interest check.
//!
//! The [`TelemetryGuard`] flushes buffered spans when dropped or [`TelemetryGuard::shutdown`]
//! is called; keep it alive until the process has drained.
//!
//! The request path's spans ([`Span`]: HTTP request, RPC client, RPC server, store operation)
//! make their head-sampling decision once per request and carry W3C `traceparent` in gRPC
//! metadata ([`Propagate`], a layer over the client channel); with OTLP on, sampled ones go
//! straight to the exporter without passing through `tracing` (see `span.rs` and `otlp.rs`
//! for why).
//! [`sampled_trace_id`] gives the metrics the trace id for OpenMetrics exemplars.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

mod console;
#[cfg(feature = "otlp")]
mod otlp;
#[cfg(feature = "otlp")]
mod otlp_exporter;
#[cfg(feature = "otlp")]
mod otlp_wire;
mod propagate;
mod span;
mod task_trace;

pub use propagate::{Propagate, PropagateLayer};
pub(crate) use span::Scope;
pub use span::{grpc_client_span, grpc_server_span, http_request_span, sampled_trace_id, store_span, Span};

/// Stand-ins for a build without the `otlp` feature, where no span is ever sampled.
#[cfg(not(feature = "otlp"))]
#[allow(dead_code)]
mod otlp {
    pub(super) const TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");

    #[derive(Clone)]
    pub(super) enum Ctx {}

    impl Ctx {
        pub(super) fn trace_id(&self) -> u128 {
            match *self {}
        }
        pub(super) fn inject(&self, _headers: &mut http::HeaderMap) {
            match *self {}
        }
    }

    pub(super) enum Live {}

    impl Live {
        pub(super) fn ctx(&self) -> &Ctx {
            match *self {}
        }
        pub(super) fn record_http_status(&mut self, _status: u16) {
            match *self {}
        }
        pub(super) fn record_grpc_status(&mut self, _code: i32) {
            match *self {}
        }
    }
}

/// `RUST_LOG` when unset.
pub const DEFAULT_FILTER: &str = "info,h2=warn,tower=warn,async_nats=warn";

/// What the OTLP tracing layer records when `PINCHPOINT_OTEL_FILTER` is unset: our own
/// `tracing` spans.
pub const DEFAULT_OTEL_FILTER: &str = "pinchpoint=debug";

/// tokio-console ports of DESIGN.md: the gateway's.
pub const CONSOLE_ADDR_GATEWAY: &str = "127.0.0.1:6669";
/// The service's.
pub const CONSOLE_ADDR_SERVICE: &str = "127.0.0.1:6670";
/// The monolith's (the gateway's port: they never run together).
pub const CONSOLE_ADDR_MONOLITH: &str = "127.0.0.1:6669";

/// The default console address of a role (`gateway`, `service`, `monolith`).
pub fn default_console_addr(role: &str) -> SocketAddr {
    let a = if role == "service" { CONSOLE_ADDR_SERVICE } else { CONSOLE_ADDR_GATEWAY };
    a.parse().expect("static address")
}

/// What [`init`] sets up.
#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    /// `gateway`, `service`, `monolith`, ...: names the console line and the default
    /// `service.name` (`pinchpoint-<role>`).
    pub role: String,
    /// Serve tokio-console on this address (`--console`, `--console-addr`).
    pub console: Option<SocketAddr>,
    /// Export traces when the OTLP environment variables ask for it. Off for client
    /// commands such as `pinchpoint load`.
    pub otlp_from_env: bool,
}

impl TelemetryConfig {
    /// The config of `role`: no console, OTLP when the environment asks for it.
    pub fn new(role: impl Into<String>) -> Self {
        TelemetryConfig { role: role.into(), console: None, otlp_from_env: true }
    }
}

#[derive(Debug, thiserror::Error)]
/// Why [`init`] installed nothing.
pub enum TelemetryError {
    #[error("cannot listen on {addr} (tokio-console): {source}; pick another --console-addr or free the port")]
    /// The console's address could not be bound.
    ConsoleBind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
    #[error("--console needs the `console` cargo feature, which this build lacks")]
    /// A console was asked for in a build without the `console` feature.
    ConsoleNotBuilt,
    #[error("{name}={value:?} is not a duration: write it as 30s, 500ms, 2m or 1h")]
    /// A console environment variable is not a duration.
    ConsoleEnv {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
    },
    #[error("OTLP export is configured ({0}) but this build lacks the `otlp` cargo feature")]
    /// OTLP export was configured (the variable named) in a build without the `otlp` feature.
    OtlpNotBuilt(&'static str),
    #[error("OTLP exporter: {0}")]
    /// The OTLP exporter could not be built.
    Otlp(String),
    #[error("bad filter: {0}")]
    /// `RUST_LOG` or `PINCHPOINT_OTEL_FILTER` does not parse.
    Filter(String),
    #[error("a global tracing subscriber is already installed")]
    /// Another global `tracing` subscriber was installed first.
    AlreadyInstalled,
}

/// Keeps the exporters alive; flushes buffered spans on drop.
#[must_use = "dropping the guard shuts the exporter down"]
pub struct TelemetryGuard {
    console: Option<SocketAddr>,
    #[cfg(feature = "otlp")]
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
    otlp: Option<String>,
}

impl std::fmt::Debug for TelemetryGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelemetryGuard").field("console", &self.console).field("otlp", &self.otlp).finish()
    }
}

impl TelemetryGuard {
    /// Where tokio-console can connect, when it is on.
    pub fn console_addr(&self) -> Option<SocketAddr> {
        self.console
    }

    /// `grpc` or `http/protobuf` when traces are exported.
    pub fn otlp_protocol(&self) -> Option<&str> {
        self.otlp.as_deref()
    }

    /// Exports what is buffered and stops the exporter (at most 5 s). Call it while the Tokio
    /// runtime still runs (the exporters' I/O runs on it), e.g. after `block_on` returned and
    /// before the runtime is dropped.
    pub fn shutdown(mut self) {
        self.flush_and_stop();
    }

    fn flush_and_stop(&mut self) {
        #[cfg(feature = "otlp")]
        if let Some(provider) = self.provider.take() {
            OTLP_ACTIVE.store(false, Relaxed);
            if let Err(e) = provider.shutdown_with_timeout(std::time::Duration::from_secs(5)) {
                eprintln!("pinchpoint: flushing spans at exit: {e}");
            }
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        self.flush_and_stop();
    }
}

/// True while an OTLP exporter is installed: the hot path asks this (one relaxed load)
/// before looking for a trace id.
static OTLP_ACTIVE: AtomicBool = AtomicBool::new(false);

/// True while spans are exported.
#[inline]
pub fn otlp_active() -> bool {
    OTLP_ACTIVE.load(Relaxed)
}

type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync + 'static>;

/// Installs the global subscriber. Call it once, inside a Tokio runtime context
/// (`Runtime::enter`) when OTLP may be on: the exporters do their I/O on that runtime.
pub fn init(config: TelemetryConfig) -> Result<TelemetryGuard, TelemetryError> {
    let env_filter = match std::env::var("RUST_LOG") {
        Ok(s) if !s.trim().is_empty() => {
            EnvFilter::try_new(&s).map_err(|e| TelemetryError::Filter(format!("RUST_LOG={s:?}: {e}")))?
        }
        _ => EnvFilter::new(DEFAULT_FILTER),
    };
    let mut layers: Vec<BoxedLayer> = Vec::new();
    // Colour only on a terminal: escape codes in a log file or a pipe are noise to grep.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none();
    layers.push(
        tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(ansi).with_filter(env_filter).boxed(),
    );

    let console = match config.console {
        Some(addr) => {
            let (layer, bound) = console::console_layer(addr)?;
            layers.push(layer);
            Some(bound)
        }
        None => None,
    };

    #[cfg_attr(not(feature = "otlp"), allow(unused_mut))]
    let mut guard = TelemetryGuard {
        console,
        #[cfg(feature = "otlp")]
        provider: None,
        otlp: None,
    };
    if config.otlp_from_env {
        if let Some(protocol) = otlp_requested() {
            #[cfg(feature = "otlp")]
            {
                let (layer, provider, protocol) = otlp::install(&config.role, protocol)?;
                layers.push(layer);
                guard.provider = Some(provider);
                guard.otlp = Some(protocol.to_string());
            }
            #[cfg(not(feature = "otlp"))]
            {
                let _ = protocol;
                return Err(TelemetryError::OtlpNotBuilt("OTEL_EXPORTER_OTLP_ENDPOINT is set"));
            }
        }
    }
    tracing_subscriber::registry().with(layers).try_init().map_err(|_| TelemetryError::AlreadyInstalled)?;
    #[cfg(feature = "otlp")]
    if guard.provider.is_some() {
        OTLP_ACTIVE.store(true, Relaxed);
    }
    if let Some(addr) = guard.console {
        announce(&config.role, "console", addr);
    }
    Ok(guard)
}

fn announce(role: &str, what: &str, addr: SocketAddr) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{role} {what} listening on {addr}");
    let _ = out.flush();
}

/// The protocol asked for, when the environment asks for OTLP traces at all.
fn otlp_requested() -> Option<String> {
    let set = |k: &str| std::env::var(k).is_ok_and(|v| !v.trim().is_empty());
    if !(set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")) {
        return None;
    }
    if std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true")) {
        return None;
    }
    if std::env::var("OTEL_TRACES_EXPORTER").is_ok_and(|v| v.trim().eq_ignore_ascii_case("none")) {
        return None;
    }
    let protocol = std::env::var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .or_else(|_| std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .unwrap_or_else(|_| "http/protobuf".into());
    Some(protocol.trim().to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_console_ports_follow_design() {
        assert_eq!(default_console_addr("gateway").port(), 6669);
        assert_eq!(default_console_addr("monolith").port(), 6669);
        assert_eq!(default_console_addr("service").port(), 6670);
    }
}
