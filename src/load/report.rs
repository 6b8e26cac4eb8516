//! The human-readable report and the terminal progress bar.

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::driver::Progress;
use super::{LatencySummary, LoadReport, Mode};

/// Formats seconds with a unit that keeps 3–4 significant digits.
pub(crate) fn fmt_secs(s: f64) -> String {
    if s >= 1.0 {
        format!("{s:.2}s")
    } else if s >= 1e-3 {
        format!("{:.2}ms", s * 1e3)
    } else {
        format!("{:.0}µs", s * 1e6)
    }
}

fn latency_line(out: &mut String, label: &str, l: &LatencySummary) {
    let _ = writeln!(
        out,
        "{label:<14} mean {}  p50 {}  p90 {}  p95 {}  p99 {}  p99.9 {}  max {}",
        fmt_secs(l.mean),
        fmt_secs(l.p50),
        fmt_secs(l.p90),
        fmt_secs(l.p95),
        fmt_secs(l.p99),
        fmt_secs(l.p999),
        fmt_secs(l.max),
    );
}

pub(crate) fn render(r: &LoadReport) -> String {
    let mut out = String::new();
    if r.partial {
        let _ = writeln!(
            out,
            "PARTIAL        stopped by a signal after {:.2}s; {} in-flight requests abandoned",
            r.elapsed_seconds, r.abandoned
        );
    }
    let pacing = match r.rate {
        Some(rate) => format!("open loop at {rate} req/s, {} workers used", r.concurrency),
        None => format!("closed loop, {} workers", r.concurrency),
    };
    let _ = writeln!(out, "target         {} ({} mix, {pacing})", r.url, r.mix.as_str());
    if r.mix != super::Mix::Url {
        let _ = writeln!(out, "keys           {}-* / {}", r.prefix, r.counter_type);
    }
    let _ = writeln!(
        out,
        "requests       {} in {:.2}s: {} ok, {} errors ({:.2}%)",
        r.requests,
        r.elapsed_seconds,
        r.ok,
        r.errors(),
        r.error_rate() * 100.0
    );
    let _ = writeln!(out, "throughput     {:.1} req/s", r.qps);
    if r.service_latency.is_some() {
        latency_line(&mut out, "latency (CO)", &r.latency);
    } else {
        latency_line(&mut out, "latency", &r.latency);
    }
    if let Some(s) = &r.service_latency {
        latency_line(&mut out, "service time", s);
        let _ = writeln!(
            out,
            "late           {} sent late (in-flight cap), max dispatch lag {}",
            r.late,
            fmt_secs(r.max_dispatch_lag_seconds)
        );
    }
    if !r.errors_by_status.is_empty() {
        let list: Vec<String> = r.errors_by_status.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        let _ = writeln!(out, "errors         {}", list.join(", "));
    }
    if r.mix == super::Mix::Url {
        let _ = writeln!(out, "connections    {} opened", r.connections_opened);
    } else {
        let _ = writeln!(
            out,
            "connections    {} opened; {} increments acknowledged (sum {})",
            r.connections_opened,
            r.acked_ops,
            r.acked_total()
        );
    }
    out
}

/// A running progress bar; [`ProgressBar::finish`] stops it and clears its line.
pub(crate) struct ProgressBar {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl ProgressBar {
    pub(crate) async fn finish(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

fn bar(fraction: f64, width: usize) -> String {
    let filled = ((fraction.clamp(0.0, 1.0)) * width as f64).round() as usize;
    format!("[{}{}]", "#".repeat(filled), " ".repeat(width - filled))
}

/// Draws `[#####     ] done/total  qps  elapsed` on stderr every 200 ms.
pub(crate) fn spawn_progress(progress: Arc<Progress>, mode: Mode) -> ProgressBar {
    let (stop, mut stopped) = oneshot::channel();
    let task = tokio::spawn(async move {
        let start = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                _ = tick.tick() => {}
            }
            let done = progress.done();
            let elapsed = start.elapsed().as_secs_f64();
            let (fraction, of) = match mode {
                Mode::Closed { requests, max_duration: Some(d), .. } if requests == u64::MAX => {
                    (elapsed / d.as_secs_f64(), String::new())
                }
                _ => {
                    let total = mode.total_requests().max(1);
                    (done as f64 / total as f64, format!("/{total}"))
                }
            };
            let rate = if elapsed > 0.0 { done as f64 / elapsed } else { 0.0 };
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r{} {done}{of}  {rate:.0} req/s  {elapsed:.1}s\x1b[K", bar(fraction, 30));
            let _ = err.flush();
        }
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K");
        let _ = err.flush();
    });
    ProgressBar { stop, task }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_seconds() {
        assert_eq!(fmt_secs(1.5), "1.50s");
        assert_eq!(fmt_secs(0.0123), "12.30ms");
        assert_eq!(fmt_secs(0.000250), "250µs");
    }

    #[test]
    fn bar_fills() {
        assert_eq!(bar(0.5, 4), "[##  ]");
        assert_eq!(bar(2.0, 2), "[##]");
    }
}
