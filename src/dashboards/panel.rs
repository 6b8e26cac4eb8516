//! Grafana 10 dashboard and panel JSON. Every panel is built through [`Panel`], so the
//! conventions (templated datasource, unit, description, pprof data links) hold by
//! construction; `tests/dashboards_lint.rs` checks the written files anyway.

use serde_json::{json, Value};

/// The datasource reference every panel and query uses: the `datasource` template variable,
/// never a fixed uid, so the dashboards work against any Prometheus a user picks.
pub fn datasource() -> Value {
    json!({"type": "prometheus", "uid": "${datasource}"})
}

/// One PromQL query of a panel.
#[derive(Clone, Debug)]
pub struct Target {
    pub expr: String,
    pub legend: String,
    /// Instant table query (ranking tables) rather than a range.
    pub instant: bool,
    /// `heatmap` for bucket queries, `table` for instant tables, else `time_series`.
    pub format: &'static str,
}

impl Target {
    pub fn range(expr: impl Into<String>, legend: impl Into<String>) -> Target {
        Target { expr: expr.into(), legend: legend.into(), instant: false, format: "time_series" }
    }

    pub fn table(expr: impl Into<String>) -> Target {
        Target { expr: expr.into(), legend: String::new(), instant: true, format: "table" }
    }

    pub fn heatmap(expr: impl Into<String>) -> Target {
        Target { expr: expr.into(), legend: "{{le}}".into(), instant: false, format: "heatmap" }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Viz {
    Timeseries,
    Table,
    Heatmap,
    Stat,
}

impl Viz {
    fn as_str(self) -> &'static str {
        match self {
            Viz::Timeseries => "timeseries",
            Viz::Table => "table",
            Viz::Heatmap => "heatmap",
            Viz::Stat => "stat",
        }
    }
}

/// A panel before layout.
#[derive(Clone, Debug)]
pub struct Panel {
    pub title: String,
    pub description: String,
    pub viz: Viz,
    pub unit: &'static str,
    pub targets: Vec<Target>,
    /// Latency panels: show exemplars so a point jumps to its trace.
    pub exemplars: bool,
    /// Colour steps `(value, colour)` above the green base.
    pub thresholds: Vec<(f64, &'static str)>,
    /// Width in grid columns (of 24) and height in rows.
    pub width: u32,
    pub height: u32,
    /// Extra JSON merged into `fieldConfig` / `options`, and transformations.
    pub overrides: Vec<Value>,
    pub options: Option<Value>,
    pub transformations: Vec<Value>,
    /// Stacked areas (shares that add up).
    pub stacked: bool,
}

impl Panel {
    pub fn new(viz: Viz, title: &str, unit: &'static str, description: &str, targets: Vec<Target>) -> Panel {
        Panel {
            title: title.to_string(),
            description: description.to_string(),
            viz,
            unit,
            targets,
            exemplars: false,
            thresholds: Vec::new(),
            width: 12,
            height: 8,
            overrides: Vec::new(),
            options: None,
            transformations: Vec::new(),
            stacked: false,
        }
    }

    pub fn timeseries(title: &str, unit: &'static str, description: &str, targets: Vec<Target>) -> Panel {
        Panel::new(Viz::Timeseries, title, unit, description, targets)
    }

    pub fn with_exemplars(mut self) -> Panel {
        self.exemplars = true;
        self
    }

    pub fn sized(mut self, width: u32, height: u32) -> Panel {
        self.width = width;
        self.height = height;
        self
    }

    pub fn thresholds(mut self, steps: &[(f64, &'static str)]) -> Panel {
        self.thresholds = steps.to_vec();
        self
    }

    pub fn stacked(mut self) -> Panel {
        self.stacked = true;
        self
    }

    /// Data links to the pprof endpoints of the process a series came from: its `instance`
    /// label is the admin listener Prometheus scrapes, which also serves `/debug/pprof`.
    fn links(&self) -> Value {
        let instance = if self.viz == Viz::Table { "${__data.fields.instance}" } else { "${__field.labels.instance}" };
        json!([
            {"title": "CPU flamegraph of this process (10 s profile)", "targetBlank": true,
             "url": format!("http://{instance}/debug/pprof/profile?seconds=10")},
            {"title": "Contention profile of this process (waits by stack)", "targetBlank": true,
             "url": format!("http://{instance}/debug/pprof/contention")}
        ])
    }

    fn steps(&self) -> Value {
        let mut steps = vec![json!({"color": "green", "value": null})];
        steps.extend(self.thresholds.iter().map(|(v, c)| json!({"color": c, "value": v})));
        json!({"mode": "absolute", "steps": steps})
    }

    fn custom(&self) -> Value {
        match self.viz {
            Viz::Timeseries => json!({
                "drawStyle": "line", "lineWidth": 1, "fillOpacity": if self.stacked { 30 } else { 10 },
                "showPoints": "never", "spanNulls": false,
                "stacking": {"mode": if self.stacked { "normal" } else { "none" }, "group": "A"},
                "thresholdsStyle": {"mode": if self.thresholds.is_empty() { "off" } else { "dashed" }}
            }),
            Viz::Table => json!({"align": "auto", "cellOptions": {"type": "auto"}, "inspect": false}),
            Viz::Heatmap | Viz::Stat => json!({}),
        }
    }

    fn default_options(&self) -> Value {
        match self.viz {
            Viz::Timeseries => json!({
                "legend": {"displayMode": "table", "placement": "bottom", "showLegend": true, "calcs": ["mean", "max", "lastNotNull"]},
                "tooltip": {"mode": "multi", "sort": "desc"}
            }),
            Viz::Table => json!({"showHeader": true, "cellHeight": "sm", "footer": {"show": false}}),
            Viz::Heatmap => json!({
                "calculate": false, "yAxis": {"unit": self.unit, "axisPlacement": "left"},
                "cellGap": 1, "color": {"mode": "scheme", "scheme": "Oranges", "scale": "exponential", "exponent": 0.5},
                "tooltip": {"show": true, "yHistogram": true}, "legend": {"show": true},
                "rowsFrame": {"layout": "auto"}, "exemplars": {"color": "rgba(255,0,255,0.7)"}
            }),
            Viz::Stat => json!({
                "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": false},
                "colorMode": "value", "graphMode": "area", "textMode": "auto", "orientation": "auto"
            }),
        }
    }

    /// The panel's JSON at grid position `(x, y)` with `id`.
    pub fn to_json(&self, id: u32, x: u32, y: u32) -> Value {
        let targets: Vec<Value> = self
            .targets
            .iter()
            .enumerate()
            .map(|(i, t)| {
                json!({
                    "refId": ((b'A' + i as u8) as char).to_string(),
                    "datasource": datasource(),
                    "expr": t.expr,
                    "legendFormat": t.legend,
                    "instant": t.instant,
                    "range": !t.instant,
                    "format": t.format,
                    "exemplar": self.exemplars && !t.instant,
                    "editorMode": "code",
                })
            })
            .collect();
        json!({
            "id": id,
            "type": self.viz.as_str(),
            "title": self.title,
            "description": self.description,
            "datasource": datasource(),
            "gridPos": {"h": self.height, "w": self.width, "x": x, "y": y},
            "fieldConfig": {
                "defaults": {
                    "unit": self.unit,
                    "links": self.links(),
                    "thresholds": self.steps(),
                    "color": {"mode": if self.thresholds.is_empty() { "palette-classic" } else { "thresholds" }},
                    "custom": self.custom(),
                },
                "overrides": self.overrides,
            },
            "options": self.options.clone().unwrap_or_else(|| self.default_options()),
            "transformations": self.transformations,
            "targets": targets,
        })
    }
}

/// A dashboard: uid, title, the variables beyond the standard three, and its panels in
/// reading order (laid out left to right, top to bottom).
pub struct Dashboard {
    pub uid: &'static str,
    pub title: &'static str,
    pub description: &'static str,
    /// Extra template variables: `(name, label, PromQL label_values query)`.
    pub variables: Vec<(&'static str, &'static str, String)>,
    pub panels: Vec<Panel>,
}

impl Dashboard {
    fn query_variable(name: &str, label: &str, query: &str) -> Value {
        json!({
            "name": name, "label": label, "type": "query", "datasource": datasource(),
            "query": {"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
            "definition": query, "refresh": 2, "sort": 1, "multi": true, "includeAll": true,
            "current": {}, "hide": 0, "regex": "", "options": [],
        })
    }

    pub fn to_json(&self, variables: &[(&str, &str, String)], alerts_annotation: &str) -> Value {
        let mut vars = vec![json!({
            "name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
            "current": {}, "hide": 0, "refresh": 1, "regex": "", "options": [],
        })];
        vars.extend(variables.iter().chain(self.variables.iter()).map(|(n, l, q)| Self::query_variable(n, l, q)));

        let mut panels = Vec::new();
        let (mut x, mut y, mut row_height) = (0, 0, 0);
        for (i, p) in self.panels.iter().enumerate() {
            if x + p.width > 24 {
                x = 0;
                y += row_height;
                row_height = 0;
            }
            panels.push(p.to_json(i as u32 + 1, x, y));
            x += p.width;
            row_height = row_height.max(p.height);
        }
        json!({
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": ["pinchpoint"],
            "editable": true,
            "graphTooltip": 1,
            "schemaVersion": 39,
            "version": 1,
            "time": {"from": "now-15m", "to": "now"},
            "refresh": "10s",
            "timezone": "browser",
            "templating": {"list": vars},
            "annotations": {"list": [
                {"builtIn": 1, "name": "Annotations & Alerts", "type": "dashboard", "enable": true, "hide": true,
                 "iconColor": "rgba(0, 211, 255, 1)", "datasource": {"type": "grafana", "uid": "-- Grafana --"}},
                {"name": "Firing pinchpoint alerts", "datasource": datasource(), "enable": true, "iconColor": "red",
                 "expr": alerts_annotation, "step": "15s", "titleFormat": "{{alertname}}",
                 "textFormat": "{{instance}} {{lock}}{{pool}}{{task}}{{target}}", "tagKeys": "severity",
                 "useValueForTime": false}
            ]},
            "links": [{"title": "pinchpoint dashboards", "type": "dashboards", "tags": ["pinchpoint"],
                       "asDropdown": true, "includeVars": true, "keepTime": true}],
            "panels": panels,
        })
    }
}
