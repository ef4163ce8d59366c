//! AppProject enforcement: which repositories an application may use, where it may deploy
//! and which kinds it may create, with Argo CD's rules.
//!
//! A project allows a source when one `sourceRepos` glob matches its URL; a destination when
//! one allow entry of `destinations` matches its server (or cluster name) and namespace and
//! no deny entry (a pattern starting with `!`) does; a cluster-scoped kind only when
//! `clusterResourceWhitelist` lists it and `clusterResourceBlacklist` does not; a namespaced
//! kind unless `namespaceResourceBlacklist` lists it, and, when `namespaceResourceWhitelist`
//! is set, only if it lists it. The built-in `default` project, when not defined in the
//! store, allows everything ([`permissive`]).

use crate::model::Application;
use crate::model::{AppProjectSpec, GroupKind, ProjectDestination};
use serde_json::Value;

/// The name of Argo CD's built-in project.
pub const DEFAULT_PROJECT: &str = "default";

/// Why a project document could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    /// The stored project is not a valid AppProject spec.
    #[error("project {name}: invalid spec: {message}")]
    Invalid {
        /// The project's name.
        name: String,
        /// The parser's message.
        message: String,
    },
}

/// The spec of a stored project document: either a whole `AppProject` object or its spec.
pub fn parse_project(name: &str, doc: &Value) -> Result<AppProjectSpec, ProjectError> {
    let spec = if doc.get("kind").and_then(Value::as_str) == Some("AppProject") {
        doc.get("spec").cloned().unwrap_or(Value::Null)
    } else {
        doc.clone()
    };
    let spec = if spec.is_null() {
        Value::Object(Default::default())
    } else {
        spec
    };
    serde_json::from_value(spec).map_err(|e| ProjectError::Invalid {
        name: name.to_string(),
        message: e.to_string(),
    })
}

/// The rules of the built-in `default` project: every repository, destination and kind.
pub fn permissive() -> AppProjectSpec {
    let all = || GroupKind {
        group: "*".into(),
        kind: "*".into(),
        ..Default::default()
    };
    AppProjectSpec {
        source_repos: vec!["*".into()],
        destinations: vec![ProjectDestination {
            server: Some("*".into()),
            name: Some("*".into()),
            namespace: Some("*".into()),
            ..Default::default()
        }],
        cluster_resource_whitelist: vec![all()],
        ..Default::default()
    }
}

/// Whether `text` matches the glob `pattern` (`*`: any run of characters, `?`: one).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

fn repo_allowed(project: &AppProjectSpec, url: &str) -> bool {
    let norm = crate::source::normalize_url(url);
    project
        .source_repos
        .iter()
        .any(|pat| glob_match(pat, url) || glob_match(&crate::source::normalize_url(pat), &norm))
}

/// A pattern with its negation split off.
fn split_neg(p: &str) -> (bool, &str) {
    match p.strip_prefix('!') {
        Some(rest) => (true, rest),
        None => (false, p),
    }
}

/// Whether a destination entry matches, and whether it is a deny entry.
fn entry_matches(e: &ProjectDestination, server: &str, name: &str, ns: &str) -> (bool, bool) {
    let (ns_neg, ns_pat) = split_neg(e.namespace.as_deref().unwrap_or("*"));
    let server_part = e.server.as_deref().filter(|s| !s.is_empty());
    let name_part = e.name.as_deref().filter(|s| !s.is_empty());
    let mut deny = ns_neg;
    let cluster_ok = match (server_part, name_part) {
        (None, None) => false,
        (s, n) => {
            let by_server = s.is_some_and(|p| {
                let (neg, pat) = split_neg(p);
                deny |= neg;
                glob_match(pat, server) || glob_match(pat, server.trim_end_matches('/'))
            });
            let by_name = n.is_some_and(|p| {
                let (neg, pat) = split_neg(p);
                deny |= neg;
                !name.is_empty() && glob_match(pat, name)
            });
            by_server || by_name
        }
    };
    (cluster_ok && glob_match(ns_pat, ns), deny)
}

/// Check an application's sources and destination against its project. `server` and
/// `cluster_name` are those of the cluster the destination resolved to (empty if unknown).
pub fn check_app(
    project_name: &str,
    project: &AppProjectSpec,
    app: &Application,
    server: &str,
    cluster_name: &str,
) -> Result<(), String> {
    for s in app.sources() {
        if !repo_allowed(project, &s.repo_url) {
            return Err(format!(
                "application repo {} is not permitted in project '{project_name}'",
                s.repo_url
            ));
        }
    }
    let dest = &app.spec.destination;
    let server = if server.is_empty() {
        dest.server.as_deref().unwrap_or_default()
    } else {
        server
    };
    let name = if cluster_name.is_empty() {
        dest.name.as_deref().unwrap_or_default()
    } else {
        cluster_name
    };
    let ns = dest.namespace.as_deref().unwrap_or_default();
    let mut allowed = false;
    for e in &project.destinations {
        let (matches, deny) = entry_matches(e, server, name, ns);
        if matches && deny {
            allowed = false;
            break;
        }
        allowed |= matches && !deny;
    }
    if !allowed {
        return Err(format!(
            "application destination server '{server}' and namespace '{ns}' do not match any of the allowed destinations in project '{project_name}'"
        ));
    }
    Ok(())
}

/// Argo CD's "applications in any namespace": an app outside the control-plane namespace
/// must live in one of the project's `sourceNamespaces` (globs).
pub fn check_app_namespace(
    project_name: &str,
    project: &AppProjectSpec,
    app_namespace: &str,
    control_namespace: &str,
) -> Result<(), String> {
    if app_namespace == control_namespace
        || project
            .source_namespaces
            .iter()
            .any(|p| glob_match(p, app_namespace))
    {
        Ok(())
    } else {
        Err(format!(
            "application namespace {app_namespace} is not permitted in project '{project_name}'"
        ))
    }
}

fn listed(list: &[GroupKind], group: &str, kind: &str) -> bool {
    list.iter()
        .any(|gk| glob_match(&gk.group, group) && glob_match(&gk.kind, kind))
}

/// Check one resource's group and kind against the project.
pub fn check_resource(
    project_name: &str,
    project: &AppProjectSpec,
    group: &str,
    kind: &str,
    namespaced: bool,
) -> Result<(), String> {
    let shown = if group.is_empty() {
        kind.to_string()
    } else {
        format!("{group}/{kind}")
    };
    let ok = if namespaced {
        !listed(&project.namespace_resource_blacklist, group, kind)
            && (project.namespace_resource_whitelist.is_empty()
                || listed(&project.namespace_resource_whitelist, group, kind))
    } else {
        listed(&project.cluster_resource_whitelist, group, kind)
            && !listed(&project.cluster_resource_blacklist, group, kind)
    };
    if ok {
        Ok(())
    } else {
        let scope = if namespaced {
            "namespaced"
        } else {
            "cluster-scoped"
        };
        Err(format!(
            "resource {shown} ({scope}) is not permitted in project '{project_name}'"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn app(repo: &str, server: &str, ns: &str) -> Application {
        let doc = json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
            "metadata": {"name": "a", "namespace": "argocd"},
            "spec": {"project": "p", "source": {"repoURL": repo, "path": "."},
                "destination": {"server": server, "namespace": ns}}
        });
        crate::status::parse_stored_app("argocd/a", &doc).expect("valid app")
    }

    fn project(v: Value) -> AppProjectSpec {
        parse_project("p", &v).expect("valid project")
    }

    #[test]
    fn globs_match_like_argo_cd() {
        assert!(glob_match("*", "anything"));
        assert!(glob_match(
            "https://github.com/org/*",
            "https://github.com/org/repo"
        ));
        assert!(!glob_match(
            "https://github.com/org/*",
            "https://gitlab.com/org/repo"
        ));
        assert!(glob_match("team-?", "team-a"));
        assert!(!glob_match("team-?", "team-ab"));
        assert!(glob_match("*-prod", "web-prod"));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(!glob_match("a*b*c", "axxbyy"));
        assert!(glob_match("", ""));
        assert!(!glob_match("", "x"));
    }

    #[test]
    fn sources_must_match_a_repo_glob() {
        let p = project(json!({"sourceRepos": ["https://git.example.com/team/*"],
            "destinations": [{"server": "*", "namespace": "*"}]}));
        let ok = app("https://git.example.com/team/app.git", "https://k", "web");
        assert_eq!(check_app("p", &p, &ok, "", ""), Ok(()));
        let bad = app("https://git.other.com/x.git", "https://k", "web");
        let err = check_app("p", &p, &bad, "", "").unwrap_err();
        assert!(
            err.contains("repo https://git.other.com/x.git is not permitted"),
            "{err}"
        );
        let none = project(json!({"destinations": [{"server": "*", "namespace": "*"}]}));
        assert!(check_app("p", &none, &ok, "", "").is_err());
    }

    #[test]
    fn destinations_match_server_or_name_and_namespace_with_negation() {
        let p = project(json!({"sourceRepos": ["*"], "destinations": [
            {"server": "https://prod.example.com", "namespace": "web-*"},
            {"name": "staging", "namespace": "*"},
            {"server": "*", "namespace": "!kube-system"}
        ]}));
        let a = app("https://r", "https://prod.example.com", "web-1");
        assert!(check_app("p", &p, &a, "https://prod.example.com", "prod").is_ok());
        // By cluster name.
        let b = app("https://r", "https://other", "anything");
        assert!(check_app("p", &p, &b, "https://other", "staging").is_ok());
        // The deny entry wins.
        let c = app("https://r", "https://prod.example.com", "kube-system");
        let err = check_app("p", &p, &c, "https://prod.example.com", "prod").unwrap_err();
        assert!(err.contains("namespace 'kube-system'"), "{err}");
        let strict = project(json!({"sourceRepos": ["*"], "destinations": [
            {"server": "https://prod.example.com", "namespace": "web"}]}));
        let d = app("https://r", "https://elsewhere", "web");
        assert!(check_app("p", &strict, &d, "https://elsewhere", "x").is_err());
        let e = app("https://r", "https://prod.example.com", "other");
        assert!(check_app("p", &strict, &e, "https://prod.example.com", "x").is_err());
        let empty = project(json!({"sourceRepos": ["*"]}));
        assert!(check_app("p", &empty, &a, "", "").is_err());
    }

    #[test]
    fn cluster_scoped_kinds_need_the_whitelist() {
        let p = project(
            json!({"clusterResourceWhitelist": [{"group": "", "kind": "Namespace"}],
            "clusterResourceBlacklist": [{"group": "rbac.authorization.k8s.io", "kind": "*"}]}),
        );
        assert!(check_resource("p", &p, "", "Namespace", false).is_ok());
        let err =
            check_resource("p", &p, "rbac.authorization.k8s.io", "ClusterRole", false).unwrap_err();
        assert!(err.contains("cluster-scoped"), "{err}");
        let all = project(
            json!({"clusterResourceWhitelist": [{"group": "*", "kind": "*"}],
            "clusterResourceBlacklist": [{"group": "", "kind": "Namespace"}]}),
        );
        assert!(check_resource("p", &all, "storage.k8s.io", "StorageClass", false).is_ok());
        assert!(check_resource("p", &all, "", "Namespace", false).is_err());
        let none = project(json!({}));
        assert!(check_resource("p", &none, "", "Namespace", false).is_err());
    }

    #[test]
    fn namespaced_kinds_follow_black_and_white_lists() {
        let open = project(json!({}));
        assert!(check_resource("p", &open, "apps", "Deployment", true).is_ok());
        let black =
            project(json!({"namespaceResourceBlacklist": [{"group": "", "kind": "Secret"}]}));
        assert!(check_resource("p", &black, "", "Secret", true).is_err());
        assert!(check_resource("p", &black, "", "ConfigMap", true).is_ok());
        let white =
            project(json!({"namespaceResourceWhitelist": [{"group": "apps", "kind": "*"}]}));
        assert!(check_resource("p", &white, "apps", "Deployment", true).is_ok());
        assert!(check_resource("p", &white, "", "ConfigMap", true).is_err());
    }

    #[test]
    fn apps_outside_the_control_namespace_need_source_namespaces() {
        let p = project(json!({"sourceNamespaces": ["team-*"]}));
        assert!(check_app_namespace("p", &p, "argocd", "argocd").is_ok());
        assert!(check_app_namespace("p", &p, "team-a", "argocd").is_ok());
        let err = check_app_namespace("p", &p, "other", "argocd").unwrap_err();
        assert!(err.contains("namespace other is not permitted"), "{err}");
    }

    #[test]
    fn default_project_allows_everything_and_documents_parse_both_ways() {
        let p = permissive();
        let a = app("https://any", "https://any-cluster", "any");
        assert!(check_app(DEFAULT_PROJECT, &p, &a, "https://any-cluster", "c").is_ok());
        assert!(check_resource(DEFAULT_PROJECT, &p, "", "Namespace", false).is_ok());
        let whole = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "AppProject",
            "metadata": {"name": "p"}, "spec": {"sourceRepos": ["x"]}});
        assert_eq!(
            parse_project("p", &whole).expect("parse").source_repos,
            ["x"]
        );
        assert!(parse_project("p", &json!({"sourceRepos": 3})).is_err());
    }
}
