//! Validation of an Application spec, with errors located by field path.
use super::{Application, ApplicationSource, ModelError};

fn invalid(path: impl Into<String>, message: impl Into<String>) -> ModelError {
    ModelError::Invalid {
        path: path.into(),
        message: message.into(),
    }
}

/// Check an Application the way Argo CD's admission checks do, as far as rendering needs.
pub(super) fn application(app: &Application) -> Result<(), ModelError> {
    if app.metadata.name.is_empty() {
        return Err(invalid("metadata.name", "is required"));
    }
    let spec = &app.spec;
    match (&spec.source, spec.sources.is_empty()) {
        (None, true) => {
            return Err(invalid("spec", "one of source or sources is required"));
        }
        (Some(_), false) => {
            return Err(invalid(
                "spec",
                "source and sources are mutually exclusive; use only sources",
            ));
        }
        _ => {}
    }
    let d = &spec.destination;
    let server = d.server.as_deref().unwrap_or("");
    let name = d.name.as_deref().unwrap_or("");
    if server.is_empty() && name.is_empty() {
        return Err(invalid(
            "spec.destination",
            "one of server or name is required",
        ));
    }
    if !server.is_empty() && !name.is_empty() {
        return Err(invalid(
            "spec.destination",
            "server and name are mutually exclusive; set only one",
        ));
    }
    let mut refs = std::collections::BTreeSet::new();
    if let Some(s) = &spec.source {
        source(s, "spec.source", false)?;
    }
    for (i, s) in spec.sources.iter().enumerate() {
        let path = format!("spec.sources[{i}]");
        source(s, &path, true)?;
        if let Some(r) = &s.ref_name {
            if !refs.insert(r.clone()) {
                return Err(invalid(
                    format!("{path}.ref"),
                    format!("ref {r:?} is used by more than one source"),
                ));
            }
        }
    }
    if let Some(r) = spec.sync_policy.as_ref().and_then(|p| p.retry.as_ref()) {
        if let Some(f) = r.backoff.as_ref().and_then(|b| b.factor) {
            if f < 1 {
                return Err(invalid(
                    "spec.syncPolicy.retry.backoff.factor",
                    "must be at least 1",
                ));
            }
        }
    }
    Ok(())
}

fn source(s: &ApplicationSource, path: &str, multi: bool) -> Result<(), ModelError> {
    if s.repo_url.trim().is_empty() {
        return Err(invalid(format!("{path}.repoURL"), "is required"));
    }
    if let Err(kinds) = s.explicit_kind() {
        let names: Vec<String> = kinds.iter().map(|k| k.to_string()).collect();
        return Err(invalid(
            path,
            format!(
                "multiple application sources defined: {}; set only one of helm, kustomize, directory, plugin",
                names.join(", ")
            ),
        ));
    }
    if let Some(r) = &s.ref_name {
        if !multi {
            return Err(invalid(
                format!("{path}.ref"),
                "ref is only allowed in spec.sources",
            ));
        }
        if r.is_empty()
            || !r
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(invalid(
                format!("{path}.ref"),
                format!("{r:?} must be letters, digits, '-' or '_'"),
            ));
        }
        if s.chart.is_some() {
            return Err(invalid(
                format!("{path}.ref"),
                "a ref source cannot be a Helm chart",
            ));
        }
    }
    if s.chart.is_some() && s.path.is_some() {
        return Err(invalid(
            format!("{path}.chart"),
            "chart and path are mutually exclusive",
        ));
    }
    if s.chart.as_deref() == Some("") {
        return Err(invalid(format!("{path}.chart"), "must not be empty"));
    }
    if let Some(p) = &s.path {
        if p.starts_with('/') || p.split('/').any(|c| c == "..") {
            return Err(invalid(
                format!("{path}.path"),
                format!("{p:?} must be relative to the repository root and stay inside it"),
            ));
        }
    }
    if let Some(h) = &s.helm {
        for (i, p) in h.parameters.iter().enumerate() {
            if p.name.is_empty() {
                return Err(invalid(
                    format!("{path}.helm.parameters[{i}].name"),
                    "is required",
                ));
            }
        }
        for (i, p) in h.file_parameters.iter().enumerate() {
            if p.name.is_empty() || p.path.is_empty() {
                return Err(invalid(
                    format!("{path}.helm.fileParameters[{i}]"),
                    "name and path are required",
                ));
            }
        }
    }
    if let Some(k) = &s.kustomize {
        for (i, r) in k.replicas.iter().enumerate() {
            let ok = match &r.count {
                serde_json::Value::Number(n) => n.as_i64().is_some_and(|n| n >= 0),
                serde_json::Value::String(s) => s.parse::<u32>().is_ok(),
                _ => false,
            };
            if !ok || r.name.is_empty() {
                return Err(invalid(
                    format!("{path}.kustomize.replicas[{i}]"),
                    "needs a name and a non-negative integer count",
                ));
            }
        }
    }
    if let Some(j) = s.directory.as_ref().and_then(|d| d.jsonnet.as_ref()) {
        for (i, v) in j.ext_vars.iter().enumerate() {
            if v.name.is_empty() {
                return Err(invalid(
                    format!("{path}.directory.jsonnet.extVars[{i}].name"),
                    "is required",
                ));
            }
        }
        for (i, v) in j.tlas.iter().enumerate() {
            if v.name.is_empty() {
                return Err(invalid(
                    format!("{path}.directory.jsonnet.tlas[{i}].name"),
                    "is required",
                ));
            }
        }
    }
    Ok(())
}
