//! Push-event webhooks: provider detection, signature checks and payload parsing.
//!
//! Accepted, as the services send them (and as Argo CD's `/api/webhook` accepts them):
//! - GitHub: `X-GitHub-Event: push`, signed with `X-Hub-Signature-256: sha256=<hex>`;
//! - GitLab: `X-Gitlab-Event: Push Hook` / `Tag Push Hook`, secret in `X-Gitlab-Token`;
//! - Bitbucket Cloud: `X-Event-Key: repo:push`. Bitbucket Cloud does not sign payloads; like
//!   Argo CD, flotilla then treats the webhook's UUID (`X-Hook-UUID`) as the shared secret:
//!   with a secret configured, a Bitbucket Cloud request is accepted only if its
//!   `X-Hook-UUID` equals the secret (braces ignored), otherwise it is refused with 401;
//! - Bitbucket Server / Data Center: `X-Event-Key: repo:refs_changed`, signed with
//!   `X-Hub-Signature: sha256=<hex>`;
//! - Gogs (and Gitea, which sends the Gogs headers too): `X-Gogs-Event: push`, signed with
//!   `X-Gogs-Signature: <hex>`.
//!
//! Pings (`X-GitHub-Event: ping`, `diagnostics:ping`, …) and other events come back as
//! [`WebhookError::Ignored`], which the HTTP layer answers with 200. Secrets and signatures
//! never appear in errors or logs.

use hmac::{Hmac, Mac};
use http::HeaderMap;
use serde_json::Value;
use sha2::Sha256;

/// The service that sent a webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// GitHub (github.com or Enterprise).
    GitHub,
    /// GitLab.
    GitLab,
    /// Bitbucket Cloud (bitbucket.org).
    BitbucketCloud,
    /// Bitbucket Server / Data Center.
    BitbucketServer,
    /// Gogs or Gitea.
    Gogs,
}

impl Provider {
    /// A lower-case name for logs and answers.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::GitHub => "github",
            Provider::GitLab => "gitlab",
            Provider::BitbucketCloud => "bitbucket",
            Provider::BitbucketServer => "bitbucket-server",
            Provider::Gogs => "gogs",
        }
    }
}

impl std::fmt::Display for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A push to one branch or tag, as read from a webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushEvent {
    /// Who sent it.
    pub provider: Provider,
    /// Every URL the payload gives for the repository (web, HTTP clone, SSH clone).
    pub repo_urls: Vec<String>,
    /// The pushed branch or tag, short name (`main`, `v1.2.0`).
    pub git_ref: String,
    /// Whether `git_ref` is a tag.
    pub is_tag: bool,
    /// The new commit of a branch push, when the payload has it. Tag pushes leave it out
    /// (an annotated tag's id is not a commit), so the tag is resolved by fetching.
    pub sha: Option<String>,
    /// The commit the ref pointed to before the push, when the payload says.
    pub before: Option<String>,
    /// The repository's default branch, when the payload says (decides `HEAD` matches).
    pub default_branch: Option<String>,
}

/// Why a webhook was not turned into a [`PushEvent`].
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// No known provider header.
    #[error(
        "unknown webhook sender: expected one of the headers X-GitHub-Event, X-Gitlab-Event, \
         X-Event-Key (Bitbucket) or X-Gogs-Event"
    )]
    UnknownProvider,
    /// A secret is configured and the request's signature or token is missing or wrong.
    #[error("{provider} webhook refused: {reason}")]
    Unauthorized {
        /// The sender.
        provider: Provider,
        /// What was wrong (never the secret or the signature).
        reason: &'static str,
    },
    /// The body is not the payload the provider sends for a push.
    #[error("malformed {provider} push payload: {reason}")]
    Malformed {
        /// The sender.
        provider: Provider,
        /// What is missing or wrong, with the field's path.
        reason: String,
    },
    /// A valid request that is not a push to act on (a ping, another event, a deletion).
    #[error("{provider} {event} ignored")]
    Ignored {
        /// The sender.
        provider: Provider,
        /// The event, or why it is ignored.
        event: String,
    },
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

/// Which provider sent the request, and its event name.
pub fn detect(headers: &HeaderMap) -> Result<(Provider, String), WebhookError> {
    // Gitea sends X-GitHub-Event and X-Gogs-Event both; Gogs first keeps its signature.
    if let Some(e) = header(headers, "x-gogs-event") {
        return Ok((Provider::Gogs, e.to_string()));
    }
    if let Some(e) = header(headers, "x-github-event") {
        return Ok((Provider::GitHub, e.to_string()));
    }
    if let Some(e) = header(headers, "x-gitlab-event") {
        return Ok((Provider::GitLab, e.to_string()));
    }
    if let Some(e) = header(headers, "x-event-key") {
        let server = e.starts_with("repo:refs_changed")
            || e.starts_with("pr:")
            || (e == "diagnostics:ping" && header(headers, "x-request-id").is_some());
        let provider = if server {
            Provider::BitbucketServer
        } else {
            Provider::BitbucketCloud
        };
        return Ok((provider, e.to_string()));
    }
    Err(WebhookError::UnknownProvider)
}

/// Parse and authenticate a push webhook. With `secret` set, the request must carry the
/// provider's signature or token for it; without, anything well-formed is accepted.
pub fn parse_push(
    headers: &HeaderMap,
    body: &[u8],
    secret: Option<&str>,
) -> Result<PushEvent, WebhookError> {
    let (provider, event) = detect(headers)?;
    if let Some(secret) = secret {
        verify(provider, headers, body, secret)?;
    }
    let ignored = |event: &str| WebhookError::Ignored {
        provider,
        event: event.to_string(),
    };
    let is_push = match provider {
        Provider::GitHub | Provider::Gogs => event == "push",
        Provider::GitLab => event == "Push Hook" || event == "Tag Push Hook",
        Provider::BitbucketCloud => event == "repo:push",
        Provider::BitbucketServer => event == "repo:refs_changed",
    };
    if !is_push {
        return Err(ignored(&event));
    }
    let payload: Value = serde_json::from_slice(body).map_err(|e| WebhookError::Malformed {
        provider,
        reason: format!("body is not JSON (send webhooks with content type application/json): {e}"),
    })?;
    if !payload.is_object() {
        return Err(malformed(provider, "body is not a JSON object"));
    }
    match provider {
        Provider::GitHub | Provider::Gogs => parse_github_like(provider, &payload),
        Provider::GitLab => parse_gitlab(&payload),
        Provider::BitbucketCloud => parse_bitbucket_cloud(&payload),
        Provider::BitbucketServer => parse_bitbucket_server(&payload),
    }
}

fn malformed(provider: Provider, reason: impl Into<String>) -> WebhookError {
    WebhookError::Malformed {
        provider,
        reason: reason.into(),
    }
}

fn verify(
    provider: Provider,
    headers: &HeaderMap,
    body: &[u8],
    secret: &str,
) -> Result<(), WebhookError> {
    let refuse = |reason| WebhookError::Unauthorized { provider, reason };
    match provider {
        Provider::GitHub | Provider::BitbucketServer => {
            let name = if provider == Provider::GitHub {
                "x-hub-signature-256"
            } else {
                "x-hub-signature"
            };
            let sig = header(headers, name).ok_or(refuse("signature header missing"))?;
            let hex = sig
                .strip_prefix("sha256=")
                .ok_or(refuse("signature is not sha256=<hex>"))?;
            check_hmac(secret, body, hex).map_err(|_| refuse("signature does not match"))
        }
        Provider::Gogs => {
            let sig = header(headers, "x-gogs-signature")
                .ok_or(refuse("X-Gogs-Signature header missing"))?;
            check_hmac(secret, body, sig).map_err(|_| refuse("signature does not match"))
        }
        Provider::GitLab => {
            let token =
                header(headers, "x-gitlab-token").ok_or(refuse("X-Gitlab-Token header missing"))?;
            if constant_time_eq(token.as_bytes(), secret.as_bytes()) {
                Ok(())
            } else {
                Err(refuse("X-Gitlab-Token does not match"))
            }
        }
        Provider::BitbucketCloud => {
            let uuid = header(headers, "x-hook-uuid").ok_or(refuse(
                "Bitbucket Cloud does not sign webhooks; with a secret configured its \
                 X-Hook-UUID must equal the secret, and the header is missing",
            ))?;
            let strip = |s: &str| s.trim_matches(|c| c == '{' || c == '}').to_string();
            if constant_time_eq(strip(uuid).as_bytes(), strip(secret).as_bytes()) {
                Ok(())
            } else {
                Err(refuse("X-Hook-UUID does not match"))
            }
        }
    }
}

fn check_hmac(secret: &str, body: &[u8], hex: &str) -> Result<(), ()> {
    let expected = decode_hex(hex).ok_or(())?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).map_err(|_| ())?;
    mac.update(body);
    mac.verify_slice(&expected).map_err(|_| ())
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Equality whose time does not depend on where the inputs differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_str().filter(|s| !s.is_empty())
}

fn push_url(urls: &mut Vec<String>, u: Option<&str>) {
    if let Some(u) = u {
        if !urls.iter().any(|x| x == u) {
            urls.push(u.to_string());
        }
    }
}

/// `refs/heads/x` → (`x`, false); `refs/tags/x` → (`x`, true).
fn split_ref(provider: Provider, full: &str) -> Result<(String, bool), WebhookError> {
    if let Some(b) = full.strip_prefix("refs/heads/") {
        Ok((b.to_string(), false))
    } else if let Some(t) = full.strip_prefix("refs/tags/") {
        Ok((t.to_string(), true))
    } else {
        Err(malformed(
            provider,
            format!("field ref {full:?} is neither refs/heads/<branch> nor refs/tags/<tag>"),
        ))
    }
}

fn is_zero_sha(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b == b'0')
}

fn is_full_sha(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn commit_sha(provider: Provider, field: &str, s: &str) -> Result<String, WebhookError> {
    if is_full_sha(s) {
        Ok(s.to_ascii_lowercase())
    } else {
        Err(malformed(
            provider,
            format!("field {field} {s:?} is not a 40-digit commit id"),
        ))
    }
}

fn finish(
    provider: Provider,
    repo_urls: Vec<String>,
    full_ref: &str,
    (before, after): (Option<&str>, Option<&str>),
    after_field: &str,
    default_branch: Option<&str>,
) -> Result<PushEvent, WebhookError> {
    if repo_urls.is_empty() {
        return Err(malformed(provider, "no repository URL in the payload"));
    }
    let (git_ref, is_tag) = split_ref(provider, full_ref)?;
    if after.is_some_and(is_zero_sha) {
        return Err(WebhookError::Ignored {
            provider,
            event: format!("deletion of {full_ref}"),
        });
    }
    let sha = match after {
        Some(a) if !is_tag => Some(commit_sha(provider, after_field, a)?),
        _ => None,
    };
    let before = before
        .filter(|b| !is_zero_sha(b) && is_full_sha(b))
        .map(str::to_ascii_lowercase);
    Ok(PushEvent {
        provider,
        repo_urls,
        git_ref,
        is_tag,
        sha,
        before,
        default_branch: default_branch.map(str::to_string),
    })
}

fn parse_github_like(provider: Provider, p: &Value) -> Result<PushEvent, WebhookError> {
    let full_ref = str_at(p, &["ref"]).ok_or_else(|| malformed(provider, "field ref missing"))?;
    let repo = p
        .get("repository")
        .filter(|r| r.is_object())
        .ok_or_else(|| malformed(provider, "field repository missing"))?;
    let mut urls = Vec::new();
    for k in ["html_url", "clone_url", "ssh_url", "git_url", "url"] {
        push_url(&mut urls, str_at(repo, &[k]));
    }
    let deleted = p.get("deleted").and_then(Value::as_bool).unwrap_or(false);
    if deleted {
        return Err(WebhookError::Ignored {
            provider,
            event: format!("deletion of {full_ref}"),
        });
    }
    finish(
        provider,
        urls,
        full_ref,
        (str_at(p, &["before"]), str_at(p, &["after"])),
        "after",
        str_at(repo, &["default_branch"]),
    )
}

fn parse_gitlab(p: &Value) -> Result<PushEvent, WebhookError> {
    let provider = Provider::GitLab;
    let full_ref = str_at(p, &["ref"]).ok_or_else(|| malformed(provider, "field ref missing"))?;
    let mut urls = Vec::new();
    for k in [
        "web_url",
        "git_http_url",
        "git_ssh_url",
        "http_url",
        "ssh_url",
    ] {
        push_url(&mut urls, str_at(p, &["project", k]));
    }
    for k in ["homepage", "git_http_url", "git_ssh_url", "url"] {
        push_url(&mut urls, str_at(p, &["repository", k]));
    }
    let after = str_at(p, &["after"]).or_else(|| str_at(p, &["checkout_sha"]));
    finish(
        provider,
        urls,
        full_ref,
        (str_at(p, &["before"]), after),
        "after",
        str_at(p, &["project", "default_branch"]),
    )
}

fn parse_bitbucket_cloud(p: &Value) -> Result<PushEvent, WebhookError> {
    let provider = Provider::BitbucketCloud;
    let repo = p
        .get("repository")
        .filter(|r| r.is_object())
        .ok_or_else(|| malformed(provider, "field repository missing"))?;
    let mut urls = Vec::new();
    let html = str_at(repo, &["links", "html", "href"]);
    push_url(&mut urls, html);
    // Bitbucket Cloud's payload has no clone URLs; derive the usual ones from the web URL.
    if let (Some(html), Some(full_name)) = (html, str_at(repo, &["full_name"])) {
        if let Some(host) = html
            .split_once("://")
            .and_then(|(_, rest)| rest.split('/').next())
        {
            let host = host.rsplit('@').next().unwrap_or(host);
            let host = host.split(':').next().unwrap_or(host);
            urls.push(format!("git@{host}:{full_name}.git"));
        }
    }
    let changes = p
        .get("push")
        .and_then(|x| x.get("changes"))
        .and_then(Value::as_array)
        .ok_or_else(|| malformed(provider, "field push.changes missing or not a list"))?;
    // One event per request: the first change that created or moved a branch or tag.
    let Some(new) = changes
        .iter()
        .filter_map(|c| c.get("new"))
        .find(|n| n.is_object())
    else {
        return Err(WebhookError::Ignored {
            provider,
            event: "push without a new branch or tag head (deletion)".into(),
        });
    };
    let old = changes
        .iter()
        .find(|c| c.get("new").is_some_and(Value::is_object))
        .and_then(|c| str_at(c, &["old", "target", "hash"]));
    let name = str_at(new, &["name"])
        .ok_or_else(|| malformed(provider, "field push.changes[].new.name missing"))?;
    let full_ref = match str_at(new, &["type"]) {
        Some("tag") | Some("annotated_tag") => format!("refs/tags/{name}"),
        Some("branch") | Some("named_branch") => format!("refs/heads/{name}"),
        other => {
            return Err(malformed(
                provider,
                format!("field push.changes[].new.type {other:?} is not branch or tag"),
            ))
        }
    };
    finish(
        provider,
        urls,
        &full_ref,
        (old, str_at(new, &["target", "hash"])),
        "push.changes[].new.target.hash",
        None,
    )
}

fn parse_bitbucket_server(p: &Value) -> Result<PushEvent, WebhookError> {
    let provider = Provider::BitbucketServer;
    let mut urls = Vec::new();
    if let Some(clones) = p
        .get("repository")
        .and_then(|r| r.get("links"))
        .and_then(|l| l.get("clone"))
        .and_then(Value::as_array)
    {
        for c in clones {
            push_url(&mut urls, str_at(c, &["href"]));
        }
    }
    let changes = p
        .get("changes")
        .and_then(Value::as_array)
        .ok_or_else(|| malformed(provider, "field changes missing or not a list"))?;
    let Some(change) = changes
        .iter()
        .find(|c| str_at(c, &["type"]) != Some("DELETE"))
    else {
        return Err(WebhookError::Ignored {
            provider,
            event: "push deleting refs only".into(),
        });
    };
    let full_ref = str_at(change, &["refId"])
        .or_else(|| str_at(change, &["ref", "id"]))
        .ok_or_else(|| malformed(provider, "field changes[].refId missing"))?;
    finish(
        provider,
        urls,
        full_ref,
        (str_at(change, &["fromHash"]), str_at(change, &["toHash"])),
        "changes[].toHash",
        None,
    )
}

#[cfg(test)]
mod tests;
