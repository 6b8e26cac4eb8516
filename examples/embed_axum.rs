//! A minimal axum service embedding the probes: an instrumented lock, RED metrics, a tracked
//! background task, runtime metrics, and the admin router serving `/metrics` and `/debug/*`.
//!
//! Run: `cargo run --example embed_axum --no-default-features`, then
//! `curl localhost:3000/hello` and `curl localhost:9464/metrics`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use pinchpoint::admin::{self, AdminOptions};
use pinchpoint::metrics::red;
use pinchpoint::probe::{lock::Mutex, runtime, task};

fn main() -> std::io::Result<()> {
    // Hooks give poll times and track plain tokio::spawn calls by site.
    let rt = runtime::builder_multi_thread().build()?;
    rt.block_on(serve())
}

async fn serve() -> std::io::Result<()> {
    runtime::register_current();
    let hits = Arc::new(Mutex::new("example.hits", 0u64));

    task::spawn("example.ticker", async {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
        }
    });

    let app = Router::new().route("/hello", get(hello)).with_state(hits);
    let api = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    let admin_listener = tokio::net::TcpListener::bind("127.0.0.1:9464").await?;
    println!("example http listening on {}", api.local_addr()?);
    println!("example admin listening on {}", admin_listener.local_addr()?);
    task::spawn(
        "example.admin",
        async move { axum::serve(admin_listener, admin::router(AdminOptions::default())).await },
    );
    axum::serve(api, app).await
}

async fn hello(State(hits): State<Arc<Mutex<u64>>>) -> String {
    let start = Instant::now();
    let n = {
        let mut g = hits.lock();
        *g += 1;
        *g
    };
    red::http_request("/hello", "GET", 200, start.elapsed());
    format!("hello #{n}\n")
}
