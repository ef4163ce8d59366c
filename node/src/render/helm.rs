//! Helm sources: `helm template` on a chart checked out from Git or pulled from a chart
//! repository, with the Application's release name, value files (also `$ref/...` files of
//! other sources), inline values, parameters and file parameters.
//!
//! The command line follows Argo CD's: `helm template CHART --name-template RELEASE
//! --namespace NS --values FILE... --values INLINE --set/--set-string/--set-file ...
//! --include-crds` (without `--include-crds` when `skipCrds`). Helm runs with a scrubbed
//! environment and its own `HELM_*_HOME` directories inside the render's temp directory.
use std::collections::{BTreeSet, VecDeque};
use std::path::{Path, PathBuf};

use git2::Repository;

use super::tool::ToolRun;
use super::{io_err, parse_manifests, Manifest, RenderError, RenderSettings};
use crate::model::{ApplicationSourceHelm, RepoCredential};
use crate::source::tree::{self, join_repo_path, Node};

/// Errors specific to Helm (reported through [`RenderError`]).
#[derive(Debug, thiserror::Error)]
pub enum HelmError {
    /// `helm` is not available.
    #[error("helm binary not found; set FLOTILLA_HELM or put helm on PATH")]
    Missing,
}

/// Repository paths a chart at `chart` reads from Git: the chart, its `file://`
/// dependencies (recursively), and the value files and file parameters outside it.
pub fn git_paths(
    repo: &Repository,
    root: &git2::Tree<'_>,
    chart: &str,
    opts: Option<&ApplicationSourceHelm>,
) -> Result<Vec<String>, RenderError> {
    let mut paths = BTreeSet::from([chart.to_string()]);
    let mut queue = VecDeque::from([chart.to_string()]);
    let mut seen = BTreeSet::new();
    while let Some(dir) = queue.pop_front() {
        if !seen.insert(dir.clone()) || seen.len() > 100 {
            continue;
        }
        let Some(data) = tree::read_file(repo, root, &join_repo_path(&dir, "Chart.yaml")?)? else {
            continue;
        };
        let chart_yaml: serde_json::Value =
            serde_yaml::from_slice(&data).map_err(|e| RenderError::Parse {
                what: format!("{dir}/Chart.yaml"),
                message: e.to_string(),
            })?;
        for dep in chart_yaml
            .get("dependencies")
            .and_then(|d| d.as_array())
            .into_iter()
            .flatten()
        {
            if let Some(local) = dep
                .get("repository")
                .and_then(|r| r.as_str())
                .and_then(|r| r.strip_prefix("file://"))
            {
                let p = join_repo_path(&dir, local)?;
                paths.insert(p.clone());
                queue.push_back(p);
            }
        }
    }
    if let Some(o) = opts {
        let files = o
            .value_files
            .iter()
            .filter(|f| !f.starts_with('$') && !f.contains("://"))
            .chain(o.file_parameters.iter().map(|f| &f.path));
        for f in files {
            let p = join_repo_path(chart, f)?;
            if tree::lookup(repo, root, &p)?.is_some() {
                paths.insert(p);
            }
        }
    }
    Ok(super::kustomize::minimal(paths))
}

/// Whether `dir` in the tree holds a `Chart.yaml`.
pub fn is_chart(repo: &Repository, root: &git2::Tree<'_>, dir: &str) -> Result<bool, RenderError> {
    Ok(matches!(
        tree::lookup(repo, root, &join_repo_path(dir, "Chart.yaml")?)?,
        Some(Node::Blob(..))
    ))
}

/// A prepared `helm template` run.
#[derive(Debug)]
pub struct HelmJob<'a> {
    /// The chart directory (checkout or pulled).
    pub chart_dir: PathBuf,
    /// Release name.
    pub release: String,
    /// Namespace passed to helm (`helm.namespace`, else the destination namespace).
    pub namespace: Option<String>,
    /// The source's `helm` block.
    pub opts: Option<&'a ApplicationSourceHelm>,
    /// Resolved value files, in order.
    pub value_files: Vec<String>,
    /// Resolved `--set-file` parameters.
    pub set_files: Vec<(String, PathBuf)>,
    /// Scratch directory of this render.
    pub work: &'a Path,
}

fn helm_binary(settings: &RenderSettings) -> Result<&Path, RenderError> {
    settings
        .helm
        .as_deref()
        .ok_or_else(|| RenderError::ToolMissing {
            tool: "helm".into(),
            hint: HelmError::Missing.to_string(),
        })
}

fn helm_run(
    settings: &RenderSettings,
    cwd: &Path,
    work: &Path,
    what: String,
) -> Result<ToolRun, RenderError> {
    let helm = helm_binary(settings)?;
    let home = work.join("home");
    for d in ["home", "helm/cache", "helm/config", "helm/data"] {
        std::fs::create_dir_all(work.join(d)).map_err(io_err(format!("create {d}")))?;
    }
    let mut run = ToolRun::new(helm, cwd, &home, &settings.tool_path, what);
    run.env("HELM_CACHE_HOME", work.join("helm/cache").to_string_lossy())
        .env(
            "HELM_CONFIG_HOME",
            work.join("helm/config").to_string_lossy(),
        )
        .env("HELM_DATA_HOME", work.join("helm/data").to_string_lossy());
    run.timeout = settings.tool_timeout;
    run.limit = settings.max_output_bytes;
    Ok(run)
}

/// Escape unescaped commas in a `--set` value, unless it is a `{a,b}` list, as Argo CD does.
fn escape_set_value(v: &str) -> String {
    if v.starts_with('{') && v.ends_with('}') {
        return v.to_string();
    }
    let mut out = String::with_capacity(v.len());
    let mut prev = '\0';
    for c in v.chars() {
        if c == ',' && prev != '\\' {
            out.push('\\');
        }
        out.push(c);
        prev = c;
    }
    out
}

/// Run `helm dependency build` when the chart declares dependencies but has no `charts/`.
async fn build_dependencies(
    settings: &RenderSettings,
    job: &HelmJob<'_>,
) -> Result<(), RenderError> {
    let chart_yaml = job.chart_dir.join("Chart.yaml");
    let Ok(text) = std::fs::read_to_string(&chart_yaml) else {
        return Ok(());
    };
    let parsed: serde_json::Value = serde_yaml::from_str(&text).unwrap_or_default();
    let has_deps = parsed
        .get("dependencies")
        .and_then(|d| d.as_array())
        .is_some_and(|d| !d.is_empty());
    if !has_deps || job.chart_dir.join("charts").exists() {
        return Ok(());
    }
    let mut run = helm_run(
        settings,
        &job.chart_dir,
        job.work,
        "helm dependency build".into(),
    )?;
    run.arg("dependency").arg("build").arg(".");
    run.run().await.map(|_| ())
}

/// Run `helm template` and parse its output.
pub async fn template(
    settings: &RenderSettings,
    job: &HelmJob<'_>,
) -> Result<Vec<Manifest>, RenderError> {
    build_dependencies(settings, job).await?;
    let what = format!("helm template {}", job.release);
    let mut run = helm_run(settings, &job.chart_dir, job.work, what.clone())?;
    run.arg("template")
        .arg(".")
        .arg("--name-template")
        .arg(&job.release);
    if let Some(ns) = job.namespace.as_deref().filter(|n| !n.is_empty()) {
        run.arg("--namespace").arg(ns);
    }
    for f in &job.value_files {
        run.arg("--values").arg(f);
    }
    if let Some(o) = job.opts {
        let inline =
            match (&o.values_object, &o.values) {
                (Some(obj), _) if !obj.is_null() => Some(serde_yaml::to_string(obj).map_err(
                    |e| RenderError::Invalid {
                        path: "helm.valuesObject".into(),
                        message: e.to_string(),
                    },
                )?),
                (_, Some(v)) if !v.trim().is_empty() => Some(v.clone()),
                _ => None,
            };
        if let Some(text) = inline {
            let file = job.work.join("inline-values.yaml");
            std::fs::write(&file, text).map_err(io_err("write inline values"))?;
            run.arg("--values").arg(&file);
        }
        for p in &o.parameters {
            let flag = if p.force_string {
                "--set-string"
            } else {
                "--set"
            };
            run.arg(flag)
                .arg(format!("{}={}", p.name, escape_set_value(&p.value)));
        }
    }
    for (name, path) in &job.set_files {
        run.arg("--set-file")
            .arg(format!("{name}={}", path.display()));
    }
    if !job.opts.is_some_and(|o| o.skip_crds) {
        run.arg("--include-crds");
    }
    let out = run.run().await?;
    let text = String::from_utf8(out).map_err(|_| RenderError::Parse {
        what: what.clone(),
        message: "output is not UTF-8".into(),
    })?;
    parse_manifests(&what, &text)
}

/// Pull `chart` from the chart repository `url` into `dest` (untarred); returns the chart
/// directory. `version` empty or `*` means the newest.
pub async fn pull(
    settings: &RenderSettings,
    work: &Path,
    url: &str,
    chart: &str,
    version: &str,
    cred: Option<&RepoCredential>,
    pass_credentials: bool,
) -> Result<PathBuf, RenderError> {
    let dest = work.join("chart");
    std::fs::create_dir_all(&dest).map_err(io_err("create chart directory"))?;
    for run in pull_runs(
        settings,
        work,
        url,
        chart,
        version,
        cred,
        pass_credentials,
        &dest,
    )? {
        run.run().await?;
    }
    let name = chart.rsplit('/').next().unwrap_or(chart);
    let dir = dest.join(name);
    if !dir.join("Chart.yaml").is_file() {
        return Err(RenderError::Invalid {
            path: "chart".into(),
            message: format!(
                "helm pull of {chart} from {} produced no chart directory {name}",
                crate::source::redact_url(url)
            ),
        });
    }
    Ok(dir)
}

/// Name of the chart repository entry written for a pull with credentials.
const PULL_REPO: &str = "flotilla-pull";

/// The helm runs of a pull. Without credentials: one `helm pull --repo`. With credentials:
/// they go into a `repositories.yaml` (mode 0600) in this render's Helm config home, never
/// on a command line, and the pull is `helm repo update` then `helm pull <entry>/<chart>`.
#[allow(clippy::too_many_arguments)]
fn pull_runs(
    settings: &RenderSettings,
    work: &Path,
    url: &str,
    chart: &str,
    version: &str,
    cred: Option<&RepoCredential>,
    pass_credentials: bool,
    dest: &Path,
) -> Result<Vec<ToolRun>, RenderError> {
    let shown = crate::source::redact_url(url);
    let what = format!("helm pull {chart} --repo {shown}");
    let mut runs = Vec::new();
    let mut run = helm_run(settings, work, work, what.clone())?;
    let login = cred.and_then(|c| Some((c.username.as_ref()?, c.password.as_ref()?)));
    let insecure = cred.is_some_and(|c| c.insecure);
    run.arg("pull");
    if let Some((user, password)) = login {
        let entry = serde_json::json!({
            "apiVersion": "",
            "generated": "0001-01-01T00:00:00Z",
            "repositories": [{
                "name": PULL_REPO,
                "url": url,
                "username": user,
                "password": password.expose(),
                "insecure_skip_tls_verify": insecure,
                "pass_credentials_all": pass_credentials,
            }],
        });
        let file = work.join("helm/config/repositories.yaml");
        write_private(&file, entry.to_string().as_bytes())?;
        let mut update = helm_run(settings, work, work, format!("helm repo update ({shown})"))?;
        update.arg("repo").arg("update").arg(PULL_REPO);
        runs.push(update);
        run.arg(format!("{PULL_REPO}/{chart}"));
    } else {
        run.arg(chart).arg("--repo").arg(url);
        if insecure {
            run.arg("--insecure-skip-tls-verify");
        }
        if pass_credentials {
            run.arg("--pass-credentials");
        }
    }
    run.arg("--untar").arg("--untardir").arg(dest);
    if !version.is_empty() && version != "*" && version != "HEAD" {
        run.arg("--version").arg(version);
    }
    runs.push(run);
    Ok(runs)
}

/// Write a file readable only by its owner.
fn write_private(path: &Path, data: &[u8]) -> Result<(), RenderError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let ctx = || format!("write {}", path.display());
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err(ctx()))?;
    f.write_all(data).map_err(io_err(ctx()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Credentials;

    #[test]
    fn chart_repository_passwords_never_reach_the_command_line() {
        let tmp = tempfile::tempdir().expect("tmp");
        let mut creds = Credentials::default();
        creds
            .add_yaml(
                "apiVersion: v1\nkind: Secret\nmetadata:\n  name: r\n  labels:\n    \
                 argocd.argoproj.io/secret-type: repository\nstringData:\n  type: helm\n  \
                 url: https://charts.example.com\n  username: u\n  password: hunter2\n",
            )
            .expect("secret");
        let cred = creds.for_repo("https://charts.example.com");
        assert!(cred.is_some());
        let mut settings = RenderSettings::discover();
        settings.helm = Some(PathBuf::from("/bin/false"));
        let dest = tmp.path().join("chart");
        let runs = pull_runs(
            &settings,
            tmp.path(),
            "https://charts.example.com",
            "web",
            "1.0.0",
            cred,
            false,
            &dest,
        )
        .expect("runs");
        for run in &runs {
            let argv = format!("{:?}", run.args);
            assert!(!argv.contains("hunter2"), "{argv}");
        }
        let file = tmp.path().join("helm/config/repositories.yaml");
        let text = std::fs::read_to_string(&file).expect("repositories.yaml");
        assert!(text.contains("hunter2"));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn set_values_escape_commas_like_argo_cd() {
        assert_eq!(escape_set_value("a,b"), "a\\,b");
        assert_eq!(escape_set_value("a\\,b"), "a\\,b");
        assert_eq!(escape_set_value("{a,b}"), "{a,b}");
    }
}
