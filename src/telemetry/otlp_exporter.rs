//! The span exporter the batch processor hands its batches to: [`WireExporter`], which
//! writes each batch straight to OTLP protobuf ([`super::otlp_wire`]) and sends it over
//! grpc or http/protobuf, configured by the standard `OTEL_EXPORTER_OTLP_*` variables.
//!
//! opentelemetry-otlp's exporter stays available (`PINCHPOINT_OTLP_EXPORTER=opentelemetry-otlp`)
//! as the reference to compare against. It converts each batch into opentelemetry-proto
//! structs before encoding them: two thirds of what a sampled span cost, and what kept 10%
//! sampling under its 0.95× throughput goal (see the README's telemetry cost table).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use opentelemetry_http::{Bytes, HttpClient};
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use opentelemetry_sdk::Resource;

use super::otlp_wire::Encoder;
use super::TelemetryError;

/// Which exporter `PINCHPOINT_OTLP_EXPORTER` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Choice {
    /// [`WireExporter`] (the default).
    Wire,
    /// opentelemetry-otlp's `SpanExporter`.
    OpenTelemetryOtlp,
}

pub(super) fn choice() -> Result<Choice, TelemetryError> {
    match std::env::var("PINCHPOINT_OTLP_EXPORTER").unwrap_or_default().trim() {
        "" | "pinchpoint" => Ok(Choice::Wire),
        "opentelemetry-otlp" => Ok(Choice::OpenTelemetryOtlp),
        other => Err(TelemetryError::Otlp(format!(
            "PINCHPOINT_OTLP_EXPORTER={other:?} is not an exporter: use pinchpoint (the default) or opentelemetry-otlp"
        ))),
    }
}

/// The export timeout, `OTEL_EXPORTER_OTLP_[TRACES_]TIMEOUT` in milliseconds (10 s unset).
pub(super) fn export_timeout() -> Duration {
    ["OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"]
        .iter()
        .find_map(|k| std::env::var(k).ok()?.trim().parse::<u64>().ok())
        .map_or(Duration::from_secs(10), Duration::from_millis)
}

fn env(key: &str) -> Option<String> {
    std::env::var(key).ok().map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

/// Where spans go, as the OTLP exporter specification reads the variables: a signal's own
/// endpoint is used as is; the shared one gets `/v1/traces` appended for http/protobuf.
fn endpoint(grpc: bool) -> Result<http::Uri, TelemetryError> {
    let url = match (env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"), env("OTEL_EXPORTER_OTLP_ENDPOINT")) {
        (Some(url), _) => url,
        (None, Some(base)) if grpc => base,
        (None, Some(base)) => format!("{}/v1/traces", base.trim_end_matches('/')),
        (None, None) if grpc => "http://localhost:4317".into(),
        (None, None) => "http://localhost:4318/v1/traces".into(),
    };
    let uri: http::Uri =
        url.parse().map_err(|e| TelemetryError::Otlp(format!("OTLP endpoint {url:?} is not a URL: {e}")))?;
    match uri.scheme_str() {
        Some("http") if uri.host().is_some() => Ok(uri),
        Some("https") => Err(TelemetryError::Otlp(format!(
            "OTLP endpoint {url:?}: this build has no TLS; send to a collector's plain http endpoint \
             (for example an OpenTelemetry Collector on the same host)"
        ))),
        _ => Err(TelemetryError::Otlp(format!("OTLP endpoint {url:?} must look like http://host:port"))),
    }
}

/// `OTEL_EXPORTER_OTLP_[TRACES_]HEADERS`: `key=value` pairs separated by commas, values
/// percent-encoded (W3C baggage form).
fn headers() -> Result<http::HeaderMap, TelemetryError> {
    let mut map = http::HeaderMap::new();
    for key in ["OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS"] {
        let Some(list) = env(key) else { continue };
        for pair in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let bad =
                |why: &str| TelemetryError::Otlp(format!("{key}: {pair:?} {why}; expected key=value,key2=value2"));
            let (name, value) = pair.split_once('=').ok_or_else(|| bad("has no '='"))?;
            let name = http::HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| bad("is not a header name"))?;
            let value = percent_decode(value.trim()).ok_or_else(|| bad("has a bad %-escape"))?;
            let value = http::HeaderValue::from_bytes(&value).map_err(|_| bad("is not a header value"))?;
            // The signal's own list comes second and wins.
            map.insert(name, value);
        }
    }
    Ok(map)
}

fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hi = (bytes.next()? as char).to_digit(16)?;
            let lo = (bytes.next()? as char).to_digit(16)?;
            out.push((hi * 16 + lo) as u8);
        } else {
            out.push(b);
        }
    }
    Some(out)
}

/// `OTEL_EXPORTER_OTLP_[TRACES_]COMPRESSION`: `gzip`, or `none` (the default).
fn gzip() -> Result<bool, TelemetryError> {
    let key = ["OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "OTEL_EXPORTER_OTLP_COMPRESSION"]
        .into_iter()
        .find(|k| env(k).is_some());
    let Some(key) = key else { return Ok(false) };
    match env(key).unwrap_or_default().to_ascii_lowercase().as_str() {
        "gzip" => Ok(true),
        "none" => Ok(false),
        other => Err(TelemetryError::Otlp(format!("{key}={other:?} is not supported: use gzip or none"))),
    }
}

fn gzipped(body: &[u8]) -> Vec<u8> {
    use std::io::Write;
    // Fast: export runs beside the service it reports on, and protobuf spans shrink to
    // about a third at any level.
    let mut out = flate2::write::GzEncoder::new(Vec::with_capacity(body.len() / 3), flate2::Compression::fast());
    out.write_all(body).expect("writing to a Vec cannot fail");
    out.finish().expect("writing to a Vec cannot fail")
}

/// How a batch travels.
#[derive(Clone, Debug)]
enum Transport {
    Http { client: Box<opentelemetry_http::hyper::HyperClient>, url: http::Uri, headers: http::HeaderMap, gzip: bool },
    Grpc { channel: tonic::transport::Channel, headers: tonic::metadata::MetadataMap, timeout: Duration, gzip: bool },
}

const GRPC_EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

impl Transport {
    async fn send(self, body: Bytes) -> Result<(), String> {
        match self {
            Transport::Http { client, url, headers, gzip } => {
                let mut request = http::Request::post(url).header(http::header::CONTENT_TYPE, "application/x-protobuf");
                if gzip {
                    request = request.header(http::header::CONTENT_ENCODING, "gzip");
                }
                let mut request = request.body(body).map_err(|e| e.to_string())?;
                request.headers_mut().extend(headers);
                let response = client.send_bytes(request).await.map_err(|e| e.to_string())?;
                if response.status().is_success() {
                    return Ok(());
                }
                let text = String::from_utf8_lossy(response.body());
                Err(format!("HTTP {}: {}", response.status(), text.chars().take(200).collect::<String>()))
            }
            Transport::Grpc { channel, headers, timeout, gzip } => {
                let mut grpc = tonic::client::Grpc::new(channel);
                if gzip {
                    grpc = grpc.send_compressed(tonic::codec::CompressionEncoding::Gzip);
                }
                grpc.ready().await.map_err(|e| format!("connecting: {e}"))?;
                let mut request = tonic::Request::new(body);
                *request.metadata_mut() = headers;
                request.set_timeout(timeout);
                let path = http::uri::PathAndQuery::from_static(GRPC_EXPORT_PATH);
                grpc.unary(request, path, RawCodec)
                    .await
                    .map(drop)
                    .map_err(|s| format!("gRPC {:?}: {}", s.code(), s.message()))
            }
        }
    }
}

/// Sends bytes already encoded; reads no further than the response's end.
#[derive(Clone, Copy, Debug, Default)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Bytes;
    type Decode = ();
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }
    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;
    fn encode(&mut self, item: Bytes, dst: &mut tonic::codec::EncodeBuf<'_>) -> Result<(), tonic::Status> {
        bytes::BufMut::put(dst, item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = ();
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<()>, tonic::Status> {
        // An ExportTraceServiceResponse; its partial_success is not acted on.
        bytes::Buf::advance(src, bytes::Buf::remaining(src));
        Ok(Some(()))
    }
}

/// Encodes each batch on the batch processor's thread and sends it on the process's Tokio
/// runtime (the processor's thread has none).
#[derive(Debug)]
pub(super) struct WireExporter {
    encoder: Encoder,
    transport: Transport,
    /// For messages.
    endpoint: String,
    handle: tokio::runtime::Handle,
    failures: AtomicU64,
}

impl WireExporter {
    /// Reads the `OTEL_EXPORTER_OTLP_*` variables for `protocol` (`grpc` or `http/protobuf`).
    pub(super) fn from_env(grpc: bool, handle: tokio::runtime::Handle) -> Result<Self, TelemetryError> {
        let url = endpoint(grpc)?;
        let endpoint = url.to_string();
        let headers = headers()?;
        let timeout = export_timeout();
        let gzip = gzip()?;
        let transport = if grpc {
            let channel = tonic::transport::Endpoint::from(url).connect_timeout(timeout).timeout(timeout);
            let _rt = handle.enter();
            Transport::Grpc {
                channel: channel.connect_lazy(),
                headers: tonic::metadata::MetadataMap::from_headers(headers),
                timeout,
                gzip,
            }
        } else {
            let client = Box::new(opentelemetry_http::hyper::HyperClient::with_default_connector(timeout, None));
            Transport::Http { client, url, headers, gzip }
        };
        Ok(WireExporter { encoder: Encoder::default(), transport, endpoint, handle, failures: AtomicU64::new(0) })
    }
}

impl SpanExporter for WireExporter {
    fn export(&self, batch: Vec<SpanData>) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        let mut body = self.encoder.encode(&batch);
        // tonic compresses a grpc body itself.
        if let Transport::Http { gzip: true, .. } = self.transport {
            body = gzipped(&body);
        }
        let body = Bytes::from(body);
        let spans = batch.len();
        drop(batch);
        let sent = self.handle.spawn(self.transport.clone().send(body));
        async move {
            let outcome = match sent.await {
                Ok(outcome) => outcome,
                Err(e) => Err(e.to_string()),
            };
            outcome.map_err(|e| {
                // The first failure, then every doubling: a collector that is down should not
                // flood the log.
                let n = self.failures.fetch_add(1, Relaxed) + 1;
                if n.is_power_of_two() {
                    tracing::warn!(failures = n, spans, "OTLP export to {} failed: {e}", self.endpoint);
                }
                OTelSdkError::InternalFailure(e)
            })
        }
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.encoder.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_escapes_decode() {
        assert_eq!(percent_decode("Basic%20dXNlcg%3D%3D").unwrap(), b"Basic dXNlcg==");
        assert!(percent_decode("50%").is_none());
        assert!(percent_decode("%zz").is_none());
    }
}
