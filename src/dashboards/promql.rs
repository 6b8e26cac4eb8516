//! PromQL spelled from the metric catalog: every series name in a dashboard or alert is made
//! here from a [`Spec`], so a renamed family cannot leave a query behind.

use crate::metrics::catalog::{self, Kind, Spec};

/// The matchers every dashboard query carries (the `job` and `instance` variables).
pub const SCOPE: &str = r#"job=~"$job",instance=~"$instance""#;

/// A series name of `spec`: the family's own name for counters and gauges, or a histogram's
/// `_bucket`, `_sum` or `_count`.
pub fn series(spec: &Spec, suffix: &str) -> String {
    match (spec.kind, suffix) {
        (Kind::Histogram, "_bucket" | "_sum" | "_count") | (Kind::Counter | Kind::Gauge, "") => {}
        _ => panic!("{} has no series with suffix {suffix:?}", spec.name),
    }
    format!("{}{suffix}", spec.exposed_name())
}

/// `name{matchers}` with the dashboard scope and `extra` matchers (comma-separated, may be
/// empty).
pub fn sel(spec: &Spec, suffix: &str, extra: &str) -> String {
    let sep = if extra.is_empty() { "" } else { "," };
    format!("{}{{{SCOPE}{sep}{extra}}}", series(spec, suffix))
}

/// `rate(sel[$__rate_interval])`.
pub fn rate(spec: &Spec, suffix: &str, extra: &str) -> String {
    format!("rate({}[$__rate_interval])", sel(spec, suffix, extra))
}

/// `increase(sel[$__rate_interval])`.
pub fn increase(spec: &Spec, suffix: &str, extra: &str) -> String {
    format!("increase({}[$__rate_interval])", sel(spec, suffix, extra))
}

/// `sum by (by) (inner)`.
pub fn sum_by(by: &str, inner: &str) -> String {
    format!("sum by ({by}) ({inner})")
}

/// A quantile of histogram `spec` per `by` group (`le` added).
pub fn quantile(q: f64, spec: &Spec, extra: &str, by: &str) -> String {
    format!("histogram_quantile({q}, {})", sum_by(&format!("{by}, le"), &rate(spec, "_bucket", extra)))
}

/// Mean of histogram `spec` per `by` group: rate of `_sum` over rate of `_count`.
pub fn mean(spec: &Spec, extra: &str, by: &str) -> String {
    format!("{} / {}", sum_by(by, &rate(spec, "_sum", extra)), sum_by(by, &rate(spec, "_count", extra)))
}

/// Requests in flight per process, on average (Little's law: the rate of request seconds):
/// the HTTP server's where there is one, else the gRPC server's. The doctor divides waiting
/// by this to get a share of request time; `scope` is the matcher list every selector gets.
pub fn requests_in_flight(scope: &str, window: &str) -> String {
    let by = "job, instance";
    let one = |spec: &Spec| format!("sum by ({by}) (rate({}{{{scope}}}[{window}]))", series(spec, "_sum"));
    format!("({} or {})", one(&catalog::HTTP_DURATION), one(&catalog::RPC_SERVER_DURATION))
}

/// Requests served per second per process (HTTP, else gRPC server).
pub fn requests_per_second(scope: &str, window: &str) -> String {
    let by = "job, instance";
    let one = |spec: &Spec| format!("sum by ({by}) (rate({}{{{scope}}}[{window}]))", series(spec, ""));
    format!("({} or {})", one(&catalog::HTTP_REQUESTS), one(&catalog::RPC_SERVER_REQUESTS))
}
