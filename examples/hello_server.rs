//! A tiny, fast HTTP target for benchmarking load generators (`benches/load_vs_wrk.sh`).
//!
//! `cargo run --release --example hello_server -- [ADDR]` (default 127.0.0.1:0) serves
//! `GET /health` and `GET /` with a small JSON body and prints
//! `hello_server listening on ADDR` once it accepts connections.

use axum::routing::get;
use axum::Router;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:0".to_string());
    let body = || async { ([("content-type", "application/json")], r#"{"status":"ok"}"#) };
    let app = Router::new().route("/", get(body)).route("/health", get(body));
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("hello_server listening on {}", listener.local_addr()?);
    axum::serve(listener, app).await
}
