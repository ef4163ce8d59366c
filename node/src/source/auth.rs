//! Fetching into a mirror with credentials and host-key checks.
use std::path::Path;

use base64::Engine as _;
use git2::{
    AutotagOption, CertificateCheckStatus, Cred, CredentialType, FetchOptions, FetchPrune,
    RemoteCallbacks, Repository,
};

use super::{git_err, SourceError};
use crate::model::RepoCredential;

/// SSH known hosts, in OpenSSH `known_hosts` format (hashed entries are not supported).
#[derive(Debug, Clone, Default)]
pub struct KnownHosts {
    entries: Vec<(Vec<String>, Vec<u8>)>,
}

impl KnownHosts {
    /// Parse `known_hosts` text: `host[,host...] key-type base64-key` per line.
    pub fn parse(text: &str) -> Self {
        let mut entries = Vec::new();
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with('|') {
                continue;
            }
            let mut parts = line.split_whitespace();
            let (Some(hosts), Some(_ty), Some(key)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let Ok(key) = base64::engine::general_purpose::STANDARD.decode(key) else {
                continue;
            };
            entries.push((hosts.split(',').map(str::to_string).collect(), key));
        }
        Self { entries }
    }

    /// Whether `key` is a known key of `host`.
    pub fn accepts(&self, host: &str, key: &[u8]) -> bool {
        self.entries.iter().any(|(hosts, k)| {
            k == key
                && hosts.iter().any(|h| {
                    h == host
                        || h.strip_prefix('[')
                            .and_then(|r| r.split_once("]:"))
                            .is_some_and(|(name, _)| name == host)
                })
        })
    }
}

const REFSPECS: &[&str] = &["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"];

/// Fetch `url` into the bare mirror at `path`, creating it if needed. Runs on a blocking
/// thread. Fetches all branches and tags (pruned) and sets the mirror's `HEAD` to the
/// remote's default branch; with `commit`, fetches just that commit (for SHAs no branch or
/// tag reaches; the server must allow it) into `refs/flotilla/commits/<sha>`.
pub(super) fn fetch_blocking(
    url: &str,
    path: &Path,
    cred: Option<&RepoCredential>,
    known: Option<&KnownHosts>,
    commit: Option<&str>,
) -> Result<(), SourceError> {
    let shown = super::redact_url(url);
    let repo = match Repository::open_bare(path) {
        Ok(r) => r,
        Err(_) => Repository::init_bare(path).map_err(git_err(format!(
            "create mirror {} for {shown}",
            path.display()
        )))?,
    };
    let mut attempts = 0u32;
    let mut callbacks = RemoteCallbacks::new();
    callbacks.credentials(move |_url, user_from_url, allowed| {
        attempts += 1;
        if attempts > 2 {
            return Err(git2::Error::from_str(
                "authentication failed (credentials rejected)",
            ));
        }
        let Some(c) = cred else {
            return Err(git2::Error::from_str(
                "authentication required but no repository credentials match this URL",
            ));
        };
        if allowed.contains(CredentialType::SSH_KEY) {
            if let Some(key) = &c.ssh_private_key {
                let user = user_from_url.unwrap_or("git");
                return Cred::ssh_key_from_memory(user, None, key.expose(), None);
            }
        }
        if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) {
            if let Some(pw) = &c.password {
                let user = c.username.as_deref().or(user_from_url).unwrap_or("");
                return Cred::userpass_plaintext(user, pw.expose());
            }
        }
        if allowed.contains(CredentialType::USERNAME) {
            return Cred::username(user_from_url.unwrap_or("git"));
        }
        Err(git2::Error::from_str(
            "the server asked for a credential type the repository Secret does not hold",
        ))
    });
    let insecure = cred.is_some_and(|c| c.insecure);
    let known = known.cloned();
    callbacks.certificate_check(move |cert, host| {
        if insecure {
            return Ok(CertificateCheckStatus::CertificateOk);
        }
        match cert.as_hostkey().and_then(|h| h.hostkey()) {
            Some(key) => {
                if known.as_ref().is_some_and(|k| k.accepts(host, key)) {
                    Ok(CertificateCheckStatus::CertificateOk)
                } else {
                    Err(git2::Error::from_str(&format!(
                        "SSH host key of {host} is not in known_hosts"
                    )))
                }
            }
            None => Ok(CertificateCheckStatus::CertificatePassthrough),
        }
    });
    let mut opts = FetchOptions::new();
    opts.remote_callbacks(callbacks)
        .prune(FetchPrune::On)
        .download_tags(AutotagOption::All);
    let mut remote = repo
        .remote_anonymous(url)
        .map_err(git_err(format!("fetch {shown}")))?;
    if let Some(sha) = commit {
        opts.prune(FetchPrune::Off)
            .download_tags(AutotagOption::None);
        let spec = format!("+{sha}:refs/flotilla/commits/{sha}");
        return remote
            .fetch(&[spec.as_str()], Some(&mut opts), None)
            .map_err(git_err(format!("fetch commit {sha} from {shown}")));
    }
    remote
        .fetch(REFSPECS, Some(&mut opts), None)
        .map_err(git_err(format!("fetch {shown}")))?;
    if let Ok(head) = remote.default_branch() {
        if let Ok(name) = head.as_str() {
            repo.set_head(name)
                .map_err(git_err(format!("set HEAD of mirror of {shown}")))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_hosts_match_plain_and_bracketed_hosts() {
        let key = base64::engine::general_purpose::STANDARD.encode(b"keybytes");
        let kh = KnownHosts::parse(&format!(
            "# comment\ngit.example.com,10.0.0.1 ssh-ed25519 {key}\n[other]:2222 ssh-rsa {key}\n"
        ));
        assert!(kh.accepts("git.example.com", b"keybytes"));
        assert!(kh.accepts("10.0.0.1", b"keybytes"));
        assert!(kh.accepts("other", b"keybytes"));
        assert!(!kh.accepts("git.example.com", b"otherkey"));
        assert!(!kh.accepts("evil.example.com", b"keybytes"));
    }
}
