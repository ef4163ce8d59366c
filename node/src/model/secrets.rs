//! Cluster, repository and repo-creds Secrets (`argocd.argoproj.io/secret-type`).
//!
//! Secret values live in [`SecretString`], whose `Debug` prints `<redacted>`; none of these
//! types implement `Serialize`, so they cannot end up in logs or the replicated store.
use std::collections::BTreeMap;

use base64::Engine as _;
use serde::Deserialize;
use serde_json::Value;

use super::ModelError;

/// The label Argo CD uses to mark its Secrets.
pub const SECRET_TYPE_LABEL: &str = "argocd.argoproj.io/secret-type";

/// A secret value: never printed.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct SecretString(String);

impl SecretString {
    /// Wrap a value.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    /// The value, for handing to a transport. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// Whether the value is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for SecretString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            f.write_str("\"\"")
        } else {
            f.write_str("<redacted>")
        }
    }
}

/// Kind of an Argo CD Secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretType {
    /// A destination cluster.
    Cluster,
    /// Credentials for one repository URL.
    Repository,
    /// Credentials for every repository URL under a prefix.
    RepoCreds,
}

/// Repository credentials from a `repository` or `repo-creds` Secret.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RepoCredential {
    /// Name of the Secret it came from.
    pub secret_name: String,
    /// Repository URL, or URL prefix for repo-creds.
    pub url: String,
    /// `git` (default) or `helm`.
    pub repo_type: String,
    /// Display name.
    pub name: Option<String>,
    /// HTTPS user name.
    pub username: Option<String>,
    /// HTTPS password or token.
    pub password: Option<SecretString>,
    /// PEM/OpenSSH private key for SSH URLs.
    pub ssh_private_key: Option<SecretString>,
    /// Skip TLS and SSH host key verification.
    pub insecure: bool,
    /// Project the repository is scoped to.
    pub project: Option<String>,
    /// Whether this came from a repo-creds (prefix) Secret.
    pub is_template: bool,
}

/// A destination cluster from a `cluster` Secret.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterSecret {
    /// Name of the Secret it came from.
    pub secret_name: String,
    /// Cluster name used by `destination.name`.
    pub name: String,
    /// API server URL.
    pub server: String,
    /// Connection settings.
    pub config: ClusterConfig,
    /// Namespaces the cluster is limited to (comma-separated in the Secret).
    pub namespaces: Vec<String>,
    /// Project the cluster is scoped to.
    pub project: Option<String>,
}

/// The `config` JSON of a cluster Secret. Its `Debug` shows only the keys of `extra`
/// (exec provider and AWS settings often carry credentials in their env and args).
#[derive(Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterConfig {
    /// Bearer token.
    #[serde(default)]
    pub bearer_token: Option<SecretString>,
    /// Basic-auth user name.
    #[serde(default)]
    pub username: Option<String>,
    /// Basic-auth password.
    #[serde(default)]
    pub password: Option<SecretString>,
    /// TLS settings.
    #[serde(default)]
    pub tls_client_config: TlsClientConfig,
    /// Other settings (exec providers, AWS auth), kept opaque.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl std::fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("bearer_token", &self.bearer_token)
            .field("username", &self.username)
            .field("password", &self.password)
            .field("tls_client_config", &self.tls_client_config)
            .field("extra_keys", &self.extra.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// `config.tlsClientConfig` of a cluster Secret (PEM data base64-encoded, as in Argo CD).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TlsClientConfig {
    /// CA bundle.
    #[serde(default)]
    pub ca_data: Option<String>,
    /// Client certificate.
    #[serde(default)]
    pub cert_data: Option<String>,
    /// Client key.
    #[serde(default)]
    pub key_data: Option<SecretString>,
    /// Skip server certificate verification.
    #[serde(default)]
    pub insecure: bool,
    /// Server name for SNI and verification.
    #[serde(default)]
    pub server_name: Option<String>,
}

#[derive(Deserialize)]
struct RawSecret {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    metadata: RawMeta,
    #[serde(default)]
    data: BTreeMap<String, serde_yaml::Value>,
    #[serde(default, rename = "stringData")]
    string_data: BTreeMap<String, serde_yaml::Value>,
}

/// A serde error message with the quoted values removed (serde quotes the offending value,
/// e.g. "invalid type: integer `123456`"), keeping the field path and location.
pub(crate) fn scrub_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut quote: Option<char> = None;
    for c in message.chars() {
        match quote {
            Some(q) if c == q => {
                out.push_str("<value>");
                quote = None;
            }
            Some(_) => {}
            None if c == '`' || c == '"' => quote = Some(c),
            None => out.push(c),
        }
    }
    if quote.is_some() {
        out.push_str("<value>");
    }
    out
}

/// The string of a `data`/`stringData` entry; other scalars are errors that name the field.
fn string_field(
    name: &str,
    map: &str,
    k: &str,
    v: serde_yaml::Value,
) -> Result<String, ModelError> {
    let kind = match v {
        serde_yaml::Value::String(s) => return Ok(s),
        serde_yaml::Value::Null => "null",
        serde_yaml::Value::Bool(_) => "a boolean",
        serde_yaml::Value::Number(_) => "a number",
        serde_yaml::Value::Sequence(_) => "a list",
        serde_yaml::Value::Mapping(_) => "a mapping",
        serde_yaml::Value::Tagged(_) => "a tagged value",
    };
    Err(err(
        name,
        format!("{map}.{k} must be a string, found {kind} (quote it)"),
    ))
}

#[derive(Deserialize, Default)]
struct RawMeta {
    #[serde(default)]
    name: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

/// One parsed Argo CD Secret.
#[derive(Debug, Clone)]
pub enum ArgoSecret {
    /// A cluster Secret.
    Cluster(ClusterSecret),
    /// A repository or repo-creds Secret.
    Repo(RepoCredential),
}

fn err(name: &str, message: impl Into<String>) -> ModelError {
    ModelError::Secret {
        name: name.to_string(),
        message: message.into(),
    }
}

/// Parse one Secret document. `Ok(None)` when it is not an Argo CD Secret.
pub fn parse_secret(doc: &str) -> Result<Option<ArgoSecret>, ModelError> {
    let raw: RawSecret = serde_yaml::from_str(doc).map_err(|e| ModelError::Parse {
        what: "Secret".into(),
        message: scrub_values(&e.to_string()),
    })?;
    from_raw(raw)
}

fn from_raw(raw: RawSecret) -> Result<Option<ArgoSecret>, ModelError> {
    let name = raw.metadata.name.clone();
    if raw.kind != "Secret" {
        return Ok(None);
    }
    let ty = match raw
        .metadata
        .labels
        .get(SECRET_TYPE_LABEL)
        .map(String::as_str)
    {
        Some("cluster") => SecretType::Cluster,
        Some("repository") => SecretType::Repository,
        Some("repo-creds") => SecretType::RepoCreds,
        Some(other) => return Err(err(&name, format!("unknown {SECRET_TYPE_LABEL} {other:?}"))),
        None => return Ok(None),
    };
    let mut fields: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in raw.data {
        let v = string_field(&name, "data", &k, v)?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(v.trim())
            .map_err(|_| err(&name, format!("data.{k} is not valid base64")))?;
        let s =
            String::from_utf8(bytes).map_err(|_| err(&name, format!("data.{k} is not UTF-8")))?;
        fields.insert(k.clone(), s);
    }
    // stringData wins over data, as the API server merges it.
    for (k, v) in raw.string_data {
        let v = string_field(&name, "stringData", &k, v)?;
        fields.insert(k, v);
    }
    let get = |k: &str| fields.get(k).filter(|v| !v.is_empty()).cloned();
    let flag = |k: &str| get(k).is_some_and(|v| v == "true");
    match ty {
        SecretType::Cluster => {
            let server = get("server").ok_or_else(|| err(&name, "server is required"))?;
            let config = match get("config") {
                Some(c) => serde_json::from_str(&c).map_err(|e| {
                    err(
                        &name,
                        format!("config is not valid: {}", scrub_values(&e.to_string())),
                    )
                })?,
                None => ClusterConfig::default(),
            };
            Ok(Some(ArgoSecret::Cluster(ClusterSecret {
                secret_name: name.clone(),
                name: get("name").unwrap_or_else(|| server.clone()),
                server,
                config,
                namespaces: get("namespaces")
                    .map(|n| n.split(',').map(|s| s.trim().to_string()).collect())
                    .unwrap_or_default(),
                project: get("project"),
            })))
        }
        SecretType::Repository | SecretType::RepoCreds => {
            let url = get("url").ok_or_else(|| err(&name, "url is required"))?;
            Ok(Some(ArgoSecret::Repo(RepoCredential {
                secret_name: name,
                url,
                repo_type: get("type").unwrap_or_else(|| "git".into()),
                name: get("name"),
                username: get("username"),
                password: get("password").map(SecretString),
                ssh_private_key: get("sshPrivateKey").map(SecretString),
                insecure: flag("insecure"),
                project: get("project"),
                is_template: ty == SecretType::RepoCreds,
            })))
        }
    }
}

/// All repository credentials and clusters known to a node.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    /// `repository` Secrets.
    pub repositories: Vec<RepoCredential>,
    /// `repo-creds` Secrets.
    pub templates: Vec<RepoCredential>,
    /// `cluster` Secrets.
    pub clusters: Vec<ClusterSecret>,
}

impl Credentials {
    /// Add every Argo CD Secret of a multi-document YAML text; other documents are ignored.
    pub fn add_yaml(&mut self, text: &str) -> Result<(), ModelError> {
        for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
            let parse_err = |e: serde_yaml::Error| ModelError::Parse {
                what: format!("Secret (document {})", i + 1),
                message: scrub_values(&e.to_string()),
            };
            let value = serde_yaml::Value::deserialize(doc).map_err(parse_err)?;
            if value.is_null() {
                continue;
            }
            let raw: RawSecret = serde_yaml::from_value(value).map_err(parse_err)?;
            match from_raw(raw)? {
                Some(ArgoSecret::Cluster(c)) => self.clusters.push(c),
                Some(ArgoSecret::Repo(r)) if r.is_template => self.templates.push(r),
                Some(ArgoSecret::Repo(r)) => self.repositories.push(r),
                None => {}
            }
        }
        Ok(())
    }

    /// Credentials for a repository: the `repository` Secret with the same (normalized)
    /// URL, else the `repo-creds` Secret with the longest matching URL prefix.
    pub fn for_repo(&self, url: &str) -> Option<&RepoCredential> {
        let norm = crate::source::normalize_url(url);
        if let Some(r) = self
            .repositories
            .iter()
            .find(|r| crate::source::normalize_url(&r.url) == norm)
        {
            // A repository Secret without credentials of its own inherits the template's.
            if r.username.is_some() || r.password.is_some() || r.ssh_private_key.is_some() {
                return Some(r);
            }
            return self.template_for(url).or(Some(r));
        }
        self.template_for(url)
    }

    fn template_for(&self, url: &str) -> Option<&RepoCredential> {
        self.templates
            .iter()
            .filter(|t| url.starts_with(t.url.as_str()))
            .max_by_key(|t| t.url.len())
    }

    /// The cluster a destination names, by server URL or by name.
    pub fn cluster(&self, server: Option<&str>, name: Option<&str>) -> Option<&ClusterSecret> {
        self.clusters.iter().find(|c| match (server, name) {
            (Some(s), _) if !s.is_empty() => {
                c.server.trim_end_matches('/') == s.trim_end_matches('/')
            }
            (_, Some(n)) => c.name == n,
            _ => false,
        })
    }
}
