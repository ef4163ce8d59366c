//! Reports built from result documents modelled on real outputs of the scenarios.

use serde_json::{json, Value};

use super::svg::{self, Axis, LinePlot, Series};
use super::targets::{self, Verdict};
use super::*;

/// A `sync` result as `flotilla-loadtest sync --apps 6 --clusters 2` writes it.
fn sync_doc() -> Value {
    json!({
        "scenario": "sync", "complete": true, "interrupted": false,
        "not_synced_and_healthy": [], "apps": 6, "clusters": 2, "resources_per_app": 1,
        "nodes": 3, "workers": 32, "seconds_nodes_ready": 7.7, "seconds_to_applied": 0.1,
        "seconds_to_synced": 4.1, "seconds_to_healthy": 4.1, "apps_per_sec": 1.5,
        "max_over_mean_apps_per_node": 1.0,
        "peak_rss_mb": [119.9, 118.1, 117.9], "cpu_seconds": [1.9, 1.4, 1.4],
        "per_node": [
            {"node": 1, "shards": 1366, "apps": 2, "peak_rss_mb": 119.9, "cpu_seconds": 1.9},
            {"node": 2, "shards": 1365, "apps": 2, "peak_rss_mb": 118.1, "cpu_seconds": 1.4},
            {"node": 3, "shards": 1365, "apps": 2, "peak_rss_mb": 117.9, "cpu_seconds": 1.4}
        ],
        "timeline": [[0.1, 0, 0], [0.6, 0, 0], [1.2, 2, 1], [3.6, 5, 4], [4.1, 6, 6]],
        "machine": {"cores": 2, "cpu_model": "AMD EPYC", "memory_gib": 23.5,
                    "load_average": [1.5, 1.2, 0.9]},
        "command": "flotilla-loadtest sync --apps 6 --clusters 2 --json sync.json"
    })
}

/// A `steady` result at 10,000 apps whose largest node is over the RSS target.
fn steady_doc() -> Value {
    json!({
        "scenario": "steady", "complete": true, "apps": 10000, "clusters": 100,
        "resources_per_app": 1, "nodes": 3, "duration_s": 60.2, "resync_seconds": 30,
        "cpu_percent": [12.5, 9.75, 10.0], "rss_mb": [140.0, 162.4, 120.0],
        "reconciliations": 20000,
        "per_node": [
            {"node": 1, "cpu_percent": 12.5, "rss_mb": 140.0, "rss_mb_mean": 130.2},
            {"node": 2, "cpu_percent": 9.75, "rss_mb": 162.4, "rss_mb_mean": 150.0},
            {"node": 3, "cpu_percent": 10.0, "rss_mb": 120.0, "rss_mb_mean": 110.0}
        ],
        "machine": {"cores": 2, "cpu_model": "AMD EPYC", "memory_gib": 23.5,
                    "load_average": [1.5, 1.2, 0.9]},
        "command": "flotilla-loadtest steady --apps 10000 --clusters 100"
    })
}

/// A `churn` result with its latency samples.
fn churn_doc() -> Value {
    let samples: Vec<f64> = (1..=200).map(|i| f64::from(i) * 5.0).collect();
    json!({
        "scenario": "churn", "complete": true, "apps": 10000, "clusters": 100,
        "resources_per_app": 1, "nodes": 3, "commits": 200, "p50_ms": 500.0,
        "p99_ms": 990.0, "max_ms": 1000.0, "samples_ms": samples,
        "machine": {"cores": 2, "cpu_model": "AMD EPYC", "memory_gib": 23.5,
                    "load_average": [1.5, 1.2, 0.9]},
        "command": "flotilla-loadtest churn --apps 10000"
    })
}

/// The `store` benchmark's document (no machine, no command), with its etcd comparison.
fn store_doc() -> Value {
    json!({"scenario":"flotilla-store","nodes":3,"writers":64,"writes":20000,
           "value_bytes":256,"writes_per_sec":5120.4,"p50_ms":11.2,"p99_ms":30.5,
           "against":{"scenario":"etcd","nodes":3,"writers":64,"writes":20000,
                      "value_bytes":256,"writes_per_sec":4000.0,"p50_ms":14.0,"p99_ms":40.0},
           "ratio_writes_per_sec":1.28})
}

fn doc(file: &str, doc: Value) -> Document {
    Document {
        file: file.into(),
        doc,
    }
}

/// The table row of Markdown `md` whose first cell is `first`, as its cells.
fn row(md: &str, first: &str) -> Vec<String> {
    md.lines()
        .find(|l| l.starts_with(&format!("| {first} |")))
        .unwrap_or_else(|| panic!("no row `{first}` in:\n{md}"))
        .trim()
        .strip_prefix('|')
        .and_then(|l| l.strip_suffix('|'))
        .expect("a table row")
        .split('|')
        .map(|c| c.trim().to_string())
        .collect()
}

/// Checks `text` is well-formed XML as far as SVG needs: balanced, properly nested tags,
/// quoted attribute values, and no raw `<` or stray `&` in text. Returns the element names.
fn check_xml(text: &str) -> Vec<String> {
    let mut stack: Vec<String> = Vec::new();
    let mut elements = Vec::new();
    let mut rest = text;
    if let Some(after) = rest.strip_prefix("<?xml") {
        rest = &after[after.find("?>").expect("end of the XML declaration") + 2..];
    }
    while let Some(open) = rest.find('<') {
        check_text(&rest[..open]);
        let close = rest[open..].find('>').expect("an unclosed tag") + open;
        let tag = &rest[open + 1..close];
        rest = &rest[close + 1..];
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(
                stack.pop().as_deref(),
                Some(name.trim()),
                "mismatched </{name}>"
            );
            continue;
        }
        let self_closing = tag.ends_with('/');
        let tag = tag.trim_end_matches('/');
        let name: String = tag.chars().take_while(|c| !c.is_whitespace()).collect();
        assert!(
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == ':'),
            "bad element name in <{tag}>"
        );
        // Attributes: name="value" pairs, values without `<` or `"`.
        let mut attrs = tag[name.len()..].trim();
        while !attrs.is_empty() {
            let eq = attrs
                .find("=\"")
                .unwrap_or_else(|| panic!("unquoted attribute in <{tag}>"));
            let end = attrs[eq + 2..].find('"').expect("unterminated attribute") + eq + 2;
            check_text(&attrs[eq + 2..end]);
            attrs = attrs[end + 1..].trim_start();
        }
        elements.push(name.clone());
        if !self_closing {
            stack.push(name);
        }
    }
    check_text(rest);
    assert!(stack.is_empty(), "unclosed elements {stack:?}");
    elements
}

fn check_text(t: &str) {
    assert!(!t.contains('<'), "raw < in {t:?}");
    let mut parts = t.split('&').skip(1);
    for p in parts.by_ref() {
        let ent = p.split(';').next().unwrap_or("");
        assert!(
            ["amp", "lt", "gt", "quot", "apos"].contains(&ent) && p.contains(';'),
            "stray & in {t:?}"
        );
    }
}

#[test]
fn the_xml_check_rejects_broken_documents() {
    for bad in [
        "<svg><g></svg>",
        "<svg a=1/>",
        "<svg>a < b</svg>",
        "<svg>&x</svg>",
        "<svg>",
    ] {
        let r = std::panic::catch_unwind(|| check_xml(bad));
        assert!(r.is_err(), "accepted {bad}");
    }
    assert_eq!(check_xml(r#"<svg a="1"><g/>x &amp; y</svg>"#), ["svg", "g"]);
}

#[test]
fn nice_ticks_cover_the_data() {
    assert_eq!(svg::nice_step(10.0, 5), 2.0);
    assert_eq!(svg::nice_step(0.9, 5), 0.2);
    assert_eq!(svg::nice_step(7000.0, 5), 2000.0);
    let a = Axis::covering(0.0, 9.3);
    assert_eq!((a.min, a.max), (0.0, 10.0));
    assert_eq!(a.ticks, [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
    // One value only still gives a range around it.
    let a = Axis::covering(5.0, 5.0);
    assert!(a.min < 5.0 && a.max > 5.0, "{a:?}");
    assert_eq!(svg::tick_label(0.30000000000000004), "0.3");
    assert_eq!(svg::tick_label(2000.0), "2000");
}

#[test]
fn a_plot_is_well_formed_svg_with_its_lines_and_labels() {
    let plot = LinePlot {
        title: "p99 < 2 s & more".into(),
        x_label: "seconds".into(),
        y_label: "apps".into(),
        series: vec![
            Series {
                name: "Synced".into(),
                points: vec![(0.0, 0.0), (1.0, 3.0), (2.0, 6.0), (f64::NAN, 1.0)],
            },
            Series {
                name: "Healthy".into(),
                points: vec![(0.0, 0.0), (2.0, 5.0)],
            },
        ],
        y_range: None,
    };
    let text = plot.render();
    let elements = check_xml(&text);
    assert_eq!(elements[0], "svg");
    assert_eq!(elements.iter().filter(|e| *e == "polyline").count(), 2);
    assert!(text.contains("p99 &lt; 2 s &amp; more"), "{text}");
    assert!(text.contains(">Synced<") && text.contains(">Healthy<"));
    // Three finite points of the first series are drawn; the NaN point is left out.
    let first = text
        .lines()
        .find(|l| l.starts_with("<polyline"))
        .expect("polyline");
    let points = first.split("points=\"").nth(1).expect("points");
    assert_eq!(points.split_whitespace().count(), 3, "{first}");
    assert!(!text.contains("NaN"));
}

#[test]
fn long_series_are_thinned_keeping_both_ends() {
    let points: Vec<(f64, f64)> = (0..10_000).map(|i| (f64::from(i), 1.0)).collect();
    let thin = svg::thin(&points, 100);
    assert_eq!(thin.len(), 100);
    assert_eq!(thin[0].0, 0.0);
    assert_eq!(thin[99].0, 9999.0);
    let cdf = svg::cdf(&[3.0, 1.0, 2.0]);
    assert_eq!(cdf.first(), Some(&(1.0, 0.0)));
    assert_eq!(cdf.last(), Some(&(3.0, 1.0)));
}

#[test]
fn targets_are_met_or_missed_from_the_figures() {
    let steady = steady_doc();
    let t = &targets::targets("steady")[0];
    // The largest node (162.4 MB) is over 150 MB.
    assert_eq!(t.check(&steady), Verdict::Missed);
    let mut ok = steady.clone();
    ok["rss_mb"] = json!([100.0, 149.9, 120.0]);
    assert_eq!(t.check(&ok), Verdict::Met);
    ok["rss_mb"] = json!("lots");
    assert_eq!(t.check(&ok), Verdict::NoFigure);

    let scale = json!({"scenario": "scale-out", "shards_moved": 1200, "ideal_moved": 1100,
                       "max_reconcile_gap_s": 4.0});
    let [moved, gap] = targets::targets("scale-out") else {
        panic!("two scale-out targets")
    };
    assert_eq!(moved.check(&scale), Verdict::Met); // 1200 ≤ 1210
    assert_eq!(gap.check(&scale), Verdict::Met);
    let over = json!({"shards_moved": 1300, "ideal_moved": 1100});
    assert_eq!(moved.check(&over), Verdict::Missed);
    assert_eq!(moved.check(&json!({"shards_moved": 1})), Verdict::NoFigure);

    let failover = json!({"failover_max_s": 3.0, "lost_acknowledged_writes": 1,
                          "concurrent_operations": 0});
    let verdicts: Vec<Verdict> = targets::targets("failover")
        .iter()
        .map(|t| t.check(&failover))
        .collect();
    assert_eq!(verdicts, [Verdict::Met, Verdict::Missed, Verdict::Met]);
    assert!(targets::targets("made-up").is_empty());

    // A run at another size than the target's says so next to the verdict.
    let mut small = steady_doc();
    small["apps"] = json!(1000);
    assert_eq!(
        t.verdict_text(&small),
        "**missed** at 1000 apps (target is for 10000)"
    );
    assert_eq!(t.verdict_text(&steady), "**missed**");
}

#[test]
fn the_report_tables_show_figures_targets_and_per_node_rows() {
    let docs = [
        doc("churn.json", churn_doc()),
        doc("steady.json", steady_doc()),
        doc("sync.json", sync_doc()),
    ];
    let r = render(&docs, &[], "report");
    let md = &r.markdown;
    // One machine (the load average is per result).
    assert!(
        md.contains("## Machine\n\n- 2 cores, AMD EPYC, 23.5 GiB memory\n\n"),
        "{md}"
    );
    assert!(
        md.contains("Machine: 2 cores, AMD EPYC, 23.5 GiB memory, load average 1.5 / 1.2 / 0.9"),
        "{md}"
    );
    assert!(
        md.contains("10000 apps over 100 clusters, 1 resources per app, 3 nodes; complete: yes.")
    );
    assert!(
        !md.lines().any(|l| l.starts_with("| apps |")),
        "sizes are in the heading line: {md}"
    );
    // The overview of targets.
    assert!(md.contains("| steady | `steady.json` | 10000 | rss_mb | 140, 162.4, 120 | ≤ 150 per node (at 10000 apps) | **missed** |"), "{md}");
    assert!(
        md.contains(
            "| churn | `churn.json` | 10000 | p99_ms | 990 | ≤ 2000 (at 10000 apps) | met |"
        ),
        "{md}"
    );
    // Each result's figures, with the target next to the figure it applies to.
    assert_eq!(
        row(md, "cpu_percent"),
        ["cpu_percent", "12.5, 9.75, 10", "", ""]
    );
    assert_eq!(
        row(md, "seconds_to_healthy"),
        ["seconds_to_healthy", "4.1", "", ""]
    );
    assert_eq!(row(md, "commits"), ["commits", "200", "", ""]);
    assert!(md.contains("```sh\nflotilla-loadtest steady --apps 10000 --clusters 100\n```"));
    // Per-node tables, columns in order of appearance.
    assert!(
        md.contains("| node | cpu_percent | rss_mb | rss_mb_mean |"),
        "{md}"
    );
    assert!(md.contains("| 2 | 9.75 | 162.4 | 150 |"), "{md}");
    assert!(md.contains("| node | shards | apps | peak_rss_mb | cpu_seconds |"));
    // Samples and timelines are plotted, not tabulated.
    assert!(!md.contains("| samples_ms |") && !md.contains("| timeline |"));
    assert!(
        md.contains(
            "From `samples_ms` (200 samples): p50 500 ms, p90 900 ms, p99 990 ms, max 1000 ms."
        ),
        "{md}"
    );
    assert!(md.contains("![churn: distribution of `samples_ms`](report-churn-latency.svg)"));
    assert!(md.contains("![sync: apps synced over time](report-sync-timeline.svg)"));
    let names: Vec<&str> = r.plots.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["report-churn-latency.svg", "report-sync-timeline.svg"]
    );
    for (name, svg) in &r.plots {
        let elements = check_xml(svg);
        assert!(elements.contains(&"polyline".to_string()), "{name}");
    }
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
}

#[test]
fn unknown_and_store_results_get_a_generic_table() {
    let odd = json!({"scenario": "soak", "hours": 2, "ok": true, "note": "a | b",
                     "nested": {"x": 1}, "rows": [{"a": 1}]});
    let docs = [doc("soak.json", odd), doc("store.json", store_doc())];
    let r = render(&docs, &[], "r");
    let md = &r.markdown;
    assert_eq!(row(md, "hours"), ["hours", "2", "", ""]);
    assert_eq!(row(md, "ok"), ["ok", "yes", "", ""]);
    assert!(md.contains("| note | a \\| b | | |"), "{md}");
    assert_eq!(row(md, "nested.x"), ["nested.x", "1", "", ""]);
    assert!(!md.contains("| rows |"));
    // The store document: its own figures and its comparison, flattened.
    assert_eq!(
        row(md, "writes_per_sec"),
        ["writes_per_sec", "5120.4", "", ""]
    );
    assert_eq!(row(md, "against.p99_ms"), ["against.p99_ms", "40", "", ""]);
    assert!(md.contains("Command: not recorded."));
    assert!(md.contains("- not recorded"));
    assert!(!md.contains("## Targets"), "no scenario with targets");
    assert!(r.plots.is_empty());
}

#[test]
fn missing_required_fields_are_warned_about_not_fatal() {
    let mut steady = steady_doc();
    steady.as_object_mut().map(|m| m.remove("rss_mb"));
    let r = render(&[doc("steady.json", steady)], &[], "r");
    assert_eq!(
        r.warnings,
        ["steady.json: the steady result has no `rss_mb`"]
    );
    assert!(r
        .markdown
        .contains("| rss_mb | - | ≤ 150 per node (at 10000 apps) | no figure |"));
    assert!(r
        .markdown
        .contains("## Warnings\n\n- steady.json: the steady result has no `rss_mb`"));
}

#[test]
fn a_directory_of_results_becomes_a_report_with_its_plots() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("results");
    std::fs::create_dir(&input).expect("mkdir");
    let write = |name: &str, text: &str| std::fs::write(input.join(name), text).expect("write");
    write("sync.json", &sync_doc().to_string());
    write("churn.json", &churn_doc().to_string());
    write("broken.json", "{\"scenario\": \"churn\", ");
    write("list.json", "[1, 2]");
    write("other.json", "{\"hello\": 1}");
    write("notes.txt", "not a result");
    let out = dir.path().join("out/report.md");
    let r = write_report(&input, &out).expect("report");
    let md = std::fs::read_to_string(&out).expect("report written");
    assert_eq!(md, r.markdown);
    for name in ["report-sync-timeline.svg", "report-churn-latency.svg"] {
        let svg = std::fs::read_to_string(dir.path().join("out").join(name)).expect(name);
        check_xml(&svg);
    }
    // Each bad file is named with what is wrong with it, and the rest is reported.
    assert_eq!(r.warnings.len(), 3, "{:?}", r.warnings);
    let w = r.warnings.join("\n");
    assert!(
        w.contains("broken.json: not valid JSON: EOF while parsing"),
        "{w}"
    );
    assert!(w.contains("list.json: not a JSON object"), "{w}");
    assert!(w.contains("other.json: no `scenario` field"), "{w}");
    assert!(!w.contains("notes.txt"));
    assert!(md.contains("## sync — `sync.json`") && md.contains("## churn — `churn.json`"));
}

#[test]
fn no_results_or_no_directory_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("bad.json"), "nope").expect("write");
    let out = dir.path().join("r.md");
    let e = write_report(dir.path(), &out).expect_err("nothing to report");
    assert!(
        matches!(e, ReportError::NoResults { skipped: 1, .. }),
        "{e}"
    );
    let missing = dir.path().join("missing");
    let e = write_report(&missing, &out).expect_err("no directory");
    assert!(
        e.to_string().contains("cannot read the results directory"),
        "{e}"
    );
    assert!(e.to_string().contains("missing"), "{e}");
}
