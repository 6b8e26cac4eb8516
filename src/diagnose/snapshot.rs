//! A parsed `/metrics` exposition, and arithmetic between two of them.
//!
//! Only what the doctor and the lab need: sample name, labels and value. Exemplars,
//! timestamps and metadata lines are skipped.

use std::collections::BTreeMap;
use std::time::SystemTime;

/// One sample line: `name{label="value",...} 1.5`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Family sample name (`..._bucket`, `..._total`, ...).
    pub name: String,
    /// Its labels.
    pub labels: Labels,
    /// Its value.
    pub value: f64,
}

/// A sample's labels, sorted by name. A `BTreeMap` allocates a whole node (over 500 bytes) for
/// two or three labels; at 5,000 series a target, four snapshots each, that was most of the
/// doctor's memory.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Labels(Vec<(Box<str>, Box<str>)>);

impl Labels {
    /// The value of label `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.binary_search_by(|(k, _)| (**k).cmp(key)).ok().map(|i| &*self.0[i].1)
    }

    /// Sets label `key` (replacing its value).
    pub fn insert(&mut self, key: &str, value: &str) {
        match self.0.binary_search_by(|(k, _)| (**k).cmp(key)) {
            Ok(i) => self.0[i].1 = value.into(),
            Err(i) => self.0.insert(i, (key.into(), value.into())),
        }
    }

    /// Removes label `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        let i = self.0.binary_search_by(|(k, _)| (**k).cmp(key)).ok()?;
        Some(self.0.remove(i).1.into())
    }

    /// `(name, value)` pairs, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (&**k, &**v))
    }
}

/// Every sample of one scrape, and when it was taken.
#[derive(Debug)]
pub struct Snapshot {
    /// Every sample line, in exposition order.
    pub samples: Vec<Sample>,
    /// When it was scraped (or parsed).
    pub taken_at: SystemTime,
    /// The exposition as scraped, for saving beside a report.
    pub text: String,
    /// Sample indexes by name, built on first lookup: the rules ask for one family per
    /// resource, and a linear scan per question made a 5,000-series target take seconds.
    by_name: std::sync::OnceLock<std::collections::HashMap<String, Vec<usize>>>,
    /// Sample indexes by (name, label) and then label value, built per pair on first lookup:
    /// a rule asks about each lock or pool by its label, hundreds of times per window.
    by_label: parking_lot::Mutex<std::collections::HashMap<(String, String), LabelIndex>>,
}

type LabelIndex = std::sync::Arc<std::collections::HashMap<String, Vec<usize>>>;

impl Clone for Snapshot {
    fn clone(&self) -> Self {
        Snapshot::new(self.samples.clone(), self.taken_at, self.text.clone())
    }
}

impl Snapshot {
    /// Parses an exposition (OpenMetrics or Prometheus text) taken now; unparsable lines are skipped.
    pub fn parse(text: &str) -> Snapshot {
        let samples =
            text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()).filter_map(parse_line).collect();
        Snapshot::new(samples, SystemTime::now(), text.to_string())
    }

    /// A snapshot of `samples` taken at `taken_at`, with the exposition `text` they came from.
    pub fn new(samples: Vec<Sample>, taken_at: SystemTime, text: String) -> Snapshot {
        Snapshot { samples, taken_at, text, by_name: std::sync::OnceLock::new(), by_label: Default::default() }
    }

    /// Indexes of the samples named `name` whose label `key` is `value`.
    fn labelled(&self, name: &str, key: &str, value: &str) -> Vec<usize> {
        let index = {
            let mut all = self.by_label.lock();
            all.entry((name.to_string(), key.to_string()))
                .or_insert_with(|| {
                    let mut m: std::collections::HashMap<String, Vec<usize>> = std::collections::HashMap::new();
                    for &i in self.named(name) {
                        if let Some(v) = self.samples[i].labels.get(key) {
                            m.entry(v.to_string()).or_default().push(i);
                        }
                    }
                    std::sync::Arc::new(m)
                })
                .clone()
        };
        index.get(value).cloned().unwrap_or_default()
    }

    fn named(&self, name: &str) -> &[usize] {
        let index = self.by_name.get_or_init(|| {
            let mut m: std::collections::HashMap<String, Vec<usize>> = std::collections::HashMap::new();
            for (i, s) in self.samples.iter().enumerate() {
                m.entry(s.name.clone()).or_default().push(i);
            }
            m
        });
        index.get(name).map_or(&[], Vec::as_slice)
    }

    /// Scrapes `admin_url` (`http://host:port`) `/metrics`.
    #[cfg(feature = "lab")]
    pub async fn scrape(admin_url: &str) -> anyhow::Result<Snapshot> {
        let url = format!("{}/metrics", admin_url.trim_end_matches('/'));
        let body = crate::lab::http::get_text(&url, std::time::Duration::from_secs(10)).await?;
        Ok(Snapshot::parse(&body))
    }

    /// Sum of the samples named `name` whose labels include all of `filter`.
    pub fn sum(&self, name: &str, filter: &[(&str, &str)]) -> f64 {
        self.matching(name, filter).map(|s| s.value).sum()
    }

    /// Whether any sample of that name exists (a missing family means "not measured").
    pub fn has(&self, name: &str) -> bool {
        !self.named(name).is_empty()
    }

    /// Samples named `name` whose labels include every `(label, value)` of `filter`.
    pub fn matching<'a>(&'a self, name: &'a str, filter: &'a [(&str, &str)]) -> impl Iterator<Item = &'a Sample> + 'a {
        let candidates: Vec<usize> = match filter.first() {
            Some((k, v)) => self.labelled(name, k, v),
            None => self.named(name).to_vec(),
        };
        candidates
            .into_iter()
            .map(move |i| &self.samples[i])
            .filter(move |s| filter.iter().all(|(k, v)| s.labels.get(k).is_some_and(|x| x == *v)))
    }

    /// Distinct values of `label` among samples named `name`.
    pub fn label_values(&self, name: &str, label: &str) -> Vec<String> {
        let mut v: Vec<String> =
            self.matching(name, &[]).filter_map(|s| s.labels.get(label).map(str::to_string)).collect();
        v.sort();
        v.dedup();
        v
    }
}

/// `after − before` for a counter-like sum (never negative: a restart resets counters).
pub fn delta(before: &Snapshot, after: &Snapshot, name: &str, filter: &[(&str, &str)]) -> f64 {
    (after.sum(name, filter) - before.sum(name, filter)).max(0.0)
}

/// The `q` quantile (0..1) of a histogram's observations between two snapshots, estimated
/// from cumulative `_bucket` counts (upper bound of the bucket it falls in).
pub fn quantile_between(
    before: &Snapshot,
    after: &Snapshot,
    hist: &str,
    filter: &[(&str, &str)],
    q: f64,
) -> Option<f64> {
    let bucket = format!("{hist}_bucket");
    let mut bounds: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
    for (snap, sign) in [(after, 1.0), (before, -1.0)] {
        for s in snap.matching(&bucket, filter) {
            let le = s.labels.get("le")?;
            let bound: f64 = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
            bounds.entry(bound.to_bits()).or_insert((bound, 0.0)).1 += sign * s.value;
        }
    }
    let mut sorted: Vec<(f64, f64)> = bounds.into_values().collect();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = sorted.last()?.1;
    if total <= 0.0 {
        return None;
    }
    sorted.iter().find(|(_, count)| *count >= q * total).map(|(b, _)| *b)
}

/// Share of a histogram's observations between two snapshots that exceeded `threshold`.
pub fn share_above(
    before: &Snapshot,
    after: &Snapshot,
    hist: &str,
    filter: &[(&str, &str)],
    threshold: f64,
) -> Option<f64> {
    let bucket = format!("{hist}_bucket");
    let count = |snap: &Snapshot, pick: &dyn Fn(f64) -> bool| -> f64 {
        snap.matching(&bucket, filter)
            .filter(|s| {
                let le = s.labels.get("le").unwrap_or("");
                let b = if le == "+Inf" { f64::INFINITY } else { le.parse().unwrap_or(f64::NAN) };
                pick(b)
            })
            .map(|s| s.value)
            .sum()
    };
    let total = count(after, &|b| b.is_infinite()) - count(before, &|b| b.is_infinite());
    if total <= 0.0 {
        return None;
    }
    // The largest bucket bound at or below the threshold counts the observations ≤ it.
    let at_or_below = |snap: &Snapshot| {
        let best = snap
            .matching(&bucket, filter)
            .filter_map(|s| s.labels.get("le").and_then(|l| l.parse::<f64>().ok()))
            .filter(|b| *b <= threshold)
            .fold(f64::NEG_INFINITY, f64::max);
        count(snap, &|b| b == best)
    };
    Some(((total - (at_or_below(after) - at_or_below(before))) / total).clamp(0.0, 1.0))
}

fn parse_line(line: &str) -> Option<Sample> {
    let line = line.split(" # ").next()?; // drop an exemplar
    let (name, rest) = match line.find('{') {
        Some(i) => (&line[..i], &line[i..]),
        None => {
            let (n, r) = line.split_once(' ')?;
            (n, r)
        }
    };
    let (labels, value_part) = if rest.starts_with('{') {
        let end = find_label_end(rest)?;
        (parse_labels(&rest[1..end])?, &rest[end + 1..])
    } else {
        (Labels::default(), rest)
    };
    let value = value_part.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample { name: name.trim().to_string(), labels, value })
}

/// Index of the `}` closing the label set, skipping braces inside quoted values.
fn find_label_end(s: &str) -> Option<usize> {
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            '}' if !in_quotes => return Some(i),
            _ => {}
        }
    }
    None
}

fn parse_labels(s: &str) -> Option<Labels> {
    let mut out = Labels::default();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let eq = rest.find('=')?;
        let key = rest[..eq].trim().trim_start_matches(',').trim().to_string();
        let after = rest[eq + 1..].trim_start();
        let after = after.strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, other)) => value.push(other),
                    None => return None,
                },
                '"' => {
                    end = Some(i);
                    break;
                }
                c => value.push(c),
            }
        }
        out.insert(&key, &value);
        rest = after[end? + 1..].trim_start().trim_start_matches(',').trim_start();
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP pinchpoint_lock_wait_seconds Wait.
# TYPE pinchpoint_lock_wait_seconds histogram
pinchpoint_lock_wait_seconds_bucket{lock="store.global",mode="exclusive",le="0.001"} 5
pinchpoint_lock_wait_seconds_bucket{lock="store.global",mode="exclusive",le="0.01"} 9
pinchpoint_lock_wait_seconds_bucket{lock="store.global",mode="exclusive",le="+Inf"} 10
pinchpoint_lock_wait_seconds_sum{lock="store.global",mode="exclusive"} 0.25 # {trace_id="abc"} 0.1
pinchpoint_build_info{version="0.1.0"} 1
process_threads 7
weird{path="a\"b}c"} 2
# EOF
"#;

    #[test]
    fn parses_labels_values_and_exemplars() {
        let s = Snapshot::parse(TEXT);
        assert_eq!(s.sum("pinchpoint_lock_wait_seconds_sum", &[("lock", "store.global")]), 0.25);
        assert_eq!(s.sum("process_threads", &[]), 7.0);
        assert_eq!(s.sum("weird", &[("path", "a\"b}c")]), 2.0);
        assert_eq!(s.label_values("pinchpoint_build_info", "version"), vec!["0.1.0"]);
        assert!(!s.has("pinchpoint_nothing"));
    }

    #[test]
    fn quantiles_and_shares_between_snapshots() {
        let before = Snapshot::parse("");
        let after = Snapshot::parse(TEXT);
        let h = "pinchpoint_lock_wait_seconds";
        assert_eq!(quantile_between(&before, &after, h, &[], 0.5), Some(0.001));
        assert_eq!(quantile_between(&before, &after, h, &[], 0.9), Some(0.01));
        assert_eq!(quantile_between(&before, &after, h, &[], 0.99), Some(f64::INFINITY));
        let share = share_above(&before, &after, h, &[], 0.001).unwrap();
        assert!((share - 0.5).abs() < 1e-9, "{share}");
    }
}
