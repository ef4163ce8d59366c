//! Push-event webhooks as GitHub, GitLab, Bitbucket Cloud and Gogs send them, built from a
//! [`PushEvent`] and POSTed over plain HTTP with a hyper client.
//!
//! Payloads carry the fields Argo CD's webhook handler reads: the repository URLs, `ref`,
//! `before`/`after` and the per-commit `added`/`modified`/`removed` paths (GitHub, GitLab,
//! Gogs), or `push.changes[]` with `old`/`new` targets (Bitbucket Cloud).

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::{Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::net::TcpStream;

/// Errors sending a webhook.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The target URL is not a plain `http://host:port/path` URL.
    #[error("webhook URL {url:?}: {reason}")]
    Url {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Connecting to the receiver failed.
    #[error("webhook connect to {addr}: {source}")]
    Connect {
        /// host:port.
        addr: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP exchange failed.
    #[error("webhook POST to {url}: {source}")]
    Http {
        /// The URL.
        url: String,
        /// The hyper error.
        #[source]
        source: hyper::Error,
    },
    /// Building the request failed (bad header value).
    #[error("webhook request: {0}")]
    Request(#[from] http::Error),
}

/// Which service's webhook format to produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookProvider {
    /// GitHub: `X-GitHub-Event: push`, `X-Hub-Signature-256: sha256=<hex hmac>`.
    GitHub,
    /// GitLab: `X-Gitlab-Event: Push Hook`, `X-Gitlab-Token: <secret>`.
    GitLab,
    /// Bitbucket Cloud: `X-Event-Key: repo:push`, secret sent as `X-Hook-UUID`.
    Bitbucket,
    /// Gogs: `X-Gogs-Event: push`, `X-Gogs-Signature: <hex hmac>`.
    Gogs,
}

/// A push to one branch.
#[derive(Debug, Clone)]
pub struct PushEvent {
    /// The clone URL (e.g. [`super::GitServer::url_for`]).
    pub clone_url: String,
    /// The repository's web URL; Argo CD matches Applications against it.
    pub html_url: String,
    /// `owner/name`.
    pub full_name: String,
    /// The branch pushed (without `refs/heads/`).
    pub branch: String,
    /// The previous head (hex).
    pub before: String,
    /// The new head (hex).
    pub after: String,
    /// Commit message of `after`.
    pub message: String,
    /// Paths added.
    pub added: Vec<String>,
    /// Paths modified.
    pub modified: Vec<String>,
    /// Paths removed.
    pub removed: Vec<String>,
}

impl PushEvent {
    /// A push of one commit from `before` to `after` changing `modified`, for a repository
    /// served at `clone_url` (the web URL is the clone URL without a trailing `.git`).
    pub fn new(
        clone_url: &str,
        branch: &str,
        before: &str,
        after: &str,
        modified: Vec<String>,
    ) -> Self {
        let html_url = clone_url
            .strip_suffix(".git")
            .unwrap_or(clone_url)
            .to_string();
        let full_name = html_url
            .rsplit('/')
            .take(2)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("/");
        Self {
            clone_url: clone_url.to_string(),
            html_url,
            full_name,
            branch: branch.to_string(),
            before: before.to_string(),
            after: after.to_string(),
            message: "update".to_string(),
            added: Vec::new(),
            modified,
            removed: Vec::new(),
        }
    }
}

/// A built webhook request: headers and JSON body.
#[derive(Debug, Clone)]
pub struct WebhookRequest {
    /// Header names and values (besides `Content-Type`, `Content-Length`, `Host`).
    pub headers: Vec<(String, String)>,
    /// The JSON payload.
    pub body: Vec<u8>,
}

impl WebhookRequest {
    /// The value of header `name` (case-insensitive), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Hex HMAC-SHA256 of `body` with `secret`, as GitHub (after `sha256=`) and Gogs sign.
pub fn hmac_sha256_hex(secret: &[u8], body: &[u8]) -> String {
    // HMAC accepts keys of any length, so construction cannot fail.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn commit(ev: &PushEvent) -> Value {
    json!({
        "id": ev.after,
        "message": ev.message,
        "timestamp": "2026-01-01T00:00:00Z",
        "url": format!("{}/commit/{}", ev.html_url, ev.after),
        "author": {"name": "flotilla-loadtest", "email": "loadtest@flotilla.invalid", "username": "loadtest"},
        "added": ev.added,
        "modified": ev.modified,
        "removed": ev.removed,
    })
}

/// The JSON payload `provider` sends for `ev`.
pub fn payload(provider: WebhookProvider, ev: &PushEvent) -> Value {
    let git_ref = format!("refs/heads/{}", ev.branch);
    let name = ev
        .full_name
        .rsplit('/')
        .next()
        .unwrap_or(&ev.full_name)
        .to_string();
    match provider {
        WebhookProvider::GitHub | WebhookProvider::Gogs => json!({
            "ref": git_ref,
            "before": ev.before,
            "after": ev.after,
            "compare_url": format!("{}/compare/{}...{}", ev.html_url, ev.before, ev.after),
            "commits": [commit(ev)],
            "head_commit": commit(ev),
            "repository": {
                "name": name,
                "full_name": ev.full_name,
                "html_url": ev.html_url,
                "clone_url": ev.clone_url,
                "default_branch": ev.branch,
            },
            "pusher": {"name": "loadtest", "email": "loadtest@flotilla.invalid"},
            "sender": {"login": "loadtest"},
        }),
        WebhookProvider::GitLab => json!({
            "object_kind": "push",
            "event_name": "push",
            "ref": git_ref,
            "before": ev.before,
            "after": ev.after,
            "checkout_sha": ev.after,
            "user_username": "loadtest",
            "project": {
                "name": name,
                "path_with_namespace": ev.full_name,
                "web_url": ev.html_url,
                "git_http_url": ev.clone_url,
                "default_branch": ev.branch,
            },
            "repository": {"name": name, "url": ev.clone_url, "homepage": ev.html_url, "git_http_url": ev.clone_url},
            "commits": [commit(ev)],
            "total_commits_count": 1,
        }),
        WebhookProvider::Bitbucket => json!({
            "actor": {"type": "user", "nickname": "loadtest", "display_name": "flotilla-loadtest"},
            "repository": {
                "type": "repository",
                "name": name,
                "full_name": ev.full_name,
                "scm": "git",
                "links": {"html": {"href": ev.html_url}},
            },
            "push": {"changes": [{
                "old": {"type": "branch", "name": ev.branch, "target": {"type": "commit", "hash": ev.before}},
                "new": {"type": "branch", "name": ev.branch, "target": {"type": "commit", "hash": ev.after, "message": ev.message}},
                "created": false,
                "forced": false,
                "closed": false,
                "truncated": false,
                "commits": [{"type": "commit", "hash": ev.after, "message": ev.message}],
            }]},
        }),
    }
}

/// Build the headers and body `provider` sends for `ev`, signed or tokened with `secret`.
pub fn build(provider: WebhookProvider, ev: &PushEvent, secret: Option<&str>) -> WebhookRequest {
    let body = serde_json::to_vec(&payload(provider, ev)).unwrap_or_default();
    let delivery = format!("loadtest-{}", &ev.after.get(..12).unwrap_or(&ev.after));
    let mut headers: Vec<(String, String)> = Vec::new();
    let mut h = |n: &str, v: String| headers.push((n.to_string(), v));
    match provider {
        WebhookProvider::GitHub => {
            h("X-GitHub-Event", "push".into());
            h("X-GitHub-Delivery", delivery);
            if let Some(s) = secret {
                h(
                    "X-Hub-Signature-256",
                    format!("sha256={}", hmac_sha256_hex(s.as_bytes(), &body)),
                );
            }
        }
        WebhookProvider::GitLab => {
            h("X-Gitlab-Event", "Push Hook".into());
            if let Some(s) = secret {
                h("X-Gitlab-Token", s.to_string());
            }
        }
        WebhookProvider::Bitbucket => {
            h("X-Event-Key", "repo:push".into());
            h("X-Request-UUID", delivery);
            h("X-Attempt-Number", "1".into());
            if let Some(s) = secret {
                h("X-Hook-UUID", s.to_string());
            }
        }
        WebhookProvider::Gogs => {
            h("X-Gogs-Event", "push".into());
            h("X-Gogs-Delivery", delivery);
            if let Some(s) = secret {
                h("X-Gogs-Signature", hmac_sha256_hex(s.as_bytes(), &body));
            }
        }
    }
    WebhookRequest { headers, body }
}

/// POST `req` to `url` (plain `http://`); returns the response status code.
pub async fn send(url: &str, req: &WebhookRequest) -> Result<u16, WebhookError> {
    let bad = |reason: &str| WebhookError::Url {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let uri: Uri = url
        .parse()
        .map_err(|e: http::uri::InvalidUri| bad(&e.to_string()))?;
    if uri.scheme_str() != Some("http") {
        return Err(bad("only http:// is supported"));
    }
    let host = uri.host().ok_or_else(|| bad("no host"))?;
    let addr = format!("{host}:{}", uri.port_u16().unwrap_or(80));
    let stream = TcpStream::connect(&addr)
        .await
        .map_err(|source| WebhookError::Connect {
            addr: addr.clone(),
            source,
        })?;
    let http_err = |source| WebhookError::Http {
        url: url.to_string(),
        source,
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(http_err)?;
    let driver = tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!("webhook connection: {e}");
        }
    });
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let mut builder = Request::post(path)
        .header(http::header::HOST, addr.as_str())
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::USER_AGENT, "flotilla-loadtest-webhook");
    for (n, v) in &req.headers {
        builder = builder.header(n.as_str(), v.as_str());
    }
    let request = builder.body(Full::new(Bytes::from(req.body.clone())))?;
    let response = sender.send_request(request).await.map_err(http_err)?;
    let status = response.status().as_u16();
    // Drain the body so the connection closes cleanly.
    let _ = response.into_body().collect().await;
    driver.abort();
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc4231_case_2() {
        assert_eq!(
            hmac_sha256_hex(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn full_name_and_html_url_derive_from_clone_url() {
        let ev = PushEvent::new("http://127.0.0.1:1/org/apps.git", "main", "a", "b", vec![]);
        assert_eq!(ev.html_url, "http://127.0.0.1:1/org/apps");
        assert_eq!(ev.full_name, "org/apps");
    }
}
