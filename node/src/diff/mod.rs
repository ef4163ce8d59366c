//! Comparing desired objects with live ones, the way Argo CD users expect.
//!
//! The comparison predicts what the live object would be after a server-side apply of the
//! desired one ([`merge::overlay`], then removal of fields this manager applied before and
//! no longer sets, from `managedFields`), and compares that prediction with the live object.
//! So fields the server fills in never count as drift, while a changed or dropped field does.
//! Before comparing, both sides lose server-managed metadata and `status`, Secrets have their
//! `stringData` folded into `data`, and the `ignoreDifferences` rules that match the object
//! remove the fields they name. Diffs of Secrets never show values.

pub mod fieldset;
pub mod global;
pub mod merge;
pub mod normalize;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Errors in diff configuration.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DiffError {
    /// A `jsonPointers` entry is not a JSON pointer.
    #[error("ignoreDifferences: {pointer:?} is not a JSON pointer (it must start with '/')")]
    BadPointer {
        /// The pointer.
        pointer: String,
    },
    /// A `jqPathExpressions` entry does not compile or run.
    #[error("ignoreDifferences: jq path expression {expr:?} is invalid: {reason}")]
    BadJq {
        /// The expression.
        expr: String,
        /// What jq said.
        reason: String,
    },
    /// An `argocd-cm` ConfigMap cannot be read, or one of its `ignoreDifferences` entries is
    /// malformed.
    #[error("argocd-cm {path}: {reason}")]
    ConfigMap {
        /// The file (or `<inline>`).
        path: String,
        /// What is wrong, naming the key.
        reason: String,
    },
}

/// Identity of a resource: group, kind, namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ResourceKey {
    /// API group, empty for the core group.
    pub group: String,
    /// Kind.
    pub kind: String,
    /// Namespace, empty for cluster-scoped objects.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl ResourceKey {
    /// The key of an object.
    pub fn of(obj: &Value) -> Self {
        let (group, kind) = crate::health::group_kind(obj);
        let meta = |f: &str| {
            obj.pointer(&format!("/metadata/{f}"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        Self {
            group,
            kind,
            namespace: meta("namespace"),
            name: meta("name"),
        }
    }
}

impl std::fmt::Display for ResourceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let gk = if self.group.is_empty() {
            self.kind.clone()
        } else {
            format!("{}/{}", self.group, self.kind)
        };
        if self.namespace.is_empty() {
            write!(f, "{gk} {}", self.name)
        } else {
            write!(f, "{gk} {}/{}", self.namespace, self.name)
        }
    }
}

/// One `ignoreDifferences` entry (Argo CD's field names).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IgnoreRule {
    /// API group; empty or absent for the core group. `*` matches any.
    #[serde(default)]
    pub group: String,
    /// Kind; `*` matches any.
    pub kind: String,
    /// Only this name, if set.
    #[serde(default)]
    pub name: String,
    /// Only this namespace, if set.
    #[serde(default)]
    pub namespace: String,
    /// RFC 6901 pointers of fields to ignore.
    #[serde(default)]
    pub json_pointers: Vec<String>,
    /// jq path expressions of fields to ignore.
    #[serde(default)]
    pub jq_path_expressions: Vec<String>,
    /// Ignore the fields these field managers own.
    #[serde(default)]
    pub managed_fields_managers: Vec<String>,
}

impl IgnoreRule {
    /// Whether this rule applies to the resource.
    pub fn matches(&self, key: &ResourceKey) -> bool {
        let any = |pat: &str, v: &str| pat == "*" || pat == v;
        any(&self.group, &key.group)
            && any(&self.kind, &key.kind)
            && (self.name.is_empty() || self.name == key.name)
            && (self.namespace.is_empty() || self.namespace == key.namespace)
    }

    /// Check the rule's pointers and jq expressions, so a bad rule is reported up front.
    pub fn validate(&self) -> Result<(), DiffError> {
        let mut probe = Value::Object(Default::default());
        for p in &self.json_pointers {
            normalize::remove_pointer(&mut probe, p)?;
        }
        for e in &self.jq_path_expressions {
            normalize::remove_jq_paths(&probe, e)?;
        }
        Ok(())
    }

    /// Remove the ignored fields from `obj`; `live` supplies managed-field ownership.
    pub fn apply(&self, obj: &mut Value, live: Option<&Value>) -> Result<(), DiffError> {
        for p in &self.json_pointers {
            normalize::remove_pointer(obj, p)?;
        }
        for e in &self.jq_path_expressions {
            *obj = normalize::remove_jq_paths(obj, e)?;
        }
        if let Some(live) = live {
            self.remove_managed(obj, live);
        }
        Ok(())
    }

    /// Remove from `obj` the fields that this rule's `managedFieldsManagers` own in `live`.
    pub fn remove_managed(&self, obj: &mut Value, live: &Value) {
        if self.managed_fields_managers.is_empty() {
            return;
        }
        let managers: Vec<&str> = self
            .managed_fields_managers
            .iter()
            .map(String::as_str)
            .collect();
        for set in fieldset::owned_by(live, &managers, false) {
            fieldset::remove_owned(obj, set);
        }
    }
}

/// How to compare.
#[derive(Debug, Clone)]
pub struct DiffOptions {
    /// The field manager flotilla applies with.
    pub field_manager: String,
    /// The app's and the global `ignoreDifferences` rules.
    pub ignore: Vec<IgnoreRule>,
}

impl Default for DiffOptions {
    fn default() -> Self {
        Self {
            field_manager: "flotilla".into(),
            ignore: Vec::new(),
        }
    }
}

/// Why a resource is out of sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Drift {
    /// Live matches desired.
    None,
    /// Desired but not live: it will be created.
    Missing,
    /// Live and tracked but no longer desired: it will be pruned.
    Extra,
    /// Both exist and differ.
    Changed,
}

/// The comparison of one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceDiff {
    /// Which resource.
    pub key: ResourceKey,
    /// Whether and how it differs.
    pub drift: Drift,
    /// A unified diff from live to desired (Secret values masked); empty when in sync.
    pub unified: String,
}

impl ResourceDiff {
    /// Whether live matches desired.
    pub fn in_sync(&self) -> bool {
        self.drift == Drift::None
    }
}

/// Compare a desired object with the live one; at least one must be given.
pub fn diff_resource(
    desired: Option<&Value>,
    live: Option<&Value>,
    opts: &DiffOptions,
) -> Result<ResourceDiff, DiffError> {
    let key = ResourceKey::of(desired.or(live).unwrap_or(&Value::Null));
    let rules: Vec<&IgnoreRule> = opts.ignore.iter().filter(|r| r.matches(&key)).collect();
    let normalized = |obj: &Value| -> Result<Value, DiffError> {
        let mut out = normalize::strip_server_fields(obj);
        normalize::fold_string_data(&mut out);
        for r in &rules {
            r.apply(&mut out, live)?;
        }
        Ok(out)
    };
    let (mut before, mut after, drift) = match (desired, live) {
        (None, None) => {
            return Ok(ResourceDiff {
                key,
                drift: Drift::None,
                unified: String::new(),
            })
        }
        (Some(d), None) => (Value::Null, normalized(d)?, Drift::Missing),
        (None, Some(l)) => (normalized(l)?, Value::Null, Drift::Extra),
        (Some(d), Some(l)) => {
            let mut desired = d.clone();
            normalize::fold_string_data(&mut desired);
            let mut predicted = merge::overlay(l, &desired);
            for set in fieldset::owned_by(l, &[opts.field_manager.as_str()], true) {
                fieldset::remove_dropped(&mut predicted, set, Some(&desired));
            }
            let before = normalized(l)?;
            let after = normalized(&predicted)?;
            let drift = if before == after {
                Drift::None
            } else {
                Drift::Changed
            };
            (before, after, drift)
        }
    };
    if drift == Drift::None {
        return Ok(ResourceDiff {
            key,
            drift,
            unified: String::new(),
        });
    }
    normalize::mask_secret_pair(&mut before, &mut after);
    let unified = unified_diff(&before, &after, &key);
    Ok(ResourceDiff {
        key,
        drift,
        unified,
    })
}

fn to_yaml(v: &Value) -> String {
    if v.is_null() {
        return String::new();
    }
    serde_yaml::to_string(v).unwrap_or_else(|e| format!("# cannot render as YAML: {e}\n"))
}

fn unified_diff(live: &Value, desired: &Value, key: &ResourceKey) -> String {
    let (a, b) = (to_yaml(live), to_yaml(desired));
    similar::TextDiff::from_lines(&a, &b)
        .unified_diff()
        .context_radius(3)
        .header(&format!("live: {key}"), &format!("desired: {key}"))
        .to_string()
}

#[cfg(test)]
mod tests;

impl From<&crate::model::ResourceIgnoreDifferences> for IgnoreRule {
    /// An Application's `ignoreDifferences` entry as a rule (check it with
    /// [`IgnoreRule::validate`]).
    fn from(r: &crate::model::ResourceIgnoreDifferences) -> Self {
        IgnoreRule {
            group: r.group.clone(),
            kind: r.kind.clone(),
            name: r.name.clone(),
            namespace: r.namespace.clone(),
            json_pointers: r.json_pointers.clone(),
            jq_path_expressions: r.jq_path_expressions.clone(),
            managed_fields_managers: r.managed_fields_managers.clone(),
        }
    }
}
