//! One-call setup for a service embedding pinchpoint: [`init`] returns an [`Init`] builder
//! that, when started, registers the runtime for the runtime metrics, serves the admin
//! listener (`/metrics`, `/debug/*`), and installs the tracing stack (log lines, optionally
//! tokio-console and OTLP traces). The [`Guard`] it returns stops the admin listener and
//! flushes buffered spans when dropped.
//!
//! ```no_run
//! fn main() -> Result<(), pinchpoint::InitError> {
//!     pinchpoint::init()
//!         .service_name("orders")
//!         .admin_addr("127.0.0.1:9464".parse().unwrap())
//!         .run(async {
//!             // serve the service's own API here
//!         })
//! }
//! ```
//!
//! Each piece stays available on its own ([`crate::probe::runtime`], [`crate::admin`],
//! [`crate::telemetry`]) for services that wire them by hand.

use std::future::Future;
use std::net::SocketAddr;

use crate::admin::{self, AdminOptions};
use crate::probe::{runtime, task};
use crate::telemetry::{self, TelemetryConfig, TelemetryError, TelemetryGuard};

/// The admin address [`init`] serves unless told otherwise (DESIGN.md's gateway admin port).
pub const DEFAULT_ADMIN_ADDR: &str = "127.0.0.1:9464";

/// Why [`Init::start`] or [`Init::run`] did not start; nothing was left running.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// The admin address is not a loopback address and no bearer token was given.
    #[error(
        "the admin listener on {0} is not on loopback: set a bearer token with admin_token(..), or bind 127.0.0.1"
    )]
    AdminTokenRequired(SocketAddr),
    /// The admin listener could not bind.
    #[error("cannot listen on {addr} (admin): {source}")]
    AdminBind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The tracing stack (console, OTLP, filter) could not be installed.
    #[error(transparent)]
    Telemetry(#[from] TelemetryError),
    /// [`Init::run`] could not build its runtime.
    #[error("cannot start the tokio runtime: {0}")]
    Runtime(std::io::Error),
}

/// What [`init`] sets up; every option has a default.
#[derive(Debug, Clone)]
pub struct Init {
    service_name: String,
    admin_addr: Option<SocketAddr>,
    admin_token: Option<String>,
    console: Option<SocketAddr>,
    otlp_from_env: bool,
    tracing: bool,
}

/// The builder with defaults: admin on [`DEFAULT_ADMIN_ADDR`], tracing (fmt to stderr) on,
/// OTLP export when the `OTEL_EXPORTER_OTLP_*` variables ask for it, no tokio-console.
///
/// ```
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
///
/// let guard = pinchpoint::init()
///     .service_name("orders")
///     .admin_addr("127.0.0.1:0".parse()?) // any free port
///     .tracing(false) // this example's process may have a subscriber already
///     .start()
///     .await?;
/// let admin = guard.admin_addr().expect("the admin listener is on");
///
/// // Prometheus scrapes http://ADMIN/metrics.
/// let mut conn = tokio::net::TcpStream::connect(admin).await?;
/// conn.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").await?;
/// let mut answer = String::new();
/// conn.read_to_string(&mut answer).await?;
/// assert!(answer.contains(" 200 OK") && answer.contains("pinchpoint_runtime_workers"));
/// # Ok(())
/// # }
/// ```
pub fn init() -> Init {
    Init {
        service_name: "service".to_string(),
        admin_addr: Some(DEFAULT_ADMIN_ADDR.parse().expect("static address")),
        admin_token: None,
        console: None,
        otlp_from_env: true,
        tracing: true,
    }
}

impl Init {
    /// Names the service: the OTLP `service.name` is `pinchpoint-<name>`, and log lines say it.
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.service_name = name.into();
        self
    }

    /// Serves the admin endpoints on `addr` (`127.0.0.1:0` picks a free port; see
    /// [`Guard::admin_addr`]). A non-loopback address needs [`admin_token`](Self::admin_token).
    pub fn admin_addr(mut self, addr: SocketAddr) -> Self {
        self.admin_addr = Some(addr);
        self
    }

    /// Serves no admin listener (mount [`admin::router`] in the service's own router instead).
    pub fn no_admin(mut self) -> Self {
        self.admin_addr = None;
        self
    }

    /// Requires `Authorization: Bearer <token>` on every admin endpoint.
    pub fn admin_token(mut self, token: impl Into<String>) -> Self {
        self.admin_token = Some(token.into());
        self
    }

    /// Serves tokio-console on `addr` (needs the `console` feature and, for task names and
    /// hooks, `--cfg tokio_unstable`).
    pub fn console(mut self, addr: SocketAddr) -> Self {
        self.console = Some(addr);
        self
    }

    /// Whether the OTLP environment variables may turn trace export on (default true).
    pub fn otlp_from_env(mut self, on: bool) -> Self {
        self.otlp_from_env = on;
        self
    }

    /// Whether to install the global tracing subscriber (default true). Turn it off when the
    /// service installs its own; console and OTLP then stay off too.
    pub fn tracing(mut self, on: bool) -> Self {
        self.tracing = on;
        self
    }

    /// Starts everything on the current tokio runtime and registers it for the runtime
    /// metrics. Task hooks and poll times need the runtime to be built with
    /// [`runtime::builder_multi_thread`] (or use [`Init::run`], which does).
    ///
    /// # Panics
    /// Outside a tokio runtime.
    pub async fn start(self) -> Result<Guard, InitError> {
        if let Some(addr) = self.admin_addr {
            if !addr.ip().is_loopback() && self.admin_token.is_none() {
                return Err(InitError::AdminTokenRequired(addr));
            }
        }
        // Bind before installing anything global, so a taken port leaves nothing behind.
        let admin = match self.admin_addr {
            Some(addr) => Some(
                tokio::net::TcpListener::bind(addr).await.map_err(|source| InitError::AdminBind { addr, source })?,
            ),
            None => None,
        };
        let telemetry = if self.tracing {
            let config = TelemetryConfig {
                console: self.console,
                otlp_from_env: self.otlp_from_env,
                ..TelemetryConfig::new(self.service_name.clone())
            };
            Some(telemetry::init(config)?)
        } else {
            None
        };
        runtime::register_current();
        let (admin_addr, admin_task) = match admin {
            Some(listener) => {
                let addr = listener
                    .local_addr()
                    .map_err(|source| InitError::AdminBind { addr: self.admin_addr.unwrap(), source })?;
                let router = admin::router(AdminOptions { bearer_token: self.admin_token });
                let handle = task::spawn("pinchpoint.admin", async move {
                    if let Err(e) = axum::serve(listener, router).await {
                        tracing::warn!("admin listener stopped: {e}");
                    }
                });
                tracing::info!(service = %self.service_name, "admin listening on {addr}");
                (Some(addr), Some(handle))
            }
            None => (None, None),
        };
        Ok(Guard { admin_addr, admin_task, telemetry })
    }

    /// Builds a multi-thread runtime with pinchpoint's task hooks (where the build has
    /// `tokio_unstable`), starts everything on it, runs `main` to completion, then flushes
    /// and stops.
    pub fn run<F: Future>(self, main: F) -> Result<F::Output, InitError> {
        let rt = runtime::builder_multi_thread().build().map_err(InitError::Runtime)?;
        rt.block_on(async {
            let guard = self.start().await?;
            let out = main.await;
            // Flush while the runtime's I/O still runs.
            guard.shutdown();
            Ok(out)
        })
    }
}

/// Keeps the admin listener and the exporters running; dropping it stops the listener and
/// flushes buffered spans (at most 5 s).
#[must_use = "dropping the guard stops the admin listener and the exporters"]
#[derive(Debug)]
pub struct Guard {
    admin_addr: Option<SocketAddr>,
    admin_task: Option<tokio::task::JoinHandle<()>>,
    telemetry: Option<TelemetryGuard>,
}

impl Guard {
    /// Where the admin listener is bound, when there is one.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// Where tokio-console can connect, when it is on.
    pub fn console_addr(&self) -> Option<SocketAddr> {
        self.telemetry.as_ref().and_then(TelemetryGuard::console_addr)
    }

    /// Stops the admin listener and flushes buffered spans now (same as dropping the guard).
    pub fn shutdown(self) {}
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(task) = self.admin_task.take() {
            task.abort();
        }
        // Dropping the telemetry guard flushes the exporters.
        self.telemetry.take();
    }
}
