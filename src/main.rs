//! `pinchpoint`: the command line over the library. Parsing and exit codes live here;
//! everything else is in `pinchpoint::*`.

use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use pinchpoint::counter::balance::Balance;
use pinchpoint::counter::breaker::BreakerConfig;
use pinchpoint::counter::client_pool::ServicePoolConfig;
use pinchpoint::counter::coalesce::CoalesceVia;
use pinchpoint::counter::faults::GatewayFaults;
use pinchpoint::counter::model::Key;
use pinchpoint::counter::process::{self, AdminConfig, GatewayConfig, MonolithConfig, ServiceConfig, StoreConfig};
use pinchpoint::counter::retry::RetryPolicy;
use pinchpoint::counter::store::{LockMode, StoreSpec};
use pinchpoint::counter::write_buffer::WriteBufferConfig;
use pinchpoint::shutdown::Shutdown;

/// Allocation counts and bytes, live and peak heap, per-request bytes: the probes need to
/// see every allocation, so the binary installs the counting allocator (the uninstrumented
/// twin, `--cfg pinchpoint_bare`, keeps the system allocator).
#[cfg(not(pinchpoint_bare))]
#[global_allocator]
static ALLOC: pinchpoint::probe::alloc::CountingAlloc = pinchpoint::probe::alloc::CountingAlloc::system();

#[derive(Parser)]
#[command(name = "pinchpoint", version, about = "Find where async services pinch")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Tokio worker threads (default: one per core).
    #[arg(long, global = true)]
    worker_threads: Option<usize>,
    /// A task alive this long and not polled lately counts as a leak suspect.
    #[arg(long, global = true, default_value = "60s", value_parser = parse_duration)]
    leak_threshold: Duration,
}

#[derive(Subcommand)]
enum Command {
    /// The counter service: gRPC in front of a memory or Redis store.
    Service(ServiceArgs),
    /// The counter gateway: the HTTP API, forwarding to one or more services over gRPC.
    Gateway(GatewayArgs),
    /// The HTTP API with the store in process: the baseline the split system is measured against.
    Monolith(MonolithArgs),
    /// A NATS JetStream consumer handing messages to a worker pool, with the admin listener.
    Consumer(ConsumerArgs),
    /// Drive HTTP load at a gateway or monolith (closed loop like hey, or open loop at a rate).
    Load(pinchpoint::load::LoadArgs),
    /// Name the pinch: run the doctor's rules on live processes, saved snapshots or Prometheus.
    Diagnose(pinchpoint::diagnose::cli::DiagnoseArgs),
    /// Reproduce the field reports' bottlenecks: each scenario under the load ladder, reported.
    Lab(pinchpoint::lab::LabArgs),
    /// Capture a CPU or contention flamegraph from a running process (or `flame diff A B`).
    #[cfg(feature = "profiling")]
    Flame(pinchpoint::profile::cli::FlameArgs),
    /// Write the Grafana dashboards, alert rules and Prometheus/Grafana configuration (or --check them).
    Dashboards(pinchpoint::dashboards::DashboardsArgs),
}

/// tokio-console (DESIGN.md ports: gateway and monolith 127.0.0.1:6669, service 127.0.0.1:6670).
#[derive(Args)]
struct ConsoleArgs {
    /// Serve tokio-console's instrumentation (then `tokio-console http://ADDR`).
    #[arg(long)]
    console: bool,
    /// Where tokio-console connects (implies --console; `:0` picks a free port).
    #[arg(long, value_name = "ADDR", value_parser = parse_addr)]
    console_addr: Option<SocketAddr>,
}

impl ConsoleArgs {
    fn addr(&self, role: &str) -> Option<SocketAddr> {
        (self.console || self.console_addr.is_some())
            .then(|| self.console_addr.unwrap_or_else(|| pinchpoint::telemetry::default_console_addr(role)))
    }
}

#[derive(Args)]
struct AdminArgs {
    /// Bearer token required by the admin listener; needed when it binds a non-loopback address.
    #[arg(long, env = "PINCHPOINT_ADMIN_TOKEN")]
    admin_token: Option<String>,
}

#[derive(Args)]
struct StoreArgs {
    /// `memory` or `redis://HOST:PORT`.
    #[arg(long, default_value = "memory")]
    store: StoreSpec,
    /// Connections in the Redis pool.
    #[arg(long, default_value_t = 8)]
    store_pool: usize,
    /// `sharded` (default) or `global`: one lock around the whole memory store.
    #[arg(long, default_value = "sharded", value_parser = parse_lock)]
    lock: LockMode,
    /// How long an applied request id is remembered (retries within it never double-count).
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    dedup_ttl: Duration,
    /// Set a counter at start, e.g. `--seed user1/views=42` (repeatable).
    #[arg(long, value_parser = parse_seed)]
    seed: Vec<(Key, i64)>,
    /// CPU work done under the store lock per increment (e.g. 20us): the same in both lock
    /// modes, so `--lock global` shows what one lock costs.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    store_work: Duration,
    /// Added to every store operation: a slow store.
    #[arg(long, value_parser = parse_duration)]
    store_delay: Option<Duration>,
}

impl StoreArgs {
    fn config(self) -> StoreConfig {
        StoreConfig {
            spec: self.store,
            lock: self.lock,
            redis_pool: self.store_pool,
            dedup_ttl: self.dedup_ttl,
            seed: self.seed,
            work_under_lock: self.store_work,
            delay: self.store_delay,
        }
    }
}

#[derive(Args)]
struct ServiceArgs {
    /// gRPC listen address (`:0` picks a free loopback port).
    #[arg(long, default_value = "127.0.0.1:50051", value_parser = parse_addr)]
    listen: SocketAddr,
    /// Admin listener: /metrics and /debug/*.
    #[arg(long, default_value = "127.0.0.1:9465", value_parser = parse_addr)]
    admin: SocketAddr,
    #[command(flatten)]
    admin_args: AdminArgs,
    #[command(flatten)]
    console: ConsoleArgs,
    #[command(flatten)]
    store: StoreArgs,
    /// Cap on concurrent HTTP/2 streams per client connection.
    #[arg(long)]
    max_streams: Option<u32>,
    /// Fault injection: every Nth increment call answers UNAVAILABLE after applying.
    #[arg(long, value_name = "EVERY", help_heading = "Fault injection")]
    fault_after_apply: Option<u64>,
    /// Fault injection: answer each increment call this much later (a slow service).
    #[arg(long, value_name = "DUR", value_parser = parse_duration, help_heading = "Fault injection")]
    fault_delay: Option<Duration>,
}

#[derive(Args)]
struct GatewayArgs {
    /// HTTP listen address (`:0` picks a free loopback port).
    #[arg(long, default_value = "127.0.0.1:8080", value_parser = parse_addr)]
    listen: SocketAddr,
    /// Admin listener: /metrics and /debug/*.
    #[arg(long, default_value = "127.0.0.1:9464", value_parser = parse_addr)]
    admin: SocketAddr,
    #[command(flatten)]
    admin_args: AdminArgs,
    #[command(flatten)]
    console: ConsoleArgs,
    /// Counter service URLs, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "http://127.0.0.1:50051")]
    service: Vec<String>,
    /// gRPC channels (connections) per service.
    #[arg(long, default_value_t = 8)]
    pool_size: usize,
    /// Calls in flight per channel before callers wait for a slot.
    #[arg(long, default_value_t = 100)]
    streams_per_channel: usize,
    /// Open a new connection for every request and close it after (slow on purpose).
    #[arg(long)]
    dial_per_request: bool,
    /// Connect and per-call deadline.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    timeout: Duration,
    /// How calls are spread over the services.
    #[arg(long, default_value = "round-robin", value_name = "round-robin|p2c|least-loaded|hash")]
    balance: Balance,
    /// Retries of a failed call (safe: each increment carries a request id applied once).
    #[arg(long, default_value_t = 3)]
    retries: u32,
    /// Consecutive failures that open a service's circuit breaker.
    #[arg(long, default_value_t = 5)]
    breaker_threshold: u32,
    /// How long an open breaker fails fast before letting a probe call through.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    breaker_cooldown: Duration,
    /// How often each service's gRPC health is checked.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    health_interval: Duration,
    /// Group concurrent increments into one BatchIncrement per channel (group commit).
    #[arg(long)]
    coalesce: bool,
    /// How coalesced groups travel: one BatchIncrement each, or down a StreamIncrements stream.
    #[arg(long, default_value = "batch", value_name = "batch|stream")]
    coalesce_via: CoalesceVia,
    /// Coalescing lanes per service (default: one per channel). Each lane has one group in
    /// flight; fewer lanes make larger groups and cost less CPU per request.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=1024))]
    coalesce_lanes: Option<u64>,
    /// Serve reads from a local cache for this long (e.g. 500ms).
    #[arg(long, value_parser = parse_duration)]
    cache_ttl: Option<Duration>,
    /// Most entries the read cache holds.
    #[arg(long, default_value_t = 100_000)]
    cache_capacity: usize,
    /// Answer async batches with 202 at once and flush them in the background.
    #[arg(long)]
    write_buffer: bool,
    /// Workers sending write-buffer flushes.
    #[arg(long, default_value_t = 4)]
    flush_workers: usize,
    /// Merged operations the write buffer holds before it answers 503.
    #[arg(long, default_value_t = 100_000)]
    write_buffer_capacity: usize,
    /// Requests per second allowed per client (x-client-id header, else peer IP); 429 above.
    #[arg(long, value_name = "PER_SEC")]
    rate_limit: Option<f64>,
    /// Fault injection: every request spawns a task that never ends.
    #[arg(long, help_heading = "Fault injection")]
    fault_leak_task: bool,
    /// Fault injection: every request clones a buffer of this many bytes four times.
    #[arg(long, value_name = "BYTES", help_heading = "Fault injection")]
    fault_alloc_churn: Option<usize>,
    /// Fault injection: every request blocks its runtime thread this long.
    #[arg(long, value_name = "DUR", value_parser = parse_duration, help_heading = "Fault injection")]
    fault_blocking: Option<Duration>,
}

#[derive(Args)]
struct MonolithArgs {
    /// HTTP listen address (`:0` picks a free loopback port).
    #[arg(long, default_value = "127.0.0.1:8080", value_parser = parse_addr)]
    listen: SocketAddr,
    /// Admin listener: /metrics and /debug/*.
    #[arg(long, default_value = "127.0.0.1:9464", value_parser = parse_addr)]
    admin: SocketAddr,
    #[command(flatten)]
    admin_args: AdminArgs,
    #[command(flatten)]
    console: ConsoleArgs,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Args)]
struct ConsumerArgs {
    /// NATS server URL.
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    nats: String,
    /// JetStream stream to consume.
    #[arg(long)]
    stream: String,
    /// Subject to consume (repeatable; one puller each). Default: every subject of the stream.
    #[arg(long = "subject", value_name = "SUBJECT")]
    subjects: Vec<String>,
    /// Create the stream over the --subject list when it does not exist.
    #[arg(long)]
    create_stream: bool,
    /// Durable consumer name prefix: NAME-0, NAME-1, ... one per subject. A new name starts at
    /// the stream's first message; an existing one resumes where it stopped.
    #[arg(long, default_value = "pinchpoint")]
    durable: String,
    /// Workers in the pool that runs the handler.
    #[arg(long, default_value_t = 16)]
    workers: usize,
    /// Messages queued for the workers; when full, pulling waits.
    #[arg(long, default_value_t = 1024)]
    queue: usize,
    /// Delivered-but-unacked messages per subject before the broker holds back.
    #[arg(long, default_value_t = 4096)]
    max_ack_pending: i64,
    /// Time the handler waits per message (I/O it would do).
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    handler_time: Duration,
    /// CPU time the handler computes per message.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    handler_cpu: Duration,
    /// After close, background tasks end this much later (a slow shutdown, as a client
    /// library's connection tasks have).
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    shutdown_delay: Duration,
    /// How long the LeakCheck at shutdown waits for the consumer's tasks to end.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    leak_deadline: Duration,
    /// Write the shutdown measurements (fixed-wait count, LeakCheck result) as JSON here.
    #[arg(long, value_name = "FILE")]
    shutdown_report: Option<std::path::PathBuf>,
    /// Admin listener: /metrics and /debug/*.
    #[arg(long, default_value = "127.0.0.1:9466", value_parser = parse_addr)]
    admin: SocketAddr,
    #[command(flatten)]
    admin_args: AdminArgs,
}

/// `HOST:PORT`, or `:PORT` for loopback (so `:0` asks for any free loopback port).
fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    let full = if s.starts_with(':') { format!("127.0.0.1{s}") } else { s.to_string() };
    full.to_socket_addrs()
        .map_err(|e| format!("{s:?} is not HOST:PORT ({e})"))?
        .next()
        .ok_or_else(|| format!("{s:?} resolves to no address"))
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{s:?} is not a duration like 500ms, 5s, 10m ({e})"))
}

fn parse_lock(s: &str) -> Result<LockMode, String> {
    match s {
        "sharded" => Ok(LockMode::Sharded),
        "global" => Ok(LockMode::Global),
        _ => Err(format!("{s:?}: use `sharded` or `global`")),
    }
}

fn parse_seed(s: &str) -> Result<(Key, i64), String> {
    let (key, value) = s.split_once('=').ok_or("expected RESOURCE/TYPE=VALUE")?;
    let (resource, counter_type) = key.split_once('/').ok_or("expected RESOURCE/TYPE=VALUE")?;
    let key = Key::new(resource, counter_type).map_err(|e| e.to_string())?;
    let value = value.parse().map_err(|e| format!("{value:?} is not an integer: {e}"))?;
    Ok((key, value))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Gateway(a) = &cli.command {
        if a.rate_limit.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
            eprintln!("pinchpoint: --rate-limit must be a positive number of requests per second");
            return ExitCode::from(2);
        }
    }
    // With the probes' hooks: every spawned task is tracked by spawn site, polls are timed.
    let mut builder = pinchpoint::probe::runtime::builder_multi_thread();
    if let Some(n) = cli.worker_threads {
        builder.worker_threads(n.max(1));
    }
    let runtime = match builder.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pinchpoint: cannot start the tokio runtime: {e}");
            return ExitCode::from(2);
        }
    };
    // One tracing set-up: fmt to stderr, tokio-console with --console, OTLP traces when the
    // OTEL_* variables ask. Inside the runtime: the exporters do their I/O on it.
    let telemetry = {
        let _rt = runtime.enter();
        match pinchpoint::telemetry::init(telemetry_config(&cli.command)) {
            Ok(g) => g,
            Err(e) => {
                eprintln!("pinchpoint: {e}");
                return ExitCode::from(2);
            }
        }
    };
    let code = runtime.block_on(run(cli));
    // Spans still buffered go out before exit, while the runtime's I/O still runs.
    telemetry.shutdown();
    code
}

fn telemetry_config(command: &Command) -> pinchpoint::telemetry::TelemetryConfig {
    use pinchpoint::telemetry::TelemetryConfig;
    let (role, console) = match command {
        Command::Service(a) => ("service", a.console.addr("service")),
        Command::Gateway(a) => ("gateway", a.console.addr("gateway")),
        Command::Monolith(a) => ("monolith", a.console.addr("monolith")),
        _ => return TelemetryConfig { otlp_from_env: false, ..TelemetryConfig::new("pinchpoint") },
    };
    TelemetryConfig { console, ..TelemetryConfig::new(role) }
}

async fn run(cli: Cli) -> ExitCode {
    pinchpoint::probe::runtime::register_current();
    pinchpoint::probe::task::set_leak_threshold(cli.leak_threshold);
    let shutdown = Shutdown::new();
    shutdown.trigger_on_signals();
    let result = match cli.command {
        Command::Lab(args) => {
            return match pinchpoint::lab::run_cli(args).await {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("pinchpoint: {e:#}");
                    ExitCode::from(2)
                }
            };
        }
        #[cfg(feature = "profiling")]
        Command::Flame(args) => {
            return match pinchpoint::profile::cli::run_cli(args).await {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("pinchpoint: {e:#}");
                    ExitCode::from(2)
                }
            };
        }
        Command::Diagnose(args) => {
            return match pinchpoint::diagnose::cli::run_cli(args).await {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("pinchpoint: {e:#}");
                    ExitCode::from(2)
                }
            };
        }
        Command::Dashboards(args) => {
            return match pinchpoint::dashboards::run_cli(args) {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("pinchpoint: {e:#}");
                    ExitCode::from(2)
                }
            };
        }
        Command::Load(args) => {
            return match pinchpoint::load::run_cli(args).await {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("pinchpoint: {e:#}");
                    ExitCode::from(2)
                }
            };
        }
        Command::Service(a) => {
            let config = ServiceConfig {
                listen: a.listen,
                admin: AdminConfig { addr: a.admin, token: a.admin_args.admin_token },
                store: a.store.config(),
                max_streams: a.max_streams,
                fail_after_apply_every: a.fault_after_apply,
                delay_after_apply: a.fault_delay,
            };
            process::run_service(config, shutdown).await
        }
        Command::Gateway(a) => {
            let config = GatewayConfig {
                listen: a.listen,
                admin: AdminConfig { addr: a.admin, token: a.admin_args.admin_token },
                pool: ServicePoolConfig {
                    urls: a.service,
                    pool_size: a.pool_size,
                    streams_per_channel: a.streams_per_channel,
                    dial_per_request: a.dial_per_request,
                    timeout: a.timeout,
                    balance: a.balance,
                    retry: RetryPolicy { max_retries: a.retries, ..RetryPolicy::default() },
                    breaker: BreakerConfig { threshold: a.breaker_threshold.max(1), cooldown: a.breaker_cooldown },
                    health_interval: a.health_interval,
                    coalesce: a.coalesce,
                    coalesce_via: a.coalesce_via,
                    coalesce_lanes: a.coalesce_lanes.map(|n| n as usize),
                },
                cache_ttl: a.cache_ttl,
                cache_capacity: a.cache_capacity,
                write_buffer: a
                    .write_buffer
                    .then_some(WriteBufferConfig { flush_workers: a.flush_workers, capacity: a.write_buffer_capacity }),
                rate_limit: a.rate_limit,
                faults: GatewayFaults {
                    leak_task: a.fault_leak_task,
                    alloc_churn: a.fault_alloc_churn,
                    blocking: a.fault_blocking,
                },
            };
            process::run_gateway(config, shutdown).await
        }
        Command::Consumer(a) => {
            use pinchpoint::consumer::{handler::Handler, process::ConsumerConfig, ConsumerOptions};
            let config = ConsumerConfig {
                nats: a.nats,
                stream: a.stream,
                subjects: a.subjects,
                create_stream: a.create_stream,
                durable: a.durable,
                max_ack_pending: a.max_ack_pending,
                options: ConsumerOptions {
                    workers: a.workers,
                    queue: a.queue,
                    handler: Handler { wait: a.handler_time, cpu: a.handler_cpu },
                    shutdown_delay: a.shutdown_delay,
                },
                admin: AdminConfig { addr: a.admin, token: a.admin_args.admin_token },
                shutdown_report: a.shutdown_report,
                leak_deadline: a.leak_deadline,
            };
            pinchpoint::consumer::process::run_consumer(config, shutdown).await
        }
        Command::Monolith(a) => {
            let config = MonolithConfig {
                listen: a.listen,
                admin: AdminConfig { addr: a.admin, token: a.admin_args.admin_token },
                store: a.store.config(),
            };
            process::run_monolith(config, shutdown).await
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pinchpoint: {e}");
            ExitCode::from(2)
        }
    }
}
