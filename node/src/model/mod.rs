//! Argo CD's resource types as flotilla reads them: `Application`, `AppProject`, and the
//! cluster, repository and repo-creds Secrets.
//!
//! Every struct keeps fields it does not know in `extra` (so nothing is silently dropped)
//! and [`Application::unknown_fields`] lists them with their path, for warnings.
mod project;
mod secrets;
mod source;
mod validate;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use project::{AppProject, AppProjectSpec, GroupKind, ProjectDestination};
pub use secrets::{
    parse_secret, ArgoSecret, ClusterConfig, ClusterSecret, Credentials, RepoCredential,
    SecretString, SecretType, TlsClientConfig, SECRET_TYPE_LABEL,
};
pub use source::{
    ApplicationSource, ApplicationSourceDirectory, ApplicationSourceHelm, ApplicationSourceJsonnet,
    ApplicationSourceKustomize, ApplicationSourcePlugin, HelmFileParameter, HelmParameter,
    JsonnetVar, KustomizePatch, KustomizeReplica, NameValue, PluginParameter, SourceKind,
};

/// Errors from reading or validating Argo CD resources.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The document is not valid YAML/JSON for the type.
    #[error("{what}: cannot parse: {message}")]
    Parse {
        /// What was being parsed (file name or kind).
        what: String,
        /// The parser's message, with its line and column.
        message: String,
    },
    /// The document parsed but has the wrong apiVersion or kind.
    #[error("{what}: expected apiVersion argoproj.io/v1alpha1 and kind {expected}, found {found}")]
    WrongKind {
        /// What was being parsed.
        what: String,
        /// The kind that was expected.
        expected: &'static str,
        /// What the document declared.
        found: String,
    },
    /// A field has an invalid value; `path` says where (e.g. `spec.destination`).
    #[error("{path}: {message}")]
    Invalid {
        /// Dotted path of the offending field.
        path: String,
        /// What is wrong and what is expected.
        message: String,
    },
    /// A Secret could not be decoded.
    #[error("secret {name}: {message}")]
    Secret {
        /// Name of the Secret.
        name: String,
        /// What is wrong (never includes secret values).
        message: String,
    },
}

/// A field that flotilla does not know, kept in the object and reported with its path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldWarning {
    /// Dotted path, e.g. `spec.source.helmm`.
    pub path: String,
}

impl std::fmt::Display for FieldWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: unknown field", self.path)
    }
}

/// Collects the unknown fields of a value and of its children.
pub(crate) trait Unknown {
    /// Push a warning for each unknown field below `path`.
    fn unknown(&self, path: &str, out: &mut Vec<FieldWarning>);
}

/// Push one warning per key of `extra`.
pub(crate) fn report_extra(
    extra: &BTreeMap<String, Value>,
    path: &str,
    out: &mut Vec<FieldWarning>,
) {
    for key in extra.keys() {
        out.push(FieldWarning {
            path: join(path, key),
        });
    }
}

pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

impl<T: Unknown> Unknown for Option<T> {
    fn unknown(&self, path: &str, out: &mut Vec<FieldWarning>) {
        if let Some(v) = self {
            v.unknown(path, out);
        }
    }
}

impl<T: Unknown> Unknown for Vec<T> {
    fn unknown(&self, path: &str, out: &mut Vec<FieldWarning>) {
        for (i, v) in self.iter().enumerate() {
            v.unknown(&format!("{path}[{i}]"), out);
        }
    }
}

/// Kubernetes object metadata, the fields flotilla uses; the rest is kept in `extra`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    /// Object name.
    #[serde(default)]
    pub name: String,
    /// Object namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Finalizers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub finalizers: Vec<String>,
    /// Other metadata (uid, resourceVersion, ...), kept as is.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

const STANDARD_META: &[&str] = &[
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generateName",
    "ownerReferences",
    "managedFields",
    "selfLink",
];

impl Unknown for ObjectMeta {
    fn unknown(&self, path: &str, out: &mut Vec<FieldWarning>) {
        for key in self.extra.keys() {
            if !STANDARD_META.contains(&key.as_str()) {
                out.push(FieldWarning {
                    path: join(path, key),
                });
            }
        }
    }
}

/// An Argo CD `Application` (`argoproj.io/v1alpha1`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Application {
    /// Always `argoproj.io/v1alpha1`.
    pub api_version: String,
    /// Always `Application`.
    pub kind: String,
    /// Metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The desired state.
    pub spec: ApplicationSpec,
    /// Status, kept opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Value>,
    /// Unknown top-level fields.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// `Application.spec`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationSpec {
    /// The AppProject the application belongs to.
    #[serde(default)]
    pub project: String,
    /// The single source (mutually exclusive with `sources`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<ApplicationSource>,
    /// Several sources, combined.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<ApplicationSource>,
    /// Where to deploy.
    #[serde(default)]
    pub destination: ApplicationDestination,
    /// When and how to sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_policy: Option<SyncPolicy>,
    /// Differences to ignore when comparing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore_differences: Vec<ResourceIgnoreDifferences>,
    /// How many history entries to keep.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision_history_limit: Option<i64>,
    /// Free-form information shown in the UI.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub info: Vec<NameValue>,
    /// Unknown fields.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// `spec.destination`: a cluster by `server` URL or by `name`, and a namespace.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationDestination {
    /// API server URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// Cluster name (from a cluster Secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Target namespace for namespaced objects without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Unknown fields.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// `spec.syncPolicy`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncPolicy {
    /// Automated sync; absent means manual.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub automated: Option<SyncPolicyAutomated>,
    /// Options such as `CreateNamespace=true`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sync_options: Vec<String>,
    /// Retry policy for failed syncs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryStrategy>,
    /// Labels and annotations for a namespace created by `CreateNamespace=true`, opaque.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_namespace_metadata: Option<Value>,
    /// Unknown fields.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// `spec.syncPolicy.automated`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncPolicyAutomated {
    /// Delete live objects no longer in Git.
    #[serde(default)]
    pub prune: bool,
    /// Revert changes made in the cluster.
    #[serde(default)]
    pub self_heal: bool,
    /// Allow syncing to an empty set of objects.
    #[serde(default)]
    pub allow_empty: bool,
    /// Unknown fields (e.g. `enabled` of newer Argo CD versions).
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// `spec.syncPolicy.retry`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetryStrategy {
    /// Maximum attempts; negative means unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    /// Backoff between attempts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<Backoff>,
    /// Unknown fields.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// `spec.syncPolicy.retry.backoff`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Backoff {
    /// First delay, a Go duration such as `5s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    /// Multiplier applied after each attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub factor: Option<i64>,
    /// Upper bound of the delay, a Go duration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_duration: Option<String>,
    /// Unknown fields.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// One entry of `spec.ignoreDifferences`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceIgnoreDifferences {
    /// API group (empty for core).
    #[serde(default)]
    pub group: String,
    /// Kind.
    #[serde(default)]
    pub kind: String,
    /// Object name, all when empty.
    #[serde(default)]
    pub name: String,
    /// Object namespace, all when empty.
    #[serde(default)]
    pub namespace: String,
    /// RFC 6901 pointers to ignore.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub json_pointers: Vec<String>,
    /// jq path expressions to ignore.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jq_path_expressions: Vec<String>,
    /// Field managers whose fields are ignored.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub managed_fields_managers: Vec<String>,
    /// Unknown fields.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl Application {
    /// Parse one Application from YAML or JSON; `what` names the input in errors.
    pub fn from_yaml(what: &str, text: &str) -> Result<Self, ModelError> {
        let app: Application = serde_yaml::from_str(text).map_err(|e| ModelError::Parse {
            what: what.to_string(),
            message: e.to_string(),
        })?;
        if app.api_version != "argoproj.io/v1alpha1" || app.kind != "Application" {
            return Err(ModelError::WrongKind {
                what: what.to_string(),
                expected: "Application",
                found: format!("{} {}", app.api_version, app.kind),
            });
        }
        Ok(app)
    }

    /// The sources to render: `spec.sources` when set, else `spec.source`.
    pub fn sources(&self) -> Vec<&ApplicationSource> {
        if !self.spec.sources.is_empty() {
            self.spec.sources.iter().collect()
        } else {
            self.spec.source.iter().collect()
        }
    }

    /// Whether `spec.sources` (multi-source form) is used.
    pub fn is_multi_source(&self) -> bool {
        !self.spec.sources.is_empty()
    }

    /// Every unknown field, with its path.
    pub fn unknown_fields(&self) -> Vec<FieldWarning> {
        let mut out = Vec::new();
        report_extra(&self.extra, "", &mut out);
        self.metadata.unknown("metadata", &mut out);
        let s = &self.spec;
        report_extra(&s.extra, "spec", &mut out);
        s.source.unknown("spec.source", &mut out);
        s.sources.unknown("spec.sources", &mut out);
        report_extra(&s.destination.extra, "spec.destination", &mut out);
        if let Some(p) = &s.sync_policy {
            report_extra(&p.extra, "spec.syncPolicy", &mut out);
            if let Some(a) = &p.automated {
                report_extra(&a.extra, "spec.syncPolicy.automated", &mut out);
            }
            if let Some(r) = &p.retry {
                report_extra(&r.extra, "spec.syncPolicy.retry", &mut out);
                if let Some(b) = &r.backoff {
                    report_extra(&b.extra, "spec.syncPolicy.retry.backoff", &mut out);
                }
            }
        }
        for (i, d) in s.ignore_differences.iter().enumerate() {
            report_extra(&d.extra, &format!("spec.ignoreDifferences[{i}]"), &mut out);
        }
        s.info.unknown("spec.info", &mut out);
        out
    }

    /// Check the spec; the error names the offending field.
    pub fn validate(&self) -> Result<(), ModelError> {
        validate::application(self)
    }
}
