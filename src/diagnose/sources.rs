//! Where the doctor's windows come from: live admin listeners, a directory of saved
//! snapshots, or a Prometheus-compatible server.
//!
//! All three produce [`ProcessWindow`]s, so one rule set serves them all. Prometheus is read
//! as instant vectors of the raw series at the slice boundaries (`/api/v1/query?time=`), one
//! window per `job/instance`: the same counters the rules read from a scrape, so a fleet is
//! judged exactly like one process, and any store that answers the Prometheus query API
//! (federation, Thanos, Mimir) works.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context};

use super::snapshot::{Sample, Snapshot};
use super::window::ProcessWindow;

/// Scrapes every target `slices + 1` times over `window`; fails with a one-line reason when a
/// target cannot be reached at the start.
pub async fn targets(urls: &[String], window: Duration, slices: usize) -> anyhow::Result<Vec<ProcessWindow>> {
    let urls: Vec<String> = urls.iter().map(|u| normalize(u)).collect();
    let mut series: Vec<Vec<Snapshot>> = vec![Vec::new(); urls.len()];
    let step = window / slices.max(1) as u32;
    let start = tokio::time::Instant::now();
    for i in 0..=slices {
        tokio::time::sleep_until(start + step * i as u32).await;
        let scrapes = futures_util::future::join_all(urls.iter().map(|u| Snapshot::scrape(u))).await;
        for ((url, scrape), out) in urls.iter().zip(scrapes).zip(series.iter_mut()) {
            match scrape {
                // The rules need the samples only; the text is for the lab's saved copies.
                Ok(mut s) => {
                    s.text = String::new();
                    out.push(s)
                }
                Err(e) if i == 0 => bail!("cannot scrape {url}/metrics: {}", one_line(&e)),
                Err(e) => tracing::warn!("scrape {url}/metrics failed mid-window: {}", one_line(&e)),
            }
        }
    }
    Ok(urls
        .into_iter()
        .zip(series)
        .map(|(url, snaps)| {
            let name = url.trim_start_matches("http://").trim_start_matches("https://").to_string();
            ProcessWindow::new(name, Some(url), snaps)
        })
        .collect())
}

fn normalize(url: &str) -> String {
    let url = url.trim_end_matches('/');
    let url = url.strip_suffix("/metrics").unwrap_or(url);
    if url.contains("://") {
        url.to_string()
    } else {
        format!("http://{url}")
    }
}

fn one_line(e: &anyhow::Error) -> String {
    format!("{e:#}").replace('\n', " ")
}

/// The snapshots in `dir`: files `<process>-<anything>.prom`, ordered by the time in a
/// `window.json` beside them (`{"taken_at": {"file.prom": unix_seconds}, "admin": {"process":
/// url}}`) or else by modification time.
pub fn snapshot_dir(dir: &Path) -> anyhow::Result<Vec<ProcessWindow>> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    let meta: serde_json::Value = std::fs::read_to_string(dir.join("window.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(serde_json::Value::Null);
    let mut by_process: BTreeMap<String, Vec<Snapshot>> = BTreeMap::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(file) = path.file_name().and_then(|f| f.to_str()).map(str::to_string) else { continue };
        let Some(stem) = file.strip_suffix(".prom") else { continue };
        let process = stem.split_once('-').map_or(stem, |(p, _)| p).to_string();
        let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let mut snap = Snapshot::parse(&text);
        snap.taken_at = match meta["taken_at"][&file].as_f64() {
            Some(t) => SystemTime::UNIX_EPOCH + Duration::from_secs_f64(t),
            None => entry.metadata().and_then(|m| m.modified()).unwrap_or(SystemTime::UNIX_EPOCH),
        };
        by_process.entry(process).or_default().push(snap);
    }
    let windows: Vec<ProcessWindow> = by_process
        .into_iter()
        .filter(|(_, snaps)| snaps.len() >= 2)
        .map(|(p, snaps)| {
            let admin = meta["admin"][&p].as_str().map(str::to_string);
            ProcessWindow::new(p, admin, snaps)
        })
        .collect();
    if windows.is_empty() {
        bail!("{} holds no process with two or more snapshots (<process>-<when>.prom files)", dir.display());
    }
    Ok(windows)
}

/// Windows of every `job/instance` matching `selector` over the `range` ending now.
pub async fn prometheus(
    base: &str,
    selector: &str,
    range: Duration,
    slices: usize,
) -> anyhow::Result<Vec<ProcessWindow>> {
    let base = base.trim_end_matches('/');
    let inner = selector.trim().trim_start_matches('{').trim_end_matches('}').trim();
    let query = if inner.is_empty() {
        r#"{__name__=~"pinchpoint_.+|process_.+"}"#.to_string()
    } else {
        format!(r#"{{__name__=~"pinchpoint_.+|process_.+",{inner}}}"#)
    };
    let end = SystemTime::now();
    let step = range / slices.max(1) as u32;
    let mut per_instance: BTreeMap<(String, String), Vec<Snapshot>> = BTreeMap::new();
    for i in 0..=slices {
        let at = end - range + step * i as u32;
        let t = super::window::unix_seconds(at);
        let url = format!("{base}/api/v1/query?query={}&time={t:.3}", percent_encode(&query));
        let body = crate::lab::http::get_text(&url, Duration::from_secs(30))
            .await
            .map_err(|e| anyhow::anyhow!("cannot query Prometheus at {base}: {}", one_line(&e)))?;
        let answer: serde_json::Value =
            serde_json::from_str(&body).with_context(|| format!("{base} did not answer the Prometheus query API"))?;
        if answer["status"] != "success" {
            bail!("Prometheus at {base} refused the query {query}: {}", answer["error"].as_str().unwrap_or("?"));
        }
        let mut snaps: BTreeMap<(String, String), Vec<Sample>> = BTreeMap::new();
        for series in answer["data"]["result"].as_array().into_iter().flatten() {
            let Some(metric) = series["metric"].as_object() else { continue };
            let value = series["value"][1].as_str().and_then(|v| v.parse::<f64>().ok()).unwrap_or(f64::NAN);
            let mut labels = super::snapshot::Labels::default();
            for (k, v) in metric {
                labels.insert(k, v.as_str().unwrap_or(""));
            }
            let name = labels.remove("__name__").unwrap_or_default();
            let job = labels.remove("job").unwrap_or_default();
            let instance = labels.remove("instance").unwrap_or_default();
            snaps.entry((job, instance)).or_default().push(Sample { name, labels, value });
        }
        for (key, samples) in snaps {
            per_instance.entry(key).or_default().push(Snapshot::new(samples, at, String::new()));
        }
    }
    let windows: Vec<ProcessWindow> = per_instance
        .into_iter()
        .filter(|(_, s)| s.len() >= 2)
        .map(|((job, instance), snaps)| {
            let admin = (!instance.is_empty()).then(|| format!("http://{instance}"));
            ProcessWindow::new(format!("{job}/{instance}"), admin, snaps)
        })
        .collect();
    if windows.is_empty() {
        bail!("Prometheus at {base} has no pinchpoint series for {query} over the last {range:?}");
    }
    Ok(windows)
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
