//! Counting every request a destination cluster's client sends, as Argo CD's
//! `argocd_app_k8s_request_total` (labels `server`, `verb`, `resource_kind`, `response_code`,
//! `dry_run`). The requests are counted per cluster: the HTTP layer does not know which app
//! a request is for, so the `name` and `namespace` labels of Argo CD's series are absent.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Method, Request, Response};

/// A `tower` layer that counts requests to one cluster.
#[derive(Debug, Clone)]
pub struct CountRequests {
    server: Arc<str>,
}

impl CountRequests {
    /// Count requests to the API server at `server`.
    pub fn new(server: &str) -> Self {
        Self {
            server: Arc::from(server),
        }
    }
}

impl<S> tower::Layer<S> for CountRequests {
    type Service = Counted<S>;

    fn layer(&self, inner: S) -> Counted<S> {
        Counted {
            inner,
            server: self.server.clone(),
        }
    }
}

/// The service [`CountRequests`] wraps around a client.
#[derive(Debug, Clone)]
pub struct Counted<S> {
    inner: S,
    server: Arc<str>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S, B, R> tower::Service<Request<B>> for Counted<S>
where
    S: tower::Service<Request<B>, Response = Response<R>>,
    S::Future: Send + 'static,
    S::Error: 'static,
    R: 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let (verb, kind) = describe(req.method(), req.uri().path(), req.uri().query());
        let dry_run = req
            .uri()
            .query()
            .is_some_and(|q| q.split('&').any(|p| p == "dryRun=All"));
        let server = self.server.clone();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let result = fut.await;
            let code = match &result {
                Ok(resp) => resp.status().as_u16().to_string(),
                Err(_) => "error".to_string(),
            };
            metrics::counter!("argocd_app_k8s_request_total",
                "server" => server.to_string(),
                "verb" => verb,
                "resource_kind" => kind,
                "response_code" => code,
                "dry_run" => dry_run.to_string())
            .increment(1);
            result
        })
    }
}

/// The verb (Argo CD's names: Get, List, Watch, Create, Update, Patch, Delete) and the
/// resource (plural, with `/subresource`) of a request to the Kubernetes API.
pub fn describe(method: &Method, path: &str, query: Option<&str>) -> (&'static str, String) {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    // /api/v1/... or /apis/group/version/...
    let rest: &[&str] = match parts.first() {
        Some(&"api") if parts.len() >= 2 => &parts[2..],
        Some(&"apis") if parts.len() >= 3 => &parts[3..],
        _ => &[],
    };
    let rest = match rest {
        ["namespaces", _, tail @ ..] if !tail.is_empty() => tail,
        other => other,
    };
    let (kind, named) = match rest {
        [] => ("discovery".to_string(), false),
        [plural] => (plural.to_string(), false),
        [plural, _name] => (plural.to_string(), true),
        [plural, _name, sub, ..] => (format!("{plural}/{sub}"), true),
    };
    let watch = query.is_some_and(|q| q.split('&').any(|p| p == "watch=true" || p == "watch=1"));
    let verb = match *method {
        Method::GET if watch => "Watch",
        Method::GET if named => "Get",
        Method::GET => "List",
        Method::POST => "Create",
        Method::PUT => "Update",
        Method::PATCH => "Patch",
        Method::DELETE => "Delete",
        _ => "Other",
    };
    (verb, kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs_and_kinds_follow_the_path() {
        let d = |m: Method, p: &str, q: Option<&str>| describe(&m, p, q);
        assert_eq!(
            d(Method::GET, "/api/v1/namespaces/a/configmaps/x", None),
            ("Get", "configmaps".into())
        );
        assert_eq!(
            d(
                Method::GET,
                "/apis/apps/v1/deployments",
                Some("watch=true&rv=1")
            ),
            ("Watch", "deployments".into())
        );
        assert_eq!(
            d(Method::GET, "/api/v1/namespaces/a/pods", None),
            ("List", "pods".into())
        );
        assert_eq!(
            d(
                Method::PATCH,
                "/apis/apps/v1/namespaces/a/deployments/web/status",
                None
            ),
            ("Patch", "deployments/status".into())
        );
        assert_eq!(
            d(Method::GET, "/api/v1/namespaces/team", None),
            ("Get", "namespaces".into())
        );
        assert_eq!(d(Method::GET, "/apis", None), ("List", "discovery".into()));
        assert_eq!(
            d(Method::POST, "/api/v1/namespaces", None),
            ("Create", "namespaces".into())
        );
    }
}
