//! The HTTP(S) shell: accepts connections, authenticates, injects faults, routes requests to
//! discovery, OpenAPI, the admin endpoint and the API verbs in `ops`.

use super::discovery::{self, AGGREGATED_CT};
use super::faults::{FaultConfig, Injected};
use super::ops::{self, ListQuery, Target, WriteOpts};
use super::selectors::{FieldSelector, LabelSelector};
use super::status::ApiError;
use super::table::{self, TableSpec};
use super::watch::{self, WatchParams};
use super::{controllers, openapi, protobuf, Cluster};
use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch as tokio_watch;
use tokio_rustls::TlsAcceptor;

/// Response body type.
pub type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// Largest request body accepted.
const MAX_BODY: usize = 3 << 20;
/// Longest watch the server allows when the client names no timeout.
const DEFAULT_WATCH: Duration = Duration::from_secs(1800);

/// Error that makes hyper close the connection without answering (offline fault).
#[derive(Debug, thiserror::Error)]
#[error("simcluster {0} is offline")]
pub struct Offline(String);

/// Accepts connections until `shutdown` flips.
pub async fn serve(
    listener: TcpListener,
    cluster: Arc<Cluster>,
    tls: Option<TlsAcceptor>,
    mut shutdown: tokio_watch::Receiver<bool>,
) {
    loop {
        let (stream, _) = tokio::select! {
            _ = shutdown.changed() => return,
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(error) => {
                    tracing::debug!(%error, cluster = %cluster.name, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let cluster = cluster.clone();
        let tls = tls.clone();
        let mut shutdown = shutdown.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| handle(cluster.clone(), req));
            let builder = hyper::server::conn::http1::Builder::new();
            let conn = async {
                match tls {
                    Some(acceptor) => match acceptor.accept(stream).await {
                        Ok(s) => {
                            let _ = builder.serve_connection(TokioIo::new(s), svc).await;
                        }
                        Err(error) => tracing::debug!(%error, "TLS handshake failed"),
                    },
                    None => {
                        let _ = builder.serve_connection(TokioIo::new(stream), svc).await;
                    }
                }
            };
            tokio::select! {
                _ = conn => {}
                _ = shutdown.changed() => {}
            }
        });
    }
}

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|e| match e {})
        .boxed_unsync()
}

fn json_response(code: u16, v: &Value, content_type: &str) -> Response<Body> {
    let mut r = Response::new(full(serde_json::to_vec(v).unwrap_or_default()));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(ct) = header::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    r
}

fn ok_json(code: u16, v: &Value) -> Response<Body> {
    json_response(code, v, "application/json")
}

fn error_response(e: &ApiError) -> Response<Body> {
    let mut r = ok_json(e.code, &e.to_status());
    if e.code == 429 {
        let secs = e
            .details
            .as_ref()
            .and_then(|d| d["retryAfterSeconds"].as_u64())
            .unwrap_or(1);
        r.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
    }
    r
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses a query string loosely (`?&a=b`, trailing `?`, keys without values).
pub fn parse_query(q: &str) -> HashMap<String, String> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

async fn handle(cluster: Arc<Cluster>, req: Request<Incoming>) -> Result<Response<Body>, Offline> {
    let path = req.uri().path().to_string();
    let query = parse_query(req.uri().query().unwrap_or_default());
    if let Some(token) = &cluster.token {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "));
        if given != Some(token.as_str()) {
            return Ok(error_response(&ApiError::unauthorized()));
        }
    }
    if let Some(rest) = path.strip_prefix("/simcluster/") {
        return Ok(admin(&cluster, req, rest).await);
    }
    let (latency, injected) = cluster.faults.decide();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    match injected {
        Injected::Offline => return Err(Offline(cluster.name.clone())),
        Injected::Error => {
            return Ok(error_response(&ApiError::internal(
                "simcluster: injected internal error",
            )))
        }
        Injected::Throttle(secs) => {
            let mut e = ApiError::too_many_requests();
            e.details = Some(json!({"retryAfterSeconds": secs}));
            return Ok(error_response(&e));
        }
        Injected::None => {}
    }
    match route(&cluster, req, &path, &query).await {
        Ok(r) => Ok(r),
        Err(e) => Ok(error_response(&e)),
    }
}

async fn read_body(req: Request<Incoming>) -> Result<Bytes, ApiError> {
    Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|e| ApiError::bad_request(format!("reading the request body: {e}")))
}

async fn admin(cluster: &Arc<Cluster>, req: Request<Incoming>, rest: &str) -> Response<Body> {
    let method = req.method().clone();
    match (method, rest) {
        (Method::GET, "faults") => ok_json(
            200,
            &serde_json::to_value(cluster.faults.get()).unwrap_or_default(),
        ),
        (Method::PUT | Method::POST | Method::PATCH, "faults") => {
            let body = match read_body(req).await {
                Ok(b) => b,
                Err(e) => return error_response(&e),
            };
            let mut current = serde_json::to_value(cluster.faults.get()).unwrap_or_default();
            match serde_json::from_slice::<Value>(&body) {
                Ok(patch) => super::patch::merge_patch(&mut current, &patch),
                Err(e) => {
                    return error_response(&ApiError::bad_request(format!(
                        "faults body is not JSON: {e}"
                    )))
                }
            }
            match serde_json::from_value::<FaultConfig>(current) {
                Ok(cfg) => {
                    let going_offline = cfg.offline;
                    cluster.faults.set(cfg.clone());
                    if going_offline {
                        cluster.cut_watches();
                    }
                    ok_json(200, &serde_json::to_value(cfg).unwrap_or_default())
                }
                Err(e) => error_response(&ApiError::bad_request(format!("invalid faults: {e}"))),
            }
        }
        (Method::POST, "drop-watches") => {
            cluster.cut_watches();
            ok_json(200, &json!({"dropped": true}))
        }
        (Method::POST, "expire-history") => {
            cluster.lock().compact_all();
            ok_json(200, &json!({"expired": true}))
        }
        _ => error_response(&ApiError::no_route(&format!("/simcluster/{rest}"))),
    }
}

fn version() -> Value {
    json!({"major": "1", "minor": "32", "gitVersion": "v1.32.0-simcluster", "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.23", "compiler": "gc", "platform": "linux/amd64"})
}

async fn route(
    cluster: &Arc<Cluster>,
    req: Request<Incoming>,
    path: &str,
    q: &HashMap<String, String>,
) -> Result<Response<Body>, ApiError> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let get = req.method() == Method::GET;
    let aggregated = discovery::wants_aggregated(&accept);
    match segs.as_slice() {
        ["version"] if get => return Ok(ok_json(200, &version())),
        ["healthz" | "readyz" | "livez"] if get => return Ok(Response::new(full("ok"))),
        ["api"] if get && aggregated => {
            return Ok(json_response(
                200,
                &discovery::aggregated(&cluster.lock(), true),
                AGGREGATED_CT,
            ))
        }
        ["apis"] if get && aggregated => {
            return Ok(json_response(
                200,
                &discovery::aggregated(&cluster.lock(), false),
                AGGREGATED_CT,
            ))
        }
        ["api"] if get => return Ok(ok_json(200, &discovery::core_versions(&cluster.address))),
        ["apis"] if get => return Ok(ok_json(200, &discovery::group_list(&cluster.lock()))),
        ["api", v] if get => {
            return discovery::resource_list(&cluster.lock(), "", v)
                .map(|v| ok_json(200, &v))
                .ok_or_else(|| ApiError::no_route(path))
        }
        ["apis", g] if get => {
            return discovery::group(&cluster.lock(), g)
                .map(|v| ok_json(200, &v))
                .ok_or_else(|| ApiError::no_route(path))
        }
        ["apis", g, v] if get => {
            return discovery::resource_list(&cluster.lock(), g, v)
                .map(|v| ok_json(200, &v))
                .ok_or_else(|| ApiError::no_route(path))
        }
        ["openapi", "v3"] if get => return Ok(ok_json(200, &openapi::index(&cluster.lock()))),
        ["openapi", "v3", "api", v] if get => {
            return openapi::document(&cluster.lock(), "", v)
                .map(|d| ok_json(200, &d))
                .ok_or_else(|| ApiError::no_route(path))
        }
        ["openapi", "v3", "apis", g, v] if get => {
            return openapi::document(&cluster.lock(), g, v)
                .map(|d| ok_json(200, &d))
                .ok_or_else(|| ApiError::no_route(path))
        }
        _ => {}
    }
    let (group, version, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] if !rest.is_empty() => ("", *v, rest),
        ["apis", g, v, rest @ ..] if !rest.is_empty() => (*g, *v, rest),
        _ => return Err(ApiError::no_route(path)),
    };
    let (ns, resource, name, sub) = match rest {
        ["namespaces", ns, r, tail @ ..] if *r != "status" && *r != "finalize" => {
            (Some(*ns), *r, tail.first().copied(), tail.get(1).copied())
        }
        [r, tail @ ..] => (None, *r, tail.first().copied(), tail.get(1).copied()),
        [] => return Err(ApiError::no_route(path)),
    };
    let rt = cluster
        .lock()
        .find_type(group, version, resource)
        .ok_or_else(|| ApiError::no_route(path))?;
    let scale = sub == Some("scale") && ops::has_scale(&rt);
    if sub.is_some_and(|s| !(scale || (s == "status" && rt.has_status))) {
        return Err(ApiError::no_route(path));
    }
    let t = Target {
        ns: if rt.namespaced {
            ns.map(String::from)
        } else {
            None
        },
        name: name.map(String::from),
        sub: sub.map(String::from),
        rt,
    };
    let ua = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("unknown");
    let opts = WriteOpts {
        dry_run: q.get("dryRun").is_some_and(|d| d == "All"),
        manager: q
            .get("fieldManager")
            .filter(|m| !m.is_empty())
            .cloned()
            .unwrap_or_else(|| ua.split('/').next().unwrap_or("unknown").to_string()),
        force: q.get("force").is_some_and(|f| f == "true" || f == "1"),
    };
    if req.method() == Method::PATCH
        && req
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|c| c.as_bytes().starts_with(b"application/apply-patch"))
        && q.get("fieldManager").is_none_or(|m| m.is_empty())
    {
        return Err(ApiError::bad_request(
            "PATCH, application/apply-patch+yaml requires fieldManager to be set",
        ));
    }
    let protobuf_body = if matches!(*req.method(), Method::POST | Method::PUT) {
        let ct = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("application/json");
        let pb = ct.starts_with(protobuf::CONTENT_TYPE);
        if !pb && !ct.starts_with("application/json") && !ct.starts_with("*/*") {
            return Err(ApiError::unsupported_media_type(format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, {} (got {ct:?})",
                protobuf::CONTENT_TYPE
            )));
        }
        pb
    } else {
        false
    };
    if scale {
        let result = match req.method().clone() {
            Method::GET => ok_json(
                200,
                &ops::scale(&mut cluster.lock(), &t, None, None, &opts)?.1,
            ),
            Method::PUT if protobuf_body => {
                return Err(ApiError::unsupported_media_type(format!(
                    "simcluster decodes {} bodies only for {}; send the Scale of {path} as application/json",
                    protobuf::CONTENT_TYPE,
                    protobuf::SUPPORTED.iter().map(|(_, k)| *k).collect::<Vec<_>>().join(", ")
                )))
            }
            Method::PUT | Method::PATCH => {
                let ct = (req.method() == Method::PATCH).then(|| {
                    req.headers()
                        .get(header::CONTENT_TYPE)
                        .and_then(|h| h.to_str().ok())
                        .unwrap_or_default()
                        .to_string()
                });
                let body = read_body(req).await?;
                write(cluster, |s| {
                    ops::scale(s, &t, ct.as_deref(), Some(&body), &opts)
                })?
            }
            m => {
                return Err(ApiError::method_not_allowed(format!(
                    "{m} is not supported on {path}"
                )))
            }
        };
        return Ok(result);
    }
    let method = req.method().clone();
    let as_table = if method == Method::GET {
        table::requested(&accept, q)?
    } else {
        None
    };
    let result = match (method, &t.name) {
        (Method::GET, Some(_)) => {
            let store = cluster.lock();
            let obj = ops::get(&store, &t)?;
            match as_table {
                Some(tr) => json_response(
                    200,
                    &TableSpec::for_type(&store, &t.rt).render_one(tr, &t.rt, &obj),
                    &tr.content_type(),
                ),
                None => ok_json(200, &obj),
            }
        }
        (Method::GET, None) => {
            let lq = ListQuery {
                labels: LabelSelector::parse(
                    q.get("labelSelector")
                        .map(String::as_str)
                        .unwrap_or_default(),
                )?,
                fields: FieldSelector::parse(
                    q.get("fieldSelector")
                        .map(String::as_str)
                        .unwrap_or_default(),
                )?,
                limit: q.get("limit").and_then(|l| l.parse().ok()).unwrap_or(0),
                cont: q.get("continue").filter(|c| !c.is_empty()).cloned(),
            };
            if q.get("watch").is_some_and(|w| w == "true" || w == "1") {
                let params = WatchParams {
                    rv: q.get("resourceVersion").cloned(),
                    timeout: watch_timeout(q),
                    bookmarks: q.get("allowWatchBookmarks").is_some_and(|b| b == "true"),
                    initial_events: q.get("sendInitialEvents").is_some_and(|b| b == "true"),
                    table: as_table.map(|tr| (tr, TableSpec::for_type(&cluster.lock(), &t.rt))),
                };
                let rx = watch::start(cluster, t, lq, params)?;
                let stream = futures::stream::unfold(rx, |mut rx| async move {
                    rx.recv().await.map(|chunk| (chunk.map(Frame::data), rx))
                });
                let mut r = Response::new(StreamBody::new(stream).boxed_unsync());
                let ct = as_table.map_or_else(|| "application/json".into(), |tr| tr.content_type());
                if let Ok(ct) = header::HeaderValue::from_str(&ct) {
                    r.headers_mut().insert(header::CONTENT_TYPE, ct);
                }
                r.headers_mut().insert(
                    header::CACHE_CONTROL,
                    header::HeaderValue::from_static("no-cache, private"),
                );
                return Ok(r);
            }
            let store = cluster.lock();
            let list = ops::list(&store, &t, &lq)?;
            match as_table {
                Some(tr) => json_response(
                    200,
                    &TableSpec::for_type(&store, &t.rt).render_list(tr, &t.rt, &list),
                    &tr.content_type(),
                ),
                None => ok_json(200, &list),
            }
        }
        (Method::POST, None) => {
            let body = object_body(&t, protobuf_body, &read_body(req).await?)?;
            write(cluster, |s| ops::create(s, &t, body, &opts))?
        }
        (Method::PUT, Some(_)) => {
            let body = object_body(&t, protobuf_body, &read_body(req).await?)?;
            write(cluster, |s| ops::update(s, &t, body, &opts))?
        }
        (Method::PATCH, Some(_)) => {
            let ct = req
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|h| h.to_str().ok())
                .unwrap_or_default()
                .to_string();
            let body = read_body(req).await?;
            write(cluster, |s| ops::patch(s, &t, &ct, &body, &opts))?
        }
        (Method::DELETE, Some(_)) => {
            let protobuf_body = req
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|h| h.to_str().ok())
                .is_some_and(|ct| ct.starts_with(super::protobuf::CONTENT_TYPE));
            let body = read_body(req).await?;
            let options: Value = if body.is_empty() {
                json!({})
            } else if protobuf_body {
                super::protobuf::decode(&body)
                    .map_err(|e| ApiError::bad_request(format!("DeleteOptions: {e}")))?
            } else {
                serde_json::from_slice(&body).map_err(|e| {
                    ApiError::bad_request(format!("DeleteOptions are not valid JSON: {e}"))
                })?
            };
            let policy = q.get("propagationPolicy").cloned();
            let mut options = options;
            if let Some(p) = policy {
                options["propagationPolicy"] = json!(p);
            }
            let dry = opts.dry_run
                || options["dryRun"]
                    .as_array()
                    .is_some_and(|d| d.iter().any(|x| x == "All"));
            let opts = WriteOpts {
                dry_run: dry,
                ..opts
            };
            write(cluster, |s| ops::delete(s, &t, &options, &opts))?
        }
        (Method::DELETE, None) => {
            let lq = ListQuery {
                labels: LabelSelector::parse(
                    q.get("labelSelector")
                        .map(String::as_str)
                        .unwrap_or_default(),
                )?,
                fields: FieldSelector::parse(
                    q.get("fieldSelector")
                        .map(String::as_str)
                        .unwrap_or_default(),
                )?,
                ..Default::default()
            };
            write(cluster, |s| {
                let names: Vec<(Option<String>, String)> = ops::matching(s, &t, &lq)
                    .map(|o| {
                        (
                            o["metadata"]["namespace"].as_str().map(String::from),
                            o["metadata"]["name"]
                                .as_str()
                                .unwrap_or_default()
                                .to_string(),
                        )
                    })
                    .collect();
                let mut items = vec![];
                for (ns, name) in names {
                    let one = Target {
                        ns: ns.or(t.ns.clone()),
                        name: Some(name),
                        ..t.clone()
                    };
                    items.push(ops::delete(s, &one, &json!({}), &opts)?.1);
                }
                Ok((
                    200,
                    json!({"apiVersion": t.rt.api_version(), "kind": format!("{}List", t.rt.kind), "metadata": {"resourceVersion": s.rv().to_string()}, "items": items}),
                ))
            })?
        }
        (m, _) => {
            return Err(ApiError::method_not_allowed(format!(
                "{m} is not supported on {path}"
            )))
        }
    };
    Ok(result)
}

/// The object of a create or update: JSON, or a Kubernetes protobuf body (whose kind must be
/// the URL's).
fn object_body(t: &Target, protobuf_body: bool, body: &[u8]) -> Result<Value, ApiError> {
    if !protobuf_body {
        return serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!("the request body is not valid JSON: {e}"))
        });
    }
    let obj = protobuf::decode(body).map_err(|e| {
        if e.is_unsupported_kind() {
            ApiError::unsupported_media_type(e.to_string())
        } else {
            ApiError::bad_request(e.to_string())
        }
    })?;
    let (api_version, kind) = (obj["apiVersion"].as_str(), obj["kind"].as_str());
    if api_version != Some(t.rt.api_version().as_str()) || kind != Some(t.rt.kind.as_str()) {
        return Err(ApiError::bad_request(format!(
            "the protobuf body is a {} {} but the request is for {} {}",
            api_version.unwrap_or_default(),
            kind.unwrap_or_default(),
            t.rt.api_version(),
            t.rt.kind
        )));
    }
    Ok(obj)
}

/// The watch's `timeoutSeconds`; absent, unparsable or `0` means the server's default, as
/// the API server treats it (a `0` that closed the stream at once would make clients spin).
fn watch_timeout(q: &HashMap<String, String>) -> Duration {
    q.get("timeoutSeconds")
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|&s| s > 0)
        .map_or(DEFAULT_WATCH, Duration::from_secs)
}

/// Runs a write under the store lock, then hands what changed to the simulated controllers.
fn write(
    cluster: &Arc<Cluster>,
    f: impl FnOnce(&mut super::store::Store) -> Result<(u16, Value), ApiError>,
) -> Result<Response<Body>, ApiError> {
    let (result, touched) = {
        let mut store = cluster.lock();
        let r = f(&mut store);
        (r, store.drain_touched())
    };
    controllers::schedule(cluster, touched);
    let (code, v) = result?;
    Ok(ok_json(code, &v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_timeout_zero_or_missing_means_the_default() {
        let t = |q: &str| watch_timeout(&parse_query(q));
        assert_eq!(t("watch=true&timeoutSeconds=290"), Duration::from_secs(290));
        assert_eq!(t("watch=true&timeoutSeconds=0"), DEFAULT_WATCH);
        assert_eq!(t("watch=true&timeoutSeconds=x"), DEFAULT_WATCH);
        assert_eq!(t("?&watch=true"), DEFAULT_WATCH);
    }
}
