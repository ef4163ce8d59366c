//! The example applications of `flotilla dev`: a Git repository with a plain directory, a
//! Kustomize app, a Helm chart, a Jsonnet app and an app with sync waves and hooks, and the
//! `Application` resources that deploy them.

use std::path::Path;

use git2::{build::TreeUpdateBuilder, FileMode, Repository, Signature};
use serde_json::{json, Value};

/// The example apps: (name, path in the repository, destination namespace).
pub const APPS: &[(&str, &str, &str)] = &[
    ("guestbook", "guestbook", "guestbook"),
    ("kustomize-guestbook", "kustomize-guestbook", "kustomize"),
    ("helm-guestbook", "helm-guestbook", "helm"),
    ("jsonnet-guestbook", "jsonnet-guestbook", "jsonnet"),
    ("sync-waves", "sync-waves", "waves"),
];

fn deployment(name: &str) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: 1
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      containers:
        - name: web
          image: registry.k8s.io/e2e-test-images/agnhost:2.39
          ports: [{{containerPort: 80}}]
"#
    )
}

/// The repository's files.
pub fn files() -> Vec<(String, String)> {
    let mut f = vec![
        (
            "README.md".into(),
            "Example applications deployed by `flotilla dev`.\n".into(),
        ),
        (
            "guestbook/configmap.yaml".into(),
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: guestbook-config\ndata:\n  greeting: hello from a plain directory\n".into(),
        ),
        ("guestbook/deployment.yaml".into(), deployment("guestbook-ui")),
        (
            "guestbook/service.yaml".into(),
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: guestbook-ui\nspec:\n  selector: {app: guestbook-ui}\n  ports: [{port: 80, targetPort: 80}]\n".into(),
        ),
        (
            "kustomize-guestbook/kustomization.yaml".into(),
            "namePrefix: kust-\nlabels:\n  - pairs: {tier: frontend}\nresources:\n  - deployment.yaml\nconfigMapGenerator:\n  - name: settings\n    literals: [color=blue]\n".into(),
        ),
        ("kustomize-guestbook/deployment.yaml".into(), deployment("guestbook-ui")),
        (
            "helm-guestbook/Chart.yaml".into(),
            "apiVersion: v2\nname: helm-guestbook\nversion: 0.1.0\n".into(),
        ),
        (
            "helm-guestbook/values.yaml".into(),
            "replicaCount: 1\nmessage: hello from a Helm chart\n".into(),
        ),
        (
            "helm-guestbook/templates/configmap.yaml".into(),
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-config\ndata:\n  message: {{ .Values.message | quote }}\n".into(),
        ),
        (
            "helm-guestbook/templates/deployment.yaml".into(),
            deployment("{{ .Release.Name }}-ui").replace("replicas: 1", "replicas: {{ .Values.replicaCount }}"),
        ),
        (
            "jsonnet-guestbook/main.jsonnet".into(),
            r#"local name = 'jsonnet-guestbook';
[
  {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name: name + '-config' },
    data: { message: 'hello from Jsonnet', replicas: std.toString(1) },
  },
  {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: name },
    spec: { selector: { app: name }, ports: [{ port: 80, targetPort: 80 }] },
  },
]
"#
            .into(),
        ),
    ];
    let hook = |phase: &str, name: &str| {
        format!(
            r#"apiVersion: batch/v1
kind: Job
metadata:
  name: {name}
  annotations:
    argocd.argoproj.io/hook: {phase}
    argocd.argoproj.io/hook-delete-policy: BeforeHookCreation
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: run
          image: registry.k8s.io/e2e-test-images/agnhost:2.39
          args: [pause]
"#
        )
    };
    f.push((
        "sync-waves/pre-sync-job.yaml".into(),
        hook("PreSync", "migrate-schema"),
    ));
    f.push((
        "sync-waves/wave-0-config.yaml".into(),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: database-config\n  annotations:\n    argocd.argoproj.io/sync-wave: \"0\"\ndata:\n  url: postgres://db:5432\n".into(),
    ));
    f.push((
        "sync-waves/wave-1-backend.yaml".into(),
        deployment("backend").replace(
            "metadata:\n  name: backend\n",
            "metadata:\n  name: backend\n  annotations:\n    argocd.argoproj.io/sync-wave: \"1\"\n",
        ),
    ));
    f.push((
        "sync-waves/wave-2-frontend.yaml".into(),
        deployment("frontend").replace(
            "metadata:\n  name: frontend\n",
            "metadata:\n  name: frontend\n  annotations:\n    argocd.argoproj.io/sync-wave: \"2\"\n",
        ),
    ));
    f.push((
        "sync-waves/post-sync-job.yaml".into(),
        hook("PostSync", "smoke-test"),
    ));
    f
}

/// Write the files into the bare repository at `path` (created if missing) as a commit on
/// `main`, unless its head already holds exactly these files. Returns the head commit.
pub fn write_repo(path: &Path, files: &[(String, String)]) -> Result<String, git2::Error> {
    let repo = match Repository::open_bare(path) {
        Ok(r) => r,
        Err(_) => {
            let r = Repository::init_bare(path)?;
            r.set_head("refs/heads/main")?;
            r
        }
    };
    let parent = repo
        .find_reference("refs/heads/main")
        .ok()
        .and_then(|r| r.peel_to_commit().ok());
    let empty = repo.treebuilder(None)?.write()?;
    let base = repo.find_tree(empty)?;
    let mut update = TreeUpdateBuilder::new();
    for (name, text) in files {
        let blob = repo.blob(text.as_bytes())?;
        update.upsert(name.as_str(), blob, FileMode::Blob);
    }
    let tree_id = update.create_updated(&repo, &base)?;
    if let Some(p) = &parent {
        if p.tree_id() == tree_id {
            return Ok(p.id().to_string());
        }
    }
    let tree = repo.find_tree(tree_id)?;
    let sig = Signature::now("flotilla dev", "dev@flotilla.invalid")?;
    let parents: Vec<&git2::Commit> = parent.iter().collect();
    let id = repo.commit(
        Some("refs/heads/main"),
        &sig,
        &sig,
        "Example applications",
        &tree,
        &parents,
    )?;
    Ok(id.to_string())
}

/// The `Application` resource of one example, in namespace `argocd`.
pub fn application(name: &str, path: &str, namespace: &str, repo_url: &str, server: &str) -> Value {
    json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {
            "name": name,
            "namespace": "argocd",
            "finalizers": ["resources-finalizer.argocd.argoproj.io"]
        },
        "spec": {
            "project": "default",
            "source": {"repoURL": repo_url, "targetRevision": "main", "path": path},
            "destination": {"server": server, "namespace": namespace},
            "syncPolicy": {
                "automated": {"prune": true, "selfHeal": true},
                "syncOptions": ["CreateNamespace=true"]
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_repository_is_committed_once_per_content() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("examples.git");
        let first = write_repo(&path, &files()).expect("write");
        let again = write_repo(&path, &files()).expect("rewrite");
        assert_eq!(first, again, "same files, same commit");
        let mut changed = files();
        changed[0].1.push_str("more\n");
        let next = write_repo(&path, &changed).expect("change");
        assert_ne!(first, next);
        for (name, path, _) in APPS {
            assert!(
                files()
                    .iter()
                    .any(|(f, _)| f.starts_with(&format!("{path}/"))),
                "{name} has files"
            );
        }
    }
}
