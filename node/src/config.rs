//! Configuration of `flotilla node`: flags, environment, an optional YAML file, defaults.
//!
//! Precedence is flags > environment (`FLOTILLA_*`) > file (`--config FILE`) > defaults.
//! [`load`] is pure: the caller passes the parsed [`Args`], an environment map, the file
//! text and the hostname, so nothing here reads the process environment. In a StatefulSet
//! the node id comes from the pod ordinal in the hostname ([`ordinal_of_hostname`]) and the
//! peers from `--peer-dns-pattern` and `--replicas`; [`NodeConfig::role`] tells whether
//! this node bootstraps the cluster or joins it. Not yet used by a running node.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::cli::LogFormat;

/// Default data directory.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/flotilla";
/// Default Raft/gRPC peer listen address.
pub const DEFAULT_PEER_LISTEN: &str = "0.0.0.0:7000";
/// Default `flotilla.v1` API listen address.
pub const DEFAULT_API_LISTEN: &str = "0.0.0.0:7001";
/// Default HTTP listen address (metrics, probes, webhook).
pub const DEFAULT_HTTP_LISTEN: &str = "0.0.0.0:8080";
/// Default number of voters.
pub const DEFAULT_VOTERS: u8 = 3;
/// Default shutdown grace period in seconds.
pub const DEFAULT_GRACE_PERIOD_SECONDS: u64 = 30;
/// Default page cache of the store, in MiB.
pub const DEFAULT_STORE_CACHE_MB: u64 = 64;
/// Placeholder in `--peer-dns-pattern` replaced by a pod ordinal.
pub const ORDINAL_PLACEHOLDER: &str = "{ordinal}";

/// Errors from loading a node configuration.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// A value is invalid; `at` names where it came from (`--voters`, `FLOTILLA_VOTERS`,
    /// `config.yaml: voters`).
    #[error("{at}: {message}")]
    Invalid {
        /// Where the value came from.
        at: String,
        /// What is wrong.
        message: String,
    },
    /// The configuration file is not valid.
    #[error("{file}: {message}")]
    File {
        /// The file name.
        file: String,
        /// What is wrong, with its line when known.
        message: String,
    },
}

/// Flags of `flotilla node`, to be flattened into its subcommand.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Args {
    /// YAML configuration file (optional).
    #[arg(long, env = "FLOTILLA_CONFIG")]
    pub config: Option<PathBuf>,
    /// Node id (≥ 1); default: pod ordinal + 1 from the hostname.
    #[arg(long, env = "FLOTILLA_NODE_ID")]
    pub node_id: Option<u64>,
    /// Data directory (default /var/lib/flotilla).
    #[arg(long, env = "FLOTILLA_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Raft/gRPC listen address for peers (default 0.0.0.0:7000).
    #[arg(long, env = "FLOTILLA_PEER_LISTEN")]
    pub peer_listen: Option<SocketAddr>,
    /// `flotilla.v1` API listen address (default 0.0.0.0:7001).
    #[arg(long, env = "FLOTILLA_API_LISTEN")]
    pub api_listen: Option<SocketAddr>,
    /// HTTP listen address for metrics, probes and webhooks (default 0.0.0.0:8080).
    #[arg(long, env = "FLOTILLA_HTTP_LISTEN")]
    pub http_listen: Option<SocketAddr>,
    /// Address peers dial, host:port (default: own name from the DNS pattern, else
    /// hostname:peer port).
    #[arg(long, env = "FLOTILLA_ADVERTISE")]
    pub advertise: Option<String>,
    /// Initial cluster members as id=host:port, comma separated.
    #[arg(long, env = "FLOTILLA_PEERS", value_delimiter = ',')]
    pub peers: Vec<String>,
    /// Peer address pattern with {ordinal}, e.g. flotilla-{ordinal}.flotilla-peers:7000.
    #[arg(long, env = "FLOTILLA_PEER_DNS_PATTERN")]
    pub peer_dns_pattern: Option<String>,
    /// Number of StatefulSet replicas the DNS pattern expands to.
    #[arg(long, env = "FLOTILLA_REPLICAS")]
    pub replicas: Option<u32>,
    /// Number of voters, 3 or 5 (default 3).
    #[arg(long, env = "FLOTILLA_VOTERS")]
    pub voters: Option<u8>,
    /// Number of shards (default flotilla_shard::DEFAULT_SHARD_COUNT).
    #[arg(long, env = "FLOTILLA_SHARD_COUNT")]
    pub shard_count: Option<u32>,
    /// CA bundle for peer TLS.
    #[arg(long, env = "FLOTILLA_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// Certificate for peer TLS.
    #[arg(long, env = "FLOTILLA_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// Private key for peer TLS.
    #[arg(long, env = "FLOTILLA_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Certificate the flotilla.v1 API serves TLS with (with --api-tls-key; default: plain
    /// text).
    #[arg(long, env = "FLOTILLA_API_TLS_CERT")]
    pub api_tls_cert: Option<PathBuf>,
    /// Private key of --api-tls-cert.
    #[arg(long, env = "FLOTILLA_API_TLS_KEY")]
    pub api_tls_key: Option<PathBuf>,
    /// CA bundle the node trusts for other nodes' API certificates when it forwards a call
    /// to the leader (default: --tls-ca, else the system's roots).
    #[arg(long, env = "FLOTILLA_API_TLS_CA")]
    pub api_tls_ca: Option<PathBuf>,
    /// File holding the API bearer token.
    #[arg(long, env = "FLOTILLA_API_TOKEN_FILE")]
    pub api_token_file: Option<PathBuf>,
    /// File holding the webhook secret.
    #[arg(long, env = "FLOTILLA_WEBHOOK_SECRET_FILE")]
    pub webhook_secret_file: Option<PathBuf>,
    /// Shutdown grace period in seconds (default 30).
    #[arg(long, env = "FLOTILLA_GRACE_PERIOD_SECONDS")]
    pub grace_period_seconds: Option<u64>,
    /// Memory for the store's page cache, in MiB (default 64). Reads that miss it are read
    /// from the data directory again: less memory, more CPU.
    #[arg(long, env = "FLOTILLA_STORE_CACHE_MB")]
    pub store_cache_mb: Option<u64>,
    /// Kubeconfig of the management cluster holding Applications, AppProjects and Secrets
    /// (default: in-cluster when running in a pod, else none).
    #[arg(long, env = "FLOTILLA_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Namespaces watched for Applications, comma separated (default argocd).
    #[arg(long, env = "FLOTILLA_NAMESPACES", value_delimiter = ',')]
    pub namespaces: Vec<String>,
    /// Namespace of cluster and repository Secrets and of AppProjects (default: the first
    /// of --namespaces).
    #[arg(long, env = "FLOTILLA_SECRETS_NAMESPACE")]
    pub secrets_namespace: Option<String>,
    /// A directory of Application manifests to manage (app of apps).
    #[arg(long, env = "FLOTILLA_APPS_DIR")]
    pub apps_dir: Option<PathBuf>,
    /// A Git repository of Application manifests to manage (app of apps), read with the
    /// repository credentials of the Argo CD Secrets.
    #[arg(long, env = "FLOTILLA_APPS_REPO")]
    pub apps_repo: Option<String>,
    /// Branch, tag or commit of --apps-repo (default HEAD).
    #[arg(long, env = "FLOTILLA_APPS_REPO_REVISION")]
    pub apps_repo_revision: Option<String>,
    /// Directory of --apps-repo holding the manifests (default: the root).
    #[arg(long, env = "FLOTILLA_APPS_REPO_PATH")]
    pub apps_repo_path: Option<String>,
    /// Allow repositories given as local paths or file:// URLs (development only: whoever
    /// writes an Application could read any repository on the node's disk).
    #[arg(long, env = "FLOTILLA_ALLOW_LOCAL_REPOS")]
    pub allow_local_repos: bool,
    /// Seconds between periodic reconciliations of each app (default 180, with jitter).
    #[arg(long, env = "FLOTILLA_RESYNC_SECONDS")]
    pub resync_seconds: Option<u64>,
    /// Seconds between polls of each repository (default 180; webhooks are immediate).
    #[arg(long, env = "FLOTILLA_REPO_POLL_SECONDS")]
    pub repo_poll_seconds: Option<u64>,
    /// Apps reconciled at once on this node (default 16).
    #[arg(long, env = "FLOTILLA_WORKERS")]
    pub workers: Option<usize>,
    /// Watch every kind each destination cluster serves, so objects carrying an app's
    /// tracking mark are found whatever their kind. By default only the kinds the node's
    /// apps deploy or have deployed on a cluster are watched there: one watch connection
    /// per kind in use instead of one per kind served.
    #[arg(long, env = "FLOTILLA_WATCH_ALL_KINDS")]
    pub watch_all_kinds: bool,
}

/// Every long flag name of [`Args`] (without `--`), for checking deploy manifests.
pub fn flag_names() -> Vec<String> {
    let cmd = <Args as clap::Args>::augment_args(clap::Command::new("node"));
    cmd.get_arguments()
        .filter_map(|a| a.get_long().map(str::to_owned))
        .collect()
}

/// The file form (`--config FILE`), camelCase keys; unknown keys are errors.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileConfig {
    /// See [`Args::node_id`].
    pub node_id: Option<u64>,
    /// See [`Args::data_dir`].
    pub data_dir: Option<PathBuf>,
    /// See [`Args::peer_listen`].
    pub peer_listen: Option<String>,
    /// See [`Args::api_listen`].
    pub api_listen: Option<String>,
    /// See [`Args::http_listen`].
    pub http_listen: Option<String>,
    /// See [`Args::advertise`].
    pub advertise: Option<String>,
    /// See [`Args::peers`].
    pub peers: Option<Vec<String>>,
    /// See [`Args::peer_dns_pattern`].
    pub peer_dns_pattern: Option<String>,
    /// See [`Args::replicas`].
    pub replicas: Option<u32>,
    /// See [`Args::voters`].
    pub voters: Option<u8>,
    /// See [`Args::shard_count`].
    pub shard_count: Option<u32>,
    /// See [`Args::tls_ca`].
    pub tls_ca: Option<PathBuf>,
    /// See [`Args::tls_cert`].
    pub tls_cert: Option<PathBuf>,
    /// See [`Args::tls_key`].
    pub tls_key: Option<PathBuf>,
    /// See [`Args::api_tls_cert`].
    pub api_tls_cert: Option<PathBuf>,
    /// See [`Args::api_tls_key`].
    pub api_tls_key: Option<PathBuf>,
    /// See [`Args::api_tls_ca`].
    pub api_tls_ca: Option<PathBuf>,
    /// See [`Args::api_token_file`].
    pub api_token_file: Option<PathBuf>,
    /// See [`Args::webhook_secret_file`].
    pub webhook_secret_file: Option<PathBuf>,
    /// Log format, `text` or `json` (default text).
    pub log_format: Option<String>,
    /// See [`Args::grace_period_seconds`].
    pub grace_period_seconds: Option<u64>,
    /// See [`Args::store_cache_mb`].
    pub store_cache_mb: Option<u64>,
    /// See [`Args::kubeconfig`].
    pub kubeconfig: Option<PathBuf>,
    /// See [`Args::namespaces`].
    pub namespaces: Option<Vec<String>>,
    /// See [`Args::secrets_namespace`].
    pub secrets_namespace: Option<String>,
    /// See [`Args::apps_dir`].
    pub apps_dir: Option<PathBuf>,
    /// See [`Args::apps_repo`].
    pub apps_repo: Option<String>,
    /// See [`Args::apps_repo_revision`].
    pub apps_repo_revision: Option<String>,
    /// See [`Args::apps_repo_path`].
    pub apps_repo_path: Option<String>,
    /// See [`Args::allow_local_repos`].
    pub allow_local_repos: Option<bool>,
    /// See [`Args::resync_seconds`].
    pub resync_seconds: Option<u64>,
    /// See [`Args::repo_poll_seconds`].
    pub repo_poll_seconds: Option<u64>,
    /// See [`Args::workers`].
    pub workers: Option<usize>,
    /// See [`Args::watch_all_kinds`].
    pub watch_all_kinds: Option<bool>,
}

/// A secret value whose `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret text.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Where a secret comes from: a file path or an environment value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// Read from this file when the node starts.
    File(PathBuf),
    /// Given inline (only through the environment, e.g. a Secret's `secretKeyRef`).
    Value(Secret),
}

impl SecretSource {
    /// The secret's text (a file's content without its trailing newline); says which file
    /// could not be read, never the secret.
    pub fn read(&self) -> Result<Secret, ConfigError> {
        match self {
            SecretSource::Value(s) => Ok(s.clone()),
            SecretSource::File(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| ConfigError::File {
                    file: p.display().to_string(),
                    message: e.to_string(),
                })?;
                let t = text.trim_end_matches(['\n', '\r']);
                if t.is_empty() {
                    return Err(ConfigError::File {
                        file: p.display().to_string(),
                        message: "the secret file is empty".into(),
                    });
                }
                Ok(Secret(t.to_owned()))
            }
        }
    }
}

/// Peer TLS file paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// CA bundle.
    pub ca: PathBuf,
    /// Certificate.
    pub cert: PathBuf,
    /// Private key.
    pub key: PathBuf,
}

/// The files of the API's TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiTlsFiles {
    /// Certificate chain.
    pub cert: PathBuf,
    /// Private key.
    pub key: PathBuf,
    /// CA for forwarded calls (`None`: the system's roots).
    pub ca: Option<PathBuf>,
}

/// One initial cluster member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// Node id (≥ 1).
    pub id: u64,
    /// host:port peers dial.
    pub addr: String,
}

/// How this node enters the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Create a new cluster with this node as its only member.
    Bootstrap,
    /// Join through any of these peer addresses.
    Join(Vec<String>),
}

/// The resolved configuration of one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeConfig {
    /// Node id, ≥ 1 (default: pod ordinal + 1).
    pub node_id: u64,
    /// Data directory (default `/var/lib/flotilla`).
    pub data_dir: PathBuf,
    /// Raft/gRPC peer listen address (default `0.0.0.0:7000`).
    pub peer_listen: SocketAddr,
    /// `flotilla.v1` API listen address (default `0.0.0.0:7001`).
    pub api_listen: SocketAddr,
    /// Metrics, probes and webhook listen address (default `0.0.0.0:8080`).
    pub http_listen: SocketAddr,
    /// Address peers dial (default: own DNS-pattern name, else hostname:peer port).
    pub advertise: String,
    /// Initial members other than derived ones (default none).
    pub peers: Vec<Peer>,
    /// Voters, 3 or 5 (default 3).
    pub voters: u8,
    /// Shard count (default [`flotilla_shard::DEFAULT_SHARD_COUNT`]).
    pub shard_count: u32,
    /// Peer TLS (default none: plaintext).
    pub tls: Option<TlsFiles>,
    /// API TLS (default none: plaintext).
    pub api_tls: Option<ApiTlsFiles>,
    /// API bearer token (`--api-token-file` or `FLOTILLA_API_TOKEN`; default none).
    pub api_token: Option<SecretSource>,
    /// Webhook secret (`--webhook-secret-file` or `FLOTILLA_WEBHOOK_SECRET`; default none).
    pub webhook_secret: Option<SecretSource>,
    /// Log format (`FLOTILLA_LOG_FORMAT` or file `logFormat`; the global `--log-format`
    /// flag sets the same; default text).
    pub log_format: LogFormat,
    /// Shutdown grace period (default 30 s).
    pub grace_period: Duration,
    /// The store's page cache in bytes (default 64 MiB).
    pub store_cache_bytes: u64,
    /// What the node reconciles and how often.
    pub controller: ControllerConfig,
}

/// Where the node's applications come from and how it reconciles them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerConfig {
    /// Management cluster kubeconfig (default: in-cluster in a pod, else none).
    pub kubeconfig: Option<PathBuf>,
    /// Application namespaces (default `argocd`).
    pub namespaces: Vec<String>,
    /// Namespace of Secrets and AppProjects (default: the first application namespace).
    pub secrets_namespace: String,
    /// A directory of Application manifests (default none).
    pub apps_dir: Option<PathBuf>,
    /// A Git path of Application manifests: `(url, revision, path)` (default none).
    pub apps_repo: Option<(String, String, String)>,
    /// Allow local repositories (default false).
    pub allow_local_repos: bool,
    /// Periodic reconciliation (default 180 s).
    pub resync: Duration,
    /// Repository polling (default 180 s).
    pub repo_poll: Duration,
    /// Apps reconciled at once (default 16).
    pub workers: usize,
    /// Watch every kind a cluster serves (default: only the kinds in use).
    pub watch_all_kinds: bool,
}

impl NodeConfig {
    /// Bootstrap when this node is listed with the lowest id among the members (ordinal 0
    /// in a StatefulSet) or has no other peers; otherwise join through the other members.
    pub fn role(&self) -> Role {
        let others: Vec<String> = self
            .peers
            .iter()
            .filter(|p| p.id != self.node_id)
            .map(|p| p.addr.clone())
            .collect();
        let listed = self.peers.iter().any(|p| p.id == self.node_id);
        let lowest = self.peers.iter().map(|p| p.id).min();
        if others.is_empty() || (listed && lowest.is_none_or(|l| l >= self.node_id)) {
            Role::Bootstrap
        } else {
            Role::Join(others)
        }
    }
}

/// The pod ordinal at the end of a StatefulSet hostname (`flotilla-3` → 3); the domain
/// part of a fully qualified name is ignored.
pub fn ordinal_of_hostname(hostname: &str) -> Result<u32, ConfigError> {
    let bad = |message: &str| ConfigError::Invalid {
        at: format!("hostname {hostname:?}"),
        message: message.to_owned(),
    };
    let short = hostname.split('.').next().unwrap_or_default();
    let (prefix, digits) = short
        .rsplit_once('-')
        .ok_or_else(|| bad("no pod ordinal (expected NAME-N)"))?;
    if prefix.is_empty() || digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("no pod ordinal (expected NAME-N)"));
    }
    if digits.len() > 1 && digits.starts_with('0') {
        return Err(bad("pod ordinal has a leading zero"));
    }
    digits.parse().map_err(|_| bad("pod ordinal out of range"))
}

/// Expand a DNS pattern for ordinals `0..replicas` into members (id = ordinal + 1).
pub fn peers_from_pattern(pattern: &str, replicas: u32) -> Result<Vec<Peer>, String> {
    if pattern.matches(ORDINAL_PLACEHOLDER).count() != 1 {
        return Err(format!(
            "must contain {ORDINAL_PLACEHOLDER} once, got {pattern:?}"
        ));
    }
    check_host_port(pattern)?;
    Ok((0..replicas)
        .map(|o| Peer {
            id: u64::from(o) + 1,
            addr: pattern.replace(ORDINAL_PLACEHOLDER, &o.to_string()),
        })
        .collect())
}

fn check_host_port(s: &str) -> Result<(), String> {
    match s.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => {
            Ok(())
        }
        _ => Err(format!("expected host:port, got {s:?}")),
    }
}

fn parse_peer(s: &str) -> Result<Peer, String> {
    let (id, addr) = s
        .split_once('=')
        .ok_or_else(|| format!("expected id=host:port, got {s:?}"))?;
    let id: u64 = id
        .trim()
        .parse()
        .ok()
        .filter(|&i| i >= 1)
        .ok_or_else(|| format!("peer id must be an integer ≥ 1, got {s:?}"))?;
    let addr = addr.trim();
    check_host_port(addr)?;
    Ok(Peer {
        id,
        addr: addr.to_owned(),
    })
}

fn parse_log_format(s: &str) -> Result<LogFormat, String> {
    match s {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err(format!("must be text or json, got {s:?}")),
    }
}

/// The sources of one load: what [`load`] reads instead of the process.
#[derive(Debug, Clone, Copy)]
pub struct Sources<'a> {
    /// Parsed flags.
    pub args: &'a Args,
    /// Environment variables.
    pub env: &'a HashMap<String, String>,
    /// The configuration file's name and text, when one was given.
    pub file: Option<(&'a str, &'a str)>,
    /// This machine's hostname, when known.
    pub hostname: Option<&'a str>,
}

/// Resolves values with their origin for error messages.
struct Resolver<'a> {
    src: Sources<'a>,
    file: FileConfig,
}

impl Resolver<'_> {
    /// First of flag, environment, file; with the place it came from.
    fn pick<T, F>(
        &self,
        flag: Option<T>,
        name: &str,
        parse: F,
        file: Option<T>,
    ) -> Result<Option<(T, String)>, ConfigError>
    where
        F: Fn(&str) -> Result<T, String>,
    {
        let flag_name = format!("--{}", name.replace('_', "-"));
        if let Some(v) = flag {
            return Ok(Some((v, flag_name)));
        }
        let env_name = format!("FLOTILLA_{}", name.to_ascii_uppercase());
        if let Some(raw) = self.src.env.get(&env_name) {
            let v = parse(raw).map_err(|message| ConfigError::Invalid {
                at: env_name.clone(),
                message,
            })?;
            return Ok(Some((v, env_name)));
        }
        Ok(file.map(|v| (v, self.file_at(name))))
    }

    fn file_at(&self, name: &str) -> String {
        let file = self.src.file.map_or("config file", |(n, _)| n);
        let mut key = String::new();
        let mut upper = false;
        for c in name.chars() {
            if c == '_' {
                upper = true;
            } else if upper {
                key.push(c.to_ascii_uppercase());
                upper = false;
            } else {
                key.push(c);
            }
        }
        format!("{file}: {key}")
    }
}

fn parse_from_str<T: std::str::FromStr>(what: &'static str) -> impl Fn(&str) -> Result<T, String> {
    move |s| s.trim().parse().map_err(|_| format!("not {what}: {s:?}"))
}

/// Parse a configuration file's text, reporting unknown fields with their line.
pub fn parse_file(name: &str, text: &str) -> Result<FileConfig, ConfigError> {
    if text.trim().is_empty() {
        return Ok(FileConfig::default());
    }
    serde_yaml::from_str(text).map_err(|e| {
        let full = e.to_string();
        let message = match e.location() {
            Some(loc) => {
                let msg = full.split(" at line ").next().unwrap_or(&full);
                format!("{msg} at line {}", loc.line())
            }
            None => full,
        };
        ConfigError::File {
            file: name.to_owned(),
            message,
        }
    })
}

/// Resolve the node configuration of this process: its flags, its environment, the file named
/// by `--config` and the machine's hostname.
pub fn load_from_process(args: &Args) -> Result<NodeConfig, ConfigError> {
    let env: HashMap<String, String> = std::env::vars().collect();
    let hostname = env
        .get("HOSTNAME")
        .cloned()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty());
    let file = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
                file: path.display().to_string(),
                message: e.to_string(),
            })?;
            Some((path.display().to_string(), text))
        }
        None => None,
    };
    load(Sources {
        args,
        env: &env,
        file: file.as_ref().map(|(n, t)| (n.as_str(), t.as_str())),
        hostname: hostname.as_deref(),
    })
}

/// Resolve the node configuration: flags > environment > file > defaults.
pub fn load(src: Sources<'_>) -> Result<NodeConfig, ConfigError> {
    let file = match src.file {
        Some((name, text)) => parse_file(name, text)?,
        None => FileConfig::default(),
    };
    let r = Resolver { src, file };
    let a = src.args;
    let invalid = |at: String, message: String| ConfigError::Invalid { at, message };
    let socket = |name: &str, flag: Option<SocketAddr>, file: &Option<String>, default: &str| {
        let file_val =
            match file {
                Some(s) => Some(s.parse::<SocketAddr>().map_err(|_| {
                    invalid(r.file_at(name), format!("not a socket address: {s:?}"))
                })?),
                None => None,
            };
        Ok::<_, ConfigError>(
            match r.pick(flag, name, parse_from_str("a socket address"), file_val)? {
                Some((v, _)) => v,
                None => default
                    .parse()
                    .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0))),
            },
        )
    };
    let peer_listen = socket(
        "peer_listen",
        a.peer_listen,
        &r.file.peer_listen,
        DEFAULT_PEER_LISTEN,
    )?;
    let api_listen = socket(
        "api_listen",
        a.api_listen,
        &r.file.api_listen,
        DEFAULT_API_LISTEN,
    )?;
    let http_listen = socket(
        "http_listen",
        a.http_listen,
        &r.file.http_listen,
        DEFAULT_HTTP_LISTEN,
    )?;

    let voters = match r.pick(
        a.voters,
        "voters",
        parse_from_str("an integer"),
        r.file.voters,
    )? {
        Some((v, _)) if v == 3 || v == 5 => v,
        Some((v, at)) => return Err(invalid(at, format!("must be 3 or 5, got {v}"))),
        None => DEFAULT_VOTERS,
    };
    let shard_count = match r.pick(
        a.shard_count,
        "shard_count",
        parse_from_str("an integer"),
        r.file.shard_count,
    )? {
        Some((0, at)) => return Err(invalid(at, "must be at least 1, got 0".into())),
        Some((v, _)) => v,
        None => flotilla_shard::DEFAULT_SHARD_COUNT,
    };

    let pattern = r.pick(
        a.peer_dns_pattern.clone(),
        "peer_dns_pattern",
        |s| Ok(s.to_owned()),
        r.file.peer_dns_pattern.clone(),
    )?;
    let replicas = r.pick(
        a.replicas,
        "replicas",
        parse_from_str("an integer"),
        r.file.replicas,
    )?;
    let flag_peers = (!a.peers.is_empty()).then(|| a.peers.clone());
    let peer_list = r.pick(
        flag_peers,
        "peers",
        |s| Ok(s.split(',').map(str::to_owned).collect()),
        r.file.peers.clone(),
    )?;
    let mut peers = Vec::new();
    if let Some((list, at)) = &peer_list {
        for p in list.iter().filter(|p| !p.trim().is_empty()) {
            let peer = parse_peer(p).map_err(|m| invalid(at.clone(), m))?;
            if peers.iter().any(|q: &Peer| q.id == peer.id) {
                return Err(invalid(
                    at.clone(),
                    format!("peer id {} given twice", peer.id),
                ));
            }
            peers.push(peer);
        }
    }
    let mut own_pattern_addr = None;
    if let Some((pattern, at)) = &pattern {
        let replicas = match replicas {
            None => return Err(invalid(at.clone(), "needs --replicas".into())),
            Some((0, r_at)) => return Err(invalid(r_at, "must be at least 1, got 0".into())),
            Some((n, _)) => n,
        };
        if !peers.is_empty() {
            return Err(invalid(
                at.clone(),
                "cannot be combined with --peers".into(),
            ));
        }
        peers = peers_from_pattern(pattern, replicas).map_err(|m| invalid(at.clone(), m))?;
        own_pattern_addr = Some(pattern.clone());
    }

    let node_id = match r.pick(
        a.node_id,
        "node_id",
        parse_from_str("an integer"),
        r.file.node_id,
    )? {
        Some((0, at)) => return Err(invalid(at, "must be at least 1, got 0".into())),
        Some((v, _)) => v,
        None => match src.hostname {
            Some(h) => u64::from(ordinal_of_hostname(h)?) + 1,
            None => {
                return Err(invalid(
                    "--node-id".into(),
                    "not set and no hostname to take a pod ordinal from".into(),
                ))
            }
        },
    };
    if let (Some((_, at)), Some(last)) = (&pattern, peers.last()) {
        if node_id > last.id {
            return Err(invalid(
                at.clone(),
                format!("node id {node_id} is beyond --replicas {}", last.id),
            ));
        }
    }

    let advertise = match r.pick(
        a.advertise.clone(),
        "advertise",
        |s| Ok(s.to_owned()),
        r.file.advertise.clone(),
    )? {
        Some((v, at)) => {
            check_host_port(&v).map_err(|m| invalid(at, m))?;
            v
        }
        None => match (&own_pattern_addr, src.hostname) {
            (Some(p), _) => p.replace(ORDINAL_PLACEHOLDER, &(node_id - 1).to_string()),
            (None, Some(h)) => format!("{h}:{}", peer_listen.port()),
            (None, None) => format!("127.0.0.1:{}", peer_listen.port()),
        },
    };

    let tls_ca = r.pick(
        a.tls_ca.clone(),
        "tls_ca",
        |s| Ok(s.into()),
        r.file.tls_ca.clone(),
    )?;
    let tls_cert = r.pick(
        a.tls_cert.clone(),
        "tls_cert",
        |s| Ok(s.into()),
        r.file.tls_cert.clone(),
    )?;
    let tls_key = r.pick(
        a.tls_key.clone(),
        "tls_key",
        |s| Ok(s.into()),
        r.file.tls_key.clone(),
    )?;
    let tls = match (tls_ca, tls_cert, tls_key) {
        (None, None, None) => None,
        (Some((ca, _)), Some((cert, _)), Some((key, _))) => Some(TlsFiles { ca, cert, key }),
        (ca, cert, key) => {
            let at = [ca, cert, key]
                .into_iter()
                .flatten()
                .next()
                .map(|(_, at)| at);
            return Err(invalid(
                at.unwrap_or_default(),
                "--tls-ca, --tls-cert and --tls-key must be given together".into(),
            ));
        }
    };

    let path = |s: &str| Ok(PathBuf::from(s));
    let api_cert = r.pick(
        a.api_tls_cert.clone(),
        "api_tls_cert",
        path,
        r.file.api_tls_cert.clone(),
    )?;
    let api_key = r.pick(
        a.api_tls_key.clone(),
        "api_tls_key",
        path,
        r.file.api_tls_key.clone(),
    )?;
    let api_ca = r.pick(
        a.api_tls_ca.clone(),
        "api_tls_ca",
        path,
        r.file.api_tls_ca.clone(),
    )?;
    let api_tls = match (api_cert, api_key) {
        (None, None) => {
            if let Some((_, at)) = api_ca {
                return Err(invalid(at, "needs --api-tls-cert and --api-tls-key".into()));
            }
            None
        }
        (Some((cert, _)), Some((key, _))) => Some(ApiTlsFiles {
            cert,
            key,
            ca: api_ca
                .map(|(ca, _)| ca)
                .or_else(|| tls.as_ref().map(|t| t.ca.clone())),
        }),
        (Some((_, at)), None) | (None, Some((_, at))) => {
            return Err(invalid(
                at,
                "--api-tls-cert and --api-tls-key must be given together".into(),
            ))
        }
    };

    let api_token = r.secret(
        "api_token",
        a.api_token_file.clone(),
        r.file.api_token_file.clone(),
    )?;
    let webhook_secret = r.secret(
        "webhook_secret",
        a.webhook_secret_file.clone(),
        r.file.webhook_secret_file.clone(),
    )?;

    let file_log = match &r.file.log_format {
        Some(s) => Some(parse_log_format(s).map_err(|m| invalid(r.file_at("log_format"), m))?),
        None => None,
    };
    let log_format = r
        .pick(None, "log_format", parse_log_format, file_log)?
        .map_or(LogFormat::Text, |(v, _)| v);
    let grace = r
        .pick(
            a.grace_period_seconds,
            "grace_period_seconds",
            parse_from_str("an integer"),
            r.file.grace_period_seconds,
        )?
        .map_or(DEFAULT_GRACE_PERIOD_SECONDS, |(v, _)| v);
    let store_cache_mb = positive(
        "store cache MiB",
        r.pick(
            a.store_cache_mb,
            "store_cache_mb",
            parse_from_str("an integer"),
            r.file.store_cache_mb,
        )?,
        DEFAULT_STORE_CACHE_MB,
    )?;

    let controller = r.controller()?;
    Ok(NodeConfig {
        controller,
        node_id,
        data_dir: r
            .pick(
                a.data_dir.clone(),
                "data_dir",
                |s| Ok(s.into()),
                r.file.data_dir.clone(),
            )?
            .map_or_else(|| PathBuf::from(DEFAULT_DATA_DIR), |(v, _)| v),
        peer_listen,
        api_listen,
        http_listen,
        advertise,
        peers,
        voters,
        shard_count,
        tls,
        api_tls,
        api_token,
        webhook_secret,
        log_format,
        grace_period: Duration::from_secs(grace),
        store_cache_bytes: store_cache_mb << 20,
    })
}

/// Default Application namespace.
pub const DEFAULT_NAMESPACE: &str = "argocd";
/// Default periodic reconciliation and repository polling, as Argo CD's
/// `timeout.reconciliation`.
pub const DEFAULT_RESYNC_SECONDS: u64 = 180;
/// Default apps reconciled at once.
pub const DEFAULT_WORKERS: usize = 16;

/// A picked count that must be at least 1 (`default` when not given).
fn positive(name: &str, v: Option<(u64, String)>, default: u64) -> Result<u64, ConfigError> {
    match v {
        Some((0, at)) => Err(ConfigError::Invalid {
            at,
            message: format!("{name} must be at least 1, got 0"),
        }),
        Some((v, _)) => Ok(v),
        None => Ok(default),
    }
}

impl Resolver<'_> {
    fn controller(&self) -> Result<ControllerConfig, ConfigError> {
        let a = self.src.args;
        let f = &self.file;
        let list = |s: &str| -> Result<Vec<String>, String> {
            Ok(s.split(',')
                .map(|x| x.trim().to_owned())
                .filter(|x| !x.is_empty())
                .collect())
        };
        let flag_ns = (!a.namespaces.is_empty()).then(|| a.namespaces.clone());
        let namespaces = match self.pick(flag_ns, "namespaces", list, f.namespaces.clone())? {
            Some((v, at)) if v.is_empty() => {
                return Err(ConfigError::Invalid {
                    at,
                    message: "needs at least one namespace".into(),
                })
            }
            Some((v, _)) => v,
            None => vec![DEFAULT_NAMESPACE.to_owned()],
        };
        let secrets_namespace = self
            .pick(
                a.secrets_namespace.clone(),
                "secrets_namespace",
                |s| Ok(s.trim().to_owned()),
                f.secrets_namespace.clone(),
            )?
            .map_or_else(|| namespaces[0].clone(), |(v, _)| v);
        let boolean = |s: &str| match s.trim() {
            "true" | "1" => Ok(true),
            "false" | "0" | "" => Ok(false),
            o => Err(format!("must be true or false, got {o:?}")),
        };
        let allow_local_repos = self
            .pick(
                a.allow_local_repos.then_some(true),
                "allow_local_repos",
                boolean,
                f.allow_local_repos,
            )?
            .is_some_and(|(v, _)| v);
        let watch_all_kinds = self
            .pick(
                a.watch_all_kinds.then_some(true),
                "watch_all_kinds",
                boolean,
                f.watch_all_kinds,
            )?
            .is_some_and(|(v, _)| v);
        let resync = positive(
            "resync seconds",
            self.pick(
                a.resync_seconds,
                "resync_seconds",
                parse_from_str("an integer"),
                f.resync_seconds,
            )?,
            DEFAULT_RESYNC_SECONDS,
        )?;
        let repo_poll = positive(
            "repository poll seconds",
            self.pick(
                a.repo_poll_seconds,
                "repo_poll_seconds",
                parse_from_str("an integer"),
                f.repo_poll_seconds,
            )?,
            DEFAULT_RESYNC_SECONDS,
        )?;
        let workers = positive(
            "workers",
            self.pick(
                a.workers.map(|w| w as u64),
                "workers",
                parse_from_str("an integer"),
                f.workers.map(|w| w as u64),
            )?,
            DEFAULT_WORKERS as u64,
        )?;
        Ok(ControllerConfig {
            kubeconfig: self
                .pick(
                    a.kubeconfig.clone(),
                    "kubeconfig",
                    |s| Ok(s.into()),
                    f.kubeconfig.clone(),
                )?
                .map(|(v, _)| v),
            namespaces,
            secrets_namespace,
            apps_dir: self
                .pick(
                    a.apps_dir.clone(),
                    "apps_dir",
                    |s| Ok(s.into()),
                    f.apps_dir.clone(),
                )?
                .map(|(v, _)| v),
            apps_repo: self.apps_repo(a, f)?,
            allow_local_repos,
            resync: Duration::from_secs(resync),
            repo_poll: Duration::from_secs(repo_poll),
            workers: workers as usize,
            watch_all_kinds,
        })
    }

    /// `--apps-repo` with its revision and path; the latter two need the first.
    fn apps_repo(
        &self,
        a: &Args,
        f: &FileConfig,
    ) -> Result<Option<(String, String, String)>, ConfigError> {
        let text = |s: &str| Ok(s.to_string());
        let url = self.pick(a.apps_repo.clone(), "apps_repo", text, f.apps_repo.clone())?;
        let revision = self.pick(
            a.apps_repo_revision.clone(),
            "apps_repo_revision",
            text,
            f.apps_repo_revision.clone(),
        )?;
        let path = self.pick(
            a.apps_repo_path.clone(),
            "apps_repo_path",
            text,
            f.apps_repo_path.clone(),
        )?;
        let Some((url, at)) = url else {
            if let Some((_, at)) = revision.or(path) {
                return Err(ConfigError::Invalid {
                    at,
                    message: "needs --apps-repo".into(),
                });
            }
            return Ok(None);
        };
        if url.trim().is_empty() {
            return Err(ConfigError::Invalid {
                at,
                message: "the repository URL is empty".into(),
            });
        }
        let path = path.map_or_else(|| ".".to_string(), |(p, _)| p);
        if path.split('/').any(|c| c == "..") || path.starts_with('/') {
            return Err(ConfigError::Invalid {
                at: "--apps-repo-path".into(),
                message: format!("{path:?} must be a relative path inside the repository"),
            });
        }
        Ok(Some((
            url,
            revision.map_or_else(|| "HEAD".to_string(), |(r, _)| r),
            path,
        )))
    }

    /// A secret from `--NAME-file` (flag, env, file) or inline `FLOTILLA_NAME`; not both.
    fn secret(
        &self,
        name: &str,
        flag: Option<PathBuf>,
        file: Option<PathBuf>,
    ) -> Result<Option<SecretSource>, ConfigError> {
        let path = self.pick(flag, &format!("{name}_file"), |s| Ok(s.into()), file)?;
        let env_name = format!("FLOTILLA_{}", name.to_ascii_uppercase());
        match (path, self.src.env.get(&env_name)) {
            (Some((_, at)), Some(_)) => Err(ConfigError::Invalid {
                at,
                message: format!("cannot be combined with {env_name}"),
            }),
            (Some((p, _)), None) => Ok(Some(SecretSource::File(p))),
            (None, Some(v)) => Ok(Some(SecretSource::Value(Secret(v.clone())))),
            (None, None) => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests;
