//! Config management plugins: a command declared in the node configuration, run in the
//! source's checkout with Argo CD's plugin environment.
//!
//! The command runs without a shell, with a scrubbed environment holding only `PATH`,
//! `HOME`, `ARGOCD_APP_NAME`, `ARGOCD_APP_NAMESPACE`, `ARGOCD_APP_REVISION`,
//! `ARGOCD_APP_SOURCE_PATH`, `ARGOCD_APP_SOURCE_REPO_URL`,
//! `ARGOCD_APP_SOURCE_TARGET_REVISION`, `ARGOCD_ENV_<name>` for each `plugin.env` entry,
//! `PARAM_<NAME>` for each parameter (arrays as `PARAM_<NAME>_<i>`, maps as
//! `PARAM_<NAME>_<KEY>`) and `ARGOCD_APP_PARAMETERS` (the parameters as JSON). Its stdout
//! is parsed as a YAML stream of objects.
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::tool::ToolRun;
use super::{parse_manifests, Manifest, RenderError, RenderSettings};
use crate::model::ApplicationSourcePlugin;

/// A plugin declared in configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginConfig {
    /// Name that `source.plugin.name` refers to.
    pub name: String,
    /// Optional command run first (program and arguments).
    #[serde(default)]
    pub init: Option<Vec<String>>,
    /// Command whose stdout is the manifests (program and arguments).
    pub generate: Vec<String>,
}

/// Errors specific to plugins (reported as [`RenderError::Invalid`]).
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// No plugin of that name is configured.
    #[error("no config management plugin named {0:?} is configured")]
    Unknown(String),
    /// The source names no plugin and several are configured.
    #[error("plugin.name is required when several plugins are configured")]
    Ambiguous,
    /// A configured command is empty.
    #[error("plugin {0:?} has an empty command")]
    EmptyCommand(String),
}

/// Values describing the app and source, for the plugin's environment.
#[derive(Debug, Clone)]
pub struct PluginContext<'a> {
    /// Application name.
    pub app_name: &'a str,
    /// Destination namespace.
    pub app_namespace: &'a str,
    /// Resolved commit.
    pub revision: &'a str,
    /// Source path.
    pub source_path: &'a str,
    /// Source repository URL.
    pub repo_url: &'a str,
    /// Source target revision as written.
    pub target_revision: &'a str,
}

/// Choose the plugin for a source.
pub fn select<'s>(
    settings: &'s RenderSettings,
    source: Option<&ApplicationSourcePlugin>,
) -> Result<&'s PluginConfig, RenderError> {
    let invalid = |e: PluginError| RenderError::Invalid {
        path: "plugin".into(),
        message: e.to_string(),
    };
    match source.and_then(|p| p.name.as_deref()) {
        Some(name) => settings
            .plugins
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| invalid(PluginError::Unknown(name.to_string()))),
        None => match settings.plugins.as_slice() {
            [one] => Ok(one),
            [] => Err(invalid(PluginError::Unknown(String::new()))),
            _ => Err(invalid(PluginError::Ambiguous)),
        },
    }
}

fn env_key(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// The plugin environment (without `PATH`/`HOME`).
pub fn environment(
    ctx: &PluginContext<'_>,
    source: Option<&ApplicationSourcePlugin>,
) -> Vec<(String, String)> {
    let mut env = vec![
        ("ARGOCD_APP_NAME".into(), ctx.app_name.to_string()),
        ("ARGOCD_APP_NAMESPACE".into(), ctx.app_namespace.to_string()),
        ("ARGOCD_APP_REVISION".into(), ctx.revision.to_string()),
        ("ARGOCD_APP_SOURCE_PATH".into(), ctx.source_path.to_string()),
        (
            "ARGOCD_APP_SOURCE_REPO_URL".into(),
            ctx.repo_url.to_string(),
        ),
        (
            "ARGOCD_APP_SOURCE_TARGET_REVISION".into(),
            ctx.target_revision.to_string(),
        ),
    ];
    if let Some(p) = source {
        for e in &p.env {
            env.push((format!("ARGOCD_ENV_{}", e.name), e.value.clone()));
        }
        let mut params = Vec::new();
        for param in &p.parameters {
            let key = format!("PARAM_{}", env_key(&param.name));
            if let Some(s) = &param.string {
                env.push((key.clone(), s.clone()));
            }
            if let Some(a) = &param.array {
                for (i, v) in a.iter().enumerate() {
                    env.push((format!("{key}_{i}"), v.clone()));
                }
            }
            if let Some(m) = &param.map {
                for (k, v) in m {
                    env.push((format!("{key}_{}", env_key(k)), v.clone()));
                }
            }
            params.push(serde_json::json!({
                "name": param.name,
                "string": param.string,
                "array": param.array,
                "map": param.map,
            }));
        }
        env.push((
            "ARGOCD_APP_PARAMETERS".into(),
            serde_json::Value::Array(params).to_string(),
        ));
    }
    env
}

async fn run_command(
    settings: &RenderSettings,
    plugin: &PluginConfig,
    argv: &[String],
    cwd: &Path,
    home: &Path,
    env: &[(String, String)],
) -> Result<Vec<u8>, RenderError> {
    let (program, args) = argv.split_first().ok_or_else(|| RenderError::Invalid {
        path: "plugin".into(),
        message: PluginError::EmptyCommand(plugin.name.clone()).to_string(),
    })?;
    let what = format!("plugin {} ({program})", plugin.name);
    let mut run = ToolRun::new(Path::new(program), cwd, home, &settings.tool_path, what);
    for a in args {
        run.arg(a);
    }
    for (k, v) in env {
        run.env(k.clone(), v.clone());
    }
    run.timeout = settings.tool_timeout;
    run.limit = settings.max_output_bytes;
    run.run().await
}

/// Run the plugin's init and generate commands in `cwd`; parse the generated objects.
pub async fn generate(
    settings: &RenderSettings,
    plugin: &PluginConfig,
    cwd: &Path,
    home: &Path,
    env: &[(String, String)],
) -> Result<Vec<Manifest>, RenderError> {
    if let Some(init) = &plugin.init {
        run_command(settings, plugin, init, cwd, home, env).await?;
    }
    let out = run_command(settings, plugin, &plugin.generate, cwd, home, env).await?;
    let what = format!("plugin {}", plugin.name);
    let text = String::from_utf8(out).map_err(|_| RenderError::Parse {
        what: what.clone(),
        message: "output is not UTF-8".into(),
    })?;
    parse_manifests(&what, &text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{NameValue, PluginParameter};

    #[test]
    fn environment_has_argo_cd_names() {
        let ctx = PluginContext {
            app_name: "a",
            app_namespace: "ns",
            revision: "abc",
            source_path: "p",
            repo_url: "u",
            target_revision: "main",
        };
        let src = ApplicationSourcePlugin {
            env: vec![NameValue {
                name: "FOO".into(),
                value: "bar".into(),
                ..Default::default()
            }],
            parameters: vec![PluginParameter {
                name: "image-tag".into(),
                string: Some("v1".into()),
                array: Some(vec!["x".into()]),
                ..Default::default()
            }],
            ..Default::default()
        };
        let env = environment(&ctx, Some(&src));
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("ARGOCD_APP_NAME"), Some("a"));
        assert_eq!(get("ARGOCD_ENV_FOO"), Some("bar"));
        assert_eq!(get("PARAM_IMAGE_TAG"), Some("v1"));
        assert_eq!(get("PARAM_IMAGE_TAG_0"), Some("x"));
        assert!(get("ARGOCD_APP_PARAMETERS").is_some_and(|p| p.contains("image-tag")));
    }
}
