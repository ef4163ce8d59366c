//! Push webhooks POSTed over loopback HTTP to an in-test receiver that checks headers,
//! payload fields and recomputes the signatures.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use flotilla_loadtest::git::webhook::{self, PushEvent, WebhookProvider};
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use sha2::Sha256;
use tokio::sync::mpsc;

const SECRET: &str = "hook-secret";

/// A received webhook: header map and parsed JSON body.
struct Received {
    headers: http::HeaderMap,
    body: Value,
}

fn verify(headers: &http::HeaderMap, body: &[u8]) -> bool {
    let header = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let mac = || {
        let mut m = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("hmac key");
        m.update(body);
        m
    };
    let hex_ok = |sig: &str| {
        let bytes: Option<Vec<u8>> = (0..sig.len())
            .step_by(2)
            .map(|i| {
                sig.get(i..i + 2)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
            })
            .collect();
        bytes.is_some_and(|b| mac().verify_slice(&b).is_ok())
    };
    if let Some(sig) = header("x-hub-signature-256") {
        return sig.strip_prefix("sha256=").is_some_and(hex_ok);
    }
    if let Some(sig) = header("x-gogs-signature") {
        return hex_ok(&sig);
    }
    if let Some(tok) = header("x-gitlab-token") {
        return tok == SECRET;
    }
    if let Some(uuid) = header("x-hook-uuid") {
        return uuid == SECRET;
    }
    false
}

async fn receiver() -> (std::net::SocketAddr, mpsc::Receiver<Received>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: http::Request<Incoming>| {
                    let tx = tx.clone();
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let ok = parts.method == http::Method::POST
                            && parts.uri.path() == "/api/webhook"
                            && parts
                                .headers
                                .get("content-type")
                                .is_some_and(|v| v == "application/json")
                            && verify(&parts.headers, &body);
                        if ok {
                            let body = serde_json::from_slice(&body).expect("json body");
                            let _ = tx
                                .send(Received {
                                    headers: parts.headers,
                                    body,
                                })
                                .await;
                        }
                        let status = if ok { 200 } else { 401 };
                        let resp = http::Response::builder()
                            .status(status)
                            .body(Full::new(Bytes::new()))
                            .expect("response");
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, rx)
}

fn event() -> PushEvent {
    let mut ev = PushEvent::new(
        "http://127.0.0.1:8080/org/apps.git",
        "main",
        "1111111111111111111111111111111111111111",
        "2222222222222222222222222222222222222222",
        vec!["apps/app-1/cm-0.yaml".to_string()],
    );
    ev.added = vec!["apps/app-2/cm-9.yaml".to_string()];
    ev.removed = vec!["apps/app-3/cm-0.yaml".to_string()];
    ev
}

async fn recv(rx: &mut mpsc::Receiver<Received>) -> Received {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("delivered in time")
        .expect("open")
}

#[tokio::test]
async fn signed_webhooks_of_every_provider_verify_and_carry_the_push() {
    let (addr, mut rx) = receiver().await;
    let url = format!("http://{addr}/api/webhook");
    let ev = event();
    for provider in [
        WebhookProvider::GitHub,
        WebhookProvider::GitLab,
        WebhookProvider::Bitbucket,
        WebhookProvider::Gogs,
    ] {
        let req = webhook::build(provider, &ev, Some(SECRET));
        assert_eq!(
            webhook::send(&url, &req).await.expect("sent"),
            200,
            "{provider:?}"
        );
        let got = recv(&mut rx).await;
        let h = |n: &str| {
            got.headers
                .get(n)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        let b = &got.body;
        match provider {
            WebhookProvider::GitHub | WebhookProvider::Gogs | WebhookProvider::GitLab => {
                match provider {
                    WebhookProvider::GitHub => assert_eq!(h("x-github-event"), "push"),
                    WebhookProvider::Gogs => assert_eq!(h("x-gogs-event"), "push"),
                    _ => assert_eq!(h("x-gitlab-event"), "Push Hook"),
                }
                assert_eq!(b["ref"], "refs/heads/main");
                assert_eq!(b["before"], ev.before);
                assert_eq!(b["after"], ev.after);
                let c = &b["commits"][0];
                assert_eq!(c["modified"][0], "apps/app-1/cm-0.yaml");
                assert_eq!(c["added"][0], "apps/app-2/cm-9.yaml");
                assert_eq!(c["removed"][0], "apps/app-3/cm-0.yaml");
                if provider == WebhookProvider::GitLab {
                    assert_eq!(b["project"]["web_url"], "http://127.0.0.1:8080/org/apps");
                    assert_eq!(b["project"]["git_http_url"], ev.clone_url);
                } else {
                    assert_eq!(
                        b["repository"]["html_url"],
                        "http://127.0.0.1:8080/org/apps"
                    );
                    assert_eq!(b["repository"]["clone_url"], ev.clone_url);
                    assert_eq!(b["repository"]["full_name"], "org/apps");
                }
            }
            WebhookProvider::Bitbucket => {
                assert_eq!(h("x-event-key"), "repo:push");
                assert_eq!(
                    b["repository"]["links"]["html"]["href"],
                    "http://127.0.0.1:8080/org/apps"
                );
                let change = &b["push"]["changes"][0];
                assert_eq!(change["new"]["name"], "main");
                assert_eq!(change["new"]["target"]["hash"], ev.after);
                assert_eq!(change["old"]["target"]["hash"], ev.before);
            }
        }
    }
}

#[tokio::test]
async fn wrong_or_missing_secrets_are_rejected_by_the_receiver() {
    let (addr, mut rx) = receiver().await;
    let url = format!("http://{addr}/api/webhook");
    let ev = event();
    for provider in [
        WebhookProvider::GitHub,
        WebhookProvider::GitLab,
        WebhookProvider::Bitbucket,
        WebhookProvider::Gogs,
    ] {
        let wrong = webhook::build(provider, &ev, Some("not-the-secret"));
        assert_eq!(
            webhook::send(&url, &wrong).await.expect("sent"),
            401,
            "{provider:?} wrong secret"
        );
        let unsigned = webhook::build(provider, &ev, None);
        assert_eq!(
            webhook::send(&url, &unsigned).await.expect("sent"),
            401,
            "{provider:?} no secret"
        );
        // A signature over a different body must not verify either.
        let mut tampered = webhook::build(provider, &ev, Some(SECRET));
        tampered.body.extend_from_slice(b" ");
        let expect = if matches!(provider, WebhookProvider::GitHub | WebhookProvider::Gogs) {
            401
        } else {
            200
        };
        assert_eq!(
            webhook::send(&url, &tampered).await.expect("sent"),
            expect,
            "{provider:?} tampered"
        );
        if expect == 200 {
            recv(&mut rx).await;
        }
    }
    assert!(rx.try_recv().is_err(), "no rejected webhook was delivered");
    let err = webhook::send(
        "https://127.0.0.1:1/x",
        &webhook::build(WebhookProvider::GitHub, &ev, None),
    )
    .await;
    assert!(matches!(err, Err(webhook::WebhookError::Url { .. })));
}
