//! The tokio-console layer: console-subscriber's aggregator and gRPC server on their own thread
//! and runtime, so a loaded process still answers the console.

use std::net::SocketAddr;

use super::{BoxedLayer, TelemetryError};
#[cfg(feature = "console")]
use tracing_subscriber::Layer;

#[cfg(feature = "console")]
pub(super) fn console_layer(addr: SocketAddr) -> Result<(BoxedLayer, SocketAddr), TelemetryError> {
    use tracing_subscriber::filter::FilterFn;
    // Bind here, so a taken port is an error now and `:0` has a port to print.
    let listener = std::net::TcpListener::bind(addr).map_err(|source| TelemetryError::ConsoleBind { addr, source })?;
    let bound = listener.local_addr().map_err(|source| TelemetryError::ConsoleBind { addr, source })?;
    listener.set_nonblocking(true).map_err(|source| TelemetryError::ConsoleBind { addr, source })?;
    let (layer, server) = console_subscriber::ConsoleLayer::builder().server_addr(bound).build();
    std::thread::Builder::new()
        .name("console_subscriber".into())
        .spawn(move || {
            // The console's own server is not traced into itself.
            let _quiet = tracing::subscriber::set_default(tracing::subscriber::NoSubscriber::default());
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("pinchpoint: tokio-console server cannot start: {e}");
                    return;
                }
            };
            runtime.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => {
                        eprintln!("pinchpoint: tokio-console listener: {e}");
                        return;
                    }
                };
                let parts = server.into_parts();
                let aggregate = tokio::spawn(parts.aggregator.run());
                let incoming = tonic::transport::server::TcpIncoming::from(listener);
                let served = tonic::transport::Server::builder()
                    .add_service(parts.instrument_server)
                    .serve_with_incoming(incoming)
                    .await;
                aggregate.abort();
                if let Err(e) = served {
                    eprintln!("pinchpoint: tokio-console server failed: {e}");
                }
            });
        })
        .map_err(|source| TelemetryError::ConsoleBind { addr, source })?;
    // What console-subscriber's own `spawn()` filters to: tokio's task, resource and
    // async-op instrumentation.
    fn wanted(meta: &tracing::Metadata<'_>) -> bool {
        if meta.is_event() {
            return meta.target().starts_with("runtime") || meta.target().starts_with("tokio");
        }
        meta.name().starts_with("runtime.") || meta.target().starts_with("tokio")
    }
    let filter = FilterFn::new(wanted as for<'r, 's> fn(&'r tracing::Metadata<'s>) -> bool);
    Ok((layer.with_filter(filter).boxed(), bound))
}

#[cfg(not(feature = "console"))]
pub(super) fn console_layer(_addr: SocketAddr) -> Result<(BoxedLayer, SocketAddr), TelemetryError> {
    Err(TelemetryError::ConsoleNotBuilt)
}
