//! A small HTTP/1 client for the lab's own calls: health checks, reads, scrapes, captures.

use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>;

fn client() -> &'static HttpClient {
    static C: std::sync::OnceLock<HttpClient> = std::sync::OnceLock::new();
    C.get_or_init(|| Client::builder(TokioExecutor::new()).build_http())
}

/// GET `url`; the status and body.
pub async fn get(url: &str, timeout: Duration) -> anyhow::Result<(u16, Bytes)> {
    let uri: hyper::Uri = url.parse().with_context(|| format!("bad url {url}"))?;
    let fut = async {
        let resp = client().get(uri).await?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await?.to_bytes();
        anyhow::Ok((status, body))
    };
    tokio::time::timeout(timeout, fut).await.with_context(|| format!("GET {url}: no answer within {timeout:?}"))?
}

/// GET `url`, expecting 200 and UTF-8.
pub async fn get_text(url: &str, timeout: Duration) -> anyhow::Result<String> {
    let (status, body) = get(url, timeout).await?;
    if status != 200 {
        bail!("GET {url}: HTTP {status}");
    }
    Ok(String::from_utf8(body.to_vec())?)
}
