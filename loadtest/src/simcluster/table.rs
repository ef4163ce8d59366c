//! Server-side `Table` output, as `kubectl get` asks for it with
//! `Accept: application/json;as=Table;v=v1;g=meta.k8s.io`.
//!
//! A [`TableSpec`] holds the columns of one resource type: for custom resources `Name`
//! followed by the served version's `additionalPrinterColumns` (or `Age` when it defines
//! none, as the real API server does); for the common built-in kinds the columns of
//! kube-apiserver's printers (module `printers`); `Name` and `Age` for the others. It is computed
//! once per request (watches keep it) and renders lists, single objects and watch events.

mod printers;
#[cfg(test)]
mod tests;

use super::kinds::ResourceType;
use super::ops::typed;
use super::status::ApiError;
use super::store::Store;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

/// Content type of a Table answer.
pub const TABLE_CT: &str = "application/json;as=Table;v=v1;g=meta.k8s.io";

/// What a row carries besides its cells (query `includeObject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Include {
    /// No object.
    None,
    /// A `PartialObjectMetadata` (the default).
    Metadata,
    /// The whole object.
    Object,
}

/// A request for Table output: which `meta.k8s.io` version and what rows carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableRequest {
    /// `v1` or `v1beta1`.
    pub version: &'static str,
    /// Query `includeObject`.
    pub include: Include,
}

impl TableRequest {
    /// The `Content-Type` of the answer.
    pub fn content_type(&self) -> String {
        format!("application/json;as=Table;v={};g=meta.k8s.io", self.version)
    }
}

/// Whether `Accept` asks for a Table, taking the alternatives in the client's order: the
/// first one simcluster can answer wins (`as=Table` in `meta.k8s.io` v1 or v1beta1, or plain
/// JSON). Alternatives with another `as=` are skipped; when none is answerable the request
/// is served as plain JSON, as before.
pub fn requested(
    accept: &str,
    query: &HashMap<String, String>,
) -> Result<Option<TableRequest>, ApiError> {
    let mut version = None;
    for alt in accept.split(',') {
        let mut parts = alt.split(';').map(str::trim);
        let media = parts.next().unwrap_or_default().to_ascii_lowercase();
        if media != "application/json" && media != "*/*" && media != "application/*" {
            continue;
        }
        let params: HashMap<String, String> = parts
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        match params.get("as").map(String::as_str) {
            None => break,
            Some("Table") if params.get("g").map(String::as_str) == Some("meta.k8s.io") => {
                match params.get("v").map(String::as_str) {
                    Some("v1") => version = Some("v1"),
                    Some("v1beta1") => version = Some("v1beta1"),
                    _ => continue,
                }
                break;
            }
            Some(_) => continue,
        }
    }
    let Some(version) = version else {
        return Ok(None);
    };
    let include = match query.get("includeObject").map(String::as_str) {
        None | Some("") | Some("Metadata") => Include::Metadata,
        Some("Object") => Include::Object,
        Some("None") => Include::None,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "includeObject: unsupported value {other:?}: supported values are None, Metadata, Object"
            )))
        }
    };
    Ok(Some(TableRequest { version, include }))
}

/// How a column's cell is computed.
#[derive(Debug, Clone)]
enum Source {
    /// `metadata.name`.
    Name,
    /// Time since `metadata.creationTimestamp`, as `duration.HumanDuration` prints it.
    Age,
    /// A CRD printer column: a simple JSONPath and the column type.
    Path(Vec<Step>),
    /// A built-in printer.
    Printer(fn(&Value) -> Value),
}

/// One column of a table.
#[derive(Debug, Clone)]
struct Column {
    name: String,
    kind: String,
    format: String,
    description: String,
    priority: i64,
    source: Source,
}

impl Column {
    fn new(name: &str, kind: &str, description: &str, source: Source) -> Column {
        Column {
            name: name.into(),
            kind: kind.into(),
            format: String::new(),
            description: description.into(),
            priority: 0,
            source,
        }
    }

    fn name_column() -> Column {
        Column {
            format: "name".into(),
            ..Column::new(
                "Name",
                "string",
                "The object's name, unique within its namespace (metadata.name).",
                Source::Name,
            )
        }
    }

    fn age_column(kind: &str) -> Column {
        Column::new(
            "Age",
            kind,
            "Time since the object was created (metadata.creationTimestamp).",
            Source::Age,
        )
    }

    fn wide(mut self) -> Column {
        self.priority = 1;
        self
    }

    fn definition(&self) -> Value {
        json!({"name": self.name, "type": self.kind, "format": self.format,
            "description": self.description, "priority": self.priority})
    }

    fn cell(&self, obj: &Value, now: u64) -> Value {
        match &self.source {
            Source::Name => obj["metadata"]["name"].clone(),
            Source::Age => Value::String(age(obj["metadata"]["creationTimestamp"].as_str(), now)),
            Source::Path(steps) => match resolve(obj, steps) {
                Some(v) => typed_cell(&self.kind, v, now),
                None => Value::Null,
            },
            Source::Printer(f) => f(obj),
        }
    }
}

/// The columns of one resource type.
#[derive(Debug, Clone)]
pub struct TableSpec {
    columns: Vec<Column>,
}

impl TableSpec {
    /// Columns for `rt`; custom types read their CRD from `store`.
    pub fn for_type(store: &Store, rt: &ResourceType) -> TableSpec {
        let columns = if rt.custom {
            crd_columns(store, rt)
        } else {
            printers::columns(rt)
                .unwrap_or_else(|| vec![Column::name_column(), Column::age_column("string")])
        };
        TableSpec { columns }
    }

    fn rows(&self, objects: &[Value], include: Include, rt: &ResourceType) -> Vec<Value> {
        let now = now_secs();
        objects
            .iter()
            .map(|o| {
                let cells: Vec<Value> = self.columns.iter().map(|c| c.cell(o, now)).collect();
                let mut row = json!({"cells": cells});
                match include {
                    Include::None => {}
                    Include::Metadata => {
                        row["object"] = json!({"kind": "PartialObjectMetadata",
                            "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]});
                    }
                    Include::Object => row["object"] = typed(o.clone(), rt),
                }
                row
            })
            .collect()
    }

    /// A `Table` of `objects` with list metadata `meta` (`resourceVersion`, `continue`).
    pub fn render(
        &self,
        req: TableRequest,
        rt: &ResourceType,
        objects: &[Value],
        meta: Value,
    ) -> Value {
        let defs: Vec<Value> = self.columns.iter().map(Column::definition).collect();
        json!({
            "kind": "Table",
            "apiVersion": format!("meta.k8s.io/{}", req.version),
            "metadata": meta,
            "columnDefinitions": defs,
            "rows": self.rows(objects, req.include, rt),
        })
    }

    /// A `Table` for a list answer as `ops::list` builds it (items and list metadata).
    pub fn render_list(&self, req: TableRequest, rt: &ResourceType, list: &Value) -> Value {
        let items = list["items"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        self.render(req, rt, items, list["metadata"].clone())
    }

    /// A `Table` of one object (a GET by name or a watch event).
    pub fn render_one(&self, req: TableRequest, rt: &ResourceType, obj: &Value) -> Value {
        let mut meta = Map::new();
        if let Some(rv) = obj["metadata"]["resourceVersion"].as_str() {
            meta.insert("resourceVersion".into(), Value::String(rv.into()));
        }
        self.render(req, rt, std::slice::from_ref(obj), Value::Object(meta))
    }
}

/// `Name`, then the served version's printer columns (or `Age` when there are none).
fn crd_columns(store: &Store, rt: &ResourceType) -> Vec<Column> {
    let crd = store.get(
        "apiextensions.k8s.io/customresourcedefinitions",
        "",
        &format!("{}.{}", rt.plural, rt.group),
    );
    let defined: Vec<&Value> = crd
        .and_then(|crd| {
            crd["spec"]["versions"]
                .as_array()?
                .iter()
                .find(|v| v["name"] == rt.version.as_str())
        })
        .and_then(|v| v["additionalPrinterColumns"].as_array())
        .map(|cols| cols.iter().collect())
        .unwrap_or_default();
    let mut columns = vec![Column::name_column()];
    if defined.is_empty() {
        columns.push(Column::age_column("date"));
        return columns;
    }
    for c in defined {
        let path = c["jsonPath"].as_str().unwrap_or_default();
        columns.push(Column {
            name: c["name"].as_str().unwrap_or_default().into(),
            kind: c["type"].as_str().unwrap_or("string").into(),
            format: c["format"].as_str().unwrap_or_default().into(),
            description: c["description"].as_str().unwrap_or_default().into(),
            priority: c["priority"].as_i64().unwrap_or(0),
            source: Source::Path(parse_path(path).unwrap_or_default()),
        });
    }
    columns
}

/// One step of a simple JSONPath.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    /// `.key` or `['key']`.
    Key(String),
    /// `[n]`; `[*]` is `[0]` (a column shows the first result only).
    Index(usize),
    /// `[?(@.a.b=="v")]`: the first list item whose field equals the value.
    Filter(Vec<String>, Value),
}

/// Parses `.a.b[0].c`, `.a['b.c']`, `.a[*].b` and `.a[?(@.type=="Ready")].b` (braces
/// around the whole path allowed). `None` for anything else; such a column stays empty.
fn parse_path(path: &str) -> Option<Vec<Step>> {
    let p = path.trim();
    let p = p
        .strip_prefix('{')
        .and_then(|p| p.strip_suffix('}'))
        .unwrap_or(p);
    let mut rest = p.strip_prefix('.').unwrap_or(p);
    let mut steps = vec![];
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            let inner = &r[..end];
            rest = &r[end + 1..];
            steps.push(bracket(inner)?);
        } else {
            let r = rest.strip_prefix('.').unwrap_or(rest);
            let end = r.find(['.', '[']).unwrap_or(r.len());
            if end == 0 {
                return None;
            }
            steps.push(Step::Key(r[..end].to_string()));
            rest = &r[end..];
        }
    }
    Some(steps)
}

fn bracket(inner: &str) -> Option<Step> {
    let inner = inner.trim();
    if inner == "*" {
        return Some(Step::Index(0));
    }
    if let Ok(n) = inner.parse::<usize>() {
        return Some(Step::Index(n));
    }
    if let Some(q) = unquote(inner) {
        return Some(Step::Key(q.to_string()));
    }
    let cond = inner.strip_prefix("?(")?.strip_suffix(')')?;
    let (lhs, rhs) = cond.split_once("==")?;
    let field = lhs.trim().strip_prefix("@.")?;
    let rhs = rhs.trim();
    let value = match unquote(rhs) {
        Some(s) => Value::String(s.into()),
        None => serde_json::from_str(rhs).ok()?,
    };
    Some(Step::Filter(
        field.split('.').map(String::from).collect(),
        value,
    ))
}

fn unquote(s: &str) -> Option<&str> {
    s.strip_prefix('\'')
        .and_then(|s| s.strip_suffix('\''))
        .or_else(|| s.strip_prefix('"').and_then(|s| s.strip_suffix('"')))
}

fn resolve<'a>(obj: &'a Value, steps: &[Step]) -> Option<&'a Value> {
    let mut cur = obj;
    for s in steps {
        cur = match s {
            Step::Key(k) => cur.as_object()?.get(k)?,
            Step::Index(i) => cur.as_array()?.get(*i)?,
            Step::Filter(field, want) => cur.as_array()?.iter().find(|item| {
                field
                    .iter()
                    .try_fold(*item, |v, k| v.get(k))
                    .is_some_and(|v| v == want)
            })?,
        };
    }
    (!cur.is_null()).then_some(cur)
}

/// A cell of a CRD column of type `kind`, as the API server converts it: strings print the
/// value as text, numbers and booleans keep their type, dates become ages.
fn typed_cell(kind: &str, v: &Value, now: u64) -> Value {
    match (kind, v) {
        ("string", Value::String(_)) => v.clone(),
        ("string", Value::Number(_) | Value::Bool(_)) => Value::String(v.to_string()),
        ("string", _) => Value::String(v.to_string()),
        ("integer", Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f as i64))
            .map_or(Value::Null, Value::from),
        ("number", Value::Number(n)) => n.as_f64().map_or(Value::Null, Value::from),
        ("boolean", Value::Bool(_)) => v.clone(),
        ("date", Value::String(s)) => match parse_rfc3339(s) {
            Some(t) => Value::String(human_duration(now as i64 - t)),
            None => Value::String("<invalid>".into()),
        },
        _ => Value::Null,
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The `Age` cell of a creation timestamp (`<unknown>` without one).
fn age(created: Option<&str>, now: u64) -> String {
    match created.and_then(parse_rfc3339) {
        Some(t) => human_duration(now as i64 - t),
        None => "<unknown>".into(),
    }
}

/// Seconds since the epoch of an RFC 3339 timestamp (`2026-01-02T03:04:05Z`, fractions and
/// offsets allowed).
fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if b[13] != b':' || b[16] != b':' || !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return None;
    }
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        rest = &frac[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        o if o.len() == 6 && (o.starts_with('+') || o.starts_with('-')) => {
            let oh: i64 = o.get(1..3)?.parse().ok()?;
            let om: i64 = o.get(4..6)?.parse().ok()?;
            let sign = if o.starts_with('-') { -1 } else { 1 };
            sign * (oh * 3600 + om * 60)
        }
        _ => return None,
    };
    // Days from civil (Howard Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + mi * 60 + sec - offset)
}

/// A duration in seconds the way Kubernetes' `duration.HumanDuration` prints ages: seconds
/// up to 2 minutes, then minutes (with seconds under 10 minutes), hours (with minutes under 8
/// hours), days (with hours under 8 days) and years.
fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    if secs < 0 {
        return "0s".into();
    }
    if secs < 120 {
        return format!("{secs}s");
    }
    let minutes = secs / 60;
    if minutes < 10 {
        return match secs % 60 {
            0 => format!("{minutes}m"),
            s => format!("{minutes}m{s}s"),
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = secs / 3600;
    if hours < 8 {
        return match minutes % 60 {
            0 => format!("{hours}h"),
            m => format!("{hours}h{m}m"),
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        return match hours % 24 {
            0 => format!("{}d", hours / 24),
            h => format!("{}d{h}h", hours / 24),
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let days = (hours / 24) % 365;
        return match days {
            0 => format!("{}y", hours / 24 / 365),
            d => format!("{}y{d}d", hours / 24 / 365),
        };
    }
    format!("{}y", hours / 24 / 365)
}
