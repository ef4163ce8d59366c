//! `spec.source` / `spec.sources[]` and the per-tool blocks.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{report_extra, FieldWarning, Unknown};

/// One source of an Application: a Git path or a Helm chart, plus tool settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationSource {
    /// Git or Helm repository URL (or a local path / `file://` URL).
    #[serde(default, rename = "repoURL")]
    pub repo_url: String,
    /// Directory inside the Git repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Branch, tag, commit SHA or `HEAD` (Git); chart version (Helm repository).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_revision: Option<String>,
    /// Chart name, when `repoURL` is a Helm chart repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chart: Option<String>,
    /// Name other sources use as `$ref/...` in Helm value files.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "ref")]
    pub ref_name: Option<String>,
    /// Optional source name (newer Argo CD versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Helm settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub helm: Option<ApplicationSourceHelm>,
    /// Kustomize settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kustomize: Option<ApplicationSourceKustomize>,
    /// Plain directory settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directory: Option<ApplicationSourceDirectory>,
    /// Config management plugin settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<ApplicationSourcePlugin>,
    /// Unknown fields.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// Which tool renders a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceKind {
    /// YAML/JSON/Jsonnet files.
    Directory,
    /// `kustomize build`.
    Kustomize,
    /// `helm template`.
    Helm,
    /// A config management plugin.
    Plugin,
}

impl std::fmt::Display for SourceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SourceKind::Directory => "Directory",
            SourceKind::Kustomize => "Kustomize",
            SourceKind::Helm => "Helm",
            SourceKind::Plugin => "Plugin",
        })
    }
}

impl ApplicationSource {
    /// The tool named explicitly by the source (a `chart` or exactly one tool block).
    /// `Err` lists the blocks when more than one is set, as Argo CD refuses that.
    pub fn explicit_kind(&self) -> Result<Option<SourceKind>, Vec<SourceKind>> {
        if self.chart.is_some() {
            return Ok(Some(SourceKind::Helm));
        }
        let mut set = Vec::new();
        if self.helm.is_some() {
            set.push(SourceKind::Helm);
        }
        if self.kustomize.is_some() {
            set.push(SourceKind::Kustomize);
        }
        if self.directory.is_some() {
            set.push(SourceKind::Directory);
        }
        if self.plugin.is_some() {
            set.push(SourceKind::Plugin);
        }
        match set.len() {
            0 => Ok(None),
            1 => Ok(Some(set[0])),
            _ => Err(set),
        }
    }

    /// Whether the source only provides files to others (`ref` without path or chart).
    pub fn is_ref_only(&self) -> bool {
        self.ref_name.is_some() && self.path.is_none() && self.chart.is_none()
    }

    /// The target revision, `HEAD` when empty.
    pub fn revision(&self) -> &str {
        match self.target_revision.as_deref() {
            Some("") | None => "HEAD",
            Some(r) => r,
        }
    }
}

impl Unknown for ApplicationSource {
    fn unknown(&self, path: &str, out: &mut Vec<FieldWarning>) {
        report_extra(&self.extra, path, out);
        if let Some(h) = &self.helm {
            let p = format!("{path}.helm");
            report_extra(&h.extra, &p, out);
            h.parameters.unknown(&format!("{p}.parameters"), out);
            h.file_parameters
                .unknown(&format!("{p}.fileParameters"), out);
        }
        if let Some(k) = &self.kustomize {
            let p = format!("{path}.kustomize");
            report_extra(&k.extra, &p, out);
            k.replicas.unknown(&format!("{p}.replicas"), out);
        }
        if let Some(d) = &self.directory {
            let p = format!("{path}.directory");
            report_extra(&d.extra, &p, out);
            if let Some(j) = &d.jsonnet {
                let p = format!("{p}.jsonnet");
                report_extra(&j.extra, &p, out);
                j.ext_vars.unknown(&format!("{p}.extVars"), out);
                j.tlas.unknown(&format!("{p}.tlas"), out);
            }
        }
        if let Some(pl) = &self.plugin {
            let p = format!("{path}.plugin");
            report_extra(&pl.extra, &p, out);
            pl.env.unknown(&format!("{p}.env"), out);
            pl.parameters.unknown(&format!("{p}.parameters"), out);
        }
    }
}

/// `source.helm`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationSourceHelm {
    /// Release name; the Application name when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_name: Option<String>,
    /// Values files, relative to the chart path, or `$ref/path` into another source.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub value_files: Vec<String>,
    /// Inline values as a YAML string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<String>,
    /// Inline values as an object (takes precedence over `values`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values_object: Option<Value>,
    /// `--set` / `--set-string` parameters.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parameters: Vec<HelmParameter>,
    /// `--set-file` parameters.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub file_parameters: Vec<HelmFileParameter>,
    /// Leave CRDs out of the output.
    #[serde(default)]
    pub skip_crds: bool,
    /// Missing value files are not an error.
    #[serde(default)]
    pub ignore_missing_value_files: bool,
    /// Pass repository credentials to all domains.
    #[serde(default)]
    pub pass_credentials: bool,
    /// Helm version (`v3`); informational.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Namespace passed to `helm template` instead of the destination namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Unknown fields.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// One Helm `--set` parameter.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HelmParameter {
    /// Dotted key.
    #[serde(default)]
    pub name: String,
    /// Value.
    #[serde(default)]
    pub value: String,
    /// Use `--set-string`.
    #[serde(default)]
    pub force_string: bool,
    /// Unknown fields.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl Unknown for HelmParameter {
    fn unknown(&self, path: &str, out: &mut Vec<FieldWarning>) {
        report_extra(&self.extra, path, out);
    }
}

/// One Helm `--set-file` parameter.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HelmFileParameter {
    /// Dotted key.
    #[serde(default)]
    pub name: String,
    /// File path, relative to the chart path.
    #[serde(default)]
    pub path: String,
    /// Unknown fields.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl Unknown for HelmFileParameter {
    fn unknown(&self, path: &str, out: &mut Vec<FieldWarning>) {
        report_extra(&self.extra, path, out);
    }
}

/// `source.kustomize`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationSourceKustomize {
    /// Prefix for every object name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_prefix: Option<String>,
    /// Suffix for every object name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_suffix: Option<String>,
    /// Image overrides, as `kustomize edit set image` takes them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<String>,
    /// Labels added to every object (and selectors).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub common_labels: BTreeMap<String, String>,
    /// Annotations added to every object.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub common_annotations: BTreeMap<String, String>,
    /// Namespace for every namespaced object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Replica count overrides.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<KustomizeReplica>,
    /// Patches appended to the kustomization's `patches`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub patches: Vec<KustomizePatch>,
    /// Override labels already in the kustomization.
    #[serde(default)]
    pub force_common_labels: bool,
    /// Override annotations already in the kustomization.
    #[serde(default)]
    pub force_common_annotations: bool,
    /// Kustomize version name; informational.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Components added to the kustomization.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<String>,
    /// Unknown fields.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// A replica count override.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KustomizeReplica {
    /// Name of the Deployment/StatefulSet.
    #[serde(default)]
    pub name: String,
    /// Count, an integer or a string holding one.
    #[serde(default)]
    pub count: Value,
    /// Unknown fields.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl Unknown for KustomizeReplica {
    fn unknown(&self, path: &str, out: &mut Vec<FieldWarning>) {
        report_extra(&self.extra, path, out);
    }
}

/// A Kustomize patch, kept as the kustomization's own `patches` entry (patch, path,
/// target, options).
pub type KustomizePatch = Value;

/// `source.directory`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationSourceDirectory {
    /// Descend into subdirectories.
    #[serde(default)]
    pub recurse: bool,
    /// Glob of files to read (relative to the path; `{a,b}` sets allowed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include: Option<String>,
    /// Glob of files to skip.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude: Option<String>,
    /// Jsonnet settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jsonnet: Option<ApplicationSourceJsonnet>,
    /// Unknown fields.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// `source.directory.jsonnet`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationSourceJsonnet {
    /// External variables (`std.extVar`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ext_vars: Vec<JsonnetVar>,
    /// Top-level arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tlas: Vec<JsonnetVar>,
    /// Library search paths, relative to the repository root.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub libs: Vec<String>,
    /// Unknown fields.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// A Jsonnet variable: a string, or code when `code` is true.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JsonnetVar {
    /// Variable name.
    #[serde(default)]
    pub name: String,
    /// Value (string or Jsonnet code).
    #[serde(default)]
    pub value: String,
    /// Whether `value` is Jsonnet code.
    #[serde(default)]
    pub code: bool,
    /// Unknown fields.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl Unknown for JsonnetVar {
    fn unknown(&self, path: &str, out: &mut Vec<FieldWarning>) {
        report_extra(&self.extra, path, out);
    }
}

/// `source.plugin`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationSourcePlugin {
    /// Plugin name, as declared in the node configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Environment, passed as `ARGOCD_ENV_<name>`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<NameValue>,
    /// Parameters, passed as `PARAM_<NAME>`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parameters: Vec<PluginParameter>,
    /// Unknown fields.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

/// A name/value pair.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NameValue {
    /// Name.
    #[serde(default)]
    pub name: String,
    /// Value.
    #[serde(default)]
    pub value: String,
    /// Unknown fields.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl Unknown for NameValue {
    fn unknown(&self, path: &str, out: &mut Vec<FieldWarning>) {
        report_extra(&self.extra, path, out);
    }
}

/// A plugin parameter: a string, an array or a map.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PluginParameter {
    /// Parameter name.
    #[serde(default)]
    pub name: String,
    /// String value.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "string")]
    pub string: Option<String>,
    /// Array value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub array: Option<Vec<String>>,
    /// Map value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map: Option<BTreeMap<String, String>>,
    /// Unknown fields.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl Unknown for PluginParameter {
    fn unknown(&self, path: &str, out: &mut Vec<FieldWarning>) {
        report_extra(&self.extra, path, out);
    }
}
