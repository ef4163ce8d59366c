//! Jsonnet, evaluated in-process with jrsonnet.
//!
//! As in Argo CD, `.jsonnet` files of a directory source are evaluated with the source
//! directory and the `libs` (relative to the repository root) as import paths, external
//! variables and top-level arguments from `directory.jsonnet`. A result that is an array
//! yields each element; an object yields itself (flattened if a `*List`).
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use jrsonnet_evaluator::manifest::JsonFormat;
use jrsonnet_evaluator::tla::TlaArg;
use jrsonnet_evaluator::trace::PathResolver;
use jrsonnet_evaluator::{apply_tla, FileImportResolver, IStr, State};

use super::{push_object, Manifest, RenderError};
use crate::model::ApplicationSourceJsonnet;

/// Errors are reported through [`RenderError::Parse`]; this enum names the failure stage.
#[derive(Debug, thiserror::Error)]
pub enum JsonnetError {
    /// Evaluation failed.
    #[error("evaluation failed: {0}")]
    Eval(String),
    /// The evaluator state was already in use on this thread.
    #[error("jsonnet evaluator already active on this thread")]
    Busy,
}

impl JsonnetError {
    fn into_render(self, what: &str) -> RenderError {
        RenderError::Parse {
            what: what.to_string(),
            message: self.to_string(),
        }
    }
}

/// Evaluate `file` (on a checkout) to manifests. `jpaths` are the import paths.
/// Runs synchronously; call it on a blocking thread.
pub fn evaluate_file(
    file: &Path,
    jpaths: Vec<PathBuf>,
    opts: Option<&ApplicationSourceJsonnet>,
    what: &str,
) -> Result<Vec<Manifest>, RenderError> {
    let json = evaluate_to_json(file, jpaths, opts).map_err(|e| e.into_render(what))?;
    let value: serde_json::Value = serde_json::from_str(&json).map_err(|e| RenderError::Parse {
        what: what.to_string(),
        message: format!("jsonnet output is not JSON: {e}"),
    })?;
    let mut out = Vec::new();
    push_object(what, value, &mut out)?;
    Ok(out)
}

fn evaluate_to_json(
    file: &Path,
    jpaths: Vec<PathBuf>,
    opts: Option<&ApplicationSourceJsonnet>,
) -> Result<String, JsonnetError> {
    let eval = |e: jrsonnet_evaluator::Error| JsonnetError::Eval(format!("{e}"));
    let ctx = jrsonnet_stdlib::ContextInitializer::new(PathResolver::Absolute);
    // IStr is an interned string: its hash and equality never change.
    #[allow(clippy::mutable_key_type)]
    let mut tlas: HashMap<IStr, TlaArg> = HashMap::new();
    if let Some(o) = opts {
        for v in &o.ext_vars {
            if v.code {
                ctx.add_ext_code(&v.name, &v.value).map_err(eval)?;
            } else {
                ctx.add_ext_str(v.name.as_str().into(), v.value.as_str().into());
            }
        }
        for v in &o.tlas {
            let arg = if v.code {
                TlaArg::InlineCode(v.value.clone())
            } else {
                TlaArg::String(v.value.as_str().into())
            };
            tlas.insert(v.name.as_str().into(), arg);
        }
    }
    let mut builder = State::builder();
    builder
        .import_resolver(FileImportResolver::new(jpaths))
        .context_initializer(ctx);
    let state = builder.build();
    let _guard = state.try_enter().ok_or(JsonnetError::Busy)?;
    let val = state.import(file).map_err(eval)?;
    let val = apply_tla(&tlas, val).map_err(eval)?;
    val.manifest(JsonFormat::minify()).map_err(eval)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::JsonnetVar;

    fn var(name: &str, value: &str, code: bool) -> JsonnetVar {
        JsonnetVar {
            name: name.into(),
            value: value.into(),
            code,
            ..Default::default()
        }
    }

    #[test]
    fn ext_vars_tlas_and_libs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lib = dir.path().join("lib");
        std::fs::create_dir_all(&lib).expect("mkdir");
        std::fs::write(
            lib.join("cm.libsonnet"),
            "{ cm(n):: { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: n } } }",
        )
        .expect("write");
        let app = dir.path().join("app");
        std::fs::create_dir_all(&app).expect("mkdir");
        let main = app.join("main.jsonnet");
        std::fs::write(&main, "local l = import 'cm.libsonnet';\nfunction(replicas) [l.cm(std.extVar('env')), l.cm('n' + std.toString(replicas + std.extVar('extra')))]").expect("write");
        let opts = ApplicationSourceJsonnet {
            ext_vars: vec![var("env", "prod", false), var("extra", "1 + 1", true)],
            tlas: vec![var("replicas", "3", true)],
            libs: vec!["lib".into()],
            ..Default::default()
        };
        let out = evaluate_file(
            &main,
            vec![app.clone(), lib],
            Some(&opts),
            "app/main.jsonnet",
        )
        .expect("evaluates");
        let names: Vec<_> = out.iter().map(|m| m.name().to_string()).collect();
        assert_eq!(names, ["prod", "n5"]);
        std::fs::write(&main, "{ a: error 'boom' }").expect("write");
        let err = evaluate_file(&main, vec![app], None, "app/main.jsonnet").unwrap_err();
        assert!(err.to_string().contains("boom"), "{err}");
    }
}
