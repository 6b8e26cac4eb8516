//! Embeds the probes (a probe Mutex, a worker pool, the counting allocator, a named task, the
//! runtime metrics and the admin router), serves `/metrics` on the address given as the first
//! argument (`127.0.0.1:0` picks a port), scrapes it over loopback and checks that the
//! catalog's families are there. Exits non-zero, saying what is missing, otherwise.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pinchpoint::admin::{self, AdminOptions};
use pinchpoint::metrics::catalog::{self, Spec};
use pinchpoint::probe::alloc::CountingAlloc;
use pinchpoint::probe::lock::Mutex;
use pinchpoint::probe::runtime;
use pinchpoint::probe::task;
use pinchpoint::probe::worker::WorkerPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc::system();

type Error = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), Error> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:0".to_string());
    let _telemetry = pinchpoint::telemetry::init(pinchpoint::telemetry::TelemetryConfig::new("outside"))?;
    let rt = runtime::builder_multi_thread().build()?;
    rt.block_on(serve_and_check(&addr))
}

async fn serve_and_check(addr: &str) -> Result<(), Error> {
    runtime::register_current();
    let total = Arc::new(Mutex::new("outside.total", 0u64));
    let pool = WorkerPool::new("outside.jobs", 2, 16);
    for _ in 0..8 {
        let total = total.clone();
        pool.submit_wait(async move { *total.lock() += 1 }).await?;
    }
    task::spawn("outside.idle", std::future::pending::<()>());

    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    println!("outside admin listening on {local}");
    task::spawn("outside.admin", async move { axum::serve(listener, admin::router(AdminOptions::default())).await });

    let deadline = Instant::now() + Duration::from_secs(10);
    while *total.lock() < 8 {
        if Instant::now() > deadline {
            return Err("the worker pool did not run its 8 jobs within 10 s".into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let exposition = scrape(local).await?;
    let mut expected: Vec<&Spec> = vec![
        &catalog::LOCK_ACQUIRE,
        &catalog::WORKER_JOBS,
        &catalog::WORKER_COUNT,
        &catalog::ALLOC_BYTES,
        &catalog::HEAP_LIVE,
        &catalog::TASKS_ALIVE,
        &catalog::TASKS_SPAWNED,
        &catalog::RUNTIME_WORKERS,
        &catalog::RUNTIME_WORKER_BUSY,
    ];
    // What needs `--cfg tokio_unstable` must be there exactly when the build has it.
    let unstable = [&catalog::RUNTIME_POLL, &catalog::RUNTIME_BLOCKING_THREADS];
    let mut absent: Vec<&Spec> = Vec::new();
    if runtime::unstable_measured() {
        expected.extend(unstable);
    } else {
        absent.extend(unstable);
    }
    let missing: Vec<String> =
        expected.iter().filter(|s| !has_samples(&exposition, s)).map(|s| s.exposed_name()).collect();
    let unexpected: Vec<String> =
        absent.iter().filter(|s| has_samples(&exposition, s)).map(|s| s.exposed_name()).collect();
    if !missing.is_empty() || !unexpected.is_empty() {
        return Err(format!("/metrics lacks {missing:?}, and has {unexpected:?} it should not").into());
    }
    println!(
        "outside check ok: {} families present, tokio_unstable measured: {}",
        expected.len(),
        runtime::unstable_measured()
    );
    Ok(())
}

/// Whether the exposition holds a sample of `spec` (not just its HELP line).
fn has_samples(exposition: &str, spec: &Spec) -> bool {
    let name = spec.exposed_name();
    exposition.lines().filter(|l| !l.starts_with('#')).any(|l| {
        l.strip_prefix(name.as_str()).is_some_and(|rest| {
            rest.starts_with(['{', ' ']) || rest.starts_with("_bucket") || rest.starts_with("_count")
        })
    })
}

/// `GET /metrics` over plain HTTP/1.1, with `Connection: close` so the body ends at EOF.
async fn scrape(addr: std::net::SocketAddr) -> Result<String, Error> {
    let mut conn = tokio::net::TcpStream::connect(addr).await?;
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: outside\r\nConnection: close\r\n\r\n").await?;
    let mut text = String::new();
    tokio::time::timeout(Duration::from_secs(10), conn.read_to_string(&mut text)).await??;
    match text.split_once("\r\n") {
        Some((status, _)) if status.contains(" 200 ") => Ok(text),
        _ => Err(format!("GET /metrics answered {:?}", text.lines().next()).into()),
    }
}
