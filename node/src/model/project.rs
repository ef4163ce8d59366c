//! Argo CD's `AppProject`.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{report_extra, FieldWarning, ModelError, ObjectMeta, Unknown};

/// An Argo CD `AppProject` (`argoproj.io/v1alpha1`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppProject {
    /// Always `argoproj.io/v1alpha1`.
    pub api_version: String,
    /// Always `AppProject`.
    pub kind: String,
    /// Metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The project's rules.
    #[serde(default)]
    pub spec: AppProjectSpec,
    /// Status, kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Value>,
    /// Unknown top-level fields.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// `AppProject.spec`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppProjectSpec {
    /// Allowed repository URLs (globs).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_repos: Vec<String>,
    /// Allowed destinations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destinations: Vec<ProjectDestination>,
    /// Cluster-scoped kinds allowed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cluster_resource_whitelist: Vec<GroupKind>,
    /// Cluster-scoped kinds denied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cluster_resource_blacklist: Vec<GroupKind>,
    /// Namespaced kinds allowed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespace_resource_whitelist: Vec<GroupKind>,
    /// Namespaced kinds denied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespace_resource_blacklist: Vec<GroupKind>,
    /// Namespaces Applications of this project may live in.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_namespaces: Vec<String>,
    /// Roles, kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Value>,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Unknown fields.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// An allowed destination of a project (globs).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProjectDestination {
    /// Server URL glob.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// Cluster name glob.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Namespace glob.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Unknown fields.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// A group and kind, as in project resource lists.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GroupKind {
    /// API group (`*` for all, empty for core).
    #[serde(default)]
    pub group: String,
    /// Kind (`*` for all).
    #[serde(default)]
    pub kind: String,
    /// Unknown fields.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl Unknown for ProjectDestination {
    fn unknown(&self, path: &str, out: &mut Vec<FieldWarning>) {
        report_extra(&self.extra, path, out);
    }
}

impl Unknown for GroupKind {
    fn unknown(&self, path: &str, out: &mut Vec<FieldWarning>) {
        report_extra(&self.extra, path, out);
    }
}

impl AppProject {
    /// Parse one AppProject from YAML or JSON; `what` names the input in errors.
    pub fn from_yaml(what: &str, text: &str) -> Result<Self, ModelError> {
        let p: AppProject = serde_yaml::from_str(text).map_err(|e| ModelError::Parse {
            what: what.to_string(),
            message: e.to_string(),
        })?;
        if p.api_version != "argoproj.io/v1alpha1" || p.kind != "AppProject" {
            return Err(ModelError::WrongKind {
                what: what.to_string(),
                expected: "AppProject",
                found: format!("{} {}", p.api_version, p.kind),
            });
        }
        Ok(p)
    }

    /// Every unknown field, with its path.
    pub fn unknown_fields(&self) -> Vec<FieldWarning> {
        let mut out = Vec::new();
        report_extra(&self.extra, "", &mut out);
        self.metadata.unknown("metadata", &mut out);
        let s = &self.spec;
        report_extra(&s.extra, "spec", &mut out);
        s.destinations.unknown("spec.destinations", &mut out);
        s.cluster_resource_whitelist
            .unknown("spec.clusterResourceWhitelist", &mut out);
        s.cluster_resource_blacklist
            .unknown("spec.clusterResourceBlacklist", &mut out);
        s.namespace_resource_whitelist
            .unknown("spec.namespaceResourceWhitelist", &mut out);
        s.namespace_resource_blacklist
            .unknown("spec.namespaceResourceBlacklist", &mut out);
        out
    }
}
