//! A smart-HTTP git server on loopback: the system `git http-backend` run as a CGI behind
//! a small hyper server, with optional HTTP basic auth.
//!
//! Request bodies are bounded ([`GitServerConfig::max_body_bytes`], also after gzip
//! decoding), git is started without a shell and with a minimal CGI environment.

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Errors starting the git server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The repository root is not a directory.
    #[error("git server root {path} is not a directory")]
    RootNotDirectory {
        /// The configured root.
        path: PathBuf,
    },
    /// Binding the loopback listener failed.
    #[error("binding git server listener on 127.0.0.1: {0}")]
    Bind(#[source] std::io::Error),
}

/// Basic-auth credentials the server requires.
#[derive(Debug, Clone)]
pub struct BasicAuth {
    /// Required user name; `None` accepts any user name (token-as-password style).
    pub username: Option<String>,
    /// Required password or token.
    pub password: String,
}

impl BasicAuth {
    /// Require this exact user name and password.
    pub fn user(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            username: Some(username.into()),
            password: password.into(),
        }
    }

    /// Require this token as the password, with any user name.
    pub fn token(token: impl Into<String>) -> Self {
        Self {
            username: None,
            password: token.into(),
        }
    }
}

/// Configuration of a [`GitServer`].
#[derive(Debug, Clone)]
pub struct GitServerConfig {
    /// Credentials required for every request; `None` serves anonymously.
    pub auth: Option<BasicAuth>,
    /// Whether pushes (`git-receive-pack`) are accepted.
    pub allow_push: bool,
    /// Largest request body accepted, in bytes, after gzip decoding.
    pub max_body_bytes: usize,
    /// The git executable (looked up on `PATH` when relative).
    pub git_binary: PathBuf,
    /// Most `git http-backend` processes running at once; further requests wait.
    pub max_concurrent_backends: usize,
    /// Port on 127.0.0.1 to listen on; 0 picks a free one.
    pub port: u16,
}

impl Default for GitServerConfig {
    fn default() -> Self {
        Self {
            auth: None,
            allow_push: true,
            max_body_bytes: 256 << 20,
            git_binary: PathBuf::from("git"),
            max_concurrent_backends: 32,
            port: 0,
        }
    }
}

/// A running git server; dropping it without [`GitServer::shutdown`] stops accepting too.
pub struct GitServer {
    addr: SocketAddr,
    root: PathBuf,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

struct Shared {
    root: PathBuf,
    config: GitServerConfig,
    path_env: String,
    backends: tokio::sync::Semaphore,
}

/// `program` as an absolute path when it is a bare name found on `path_env`; unchanged
/// otherwise (a spawn then reports it missing).
///
/// A bare name with a `PATH` set for the child makes the standard library start the child
/// with `fork`, which copies the page tables of the whole server process: with simulated
/// clusters in the same process that took about half a second per Git request. With an
/// absolute path it uses `posix_spawn`, whose cost does not grow with the parent's memory.
fn absolute_program(program: &Path, path_env: &str) -> PathBuf {
    if program.components().count() != 1 {
        return program.to_path_buf();
    }
    std::env::split_paths(path_env)
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
        .unwrap_or_else(|| program.to_path_buf())
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

impl GitServer {
    /// Serve the bare repositories under `root` on an ephemeral loopback port.
    pub async fn start(
        root: impl Into<PathBuf>,
        config: GitServerConfig,
    ) -> Result<Self, ServerError> {
        let root = root.into();
        if !root.is_dir() {
            return Err(ServerError::RootNotDirectory { path: root });
        }
        let listener = TcpListener::bind(("127.0.0.1", config.port))
            .await
            .map_err(ServerError::Bind)?;
        let addr = listener.local_addr().map_err(ServerError::Bind)?;
        let backends = tokio::sync::Semaphore::new(config.max_concurrent_backends.max(1));
        let path_env =
            std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".to_string());
        let mut config = config;
        config.git_binary = absolute_program(&config.git_binary, &path_env);
        let shared = Arc::new(Shared {
            root: root.clone(),
            backends,
            config,
            path_env,
        });
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    a = listener.accept() => a,
                    _ = stopped.changed() => break,
                };
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // E.g. out of file descriptors: back off instead of spinning.
                        tracing::warn!("git server accept: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let shared = shared.clone();
                let mut conn_stop = stopped.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| handle(shared.clone(), req));
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc);
                    tokio::pin!(conn);
                    tokio::select! {
                        r = conn.as_mut() => { if let Err(e) = r { tracing::debug!("git server connection: {e}"); } }
                        _ = conn_stop.changed() => {}
                    }
                });
            }
        });
        Ok(Self {
            addr,
            root,
            stop,
            task: Some(task),
        })
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The directory served.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The clone URL of repository `repo_name` (its directory name under the root, e.g. `apps.git`).
    pub fn url_for(&self, repo_name: &str) -> String {
        format!("http://{}/{}", self.addr, repo_name.trim_start_matches('/'))
    }

    /// The clone URL with `user:password@` embedded, for the git CLI.
    pub fn url_with_credentials(&self, repo_name: &str, user: &str, password: &str) -> String {
        format!(
            "http://{user}:{password}@{}/{}",
            self.addr,
            repo_name.trim_start_matches('/')
        )
    }

    /// Stop accepting and close open connections; waits for the accept loop to end.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for GitServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

type Resp = Response<Full<Bytes>>;

fn plain(status: StatusCode, msg: &str) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(format!("{msg}\n"))));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

/// Check basic auth; `Ok(Some(user))` when authorised with a user name.
fn authorise(auth: &Option<BasicAuth>, headers: &HeaderMap) -> Result<Option<String>, ()> {
    let Some(required) = auth else {
        return Ok(None);
    };
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or(())?;
    let encoded = value.strip_prefix("Basic ").ok_or(())?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| ())?;
    let decoded = String::from_utf8(decoded).map_err(|_| ())?;
    let (user, password) = decoded.split_once(':').ok_or(())?;
    let user_ok = required.username.as_deref().is_none_or(|u| u == user);
    if user_ok && password == required.password {
        Ok(Some(user.to_string()))
    } else {
        Err(())
    }
}

async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Resp, std::convert::Infallible> {
    Ok(serve(&shared, req).await.unwrap_or_else(|r| r))
}

async fn serve(shared: &Shared, req: Request<Incoming>) -> Result<Resp, Resp> {
    let user = authorise(&shared.config.auth, req.headers()).map_err(|()| {
        let mut r = plain(StatusCode::UNAUTHORIZED, "authentication required");
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"flotilla-git\""),
        );
        r
    })?;
    let path = req.uri().path().to_string();
    if !path.starts_with('/') || path.split('/').any(|c| c == "..") || path.contains('\0') {
        return Err(plain(StatusCode::BAD_REQUEST, "invalid repository path"));
    }
    let query = req.uri().query().unwrap_or("").to_string();
    let method = req.method().as_str().to_string();
    let header_str = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let content_type = header_str("content-type");
    let encoding = header_str("content-encoding");
    let git_protocol = header_str("git-protocol");
    let limit = shared.config.max_body_bytes;
    let raw = Limited::new(req.into_body(), limit)
        .collect()
        .await
        .map_err(|e| plain(StatusCode::PAYLOAD_TOO_LARGE, &format!("request body: {e}")))?
        .to_bytes();
    let body = match encoding.as_str() {
        "" | "identity" => raw,
        "gzip" | "x-gzip" => gunzip(&raw, limit)?,
        other => {
            return Err(plain(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                &format!("unsupported content-encoding {other:?}"),
            ))
        }
    };

    let _permit = shared.backends.acquire().await.map_err(|_| {
        plain(
            StatusCode::SERVICE_UNAVAILABLE,
            "git server is shutting down",
        )
    })?;
    let mut cmd = tokio::process::Command::new(&shared.config.git_binary);
    cmd.arg("http-backend")
        .env_clear()
        .env("PATH", &shared.path_env)
        .env("HOME", &shared.root)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_PROJECT_ROOT", &shared.root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("SERVER_PROTOCOL", "HTTP/1.1")
        .env("REQUEST_METHOD", &method)
        .env("PATH_INFO", &path)
        .env("QUERY_STRING", &query)
        .env("CONTENT_TYPE", &content_type)
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("GIT_CONFIG_COUNT", "1")
        .env("GIT_CONFIG_KEY_0", "http.receivepack")
        .env(
            "GIT_CONFIG_VALUE_0",
            if shared.config.allow_push {
                "true"
            } else {
                "false"
            },
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(user) = &user {
        cmd.env("REMOTE_USER", user);
    }
    if !git_protocol.is_empty()
        && git_protocol
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"=:._-".contains(&b))
    {
        cmd.env("GIT_PROTOCOL", &git_protocol)
            .env("HTTP_GIT_PROTOCOL", &git_protocol);
    }
    let mut child = cmd.spawn().map_err(|e| {
        plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("starting git http-backend: {e}"),
        )
    })?;
    let mut stdin = child.stdin.take();
    let feed = async move {
        if let Some(stdin) = stdin.as_mut() {
            // The backend may exit before reading everything (e.g. on errors); that is not ours to report.
            let _ = stdin.write_all(&body).await;
        }
        drop(stdin);
    };
    let (_, output) = tokio::join!(feed, child.wait_with_output());
    let output = output.map_err(|e| {
        plain(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("running git http-backend: {e}"),
        )
    })?;
    if !output.stderr.is_empty() {
        tracing::debug!(
            "git http-backend {path}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    parse_cgi(&output.stdout).ok_or_else(|| {
        plain(
            StatusCode::BAD_GATEWAY,
            &format!(
                "git http-backend gave no CGI response (exit {}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            ),
        )
    })
}

fn gunzip(raw: &[u8], limit: usize) -> Result<Bytes, Resp> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(raw)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| {
            plain(
                StatusCode::BAD_REQUEST,
                &format!("invalid gzip request body: {e}"),
            )
        })?;
    if out.len() > limit {
        return Err(plain(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body too large after gzip decoding",
        ));
    }
    Ok(Bytes::from(out))
}

/// Split a CGI response into status, headers and body.
fn parse_cgi(out: &[u8]) -> Option<Resp> {
    let (head_end, body_start) = find_header_end(out)?;
    let head = std::str::from_utf8(&out[..head_end]).ok()?;
    let mut resp = Response::new(Full::new(Bytes::copy_from_slice(&out[body_start..])));
    for line in head.lines() {
        let (name, value) = line.split_once(':')?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split_whitespace().next()?.parse::<u16>().ok()?;
            *resp.status_mut() = StatusCode::from_u16(code).ok()?;
        } else if let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(name.trim().as_bytes()),
            HeaderValue::from_str(value),
        ) {
            resp.headers_mut().append(n, v);
        }
    }
    Some(resp)
}

fn find_header_end(out: &[u8]) -> Option<(usize, usize)> {
    if let Some(i) = out.windows(4).position(|w| w == b"\r\n\r\n") {
        let lf = out.windows(2).position(|w| w == b"\n\n");
        if lf.is_none_or(|j| j > i) {
            return Some((i, i + 4));
        }
    }
    out.windows(2)
        .position(|w| w == b"\n\n")
        .map(|i| (i, i + 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_program_name_is_found_on_the_path() {
        let dir = std::env::temp_dir().join(format!("flotilla-path-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let tool = dir.join("some-tool");
        std::fs::write(&tool, "#!/bin/sh\n").expect("write");
        let plain = dir.join("not-executable");
        std::fs::write(&plain, "").expect("write");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let path = format!("/nonexistent:{}", dir.display());
        assert_eq!(absolute_program(Path::new("some-tool"), &path), tool);
        assert_eq!(
            absolute_program(Path::new("not-executable"), &path),
            PathBuf::from("not-executable")
        );
        assert_eq!(
            absolute_program(Path::new("/usr/bin/env"), &path),
            PathBuf::from("/usr/bin/env")
        );
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn cgi_status_and_headers_are_parsed() {
        let r = parse_cgi(b"Status: 404 Not Found\r\nContent-Type: text/plain\r\n\r\nnope")
            .expect("parsed");
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "text/plain");
        assert!(parse_cgi(b"no header end").is_none());
    }

    #[test]
    fn basic_auth_accepts_only_matching_credentials() {
        let mut h = HeaderMap::new();
        let auth = Some(BasicAuth::user("alice", "s3cret"));
        assert!(authorise(&auth, &h).is_err());
        let enc = base64::engine::general_purpose::STANDARD.encode("alice:s3cret");
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {enc}")).expect("header"),
        );
        assert_eq!(authorise(&auth, &h), Ok(Some("alice".to_string())));
        assert!(authorise(&Some(BasicAuth::user("bob", "s3cret")), &h).is_err());
        assert!(authorise(&Some(BasicAuth::token("s3cret")), &h).is_ok());
        assert!(authorise(&Some(BasicAuth::token("other")), &h).is_err());
    }
}
