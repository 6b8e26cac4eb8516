//! Collapsed stacks and inferno flamegraphs.
//!
//! Folded lines are `root;…;leaf VALUE`, aggregated and sorted so two captures of the same
//! code diff cleanly. A CPU profile's root frame is the thread name (`tokio-runtime-w`,
//! `blocking-…`); a contention profile's stacks end in the resource frame (`lock:NAME`) and,
//! where the probe knew it, a `held by: FILE:LINE` frame (see flamegraphs/README.md).

use std::collections::BTreeMap;

use inferno::flamegraph::{self, color::BasicPalette, color::Palette, Options};

use super::{Error, Kind, StackProfile};

/// The folded line's stack part for one sample (thread label first, when present).
fn stack_key(p: &StackProfile, s: &super::Sample) -> String {
    let mut parts: Vec<&str> = Vec::with_capacity(s.frames.len() + 1);
    if let Some((_, thread)) = s.labels.iter().find(|(k, _)| k == "thread") {
        parts.push(thread);
    }
    parts.extend(s.frames.iter().map(|f| f.function.as_str()));
    if parts.is_empty() {
        parts.push(match p.kind {
            Kind::Cpu => "[unknown]",
            Kind::Contention => "[no stack]",
        });
    }
    // `;` separates frames and the last space separates the count: neither may appear inside
    // a frame name (clean_name already replaced `;`).
    parts.join(";").replace(['\n', '\r'], " ")
}

/// Collapsed stacks weighted by the default sample type (CPU: sample count; contention: wait
/// nanoseconds).
pub fn folded(p: &StackProfile) -> String {
    let mut agg: BTreeMap<String, i64> = BTreeMap::new();
    for s in &p.samples {
        let v = s.values.get(p.default_sample_type).copied().unwrap_or(0);
        if v > 0 {
            *agg.entry(stack_key(p, s)).or_default() += v;
        }
    }
    let mut out = String::new();
    for (stack, v) in agg {
        out.push_str(&stack);
        out.push(' ');
        out.push_str(&v.to_string());
        out.push('\n');
    }
    out
}

/// Flamegraph options for a profile kind.
pub fn options(kind: Kind, subtitle: Option<String>) -> Options<'static> {
    let mut o = Options::default();
    match kind {
        Kind::Cpu => {
            o.title = "CPU".into();
            o.count_name = "samples".into();
            o.colors = Palette::Basic(BasicPalette::Hot);
        }
        Kind::Contention => {
            o.title = "Contention: time spent waiting".into();
            o.count_name = "ns waited".into();
            o.colors = Palette::Basic(BasicPalette::Blue);
        }
    }
    o.subtitle = subtitle;
    o.deterministic = true;
    o
}

/// Renders folded lines as an SVG flamegraph.
pub fn svg_from_folded(folded: &str, mut opts: Options<'_>) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    let lines: Vec<&str> = folded.lines().collect();
    if lines.is_empty() {
        // inferno refuses empty input; draw the empty graph it would draw for "no samples".
        flamegraph::from_lines(&mut opts, ["[no samples] 1"], &mut out).map_err(|e| Error::Encode(e.to_string()))?;
    } else {
        flamegraph::from_lines(&mut opts, lines, &mut out).map_err(|e| Error::Encode(e.to_string()))?;
    }
    Ok(out)
}

/// The profile as an SVG flamegraph.
pub fn svg(p: &StackProfile) -> Result<Vec<u8>, Error> {
    let subtitle = format!(
        "{:.1} s{}",
        p.duration.as_secs_f64(),
        p.comments.first().map(|c| format!(", {c}")).unwrap_or_default()
    );
    svg_from_folded(&folded(p), options(p.kind, Some(subtitle)))
}
