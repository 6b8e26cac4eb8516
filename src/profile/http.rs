//! The admin endpoints: `GET /debug/pprof/profile` (CPU) and `GET /debug/pprof/contention`.
//!
//! Query: `seconds=N` (default 30, capped at 60, fractions allowed), `hz=H` (CPU only, default
//! 99, 1–1000), `format=pb|svg|folded` (default `pb`, gzipped like Go's). Bad parameters get
//! 400 and a JSON error; a second CPU profile while one runs gets 429.
//!
//! The answer's headers go out as soon as the capture starts, with the effective window in
//! `X-Profile-Seconds` (and `X-Profile-Hz`); the body follows when the window ends. A client
//! that disconnects early ends its capture (the profiler stops and the slot frees).

use std::collections::HashMap;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::Query;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::{contention, cpu, Error, Format, Kind};

/// Default capture window.
pub const DEFAULT_SECONDS: f64 = 30.0;
/// Longest capture window; longer requests are capped to it.
pub const MAX_SECONDS: f64 = 60.0;

/// Validated query parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Params {
    /// How long to capture.
    pub seconds: Duration,
    /// CPU samples per second.
    pub hz: u32,
    /// The output format.
    pub format: Format,
}

/// A 400 reason.
#[derive(Debug, PartialEq, Eq)]
pub struct BadParam(pub String);

/// Parses and caps `seconds`, `hz`, `format` (other keys are ignored, as Go does).
pub fn parse_params(q: &HashMap<String, String>, kind: Kind) -> Result<Params, BadParam> {
    let seconds = match q.get("seconds") {
        None => DEFAULT_SECONDS,
        Some(s) => match s.trim().parse::<f64>() {
            Ok(v) if v > 0.0 && v.is_finite() => v.min(MAX_SECONDS),
            _ => return Err(BadParam(format!("seconds={s:?}: want a positive number of seconds (capped at 60)"))),
        },
    };
    let hz = match (q.get("hz"), kind) {
        (None, _) => cpu::DEFAULT_HZ,
        (Some(h), Kind::Cpu) => match h.trim().parse::<u32>() {
            Ok(v) if (1..=cpu::MAX_HZ).contains(&v) => v,
            _ => return Err(BadParam(format!("hz={h:?}: want an integer from 1 to {}", cpu::MAX_HZ))),
        },
        (Some(_), Kind::Contention) => {
            return Err(BadParam("hz applies to CPU profiles only (contention is sampled per resource)".into()))
        }
    };
    let format = match q.get("format") {
        None => Format::Pb,
        Some(f) => Format::parse(f).ok_or_else(|| BadParam(format!("format={f:?}: want pb, svg or folded")))?,
    };
    Ok(Params { seconds: Duration::from_secs_f64(seconds), hz, format })
}

fn json_error(status: StatusCode, code: &str, message: String) -> Response {
    (status, Json(serde_json::json!({"error": {"code": code, "message": message}}))).into_response()
}

fn error_response(e: &Error) -> Response {
    match e {
        Error::Busy => json_error(StatusCode::TOO_MANY_REQUESTS, "profile_running", e.to_string()),
        _ => json_error(StatusCode::INTERNAL_SERVER_ERROR, "profiler_error", e.to_string()),
    }
}

/// Headers sent before the body: type, effective window, file name.
fn streaming(p: &Params, kind: Kind, body: Body) -> Response {
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(p.format.content_type()));
    if let Ok(v) = HeaderValue::from_str(&p.seconds.as_secs_f64().to_string()) {
        h.insert("x-profile-seconds", v);
    }
    if kind == Kind::Cpu {
        h.insert("x-profile-hz", HeaderValue::from(p.hz));
    }
    let ext = match p.format {
        Format::Pb => "pb.gz",
        Format::Svg => "svg",
        Format::Folded => "folded",
    };
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{}.{ext}\"", kind.as_str())) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// `GET /debug/pprof/profile`.
pub async fn cpu_handler(Query(q): Query<HashMap<String, String>>) -> Response {
    let p = match parse_params(&q, Kind::Cpu) {
        Ok(p) => p,
        Err(BadParam(m)) => return json_error(StatusCode::BAD_REQUEST, "bad_param", m),
    };
    // Take the one slot now, so a second request learns 429 at once, not after a window.
    let capture = match tokio::task::spawn_blocking(move || cpu::start(p.hz)).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return error_response(&e),
        Err(e) => return json_error(StatusCode::INTERNAL_SERVER_ERROR, "profiler_error", e.to_string()),
    };
    let body = futures_util::stream::once(async move {
        tokio::time::sleep(p.seconds).await;
        let rendered = tokio::task::spawn_blocking(move || capture.finish().and_then(|prof| prof.render(p.format)))
            .await
            .map_err(|e| Error::Profiler(e.to_string()))
            .and_then(|r| r);
        rendered.map(Bytes::from).map_err(std::io::Error::other)
    });
    streaming(&p, Kind::Cpu, Body::from_stream(body))
}

/// `GET /debug/pprof/contention`.
pub async fn contention_handler(Query(q): Query<HashMap<String, String>>) -> Response {
    let p = match parse_params(&q, Kind::Contention) {
        Ok(p) => p,
        Err(BadParam(m)) => return json_error(StatusCode::BAD_REQUEST, "bad_param", m),
    };
    let body = futures_util::stream::once(async move {
        let prof = contention::capture(p.seconds).await;
        tokio::task::spawn_blocking(move || prof.render(p.format))
            .await
            .map_err(|e| Error::Profiler(e.to_string()))
            .and_then(|r| r)
            .map(Bytes::from)
            .map_err(std::io::Error::other)
    });
    streaming(&p, Kind::Contention, Body::from_stream(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn seconds_default_and_cap() {
        let p = parse_params(&q(&[]), Kind::Cpu).unwrap();
        assert_eq!(p.seconds, Duration::from_secs(30));
        assert_eq!(p.hz, 99);
        assert_eq!(p.format, Format::Pb);
        assert_eq!(parse_params(&q(&[("seconds", "600")]), Kind::Cpu).unwrap().seconds, Duration::from_secs(60));
        assert_eq!(parse_params(&q(&[("seconds", "0.5")]), Kind::Cpu).unwrap().seconds, Duration::from_millis(500));
    }

    #[test]
    fn bad_params_are_rejected() {
        for bad in [("seconds", "0"), ("seconds", "-1"), ("seconds", "x"), ("seconds", "inf"), ("hz", "0")] {
            assert!(parse_params(&q(&[bad]), Kind::Cpu).is_err(), "{bad:?}");
        }
        assert!(parse_params(&q(&[("hz", "5000")]), Kind::Cpu).is_err());
        assert!(parse_params(&q(&[("format", "png")]), Kind::Cpu).is_err());
        assert!(parse_params(&q(&[("hz", "99")]), Kind::Contention).is_err());
        assert_eq!(parse_params(&q(&[("format", "svg")]), Kind::Contention).unwrap().format, Format::Svg);
    }
}
