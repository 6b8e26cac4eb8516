//! The tokio-console layer: console-subscriber's aggregator and gRPC server on their own thread
//! and runtime, so a loaded process still answers the console.

use std::net::SocketAddr;

use super::{BoxedLayer, TelemetryError};
#[cfg(feature = "console")]
use tracing_subscriber::Layer;

/// How long the console keeps a task, resource or async op after it ended, unless
/// `TOKIO_CONSOLE_RETENTION` says otherwise. console-subscriber's own default is an hour, and
/// its aggregator walks everything it keeps each time it drains events (several times a
/// second under load); every request here ends a few async ops and resources. With an hour,
/// a loaded gateway's throughput fell run over run (8.1k, 5.2k, 4.3k requests/s, 30k requests
/// each) and the walk was 69% of its CPU samples; with 10 s it held (6.8k, 4.9k, 7.3k, 7.6k).
/// An attached console loses nothing: the aggregator keeps whatever a watching client has not
/// been sent yet, and the console client keeps completed tasks itself (`--retain-for`, 6 s).
#[cfg(feature = "console")]
pub const DEFAULT_RETENTION: std::time::Duration = std::time::Duration::from_secs(10);

/// A duration from the environment in console-subscriber's syntax (`30s`, `500ms`, `2m`,
/// `1h`, a bare number of seconds); a malformed value is an error, not a panic.
#[cfg(any(feature = "console", test))]
fn env_duration(name: &'static str) -> Result<Option<std::time::Duration>, TelemetryError> {
    let Ok(raw) = std::env::var(name) else { return Ok(None) };
    let v = raw.trim();
    if v.is_empty() {
        return Ok(None);
    }
    let split = v.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(v.len());
    let (number, unit) = v.split_at(split);
    let scale = match unit.trim() {
        "" | "s" => 1.0,
        "ms" => 1e-3,
        "m" => 60.0,
        "h" => 3600.0,
        _ => f64::NAN,
    };
    match number.parse::<f64>().map(|n| n * scale) {
        Ok(secs) if secs.is_finite() && secs >= 0.0 => Ok(Some(std::time::Duration::from_secs_f64(secs))),
        _ => Err(TelemetryError::ConsoleEnv { name, value: raw }),
    }
}

#[cfg(feature = "console")]
pub(super) fn console_layer(addr: SocketAddr) -> Result<(BoxedLayer, SocketAddr), TelemetryError> {
    use tracing_subscriber::filter::FilterFn;
    let retention = env_duration("TOKIO_CONSOLE_RETENTION")?.unwrap_or(DEFAULT_RETENTION);
    let interval = env_duration("TOKIO_CONSOLE_PUBLISH_INTERVAL")?;
    // Bind here, so a taken port is an error now and `:0` has a port to print.
    let listener = std::net::TcpListener::bind(addr).map_err(|source| TelemetryError::ConsoleBind { addr, source })?;
    let bound = listener.local_addr().map_err(|source| TelemetryError::ConsoleBind { addr, source })?;
    listener.set_nonblocking(true).map_err(|source| TelemetryError::ConsoleBind { addr, source })?;
    let mut builder = console_subscriber::ConsoleLayer::builder().server_addr(bound).retention(retention);
    if let Some(interval) = interval {
        builder = builder.publish_interval(interval);
    }
    let (layer, server) = builder.build();
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

#[cfg(test)]
#[test]
fn durations_parse_like_console_subscriber_and_bad_ones_are_errors() {
    let parse = |v: &str| {
        std::env::set_var("PINCHPOINT_TEST_CONSOLE_DURATION", v);
        env_duration("PINCHPOINT_TEST_CONSOLE_DURATION").map(|d| d.map(|d| d.as_millis()))
    };
    assert_eq!(parse("30s").unwrap(), Some(30_000));
    assert_eq!(parse("500ms").unwrap(), Some(500));
    assert_eq!(parse("2m").unwrap(), Some(120_000));
    assert_eq!(parse("1h").unwrap(), Some(3_600_000));
    assert_eq!(parse("15").unwrap(), Some(15_000));
    assert_eq!(parse("").unwrap(), None);
    for bad in ["ten", "5 days", "-1s", "1.2.3s"] {
        let e = parse(bad).unwrap_err().to_string();
        assert!(e.contains("PINCHPOINT_TEST_CONSOLE_DURATION") && e.contains(bad), "{e}");
    }
    std::env::remove_var("PINCHPOINT_TEST_CONSOLE_DURATION");
}

#[cfg(not(feature = "console"))]
pub(super) fn console_layer(_addr: SocketAddr) -> Result<(BoxedLayer, SocketAddr), TelemetryError> {
    Err(TelemetryError::ConsoleNotBuilt)
}
