//! A request given on the command line, like `hey` or `oha` take it: `-m METHOD`, `-d BODY` or
//! `-d @file`, repeatable `-H 'Name: value'`, sent to the URL exactly as given.

use anyhow::{bail, Context as _};
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::Method;

/// What `--mix url` sends: the method, extra headers and body of every request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomRequest {
    /// `GET` unless `-m` says otherwise, or `POST` when there is a body.
    pub method: Method,
    /// Sent in this order after `Host`; a `Host` given here replaces the URL's.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
}

impl Default for CustomRequest {
    fn default() -> Self {
        CustomRequest { method: Method::GET, headers: Vec::new(), body: Bytes::new() }
    }
}

impl CustomRequest {
    /// Builds the request from `-m`, `-d` and `-H` values. `-d @path` reads the body from a
    /// file; the error names the argument at fault.
    pub fn from_args(method: Option<&str>, data: Option<&str>, headers: &[String]) -> anyhow::Result<Self> {
        let body = match data {
            Some(d) => read_body(d)?,
            None => Bytes::new(),
        };
        let method = match method {
            Some(m) => parse_method(m)?,
            None if data.is_some() => Method::POST,
            None => Method::GET,
        };
        let headers = headers.iter().map(|h| parse_header(h)).collect::<anyhow::Result<_>>()?;
        Ok(CustomRequest { method, headers, body })
    }
}

fn parse_method(m: &str) -> anyhow::Result<Method> {
    let upper = m.to_ascii_uppercase();
    if upper.is_empty() || !upper.bytes().all(|b| b.is_ascii_alphabetic() || b == b'-' || b == b'_') {
        bail!("-m {m:?} is not an HTTP method (GET, POST, PUT, PATCH, DELETE, ...)");
    }
    Method::from_bytes(upper.as_bytes()).with_context(|| format!("-m {m:?} is not an HTTP method"))
}

/// `Name: value`, as curl writes it.
pub fn parse_header(h: &str) -> anyhow::Result<(HeaderName, HeaderValue)> {
    let Some((name, value)) = h.split_once(':') else {
        bail!("-H {h:?} must look like 'Name: value'");
    };
    let name = HeaderName::from_bytes(name.trim().as_bytes())
        .with_context(|| format!("-H {h:?}: {:?} is not a header name", name.trim()))?;
    let value = HeaderValue::from_str(value.trim()).with_context(|| format!("-H {h:?}: the value is not valid"))?;
    Ok((name, value))
}

/// `-d BODY` as given, or `-d @path` read from the file.
fn read_body(d: &str) -> anyhow::Result<Bytes> {
    match d.strip_prefix('@') {
        Some(path) => {
            let bytes = std::fs::read(path).with_context(|| format!("-d @{path}: cannot read the body file"))?;
            Ok(Bytes::from(bytes))
        }
        None => Ok(Bytes::copy_from_slice(d.as_bytes())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_defaults_follow_the_body() {
        assert_eq!(CustomRequest::from_args(None, None, &[]).unwrap().method, Method::GET);
        let r = CustomRequest::from_args(None, Some("x=1"), &[]).unwrap();
        assert_eq!((r.method, r.body), (Method::POST, Bytes::from_static(b"x=1")));
        assert_eq!(CustomRequest::from_args(Some("put"), None, &[]).unwrap().method, Method::PUT);
        assert!(CustomRequest::from_args(Some("GE T"), None, &[]).is_err());
        assert!(CustomRequest::from_args(Some(""), None, &[]).is_err());
    }

    #[test]
    fn headers_parse_like_curl() {
        let (n, v) = parse_header("X-A:  1 ").unwrap();
        assert_eq!((n.as_str(), v.to_str().unwrap()), ("x-a", "1"));
        let (n, v) = parse_header("authorization: Bearer a:b").unwrap();
        assert_eq!((n.as_str(), v.to_str().unwrap()), ("authorization", "Bearer a:b"));
        assert!(parse_header("no colon").is_err());
        assert!(parse_header("bad name: 1").is_err());
        assert!(parse_header("x: a\nb").is_err());
    }

    #[test]
    fn body_from_a_file_or_missing_file() {
        let path = std::env::temp_dir().join(format!("pinchpoint-body-{}.json", std::process::id()));
        std::fs::write(&path, b"{\"a\":1}").unwrap();
        let arg = format!("@{}", path.display());
        assert_eq!(read_body(&arg).unwrap(), Bytes::from_static(b"{\"a\":1}"));
        std::fs::remove_file(&path).unwrap();
        let err = read_body(&arg).unwrap_err().to_string();
        assert!(err.contains("cannot read the body file"), "{err}");
    }
}
