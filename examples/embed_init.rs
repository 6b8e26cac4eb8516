//! A service set up with one call: `pinchpoint::init()` registers the runtime (with task hooks
//! where the build has `tokio_unstable`), serves the admin listener and installs tracing; the
//! API records its RED metrics through `HttpMetricsLayer`, by route template.
//!
//! Run: `cargo run --example embed_init --no-default-features`, then
//! `curl localhost:3000/orders/42` and `curl localhost:9464/metrics`.

use axum::extract::Path;
use axum::routing::get;
use axum::Router;
use pinchpoint::layer::HttpMetricsLayer;
use pinchpoint::probe::alloc::CountingAlloc;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc::system(); // request_alloc_bytes per route

fn main() -> Result<(), Box<dyn std::error::Error>> {
    pinchpoint::init().service_name("orders").run(serve())??;
    Ok(())
}

async fn serve() -> std::io::Result<()> {
    let app = Router::new().route("/orders/{id}", get(order)).layer(HttpMetricsLayer::new());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("orders http listening on {}", listener.local_addr()?);
    axum::serve(listener, app).with_graceful_shutdown(async { tokio::signal::ctrl_c().await.unwrap_or(()) }).await
}

async fn order(Path(id): Path<u64>) -> String {
    format!("order {id}\n")
}
