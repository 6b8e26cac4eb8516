//! The committed dashboards and alert rules: equal to what the generator writes, and clean
//! under Grafana dashboard-linter's rules and mixtool's alert rules (implemented here, since
//! neither binary installs on this machine), with PromQL parsed by `promql-parser`. Then
//! promtool checks the rules and runs their unit tests.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use promql_parser::label::MatchOp;
use promql_parser::parser::{self, Expr};
use serde_json::Value;

use pinchpoint::dashboards;
use pinchpoint::diagnose::findings;
use pinchpoint::metrics::catalog::{self, Kind};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("dashboards")
}

/// Every series name the catalog exposes: families, `_total` counters, histogram series.
fn catalog_series() -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for spec in catalog::ALL {
        let name = spec.exposed_name();
        if spec.kind == Kind::Histogram {
            for suffix in ["_bucket", "_sum", "_count"] {
                names.insert(format!("{name}{suffix}"));
            }
        } else {
            names.insert(name);
        }
    }
    names
}

/// The range `$__rate_interval` is replaced with before parsing, so the AST shows which ranges
/// came from it.
const RATE_INTERVAL: Duration = Duration::from_secs(1234);

/// Substitutes Grafana's variables the way Grafana would, with values the lint recognises.
fn substitute(expr: &str) -> String {
    expr.replace("$__rate_interval", "1234s")
        .replace("$job", "__job__")
        .replace("$instance", "__instance__")
        .replace("$lock", "__lock__")
        .replace("$pool", "__pool__")
}

/// What one expression breaks, with `where_` naming it.
fn lint_expr(where_: &str, raw: &str, dashboard: bool, problems: &mut Vec<String>) {
    let expr = match parser::parse(&substitute(raw)) {
        Ok(e) => e,
        Err(e) => {
            problems.push(format!("{where_}: invalid PromQL ({e}): {raw}"));
            return;
        }
    };
    let known = catalog_series();
    walk(&expr, None, &mut |sel, func, range| {
        let name = sel.name.clone().unwrap_or_default();
        let prometheus_own = name == "ALERTS";
        if !known.contains(&name) && !prometheus_own {
            problems.push(format!("{where_}: {name:?} is not a catalog series"));
        }
        if name.ends_with("_total") && !matches!(func, Some("rate" | "increase")) {
            problems.push(format!("{where_}: counter {name} outside rate()/increase() (in {func:?})"));
        }
        if dashboard {
            for (label, value) in [("job", "__job__"), ("instance", "__instance__")] {
                let ok = sel
                    .matchers
                    .matchers
                    .iter()
                    .any(|m| m.name == label && m.value == value && matches!(m.op, MatchOp::Re(_)));
                if !ok {
                    problems.push(format!("{where_}: {name} lacks {label}=~\"${label}\""));
                }
            }
            if let Some(r) = range {
                if r != RATE_INTERVAL {
                    problems.push(format!("{where_}: {name}[{r:?}] does not use $__rate_interval"));
                }
            }
        }
    });
}

/// What the walk reports per selector: the selector, the function it is an argument of, and
/// its range if it is a range selector.
type Visit<'a> = dyn FnMut(&promql_parser::parser::VectorSelector, Option<&'static str>, Option<Duration>) + 'a;

/// Calls `f(selector, enclosing function, range)` for every selector under `e`.
fn walk(e: &Expr, func: Option<&'static str>, f: &mut Visit<'_>) {
    match e {
        Expr::Aggregate(a) => {
            walk(&a.expr, None, f);
            if let Some(p) = &a.param {
                walk(p, None, f);
            }
        }
        Expr::Unary(u) => walk(&u.expr, None, f),
        Expr::Binary(b) => {
            walk(&b.lhs, None, f);
            walk(&b.rhs, None, f);
        }
        Expr::Paren(p) => walk(&p.expr, None, f),
        Expr::Subquery(s) => walk(&s.expr, None, f),
        Expr::VectorSelector(v) => f(v, func, None),
        Expr::MatrixSelector(m) => f(&m.vs, func, Some(m.range)),
        Expr::Call(c) => {
            for a in &c.args.args {
                walk(a, Some(c.func.name), f);
            }
        }
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
}

fn text(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_str).unwrap_or("").to_string()
}

#[test]
fn committed_files_equal_the_generator_output() {
    let stale = dashboards::stale(&dir());
    assert!(stale.is_empty(), "run `cargo run -- dashboards --out dashboards`: these differ: {stale:?}");
}

#[test]
fn check_names_a_file_that_drifted_and_write_restores_it() {
    let out = std::env::temp_dir().join(format!("pinchpoint-dash-{}", std::process::id()));
    dashboards::write(&out).unwrap();
    assert!(dashboards::stale(&out).is_empty());
    std::fs::write(out.join("locks.json"), "{}").unwrap();
    std::fs::remove_file(out.join("alerts.yml")).unwrap();
    assert_eq!(dashboards::stale(&out), ["locks.json", "alerts.yml"]);
    // The CLI says the same and exits 1.
    let check = Command::new(env!("CARGO_BIN_EXE_pinchpoint"))
        .args(["dashboards", "--check", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(1));
    let printed = String::from_utf8_lossy(&check.stdout);
    assert!(printed.contains("locks.json: differs") && printed.contains("alerts.yml: differs"), "{printed}");
    dashboards::write(&out).unwrap();
    assert!(dashboards::stale(&out).is_empty());
    std::fs::remove_dir_all(&out).unwrap();
}

#[test]
fn dashboards_follow_the_dashboard_linter_rules() {
    let mut problems = Vec::new();
    let mut uids = BTreeSet::new();
    for (file, _) in dashboards::dashboards() {
        let d: Value = serde_json::from_str(&std::fs::read_to_string(dir().join(file)).unwrap()).unwrap();
        for key in ["uid", "title", "description"] {
            if text(&d, key).is_empty() {
                problems.push(format!("{file}: no {key}"));
            }
        }
        uids.insert(text(&d, "uid"));
        let vars = d["templating"]["list"].as_array().cloned().unwrap_or_default();
        let var = |name: &str| vars.iter().find(|v| v["name"] == name).cloned();
        match var("datasource") {
            Some(v) if v["type"] == "datasource" && v["query"] == "prometheus" => {}
            other => problems.push(format!("{file}: no prometheus datasource variable ({other:?})")),
        }
        for name in ["job", "instance"] {
            match var(name) {
                Some(v)
                    if v["multi"] == true && v["includeAll"] == true && v["datasource"]["uid"] == "${datasource}" => {}
                other => problems.push(format!("{file}: variable {name} not multi/All on $datasource ({other:?})")),
            }
        }
        for a in d["annotations"]["list"].as_array().unwrap() {
            if let Some(expr) = a.get("expr").and_then(Value::as_str) {
                lint_expr(&format!("{file} annotation"), expr, true, &mut problems);
            }
        }
        for p in d["panels"].as_array().unwrap() {
            let title = text(p, "title");
            let at = format!("{file} / {title}");
            if title.is_empty() || text(p, "description").len() < 40 {
                problems.push(format!("{at}: title and a description saying how to read it are required"));
            }
            if p["datasource"]["uid"] != "${datasource}" {
                problems.push(format!("{at}: datasource not templated"));
            }
            if text(&p["fieldConfig"]["defaults"], "unit").is_empty() {
                problems.push(format!("{at}: no unit"));
            }
            let links: Vec<String> = p["fieldConfig"]["defaults"]["links"]
                .as_array()
                .map(|l| l.iter().map(|l| text(l, "url")).collect())
                .unwrap_or_default();
            for endpoint in ["/debug/pprof/profile", "/debug/pprof/contention"] {
                if !links.iter().any(|u| u.contains(endpoint)) {
                    problems.push(format!("{at}: no data link to {endpoint}"));
                }
            }
            let targets = p["targets"].as_array().cloned().unwrap_or_default();
            if targets.is_empty() {
                problems.push(format!("{at}: no queries"));
            }
            for t in &targets {
                if t["datasource"]["uid"] != "${datasource}" {
                    problems.push(format!("{at}: query datasource not templated"));
                }
                let expr = text(t, "expr");
                lint_expr(&at, &expr, true, &mut problems);
                // Latency panels let a point jump to its trace.
                let latency = expr.contains("histogram_quantile") && expr.contains("_seconds_bucket");
                if latency && t["exemplar"] != true {
                    problems.push(format!("{at}: latency query without exemplars"));
                }
            }
        }
    }
    let expected: BTreeSet<String> = ["overview", "locks", "pools", "memory", "tasks", "runtime", "counter"]
        .iter()
        .map(|n| format!("pinchpoint-{n}"))
        .collect();
    assert_eq!(uids, expected);
    assert!(problems.is_empty(), "{} problems:\n{}", problems.len(), problems.join("\n"));
}

#[test]
fn the_linter_catches_what_it_claims_to() {
    let mut p = Vec::new();
    lint_expr("bad", r#"rate(pinchpoint_lock_acquire_total{job=~"$job",instance=~"$instance"}[5m])"#, true, &mut p);
    lint_expr("bad", r#"pinchpoint_lock_acquire_total{job=~"$job",instance=~"$instance"}"#, true, &mut p);
    lint_expr("bad", r#"rate(pinchpoint_nonexistent_total{job=~"$job"}[$__rate_interval])"#, true, &mut p);
    lint_expr("bad", r#"sum(rate(x[1m]"#, true, &mut p);
    let joined = p.join("\n");
    for needle in
        ["does not use $__rate_interval", "outside rate()", "not a catalog series", "lacks instance", "invalid PromQL"]
    {
        assert!(joined.contains(needle), "{needle} not reported:\n{joined}");
    }
}

#[test]
fn every_finding_points_at_a_generated_panel() {
    let generated: Vec<(String, String)> = dashboards::dashboards()
        .into_iter()
        .flat_map(|(_, d)| d.panels.into_iter().map(move |p| (d.uid.to_string(), p.title)))
        .collect();
    for k in findings::KINDS {
        assert!(
            generated.iter().any(|(uid, title)| uid == k.dashboard && title == k.panel),
            "{}: no panel {:?} on {}",
            k.id,
            k.panel,
            k.dashboard
        );
    }
}

#[test]
fn alert_rules_follow_mixtool_rules_and_cover_every_finding() {
    let alerts = dashboards::alerts::all();
    let expected: Vec<String> = findings::KINDS.iter().filter(|k| !k.lab_only).map(|k| k.alert_name()).collect();
    let names: Vec<String> = alerts.iter().map(|a| a.name()).collect();
    assert_eq!(names, expected, "one alert per finding PromQL can express");
    let mut problems = Vec::new();
    for a in &alerts {
        let name = a.name();
        let camel = name.chars().next().is_some_and(|c| c.is_ascii_uppercase())
            && name.chars().all(|c| c.is_ascii_alphanumeric());
        if !camel {
            problems.push(format!("{name}: not CamelCase"));
        }
        if !["info", "warning", "critical"].contains(&a.severity) {
            problems.push(format!("{name}: severity {}", a.severity));
        }
        if a.summary.is_empty() || a.description.is_empty() {
            problems.push(format!("{name}: summary and description required"));
        }
        // The description names the resource the alert is about.
        for (label, _) in &a.resource {
            if !a.description.contains(&format!("$labels.{label}")) {
                problems.push(format!("{name}: description does not name {label}"));
            }
        }
        if !a.runbook_url().ends_with(&format!("docs/doctor.md#{}", a.kind.id)) {
            problems.push(format!("{name}: runbook {}", a.runbook_url()));
        }
        lint_expr(&name, &a.expr, false, &mut problems);
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dir())
        .output()
        .expect("promtool is not installed: run scripts/test.sh, which installs Debian's `prometheus` package");
    let printed = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool {args:?} failed:\n{printed}");
    printed
}

#[test]
fn promtool_checks_the_rules_and_passes_their_unit_tests() {
    let printed = promtool(&["check", "rules", "alerts.yml"]);
    let count = dashboards::alerts::all().len();
    assert!(printed.contains(&format!("SUCCESS: {count} rules found")), "{printed}");
    promtool(&["test", "rules", "alerts_test.yml"]);
    // Each alert has its three cases.
    let tests = std::fs::read_to_string(dir().join("alerts_test.yml")).unwrap();
    for a in dashboards::alerts::all() {
        for case in
            ["fires on its case", "stays quiet on a healthy process", "stays quiet on a process that just restarted"]
        {
            assert!(tests.contains(&format!("\"{} {case}\"", a.name())), "{}: no case {case:?}", a.name());
        }
    }
}

#[test]
fn promtool_accepts_the_prometheus_config() {
    promtool(&["check", "config", "prometheus.yml"]);
}
