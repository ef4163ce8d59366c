//! Normalization before comparison: server-managed fields, Secret data, quantities and
//! numbers, and the user's `ignoreDifferences` rules.

use super::DiffError;
use serde_json::{Map, Value};

/// Metadata fields the API server owns; they never count as drift.
const SERVER_METADATA: [&str; 8] = [
    "managedFields",
    "resourceVersion",
    "uid",
    "creationTimestamp",
    "generation",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
];

/// Annotations written by tools rather than by the user.
const TOOL_ANNOTATIONS: [&str; 1] = ["kubectl.kubernetes.io/last-applied-configuration"];

/// A copy of `obj` without server-managed fields and without `status`.
pub fn strip_server_fields(obj: &Value) -> Value {
    let mut out = obj.clone();
    if let Some(map) = out.as_object_mut() {
        map.remove("status");
        if let Some(meta) = map.get_mut("metadata").and_then(Value::as_object_mut) {
            for f in SERVER_METADATA {
                meta.remove(f);
            }
            if let Some(ann) = meta.get_mut("annotations").and_then(Value::as_object_mut) {
                for a in TOOL_ANNOTATIONS {
                    ann.remove(a);
                }
            }
            if meta
                .get("annotations")
                .and_then(Value::as_object)
                .is_some_and(Map::is_empty)
            {
                meta.remove("annotations");
            }
        }
    }
    out
}

/// A Secret's `stringData` folded into `data` (base64), as the API server stores it.
pub fn fold_string_data(obj: &mut Value) {
    if obj.get("kind").and_then(Value::as_str) != Some("Secret") {
        return;
    }
    let Some(map) = obj.as_object_mut() else {
        return;
    };
    let Some(Value::Object(string_data)) = map.remove("stringData") else {
        return;
    };
    let data = map
        .entry("data")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Some(data) = data.as_object_mut() {
        for (k, v) in string_data {
            let text = v
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string());
            data.insert(k, Value::String(base64_encode(text.as_bytes())));
        }
    }
}

fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Whether two scalars mean the same: equal numbers in any JSON form, or equal Kubernetes
/// quantities (`"1000m"` and `"1"`, `"1Gi"` and `"1024Mi"`).
pub fn equivalent(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::String(x), Value::String(y)) => {
            x == y
                || matches!((quantity(x), quantity(y)), (Some(p), Some(q)) if (p - q).abs() <= 1e-9 * p.abs().max(q.abs()))
        }
        _ => a == b,
    }
}

/// The value of a Kubernetes quantity string, if it is one.
fn quantity(s: &str) -> Option<f64> {
    const SUFFIXES: [(&str, f64); 14] = [
        ("Ki", 1024.0),
        ("Mi", 1048576.0),
        ("Gi", 1073741824.0),
        ("Ti", 1099511627776.0),
        ("Pi", 1125899906842624.0),
        ("Ei", 1152921504606846976.0),
        ("n", 1e-9),
        ("u", 1e-6),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
    ];
    let s = s.trim();
    if s.is_empty()
        || !s.starts_with(|c: char| c.is_ascii_digit() || c == '.' || c == '+' || c == '-')
    {
        return None;
    }
    for (suffix, mult) in SUFFIXES {
        if let Some(num) = s.strip_suffix(suffix) {
            return parse_plain(num).map(|n| n * mult);
        }
    }
    if let Some(num) = s.strip_suffix('E') {
        return parse_plain(num).map(|n| n * 1e18);
    }
    parse_plain(s)
}

fn parse_plain(s: &str) -> Option<f64> {
    if s.is_empty() || s.contains(|c: char| !(c.is_ascii_digit() || ".+-eE".contains(c))) {
        return None;
    }
    s.parse().ok()
}

/// Remove the field at an RFC 6901 JSON pointer, if present.
pub fn remove_pointer(obj: &mut Value, pointer: &str) -> Result<(), DiffError> {
    if pointer.is_empty() {
        return Ok(());
    }
    if !pointer.starts_with('/') {
        return Err(DiffError::BadPointer {
            pointer: pointer.to_string(),
        });
    }
    let (parent, last) = pointer.rsplit_once('/').unwrap_or(("", pointer));
    let last = last.replace("~1", "/").replace("~0", "~");
    match obj.pointer_mut(parent) {
        Some(Value::Object(m)) => {
            m.remove(&last);
        }
        Some(Value::Array(a)) => {
            if let Ok(i) = last.parse::<usize>() {
                if i < a.len() {
                    a.remove(i);
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// Delete the paths a jq path expression selects (`del(EXPR)`), as Argo CD's
/// `jqPathExpressions` do. An expression that does not parse is an error; one that selects
/// nothing in this object leaves it as it is.
pub fn remove_jq_paths(obj: &Value, expr: &str) -> Result<Value, DiffError> {
    use jaq_core::load::{Arena, File, Loader};
    use jaq_core::{data, unwrap_valr, Compiler, Ctx, Vars};
    use jaq_json::{read, Val};

    let bad = |reason: String| DiffError::BadJq {
        expr: expr.to_string(),
        reason,
    };
    let code = format!("del({expr})");
    let defs = jaq_core::defs()
        .chain(jaq_std::defs())
        .chain(jaq_json::defs());
    let funs = jaq_core::funs()
        .chain(jaq_std::funs())
        .chain(jaq_json::funs());
    let loader = Loader::new(defs);
    let arena = Arena::default();
    let modules = loader
        .load(
            &arena,
            File {
                code: code.as_str(),
                path: (),
            },
        )
        .map_err(|e| bad(format!("{e:?}")))?;
    let filter = Compiler::default()
        .with_funs(funs)
        .compile(modules)
        .map_err(|e| bad(format!("{e:?}")))?;
    let text = obj.to_string();
    let input = read::parse_single(text.as_bytes()).map_err(|e| bad(format!("{e:?}")))?;
    let ctx = Ctx::<data::JustLut<Val>>::new(&filter.lut, Vars::new([]));
    let mut out = filter.id.run((ctx, input)).map(unwrap_valr);
    match out.next() {
        Some(Ok(v)) => serde_json::from_str(&v.to_string()).map_err(|e| bad(e.to_string())),
        // The paths do not exist in this object (jq's `del` of a missing path through a
        // null): nothing to remove.
        Some(Err(_)) | None => Ok(obj.clone()),
    }
}

/// Replace every value of a Secret's `data` with a mask, so diffs never show secrets. Equal
/// values get equal masks and changed ones different masks, so a change is still visible.
pub fn mask_secret_pair(live: &mut Value, desired: &mut Value) {
    let is_secret = |v: &Value| v.get("kind").and_then(Value::as_str) == Some("Secret");
    if !is_secret(live) && !is_secret(desired) {
        return;
    }
    let live_data = live
        .get("data")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let desired_data = desired
        .get("data")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mask = |n: usize| Value::String("+".repeat(n));
    if let Some(d) = live.get_mut("data").and_then(Value::as_object_mut) {
        for v in d.values_mut() {
            *v = mask(8);
        }
    }
    if let Some(d) = desired.get_mut("data").and_then(Value::as_object_mut) {
        for (k, v) in d.iter_mut() {
            let same = live_data.get(k) == desired_data.get(k);
            *v = mask(if same { 8 } else { 9 });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(base64_encode(b""), "");
        assert_eq!(base64_encode(b"f"), "Zg==");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert_eq!(base64_encode(b"foo"), "Zm9v");
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn quantities_compare_by_value() {
        assert!(equivalent(&json!("1000m"), &json!("1")));
        assert!(equivalent(&json!("1Gi"), &json!("1024Mi")));
        assert!(equivalent(&json!("0.5"), &json!("500m")));
        assert!(!equivalent(&json!("1Gi"), &json!("1G")));
        assert!(!equivalent(&json!("nginx:1"), &json!("nginx:1.0")));
        assert!(equivalent(&json!(1), &json!(1.0)));
    }

    #[test]
    fn jq_paths_are_deleted() {
        let obj = json!({"spec": {"containers": [{"name": "app"}, {"name": "injected"}]}});
        let out = remove_jq_paths(&obj, r#".spec.containers[] | select(.name == "injected")"#)
            .expect("valid expression");
        assert_eq!(out, json!({"spec": {"containers": [{"name": "app"}]}}));
        assert!(remove_jq_paths(&obj, ".spec[").is_err());
    }
}
