//! Rendering: from an [`Application`] to the objects that should exist.
//!
//! [`Renderer::render`] resolves each source's revision in the [`SourceCache`], computes the
//! app's input key (the Git object ids of everything the app reads, plus its parameters),
//! and returns cached output when the key is unchanged; otherwise it renders each source
//! with its tool ([`directory`], [`kustomize`], [`helm`], [`jsonnet`], [`plugin`]) and
//! concatenates the objects of all sources, as Argo CD does.
//!
//! Output is faithful to what the tools produced: namespaced objects without
//! `metadata.namespace` are not given the destination namespace here (Argo CD does that at
//! sync time). Within a source, objects keep the tool's order; [`sort_manifests`] gives the
//! stable order the CLI prints.
pub mod cache;
pub mod directory;
mod engine;
pub mod helm;
mod inputs;
pub mod jsonnet;
pub mod kustomize;
pub mod plugin;
mod tool;

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::model::ModelError;
use crate::source::SourceError;

pub use cache::{CacheLimits, RenderCache};
pub use engine::{Rendered, Renderer};
pub use plugin::PluginConfig;

/// Errors from rendering an application.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The Application spec is invalid.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// Reading the Git source failed.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// A manifest file or tool output could not be parsed.
    #[error("{what}: {message}")]
    Parse {
        /// File or tool, with the document index.
        what: String,
        /// What is wrong.
        message: String,
    },
    /// A tool is not installed or not configured.
    #[error("{tool} not found: {hint}")]
    ToolMissing {
        /// Tool name.
        tool: String,
        /// How to provide it.
        hint: String,
    },
    /// A tool exited with an error.
    #[error("{what} failed ({status}): {stderr}")]
    ToolFailed {
        /// The command, without secret arguments.
        what: String,
        /// Exit status.
        status: String,
        /// The end of its standard error.
        stderr: String,
    },
    /// A tool ran longer than allowed and was killed.
    #[error("{what} timed out after {timeout:?} and was killed")]
    Timeout {
        /// The command.
        what: String,
        /// The limit.
        timeout: Duration,
    },
    /// A tool wrote more than allowed and was killed.
    #[error("{what} wrote more than {limit} bytes and was killed")]
    OutputTooLarge {
        /// The command.
        what: String,
        /// The limit in bytes.
        limit: usize,
    },
    /// The source cannot be rendered as configured.
    #[error("{path}: {message}")]
    Invalid {
        /// Where (e.g. `spec.sources[1].helm.valueFiles[0]`).
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A temporary directory or file could not be written.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A blocking task panicked or was cancelled.
    #[error("render task failed: {0}")]
    Task(String),
}

pub(crate) fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> RenderError {
    let context = context.into();
    move |source| RenderError::Io { context, source }
}

/// One desired object, as the tool produced it.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// The object (a JSON object with at least `kind`).
    pub object: Value,
}

impl Manifest {
    fn str_at(&self, path: &[&str]) -> &str {
        let mut v = &self.object;
        for p in path {
            match v.get(p) {
                Some(x) => v = x,
                None => return "",
            }
        }
        v.as_str().unwrap_or("")
    }
    /// `apiVersion`.
    pub fn api_version(&self) -> &str {
        self.str_at(&["apiVersion"])
    }
    /// API group: the part of `apiVersion` before `/`, empty for the core group.
    pub fn group(&self) -> &str {
        self.api_version()
            .rsplit_once('/')
            .map(|(g, _)| g)
            .unwrap_or("")
    }
    /// `kind`.
    pub fn kind(&self) -> &str {
        self.str_at(&["kind"])
    }
    /// `metadata.name`.
    pub fn name(&self) -> &str {
        self.str_at(&["metadata", "name"])
    }
    /// `metadata.namespace` (empty when unset).
    pub fn namespace(&self) -> &str {
        self.str_at(&["metadata", "namespace"])
    }
}

/// Sort objects by (group, kind, namespace, name); ties keep their order.
pub fn sort_manifests(manifests: &mut [Manifest]) {
    manifests.sort_by(|a, b| {
        (a.group(), a.kind(), a.namespace(), a.name()).cmp(&(
            b.group(),
            b.kind(),
            b.namespace(),
            b.name(),
        ))
    });
}

/// Parse a YAML (or JSON) stream into objects: empty documents are skipped, every other
/// document must be an object with a `kind`, and `*List` objects are flattened into their
/// items. `what` names the input in errors.
pub fn parse_manifests(what: &str, text: &str) -> Result<Vec<Manifest>, RenderError> {
    let mut out = Vec::new();
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let what = format!("{what} (document {})", i + 1);
        let parse_err = |e: serde_yaml::Error| RenderError::Parse {
            what: what.clone(),
            message: e.to_string(),
        };
        let mut yaml = serde_yaml::Value::deserialize(doc).map_err(parse_err)?;
        yaml.apply_merge().map_err(parse_err)?;
        push_object(&what, yaml_to_json(yaml), &mut out)?;
    }
    Ok(out)
}

/// Convert YAML to JSON as Kubernetes' YAML reader does: `<<` merge keys applied (by the
/// caller), scalar map keys turned into strings, tags dropped.
pub(crate) fn yaml_to_json(v: serde_yaml::Value) -> Value {
    use serde_yaml::Value as Y;
    match v {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                n.as_f64()
                    .and_then(serde_json::Number::from_f64)
                    .map_or(Value::Null, Value::Number)
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(items.into_iter().map(yaml_to_json).collect()),
        Y::Mapping(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| {
                    let key = match yaml_to_json(k) {
                        Value::String(s) => s,
                        Value::Null => "null".to_string(),
                        other => other.to_string(),
                    };
                    (key, yaml_to_json(v))
                })
                .collect(),
        ),
        Y::Tagged(t) => yaml_to_json(t.value),
    }
}

/// Add one parsed value: skip null, flatten lists and arrays, require `kind`.
pub(crate) fn push_object(
    what: &str,
    value: Value,
    out: &mut Vec<Manifest>,
) -> Result<(), RenderError> {
    match value {
        Value::Null => Ok(()),
        Value::Array(items) => {
            for item in items {
                push_object(what, item, out)?;
            }
            Ok(())
        }
        Value::Object(mut map) => {
            let kind = map.get("kind").and_then(Value::as_str).unwrap_or("");
            if kind.is_empty() {
                return Err(RenderError::Parse {
                    what: what.to_string(),
                    message: "Object 'Kind' is missing".into(),
                });
            }
            if kind.ends_with("List") {
                if let Some(Value::Array(_)) = map.get("items") {
                    if let Some(Value::Array(items)) = map.remove("items") {
                        for item in items {
                            push_object(what, item, out)?;
                        }
                        return Ok(());
                    }
                }
            }
            out.push(Manifest {
                object: Value::Object(map),
            });
            Ok(())
        }
        other => Err(RenderError::Parse {
            what: what.to_string(),
            message: format!("expected an object, found {}", type_name(&other)),
        }),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// How to run Kustomize.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KustomizeTool {
    /// A `kustomize` binary: `kustomize build DIR`.
    Kustomize(PathBuf),
    /// `kubectl kustomize DIR`.
    Kubectl(PathBuf),
}

/// Settings of a [`Renderer`].
#[derive(Debug, Clone)]
pub struct RenderSettings {
    /// The `helm` binary; `None` when not found.
    pub helm: Option<PathBuf>,
    /// How to run Kustomize; `None` when neither `kustomize` nor `kubectl` is found.
    pub kustomize: Option<KustomizeTool>,
    /// Wall-clock limit of one tool run.
    pub tool_timeout: Duration,
    /// Limit on what one tool run may write to stdout.
    pub max_output_bytes: usize,
    /// Config management plugins.
    pub plugins: Vec<PluginConfig>,
    /// Where temporary checkouts go (system temp dir when `None`).
    pub work_dir: Option<PathBuf>,
    /// Render cache limits.
    pub cache: CacheLimits,
    /// `PATH` given to tools; tools run with a scrubbed environment (the node's `PATH` by
    /// default, nothing else inherited).
    pub tool_path: String,
    /// Renders running at once.
    pub max_parallel_renders: usize,
}

impl RenderSettings {
    /// Defaults, finding tools: helm from `FLOTILLA_HELM` or `PATH`; kustomize from
    /// `FLOTILLA_KUSTOMIZE`, a `kustomize` binary on `PATH`, else `kubectl kustomize`.
    pub fn discover() -> Self {
        let helm = std::env::var_os("FLOTILLA_HELM")
            .map(PathBuf::from)
            .or_else(|| find_on_path("helm"));
        let kustomize = std::env::var_os("FLOTILLA_KUSTOMIZE")
            .map(|p| KustomizeTool::Kustomize(PathBuf::from(p)))
            .or_else(|| find_on_path("kustomize").map(KustomizeTool::Kustomize))
            .or_else(|| find_on_path("kubectl").map(KustomizeTool::Kubectl));
        Self {
            helm,
            kustomize,
            tool_timeout: Duration::from_secs(90),
            max_output_bytes: 64 << 20,
            plugins: Vec::new(),
            work_dir: None,
            cache: CacheLimits::default(),
            tool_path: std::env::var("PATH")
                .unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into()),
            max_parallel_renders: std::thread::available_parallelism().map_or(2, |n| n.get() * 2),
        }
    }
}

/// The first executable called `name` on `PATH`.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_streams_skips_empty_and_flattens_lists() {
        let text = "---\n# only a comment\n---\napiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: a}}\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: b}}\n---\n\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d, namespace: x}\n";
        let m = parse_manifests("f.yaml", text).expect("parses");
        let names: Vec<_> = m.iter().map(|m| m.name()).collect();
        assert_eq!(names, ["a", "b", "d"]);
        assert_eq!(m[2].group(), "apps");
        assert_eq!(m[2].namespace(), "x");
    }

    #[test]
    fn merge_keys_and_non_string_keys_as_kubernetes_reads_them() {
        let text = "base: &b {a: 1}\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: m}\ndata:\n  <<: *b\n  1: one\n  true: yes\n";
        let m = parse_manifests("m.yaml", text).expect("parses");
        let data = &m[0].object["data"];
        assert_eq!(data["a"], 1);
        assert_eq!(data["1"], "one");
        assert_eq!(data["true"], "yes");
    }

    #[test]
    fn refuses_documents_without_kind() {
        let err = parse_manifests("dir/values.yaml", "replicas: 3\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "dir/values.yaml (document 1): Object 'Kind' is missing"
        );
        assert!(parse_manifests("x.yaml", "a: [1\n").is_err());
    }

    #[test]
    fn sorts_by_group_kind_namespace_name() {
        let mk = |api: &str, kind: &str, ns: &str, name: &str| Manifest {
            object: serde_json::json!({"apiVersion": api, "kind": kind, "metadata": {"name": name, "namespace": ns}}),
        };
        let mut v = vec![
            mk("apps/v1", "Deployment", "a", "x"),
            mk("v1", "Service", "a", "b"),
            mk("v1", "ConfigMap", "b", "a"),
            mk("v1", "ConfigMap", "a", "z"),
        ];
        sort_manifests(&mut v);
        let order: Vec<_> = v.iter().map(|m| (m.kind(), m.name())).collect();
        assert_eq!(
            order,
            [
                ("ConfigMap", "z"),
                ("ConfigMap", "a"),
                ("Service", "b"),
                ("Deployment", "x")
            ]
        );
    }
}
