//! The targets per scenario and how a result document measures up to them.

use serde_json::Value;

/// How a figure is compared with its target.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Bound {
    /// At most this value.
    AtMost(f64),
    /// At most this factor times another field of the same document.
    AtMostTimes(&'static str, f64),
}

/// One target of a scenario.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Target {
    /// The result field it applies to (for a per-node array, its largest element).
    pub field: &'static str,
    /// The bound.
    pub bound: Bound,
    /// The number of apps the target is stated for, when it is stated for one.
    pub at_apps: Option<u64>,
}

/// Whether a figure meets its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within the bound.
    Met,
    /// Outside the bound.
    Missed,
    /// The document has no (numeric) figure for the field.
    NoFigure,
}

impl Verdict {
    /// How the verdict is written in the report.
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Met => "met",
            Verdict::Missed => "**missed**",
            Verdict::NoFigure => "no figure",
        }
    }
}

/// The targets of `scenario` (3 nodes on 2 cores, as the issue states them).
pub fn targets(scenario: &str) -> &'static [Target] {
    const TEN_K: Option<u64> = Some(10_000);
    match scenario {
        "churn" => &[Target {
            field: "p99_ms",
            bound: Bound::AtMost(2000.0),
            at_apps: TEN_K,
        }],
        "failover" => &[
            Target {
                field: "failover_max_s",
                bound: Bound::AtMost(5.0),
                at_apps: None,
            },
            Target {
                field: "lost_acknowledged_writes",
                bound: Bound::AtMost(0.0),
                at_apps: None,
            },
            Target {
                field: "concurrent_operations",
                bound: Bound::AtMost(0.0),
                at_apps: None,
            },
        ],
        "scale-out" | "scale_out" => &[
            Target {
                field: "shards_moved",
                bound: Bound::AtMostTimes("ideal_moved", 1.1),
                at_apps: None,
            },
            Target {
                field: "max_reconcile_gap_s",
                bound: Bound::AtMost(5.0),
                at_apps: None,
            },
        ],
        "steady" => &[Target {
            field: "rss_mb",
            bound: Bound::AtMost(150.0),
            at_apps: TEN_K,
        }],
        _ => &[],
    }
}

/// The figure a target reads from `v`: a number, or the largest number of an array of
/// numbers (a per-node figure).
pub fn figure(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .map(Value::as_f64)
            .collect::<Option<Vec<f64>>>()
            .and_then(|xs| xs.into_iter().reduce(f64::max)),
        _ => None,
    }
}

impl Target {
    /// The target as written in the report, e.g. `≤ 2000 (at 10000 apps)`.
    pub fn describe(&self) -> String {
        let bound = match self.bound {
            Bound::AtMost(0.0) => "0".to_string(),
            Bound::AtMost(v) => format!("≤ {}", super::svg::tick_label(v)),
            Bound::AtMostTimes(field, k) => format!("≤ {k} × {field}"),
        };
        let max = if matches!(self.field, "rss_mb" | "cpu_percent") {
            " per node"
        } else {
            ""
        };
        match self.at_apps {
            Some(a) => format!("{bound}{max} (at {a} apps)"),
            None => format!("{bound}{max}"),
        }
    }

    /// The verdict as written in the report; a target stated for another number of apps
    /// than the run had says so, as the run then neither proves nor disproves it.
    pub fn verdict_text(&self, doc: &Value) -> String {
        let label = self.check(doc).label();
        match (self.at_apps, doc["apps"].as_u64()) {
            (Some(want), Some(had)) if want != had => {
                format!("{label} at {had} apps (target is for {want})")
            }
            _ => label.to_string(),
        }
    }

    /// How `doc` measures up.
    pub fn check(&self, doc: &Value) -> Verdict {
        let Some(value) = figure(&doc[self.field]) else {
            return Verdict::NoFigure;
        };
        let limit = match self.bound {
            Bound::AtMost(v) => v,
            Bound::AtMostTimes(field, k) => match figure(&doc[field]) {
                Some(other) => other * k,
                None => return Verdict::NoFigure,
            },
        };
        if value <= limit + 1e-9 {
            Verdict::Met
        } else {
            Verdict::Missed
        }
    }
}

/// The fields a result of `scenario` must have (the names); none for scenarios
/// this report does not know.
pub fn required_fields(scenario: &str) -> Vec<&'static str> {
    let own: &[&str] = match scenario {
        "sync" => &["seconds_to_healthy", "timeline"],
        "steady" => &["cpu_percent", "rss_mb"],
        "churn" => &["commits", "p50_ms", "p99_ms", "max_ms", "samples_ms"],
        "drift" => &["mutations", "heal_p50_ms", "heal_p99_ms", "samples_ms"],
        "failover" => &[
            "kills",
            "failover_p50_s",
            "failover_max_s",
            "lost_acknowledged_writes",
            "concurrent_operations",
        ],
        "scale-out" | "scale_out" => &[
            "nodes_before",
            "nodes_after",
            "shards",
            "shards_moved",
            "ideal_moved",
            "max_reconcile_gap_s",
        ],
        _ => return Vec::new(),
    };
    let mut fields = vec![
        "complete",
        "apps",
        "clusters",
        "nodes",
        "resources_per_app",
        "machine",
        "command",
    ];
    fields.extend_from_slice(own);
    fields
}
