//! System-level `ignoreDifferences` from an `argocd-cm` ConfigMap, read the way Argo CD reads
//! them and applied together with each app's own rules.
//!
//! Three forms are understood:
//! - `resource.customizations.ignoreDifferences.<group>_<kind>`: a YAML document with
//!   `jsonPointers`, `jqPathExpressions` and `managedFieldsManagers` for one kind (a key
//!   without `_` names a kind of the core group);
//! - `resource.customizations.ignoreDifferences.all`: the same, for every kind;
//! - the older `resource.customizations` block, keyed by `<group>/<kind>` (or `<kind>` for
//!   the core group), whose entries' `ignoreDifferences` hold that document (as a string or
//!   a map).
//!
//! Other keys (health checks, actions, `ignoreResourceUpdates`, ...) are not diffing rules
//! and are skipped.

use super::{DiffError, IgnoreRule};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

const KEY_PREFIX: &str = "resource.customizations.ignoreDifferences.";
const BLOCK_KEY: &str = "resource.customizations";

/// The fields of one system-level `ignoreDifferences` document.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Fields {
    #[serde(default)]
    json_pointers: Vec<String>,
    #[serde(default)]
    jq_path_expressions: Vec<String>,
    #[serde(default)]
    managed_fields_managers: Vec<String>,
}

impl Fields {
    fn into_rule(self, group: &str, kind: &str) -> IgnoreRule {
        IgnoreRule {
            group: group.into(),
            kind: kind.into(),
            json_pointers: self.json_pointers,
            jq_path_expressions: self.jq_path_expressions,
            managed_fields_managers: self.managed_fields_managers,
            ..Default::default()
        }
    }
}

fn parse_fields(value: &Value) -> Result<Fields, String> {
    match value {
        Value::String(text) => serde_yaml::from_str::<Option<Fields>>(text)
            .map(Option::unwrap_or_default)
            .map_err(|e| e.to_string()),
        Value::Null => Ok(Fields::default()),
        other => Fields::deserialize(other).map_err(|e| e.to_string()),
    }
}

/// `<group>_<kind>` (the kind never holds `_`) or `<group>/<kind>`; `all` is every kind.
fn group_kind(name: &str, sep: char) -> (String, String) {
    if name == "all" && sep == '_' {
        return ("*".into(), "*".into());
    }
    match name.rsplit_once(sep) {
        Some((g, k)) => (g.into(), k.into()),
        None => (String::new(), name.into()),
    }
}

/// The system-level rules of a parsed `argocd-cm` ConfigMap; `path` names it in errors.
pub fn rules_from_configmap(doc: &Value, path: &str) -> Result<Vec<IgnoreRule>, DiffError> {
    let err = |reason: String| DiffError::ConfigMap {
        path: path.into(),
        reason,
    };
    if doc.get("kind").and_then(Value::as_str) != Some("ConfigMap") {
        return Err(err("kind is not ConfigMap".into()));
    }
    let Some(data) = doc.get("data").and_then(Value::as_object) else {
        return Ok(Vec::new());
    };
    let mut rules = Vec::new();
    for (key, value) in data {
        if let Some(name) = key.strip_prefix(KEY_PREFIX) {
            let fields = parse_fields(value).map_err(|e| err(format!("data.{key}: {e}")))?;
            let (group, kind) = group_kind(name, '_');
            rules.push(fields.into_rule(&group, &kind));
        } else if key == BLOCK_KEY {
            let Some(text) = value.as_str() else {
                return Err(err(format!("data.{key} is not a string")));
            };
            let block: BTreeMap<String, Value> = serde_yaml::from_str::<Option<_>>(text)
                .map_err(|e| err(format!("data.{key}: {e}")))?
                .unwrap_or_default();
            for (gk, entry) in block {
                let Some(ignore) = entry.get("ignoreDifferences") else {
                    continue;
                };
                let fields = parse_fields(ignore)
                    .map_err(|e| err(format!("data.{key}: {gk}.ignoreDifferences: {e}")))?;
                let (group, kind) = group_kind(&gk, '/');
                rules.push(fields.into_rule(&group, &kind));
            }
        }
    }
    for r in &rules {
        r.validate().map_err(|e| err(e.to_string()))?;
    }
    Ok(rules)
}

/// Read the system-level rules of the `argocd-cm` ConfigMap in a YAML file.
pub fn load_argocd_cm(path: &Path) -> Result<Vec<IgnoreRule>, DiffError> {
    let name = path.display().to_string();
    let err = |reason: String| DiffError::ConfigMap {
        path: name.clone(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let doc: Value = serde_yaml::from_str(&text).map_err(|e| err(e.to_string()))?;
    rules_from_configmap(&doc, &name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::{diff_resource, DiffOptions};
    use serde_json::json;

    fn cm(data: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "argocd-cm"},
               "data": data})
    }

    #[test]
    fn reads_per_kind_all_and_block_forms() {
        let doc = cm(json!({
            "resource.customizations.ignoreDifferences.apps_Deployment":
                "jsonPointers:\n- /spec/replicas\n",
            "resource.customizations.ignoreDifferences.Service":
                "jqPathExpressions:\n- .spec.ports[].nodePort\n",
            "resource.customizations.ignoreDifferences.all":
                "managedFieldsManagers:\n- kube-controller-manager\n",
            "resource.customizations.health.apps_Deployment": "return {}",
            "resource.customizations.ignoreResourceUpdates.all": "jsonPointers:\n- /status\n",
            "resource.customizations":
                "admissionregistration.k8s.io/MutatingWebhookConfiguration:\n  ignoreDifferences: |\n    jsonPointers:\n    - /webhooks/0/clientConfig/caBundle\nConfigMap:\n  ignoreDifferences:\n    jsonPointers: [/data/x]\nbatch/Job:\n  health.lua: return {}\n",
        }));
        let mut rules = rules_from_configmap(&doc, "cm.yaml").expect("parses");
        rules.sort_by(|a, b| (&a.group, &a.kind).cmp(&(&b.group, &b.kind)));
        let gk: Vec<(&str, &str)> = rules
            .iter()
            .map(|r| (r.group.as_str(), r.kind.as_str()))
            .collect();
        assert_eq!(
            gk,
            [
                ("", "ConfigMap"),
                ("", "Service"),
                ("*", "*"),
                (
                    "admissionregistration.k8s.io",
                    "MutatingWebhookConfiguration"
                ),
                ("apps", "Deployment"),
            ]
        );
        assert_eq!(rules[0].json_pointers, ["/data/x"]);
        assert_eq!(rules[1].jq_path_expressions, [".spec.ports[].nodePort"]);
        assert_eq!(
            rules[2].managed_fields_managers,
            ["kube-controller-manager"]
        );
        assert_eq!(
            rules[3].json_pointers,
            ["/webhooks/0/clientConfig/caBundle"]
        );
        assert_eq!(rules[4].json_pointers, ["/spec/replicas"]);
    }

    #[test]
    fn all_rule_applies_to_every_kind_in_a_diff() {
        let doc = cm(json!({"resource.customizations.ignoreDifferences.all":
            "jsonPointers:\n- /metadata/labels/stamp\n"}));
        let opts = DiffOptions {
            ignore: rules_from_configmap(&doc, "cm").expect("parses"),
            ..Default::default()
        };
        let desired = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "namespace": "n", "labels": {"stamp": "1"}}, "data": {"a": "1"}});
        let mut live = desired.clone();
        live["metadata"]["labels"]["stamp"] = json!("2");
        let d = diff_resource(Some(&desired), Some(&live), &opts).expect("diffs");
        assert!(d.in_sync(), "{}", d.unified);
        live["data"]["a"] = json!("2");
        let d = diff_resource(Some(&desired), Some(&live), &opts).expect("diffs");
        assert!(!d.in_sync());
    }

    #[test]
    fn bad_entries_are_refused_with_their_key() {
        let doc = cm(
            json!({"resource.customizations.ignoreDifferences.apps_Deployment":
            "jsonPointer:\n- /spec\n"}),
        );
        let e = rules_from_configmap(&doc, "cm.yaml").expect_err("unknown field");
        assert!(
            e.to_string().contains("apps_Deployment") && e.to_string().contains("cm.yaml"),
            "{e}"
        );
        let doc = cm(json!({"resource.customizations.ignoreDifferences.all":
            "jsonPointers:\n- spec\n"}));
        let e = rules_from_configmap(&doc, "cm.yaml").expect_err("bad pointer");
        assert!(e.to_string().contains("JSON pointer"), "{e}");
        let e = rules_from_configmap(&json!({"kind": "Secret"}), "s.yaml").expect_err("kind");
        assert!(e.to_string().contains("not ConfigMap"), "{e}");
    }
}
