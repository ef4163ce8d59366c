//! Result documents to Markdown and SVG text (no I/O: the caller writes the files).

use std::fmt::Write as _;

use serde_json::Value;

use super::svg::{self, LinePlot, Series};
use super::targets;
use super::{Document, Skipped};

/// Fields shown elsewhere than in a result's table of figures.
const NOT_FIGURES: [&str; 8] = [
    "scenario",
    "command",
    "machine",
    "samples_ms",
    "samples_s",
    "timeline",
    "per_node",
    "not_synced_and_healthy",
];
/// Fields of a result's heading line (when it has `apps`), not repeated in its table.
const SIZES: [&str; 5] = ["complete", "apps", "clusters", "resources_per_app", "nodes"];
/// Arrays longer than this are summarized by their length in a table cell.
const LONGEST_LISTED: usize = 16;

/// A rendered report: the Markdown text and the SVG plots it links to.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The Markdown document.
    pub markdown: String,
    /// `(file name, SVG document)` of every plot, to be written next to the Markdown file.
    pub plots: Vec<(String, String)>,
    /// Problems found: skipped files and missing fields (also listed in the Markdown).
    pub warnings: Vec<String>,
}

/// A value as a table cell: numbers with at most three decimals, `-` for null, `|` escaped.
pub fn cell(v: &Value) -> String {
    let text = match v {
        Value::Null => "-".to_string(),
        Value::Bool(b) => if *b { "yes" } else { "no" }.to_string(),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i.to_string(),
            (_, Some(u), _) => u.to_string(),
            (_, _, Some(f)) => svg::tick_label(f),
            _ => n.to_string(),
        },
        Value::String(s) => s.clone(),
        Value::Array(items) if items.len() > LONGEST_LISTED => format!("({} values)", items.len()),
        Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join(", "),
        Value::Object(map) => format!("({} fields)", map.len()),
    };
    text.replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// A file-name-safe form of `s`.
fn slug(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// The machine a result was measured on, in one line (with the load average when `load`).
fn machine_line(m: &Value, load: bool) -> String {
    if !m.is_object() {
        return "not recorded".into();
    }
    let mut parts = vec![format!("{} cores", cell(&m["cores"]))];
    if let Some(model) = m["cpu_model"].as_str() {
        parts.push(model.to_string());
    }
    if m["memory_gib"].is_number() {
        parts.push(format!("{} GiB memory", cell(&m["memory_gib"])));
    }
    if let Some(load) = m["load_average"].as_array().filter(|_| load) {
        parts.push(format!(
            "load average {} (1, 5, 15 min, at the end of the run)",
            load.iter().map(cell).collect::<Vec<_>>().join(" / ")
        ));
    }
    parts.join(", ")
}

/// The `p`-quantile (nearest rank) of sorted `v`.
fn quantile(v: &[f64], p: f64) -> f64 {
    let i = ((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1;
    v[i]
}

/// The latency samples of a document: `(field, unit, values)`.
fn samples(doc: &Value) -> Option<(&'static str, &'static str, Vec<f64>)> {
    [("samples_ms", "ms"), ("samples_s", "s")]
        .into_iter()
        .find_map(|(field, unit)| {
            doc[field].as_array().map(|a| {
                let v: Vec<f64> = a.iter().filter_map(Value::as_f64).collect();
                (field, unit, v)
            })
        })
}

/// `(seconds, synced, synced and healthy)` rows of a `timeline` field.
fn timeline(doc: &Value) -> Option<Vec<(f64, f64, f64)>> {
    let rows = doc["timeline"].as_array()?;
    Some(
        rows.iter()
            .filter_map(|r| {
                let r = r.as_array()?;
                Some((
                    r.first()?.as_f64()?,
                    r.get(1)?.as_f64()?,
                    r.get(2)?.as_f64()?,
                ))
            })
            .collect(),
    )
}

/// Render `docs` (and the `skipped` files) as a report whose plot files are named after
/// `stem` (the Markdown file's name without extension).
pub fn render(docs: &[Document], skipped: &[Skipped], stem: &str) -> Report {
    let mut r = Report::default();
    r.warnings.extend(skipped.iter().map(|s| s.to_string()));
    for d in docs {
        for field in targets::required_fields(d.scenario()) {
            if d.doc[field].is_null() {
                r.warnings.push(format!(
                    "{}: the {} result has no `{field}`",
                    d.file,
                    d.scenario()
                ));
            }
        }
    }

    let md = &mut r.markdown;
    let _ = writeln!(md, "# flotilla load-test report\n");
    let _ = writeln!(
        md,
        "{} result(s). Targets are the issue's, for 3 nodes on 2 cores; a target stated for a \
         number of apps is compared as is with a run at another size, so read it with the run's size.\n",
        docs.len()
    );
    let _ = writeln!(md, "## Machine\n");
    let mut machines: Vec<String> = Vec::new();
    for d in docs {
        let line = machine_line(&d.doc["machine"], false);
        if !machines.contains(&line) {
            machines.push(line);
        }
    }
    for m in &machines {
        let _ = writeln!(md, "- {m}");
    }
    let _ = writeln!(md);

    // Every target of every result in one table first.
    let mut overview = String::new();
    for d in docs {
        for t in targets::targets(d.scenario()) {
            let _ = writeln!(
                overview,
                "| {} | `{}` | {} | {} | {} | {} | {} |",
                d.scenario(),
                d.file,
                cell(&d.doc["apps"]),
                t.field,
                cell(&d.doc[t.field]),
                t.describe(),
                t.verdict_text(&d.doc)
            );
        }
    }
    if !overview.is_empty() {
        let _ = writeln!(md, "## Targets\n");
        let _ = writeln!(
            md,
            "| Scenario | File | Apps | Figure | Value | Target | Verdict |\n|---|---|---:|---|---:|---|---|"
        );
        md.push_str(&overview);
        let _ = writeln!(md);
    }

    for d in docs {
        section(md, &mut r.plots, d, stem);
    }

    if !r.warnings.is_empty() {
        let _ = writeln!(md, "## Warnings\n");
        for w in &r.warnings {
            let _ = writeln!(md, "- {}", w.replace('\n', " "));
        }
        let _ = writeln!(md);
    }
    r
}

/// The section of one result.
fn section(md: &mut String, plots: &mut Vec<(String, String)>, d: &Document, stem: &str) {
    let doc = &d.doc;
    let scenario = d.scenario();
    let _ = writeln!(md, "## {scenario} — `{}`\n", d.file);
    if doc["apps"].is_number() {
        let _ = writeln!(
            md,
            "{} apps over {} clusters, {} resources per app, {} nodes; complete: {}.\n",
            cell(&doc["apps"]),
            cell(&doc["clusters"]),
            cell(&doc["resources_per_app"]),
            cell(&doc["nodes"]),
            cell(&doc["complete"]),
        );
    }
    match doc["command"].as_str() {
        Some(c) => {
            let _ = writeln!(md, "Command:\n\n```sh\n{c}\n```\n");
        }
        None => {
            let _ = writeln!(md, "Command: not recorded.\n");
        }
    }
    if doc["machine"].is_object() {
        let _ = writeln!(md, "Machine: {}.\n", machine_line(&doc["machine"], true));
    }

    let tgts = targets::targets(scenario);
    let _ = writeln!(
        md,
        "| Figure | Value | Target | Verdict |\n|---|---:|---|---|"
    );
    for t in tgts {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} |",
            t.field,
            cell(&doc[t.field]),
            t.describe(),
            t.verdict_text(doc)
        );
    }
    if let Some(map) = doc.as_object() {
        for (k, v) in map {
            let in_heading = doc["apps"].is_number() && SIZES.contains(&k.as_str());
            if in_heading || NOT_FIGURES.contains(&k.as_str()) || tgts.iter().any(|t| t.field == k)
            {
                continue;
            }
            match v {
                Value::Object(inner) => {
                    for (ik, iv) in inner {
                        if !iv.is_object() && !is_rows(iv) {
                            let _ = writeln!(md, "| {k}.{ik} | {} | | |", cell(iv));
                        }
                    }
                }
                v if is_rows(v) => {}
                v => {
                    let _ = writeln!(md, "| {k} | {} | | |", cell(v));
                }
            }
        }
    }
    let _ = writeln!(md);

    if let Some(rows) = doc["per_node"].as_array().filter(|r| !r.is_empty()) {
        per_node_table(md, rows);
    }
    if let Some(stuck) = doc["not_synced_and_healthy"]
        .as_array()
        .filter(|s| !s.is_empty())
    {
        let _ = writeln!(
            md,
            "Not Synced and Healthy at the end: {} app(s) listed in the file.\n",
            stuck.len()
        );
    }

    let base = format!("{}-{}", slug(stem), slug(d.file.trim_end_matches(".json")));
    if let Some((field, unit, values)) = samples(doc) {
        if values.is_empty() {
            let _ = writeln!(md, "`{field}` is empty: no distribution to plot.\n");
        } else {
            let mut sorted = values.clone();
            sorted.sort_by(f64::total_cmp);
            let _ = writeln!(
                md,
                "From `{field}` ({} samples): p50 {} {unit}, p90 {} {unit}, p99 {} {unit}, max {} {unit}.\n",
                sorted.len(),
                svg::tick_label(quantile(&sorted, 0.5)),
                svg::tick_label(quantile(&sorted, 0.9)),
                svg::tick_label(quantile(&sorted, 0.99)),
                svg::tick_label(quantile(&sorted, 1.0)),
            );
            let name = format!("{base}-latency.svg");
            let plot = LinePlot {
                title: format!("{scenario}: distribution of {} samples", sorted.len()),
                x_label: format!("{field} ({unit})"),
                y_label: "fraction of samples at most x".into(),
                series: vec![Series {
                    name: "cumulative fraction".into(),
                    points: svg::cdf(&sorted),
                }],
                y_range: Some((0.0, 1.0)),
            };
            let _ = writeln!(md, "![{scenario}: distribution of `{field}`]({name})\n");
            plots.push((name, plot.render()));
        }
    }
    if let Some(rows) = timeline(doc).filter(|r| !r.is_empty()) {
        let name = format!("{base}-timeline.svg");
        let plot = LinePlot {
            title: format!("{scenario}: apps synced over time"),
            x_label: "seconds from the start of applying".into(),
            y_label: "apps".into(),
            series: vec![
                Series {
                    name: "Synced".into(),
                    points: rows.iter().map(|&(s, a, _)| (s, a)).collect(),
                },
                Series {
                    name: "Synced and Healthy".into(),
                    points: rows.iter().map(|&(s, _, b)| (s, b)).collect(),
                },
            ],
            y_range: doc["apps"].as_f64().map(|a| (0.0, a)),
        };
        let _ = writeln!(md, "![{scenario}: apps synced over time]({name})\n");
        plots.push((name, plot.render()));
    }
}

/// Whether `v` is an array of objects or arrays (rows, not a figure).
fn is_rows(v: &Value) -> bool {
    v.as_array()
        .is_some_and(|a| a.iter().any(|x| x.is_object() || x.is_array()))
}

/// A table of per-node rows; columns in order of first appearance.
fn per_node_table(md: &mut String, rows: &[Value]) {
    let mut columns: Vec<&str> = Vec::new();
    for row in rows {
        for k in row.as_object().into_iter().flat_map(|m| m.keys()) {
            if !columns.contains(&k.as_str()) {
                columns.push(k);
            }
        }
    }
    if columns.is_empty() {
        return;
    }
    let _ = writeln!(md, "Per node:\n");
    let _ = writeln!(md, "| {} |", columns.join(" | "));
    let _ = writeln!(md, "|{}", "---:|".repeat(columns.len()));
    for row in rows {
        let cells: Vec<String> = columns.iter().map(|c| cell(&row[*c])).collect();
        let _ = writeln!(md, "| {} |", cells.join(" | "));
    }
    let _ = writeln!(md);
}
