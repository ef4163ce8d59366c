//! Label selectors (equality- and set-based) and field selectors.

use super::status::ApiError;
use serde_json::Value;

/// One requirement of a label selector.
#[derive(Debug, Clone, PartialEq)]
enum Req {
    Exists(String),
    NotExists(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

/// A parsed label selector; empty matches everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelSelector(Vec<Req>);

/// Splits on commas that are not inside parentheses.
fn split_top(s: &str) -> Vec<&str> {
    let mut out = vec![];
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn parse_set(rest: &str, whole: &str) -> Result<Vec<String>, ApiError> {
    let rest = rest.trim();
    let inner = rest
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "unable to parse requirement: {whole:?}: expected (values)"
            ))
        })?;
    Ok(inner
        .split(',')
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect())
}

impl LabelSelector {
    /// Parses `a=b,c!=d,e in (f,g),!h`.
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        let mut reqs = vec![];
        for part in split_top(s) {
            let p = part.trim();
            if p.is_empty() {
                continue;
            }
            let bad = || ApiError::bad_request(format!("unable to parse requirement: {p:?}"));
            if let Some(k) = p.strip_prefix('!') {
                reqs.push(Req::NotExists(k.trim().into()));
            } else if let Some((k, v)) = p.split_once("!=") {
                reqs.push(Req::NotIn(k.trim().into(), vec![v.trim().into()]));
            } else if let Some((k, v)) = p.split_once("==").or_else(|| p.split_once('=')) {
                reqs.push(Req::In(k.trim().into(), vec![v.trim().into()]));
            } else if let Some(i) = p.find(" notin ") {
                reqs.push(Req::NotIn(p[..i].trim().into(), parse_set(&p[i + 7..], p)?));
            } else if let Some(i) = p.find(" in ") {
                reqs.push(Req::In(p[..i].trim().into(), parse_set(&p[i + 4..], p)?));
            } else if p.contains(|c: char| c.is_whitespace() || c == '(' || c == ')') {
                return Err(bad());
            } else {
                reqs.push(Req::Exists(p.into()));
            }
        }
        Ok(LabelSelector(reqs))
    }

    /// Builds a selector from a `LabelSelector` object (`matchLabels`, `matchExpressions`).
    pub fn from_object(sel: &Value) -> Self {
        let mut reqs = vec![];
        if let Some(m) = sel["matchLabels"].as_object() {
            for (k, v) in m {
                reqs.push(Req::In(
                    k.clone(),
                    vec![v.as_str().unwrap_or_default().into()],
                ));
            }
        }
        for e in sel["matchExpressions"].as_array().into_iter().flatten() {
            let key = e["key"].as_str().unwrap_or_default().to_string();
            let values: Vec<String> = e["values"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(String::from))
                .collect();
            reqs.push(match e["operator"].as_str() {
                Some("In") => Req::In(key, values),
                Some("NotIn") => Req::NotIn(key, values),
                Some("DoesNotExist") => Req::NotExists(key),
                _ => Req::Exists(key),
            });
        }
        LabelSelector(reqs)
    }

    /// Whether an object's labels match.
    pub fn matches(&self, obj: &Value) -> bool {
        self.matches_labels(&obj["metadata"]["labels"])
    }

    /// Whether a labels map matches.
    pub fn matches_labels(&self, labels: &Value) -> bool {
        self.0.iter().all(|r| {
            let get = |k: &str| labels.get(k).and_then(Value::as_str);
            match r {
                Req::Exists(k) => get(k).is_some(),
                Req::NotExists(k) => get(k).is_none(),
                Req::In(k, vs) => get(k).is_some_and(|v| vs.iter().any(|x| x == v)),
                Req::NotIn(k, vs) => get(k).is_none_or(|v| vs.iter().all(|x| x != v)),
            }
        })
    }
}

/// A parsed field selector (`metadata.name=x,metadata.namespace!=y`, any dotted path).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldSelector(Vec<(Vec<String>, bool, String)>);

impl FieldSelector {
    /// Parses a field selector.
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        let mut reqs = vec![];
        for p in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (path, eq, value) = if let Some((k, v)) = p.split_once("!=") {
                (k, false, v)
            } else if let Some((k, v)) = p.split_once("==").or_else(|| p.split_once('=')) {
                (k, true, v)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: '{p}'; can't understand '{p}'"
                )));
            };
            reqs.push((
                path.trim().split('.').map(String::from).collect(),
                eq,
                value.trim().into(),
            ));
        }
        Ok(FieldSelector(reqs))
    }

    /// The name this selector pins (`metadata.name=x`), if any.
    pub fn pinned_name(&self) -> Option<&str> {
        self.0
            .iter()
            .find(|(p, eq, _)| *eq && p.len() == 2 && p[0] == "metadata" && p[1] == "name")
            .map(|(_, _, v)| v.as_str())
    }

    /// Whether an object matches.
    pub fn matches(&self, obj: &Value) -> bool {
        self.0.iter().all(|(path, eq, want)| {
            let mut cur = obj;
            for seg in path {
                cur = &cur[seg.as_str()];
            }
            let have = match cur {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            };
            (have == *want) == *eq
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_selectors_match_set_and_equality_forms() {
        let o = json!({"metadata": {"labels": {"app": "web", "tier": "fe"}}});
        for (sel, want) in [
            ("app=web", true),
            ("app==web,tier=fe", true),
            ("app!=web", false),
            ("app in (db, web)", true),
            ("app notin (web)", false),
            ("tier,!gone", true),
            ("gone", false),
            ("", true),
        ] {
            assert_eq!(
                LabelSelector::parse(sel).unwrap().matches(&o),
                want,
                "{sel}"
            );
        }
        assert!(LabelSelector::parse("a in b").is_err());
    }

    #[test]
    fn field_selectors_match_paths() {
        let o =
            json!({"metadata": {"name": "a", "namespace": "ns"}, "status": {"phase": "Running"}});
        assert!(FieldSelector::parse("metadata.name=a").unwrap().matches(&o));
        assert!(!FieldSelector::parse("metadata.namespace!=ns")
            .unwrap()
            .matches(&o));
        assert!(FieldSelector::parse("status.phase==Running")
            .unwrap()
            .matches(&o));
        assert_eq!(
            FieldSelector::parse("metadata.name=a")
                .unwrap()
                .pinned_name(),
            Some("a")
        );
        assert!(FieldSelector::parse("nonsense").is_err());
    }
}
