//! The HTML report (`lab --out DIR`): one page with throughput and latency charts per
//! level for each scenario, the headline figures, and the flamegraphs linked in.
//! Charts are inline SVG, so the page needs no network and no scripts.

use std::fmt::Write;

use crate::lab::headline::format_value;
use crate::lab::report::LabReport;
use crate::lab::runner::{LevelReport, ScenarioReport};

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

const W: f64 = 420.0;
const H: f64 = 180.0;
const PAD: f64 = 36.0;

/// Bars of median QPS per level.
fn qps_chart(levels: &[LevelReport]) -> String {
    let max = levels.iter().map(|l| l.qps_median).fold(1.0, f64::max);
    let n = levels.len().max(1) as f64;
    let bw = (W - 2.0 * PAD) / n;
    let mut s = format!(r#"<svg viewBox="0 0 {W} {H}" class="chart"><text x="{PAD}" y="14">QPS (median)</text>"#);
    for (i, l) in levels.iter().enumerate() {
        let h = (H - 2.0 * PAD) * l.qps_median / max;
        let x = PAD + i as f64 * bw + 4.0;
        let y = H - PAD - h;
        let _ = write!(
            s,
            r#"<rect x="{x:.1}" y="{y:.1}" width="{:.1}" height="{h:.1}" class="{}"><title>{} {:.0} QPS</title></rect><text x="{:.1}" y="{:.1}" class="v">{:.0}</text><text x="{:.1}" y="{:.1}">{}</text>"#,
            bw - 8.0,
            if l.consistent { "bar" } else { "bar bad" },
            l.level,
            l.qps_median,
            x,
            y - 3.0,
            l.qps_median,
            x,
            H - PAD + 14.0,
            l.level
        );
    }
    s.push_str("</svg>");
    s
}

/// Lines of p50, p95 and p99 per level (log scale: latencies span orders of magnitude).
fn latency_chart(levels: &[LevelReport]) -> String {
    type Series = (&'static str, fn(&LevelReport) -> f64);
    let series: [Series; 3] = [("p50", |l| l.p50), ("p95", |l| l.p95), ("p99", |l| l.p99)];
    // A latency past the histogram's top bucket can be +Inf: the axis would never end.
    let all: Vec<f64> =
        levels.iter().flat_map(|l| [l.p50, l.p95, l.p99]).filter(|v| *v > 0.0 && v.is_finite()).collect();
    if all.is_empty() {
        return format!(
            r#"<svg viewBox="0 0 {W} {H}" class="chart"><text x="{PAD}" y="14">latency: no data</text></svg>"#
        );
    }
    let lo = all.iter().cloned().fold(f64::INFINITY, f64::min).max(1e-6).log10().floor();
    let hi = all.iter().cloned().fold(0.0, f64::max).max(1e-5).log10().ceil().max(lo + 1.0);
    let n = levels.len().max(2) as f64;
    let x = |i: usize| PAD + i as f64 * (W - 2.0 * PAD) / (n - 1.0);
    let y = |v: f64| H - PAD - (H - 2.0 * PAD) * ((v.max(1e-9).log10() - lo) / (hi - lo));
    let mut s =
        format!(r#"<svg viewBox="0 0 {W} {H}" class="chart"><text x="{PAD}" y="14">latency (log scale)</text>"#);
    let mut e = lo;
    while e <= hi {
        let v = 10f64.powf(e);
        let label = if v >= 1.0 { format!("{v:.0}s") } else { format!("{}ms", v * 1e3) };
        let yy = y(v);
        let _ = write!(
            s,
            r#"<line x1="{PAD}" x2="{:.1}" y1="{yy:.1}" y2="{yy:.1}" class="grid"/><text x="2" y="{:.1}" class="v">{label}</text>"#,
            W - PAD,
            yy + 3.0
        );
        e += 1.0;
    }
    for (k, (name, f)) in series.iter().enumerate() {
        let pts: Vec<String> = levels.iter().enumerate().map(|(i, l)| format!("{:.1},{:.1}", x(i), y(f(l)))).collect();
        let _ = write!(s, r#"<polyline points="{}" class="line l{k}"><title>{name}</title></polyline>"#, pts.join(" "));
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{:.1}" class="lg l{k}">{name}</text>"#,
            W - PAD + 2.0,
            30.0 + 14.0 * k as f64
        );
    }
    for (i, l) in levels.iter().enumerate() {
        let _ = write!(s, r#"<text x="{:.1}" y="{:.1}">{}</text>"#, x(i) - 8.0, H - PAD + 14.0, l.level);
    }
    s.push_str("</svg>");
    s
}

fn scenario_section(sc: &ScenarioReport) -> String {
    let mut s = format!(
        r#"<section id="{0}"><h2>{0}</h2><p>{1}<br><b>The doctor must name:</b> {2}</p>"#,
        esc(&sc.name),
        esc(&sc.summary),
        esc(&sc.expect)
    );
    if let Some(why) = &sc.skipped {
        let _ = write!(s, "<p class=bad>Skipped: {}</p></section>", esc(why));
        return s;
    }
    if let Some(e) = &sc.error {
        let _ = write!(s, "<p class=bad>The scenario stopped early: {}</p>", esc(e));
    }
    s.push_str(&verdict_block(sc));
    let _ = write!(s, r#"<div class="charts">{}{}</div>"#, qps_chart(&sc.levels), latency_chart(&sc.levels));
    s.push_str("<table><tr><th>level</th><th>requests/conc.</th><th>QPS</th><th>CV</th><th>p50</th><th>p95</th><th>p99</th><th>max</th><th>errors</th><th>consistent</th></tr>");
    for l in &sc.levels {
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}/{}</td><td>{:.0}</td><td>{}</td><td>{:.2} ms</td><td>{:.2} ms</td><td>{:.2} ms</td><td>{:.2} ms</td><td>{}</td><td class={}>{}</td></tr>",
            l.level,
            l.requests,
            l.concurrency,
            l.qps_median,
            l.qps_cv.map(|c| format!("{:.1}%", c * 100.0)).unwrap_or_else(|| "-".into()),
            l.p50 * 1e3,
            l.p95 * 1e3,
            l.p99 * 1e3,
            l.max * 1e3,
            l.errors,
            if l.consistent { "ok" } else { "bad" },
            if l.consistent { "yes" } else { "no" }
        );
    }
    s.push_str("</table>");
    if !sc.headline.is_empty() {
        s.push_str("<h3>At the peak level</h3><table class=fig><tr><th>process</th><th>figure</th><th>value</th></tr>");
        for f in &sc.headline {
            let _ = write!(
                s,
                "<tr{}><td>{}</td><td>{}</td><td>{}</td></tr>",
                if backs_verdict(sc, f) { " class=backs" } else { "" },
                esc(&f.process),
                esc(&f.label),
                esc(&format_value(f))
            );
        }
        s.push_str("</table>");
    }
    let shots: Vec<_> = sc.flamegraphs.iter().filter_map(|c| c.path.as_ref().map(|p| (c, p))).collect();
    if !shots.is_empty() {
        s.push_str("<h3>Flamegraphs at the peak level</h3><div class=flames>");
        for (c, p) in shots {
            let _ = write!(
                s,
                r#"<figure><a href="{0}"><object data="{0}" type="image/svg+xml"></object></a><figcaption>{1} — {2}</figcaption></figure>"#,
                esc(p),
                esc(&c.process),
                esc(&c.kind)
            );
        }
        s.push_str("</div>");
    }
    if !sc.snapshots.is_empty() {
        s.push_str("<p>Metric snapshots: ");
        let links: Vec<String> = sc.snapshots.iter().map(|p| format!(r#"<a href="{0}">{0}</a>"#, esc(p))).collect();
        s.push_str(&links.join(", "));
        s.push_str("</p>");
    }
    s.push_str("</section>");
    s
}

/// The doctor's verdict, above the figures: ✓/✗ against the scenario, the ranked findings
/// with their evidence, and what to change.
fn verdict_block(sc: &ScenarioReport) -> String {
    let (Some(v), Some(check)) = (&sc.verdict, &sc.check) else { return String::new() };
    let mut s = format!(
        r#"<div class="verdict {}"><p><b>{} Doctor:</b> {}</p><p class=small>expected {}; ranked first: {}</p>"#,
        if check.named { "ok" } else { "bad" },
        if check.named { "✓" } else { "✗" },
        esc(&v.headline),
        esc(&check.expected),
        esc(&check.got)
    );
    let reported: Vec<_> = v.reported().collect();
    if !reported.is_empty() {
        s.push_str("<table class=findings><tr><th>finding</th><th>score</th><th>where</th><th>evidence</th></tr>");
        for f in reported {
            let evidence: Vec<String> = f.evidence.iter().map(|e| esc(&e.formatted())).collect();
            let cause = f.cause.as_ref().map(|c| format!("<br><i>symptom of {}</i>", esc(c))).unwrap_or_default();
            let _ = write!(
                s,
                "<tr class={}><td>{}</td><td>{:.0} {}</td><td>{}</td><td>{}{cause}<br><b>change:</b> {}<br><code>{}</code></td></tr>",
                f.severity.as_str(),
                esc(f.id),
                f.score,
                f.severity.as_str(),
                esc(&f.place.to_string()),
                evidence.join(", "),
                esc(&f.recommendation),
                esc(&f.flame)
            );
        }
        s.push_str("</table>");
    }
    s.push_str("</div>");
    s
}

/// Whether a headline figure backs the top finding (same process, and its label names the
/// finding's resource): those rows are highlighted.
fn backs_verdict(sc: &ScenarioReport, f: &crate::lab::headline::Figure) -> bool {
    let Some(top) = sc.verdict.as_ref().and_then(|v| v.top()) else { return false };
    f.process == top.place.process && (top.place.resource.is_empty() || f.label.contains(&top.place.resource))
}

pub fn render(report: &LabReport) -> String {
    let mut s = String::from(
        r#"<!doctype html><html><head><meta charset="utf-8"><title>pinchpoint lab report</title><style>
body{font:14px/1.4 system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}
h2{border-bottom:1px solid #ccc;margin-top:2em}table{border-collapse:collapse;margin:.5em 0}
td,th{padding:2px 8px;border-bottom:1px solid #eee;text-align:right}th{background:#f4f4f4}
td:first-child,th:first-child{text-align:left}.bad{color:#b00;font-weight:bold}.ok{color:#080}
.charts{display:flex;gap:1em;flex-wrap:wrap}.chart{width:420px;height:180px;background:#fafafa;border:1px solid #eee}
.chart text{font-size:10px;fill:#444}.bar{fill:#4a7fc1}.bar.bad{fill:#c14a4a}.grid{stroke:#ddd}
.line{fill:none;stroke-width:2}.l0{stroke:#4a7fc1;fill:#4a7fc1}.l1{stroke:#e39b2f;fill:#e39b2f}.l2{stroke:#c14a4a;fill:#c14a4a}
polyline.line{fill:none}.flames figure{display:inline-block;margin:.5em}.flames object{width:520px;height:300px;border:1px solid #ddd}
nav a{margin-right:1em}.verdict{border-left:4px solid #080;padding:.2em 1em;background:#f6fbf6}
.verdict.bad{border-color:#b00;background:#fdf4f4}.small{font-size:12px;color:#555}tr.warning td:first-child{color:#b00}
tr.info td:first-child{color:#b60}tr.backs td{background:#fff3c4;font-weight:bold}.fig td:nth-child(2),.fig th:nth-child(2){text-align:left}
.findings td,.findings th{text-align:left;vertical-align:top}.findings td:first-child{white-space:nowrap}</style></head><body><h1>pinchpoint lab report</h1>"#,
    );
    let _ = write!(
        s,
        "<p>pinchpoint {} · {} · {} repeat(s) per level. Each level runs with fresh resource ids; <i>consistent</i> means the store moved by exactly the acknowledged increments.</p><nav>",
        report.version,
        if report.quick { "quick ladder" } else { "full ladder" },
        report.repeats
    );
    for sc in &report.scenarios {
        let _ = write!(s, r##"<a href="#{0}">{0}</a>"##, esc(&sc.name));
    }
    s.push_str("</nav>");
    let _ = write!(s, "<p><b>{}</b></p>", esc(&crate::lab::report::summary(report)));
    // Peak QPS of every scenario side by side.
    let peaks: Vec<(String, f64)> =
        report.scenarios.iter().filter_map(|sc| sc.levels.last().map(|l| (sc.name.clone(), l.qps_median))).collect();
    if !peaks.is_empty() {
        let max = peaks.iter().map(|p| p.1).fold(1.0, f64::max);
        s.push_str("<h2>Peak-level throughput by scenario</h2><svg viewBox=\"0 0 760 ");
        let _ = write!(s, "{}\" style=\"width:760px\">", 22 * peaks.len() + 10);
        for (i, (name, q)) in peaks.iter().enumerate() {
            let w = 520.0 * q / max;
            let y = 5 + 22 * i;
            let _ = write!(
                s,
                r##"<text x="0" y="{}" font-size="12">{}</text><rect x="160" y="{y}" width="{w:.1}" height="16" fill="#4a7fc1"/><text x="{:.1}" y="{}" font-size="12">{q:.0} QPS</text>"##,
                y + 12,
                esc(name),
                166.0 + w,
                y + 12
            );
        }
        s.push_str("</svg>");
    }
    for sc in &report.scenarios {
        s.push_str(&scenario_section(sc));
    }
    s.push_str("</body></html>\n");
    s
}
