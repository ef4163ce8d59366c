//! What every command talking to a running node shares: where the node is, the token,
//! the output format, and how a command's outcome becomes an exit code.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use serde_json::Value;

use crate::api::auth::BearerToken;
use crate::api::client::{ApiClient, ClientError, ClientTls};

/// The environment variable holding the API token itself (`--token-file` takes precedence).
pub const TOKEN_ENV: &str = "FLOTILLA_TOKEN";

/// Options of every command that talks to a node.
#[derive(Debug, Clone, Args)]
pub struct RemoteArgs {
    /// The node's API address: `host:port`, or `https://host:port` for TLS.
    #[arg(
        long,
        global = true,
        env = "FLOTILLA_SERVER",
        default_value = "127.0.0.1:7001"
    )]
    pub server: String,
    /// A file holding the API token (otherwise the token is read from FLOTILLA_TOKEN).
    #[arg(long, global = true, env = "FLOTILLA_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Speak TLS to the node and trust this CA bundle (PEM). An `https://` address without
    /// it trusts the system's roots.
    #[arg(long, global = true, env = "FLOTILLA_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// With TLS, the name the node's certificate must carry (default: the host of
    /// --server; set it when connecting through a port-forward).
    #[arg(long, global = true, env = "FLOTILLA_TLS_SERVER_NAME")]
    pub tls_server_name: Option<String>,
    /// Read through the leader: see every write acknowledged before the command.
    #[arg(long, global = true)]
    pub consistent: bool,
    /// Output format.
    #[arg(short = 'o', long = "output", global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Aligned columns, for people.
    Table,
    /// JSON.
    Json,
    /// YAML.
    Yaml,
}

impl RemoteArgs {
    /// The token: from `--token-file`, else `FLOTILLA_TOKEN`, else none.
    pub fn token(&self) -> anyhow::Result<Option<String>> {
        if let Some(path) = &self.token_file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the token file {}", path.display()))?;
            let t = text.trim();
            anyhow::ensure!(!t.is_empty(), "the token file {} is empty", path.display());
            return Ok(Some(t.to_string()));
        }
        Ok(std::env::var(TOKEN_ENV)
            .ok()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty()))
    }

    /// A client of the node.
    pub fn client(&self) -> anyhow::Result<ApiClient> {
        let token = self.token()?;
        let mut tls = match &self.ca_file {
            Some(path) => Some(ClientTls::from_ca_file(path)?),
            None => None,
        };
        if let Some(name) = &self.tls_server_name {
            tls.get_or_insert_with(ClientTls::default).server_name = Some(name.clone());
        }
        let auth = BearerToken::new(token.as_deref())?;
        Ok(ApiClient::with_tls(&self.server, auth, tls.as_ref())?)
    }
}

/// Map a failed call to an error that names the node, the code and the message.
pub fn rpc(client: &ApiClient) -> impl Fn(tonic::Status) -> ClientError + '_ {
    move |s| client.error(s)
}

/// Print a document in the chosen structured format (JSON for `table`).
pub fn print_doc(out: &mut dyn Write, output: Output, doc: &Value) -> anyhow::Result<()> {
    match output {
        Output::Yaml => write!(out, "{}", serde_yaml::to_string(doc)?)?,
        Output::Json | Output::Table => writeln!(out, "{}", serde_json::to_string_pretty(doc)?)?,
    }
    Ok(())
}

/// Parse a JSON document the node sent; empty text is `null`.
pub fn parse_json(what: &str, text: &str) -> anyhow::Result<Value> {
    if text.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(text).with_context(|| format!("the node sent an unreadable {what}"))
}

/// Run a command: exit 0 when it returns `Ok(true)`, 1 when `Ok(false)` (out of sync, timed
/// out), 2 on error.
pub fn exit_code(run: impl std::future::Future<Output = anyhow::Result<bool>>) -> ExitCode {
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(run));
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// A string field of a JSON document, or `""`.
pub fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

/// `<none>` for empty cells, as `argocd` prints them.
pub fn or_none(s: impl Into<String>) -> String {
    let s = s.into();
    if s.is_empty() {
        "<none>".into()
    } else {
        s
    }
}

/// [`super::health::write_table`] on a `dyn Write`.
pub fn table<const N: usize>(
    out: &mut dyn Write,
    header: [&str; N],
    rows: &[[String; N]],
) -> std::io::Result<()> {
    super::health::write_table(&mut &mut *out, header, rows)
}
