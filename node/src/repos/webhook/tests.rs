use flotilla_loadtest::git::webhook::{build, hmac_sha256_hex, PushEvent as Ev, WebhookProvider};
use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::json;

use super::*;

const SHA: &str = "0123456789abcdef0123456789abcdef01234567";
const OLD: &str = "89abcdef0123456789abcdef0123456789abcdef";

fn headers(pairs: &[(String, String)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(
            HeaderName::from_bytes(k.as_bytes()).expect("header name"),
            HeaderValue::from_str(v).expect("header value"),
        );
    }
    h
}

fn event() -> Ev {
    Ev::new(
        "http://127.0.0.1:9/org/apps.git",
        "main",
        OLD,
        SHA,
        vec!["a".into()],
    )
}

#[test]
fn every_provider_parses_with_and_without_a_secret() {
    for p in [
        WebhookProvider::GitHub,
        WebhookProvider::GitLab,
        WebhookProvider::Bitbucket,
        WebhookProvider::Gogs,
    ] {
        for secret in [None, Some("s3cret")] {
            let req = build(p, &event(), secret);
            let ev = parse_push(&headers(&req.headers), &req.body, secret)
                .unwrap_or_else(|e| panic!("{p:?} {secret:?}: {e}"));
            assert_eq!(ev.git_ref, "main", "{p:?}");
            assert_eq!(ev.sha.as_deref(), Some(SHA), "{p:?}");
            assert_eq!(ev.before.as_deref(), Some(OLD), "{p:?}");
            assert!(
                ev.repo_urls
                    .iter()
                    .any(|u| u.trim_end_matches(".git") == "http://127.0.0.1:9/org/apps"),
                "{p:?}: {:?}",
                ev.repo_urls
            );
        }
    }
}

#[test]
fn wrong_or_missing_signatures_are_refused() {
    for p in [
        WebhookProvider::GitHub,
        WebhookProvider::GitLab,
        WebhookProvider::Bitbucket,
        WebhookProvider::Gogs,
    ] {
        let signed = build(p, &event(), Some("other"));
        let err = parse_push(&headers(&signed.headers), &signed.body, Some("s3cret"));
        assert!(
            matches!(err, Err(WebhookError::Unauthorized { .. })),
            "{p:?}"
        );
        let unsigned = build(p, &event(), None);
        let err = parse_push(&headers(&unsigned.headers), &unsigned.body, Some("s3cret"));
        assert!(
            matches!(err, Err(WebhookError::Unauthorized { .. })),
            "{p:?}"
        );
    }
}

#[test]
fn tampered_body_fails_the_hmac() {
    let mut req = build(WebhookProvider::GitHub, &event(), Some("k"));
    req.body.push(b' ');
    let err = parse_push(&headers(&req.headers), &req.body, Some("k"));
    assert!(matches!(err, Err(WebhookError::Unauthorized { .. })));
}

#[test]
fn bitbucket_server_refs_changed() {
    let body = serde_json::to_vec(&json!({
        "eventKey": "repo:refs_changed",
        "repository": {"links": {"clone": [
            {"href": "ssh://git@bb.example.com:7999/proj/apps.git", "name": "ssh"},
            {"href": "https://bb.example.com/scm/proj/apps.git", "name": "http"}
        ]}},
        "changes": [{"ref": {"id": "refs/heads/release", "displayId": "release", "type": "BRANCH"},
                     "refId": "refs/heads/release", "fromHash": OLD, "toHash": SHA, "type": "UPDATE"}]
    }))
    .expect("json");
    let sig = format!("sha256={}", hmac_sha256_hex(b"k", &body));
    let h = headers(&[
        ("X-Event-Key".into(), "repo:refs_changed".into()),
        ("X-Hub-Signature".into(), sig),
    ]);
    let ev = parse_push(&h, &body, Some("k")).expect("parses");
    assert_eq!(ev.provider, Provider::BitbucketServer);
    assert_eq!(ev.git_ref, "release");
    assert_eq!(ev.sha.as_deref(), Some(SHA));
    assert_eq!(ev.repo_urls.len(), 2);
}

#[test]
fn pings_tags_deletions_and_garbage() {
    let h = headers(&[("X-GitHub-Event".into(), "ping".into())]);
    assert!(matches!(
        parse_push(&h, b"{}", None),
        Err(WebhookError::Ignored { .. })
    ));
    let h = headers(&[("X-GitHub-Event".into(), "push".into())]);
    assert!(matches!(
        parse_push(&h, b"not json", None),
        Err(WebhookError::Malformed { .. })
    ));
    let no_repo = serde_json::to_vec(&json!({"ref": "refs/heads/main", "after": SHA})).expect("j");
    let err = parse_push(&h, &no_repo, None).expect_err("no repository");
    assert!(err.to_string().contains("repository"), "{err}");
    let tag = serde_json::to_vec(&json!({"ref": "refs/tags/v1", "after": SHA,
        "repository": {"clone_url": "https://x/y.git"}}))
    .expect("j");
    let ev = parse_push(&h, &tag, None).expect("tag push");
    assert!(ev.is_tag && ev.sha.is_none() && ev.git_ref == "v1");
    let deleted = serde_json::to_vec(&json!({"ref": "refs/heads/gone", "deleted": true,
        "after": "0000000000000000000000000000000000000000",
        "repository": {"clone_url": "https://x/y.git"}}))
    .expect("j");
    assert!(matches!(
        parse_push(&h, &deleted, None),
        Err(WebhookError::Ignored { .. })
    ));
    assert!(matches!(
        parse_push(&HeaderMap::new(), b"{}", None),
        Err(WebhookError::UnknownProvider)
    ));
}
