//! The gRPC API of a node (`flotilla.v1`, see `proto/proto/flotilla_v1.proto`) and its client.
//!
//! Where to start: [`server::serve`] runs the service over a TCP listener with the node's
//! [`server::ApiDeps`]; [`client::ApiClient`] connects to it (the `flotilla app …`,
//! `member …`, `admin …` commands use it); [`auth`] is the bearer-token check.
//!
//! Reads come from the node's replica (or a linearizable read when asked); writes are store
//! proposals (forwarded to the leader by the store); membership changes run on the leader, so
//! a follower forwards them to the leader's API address (its `api=host:port` node info).

pub mod auth;
pub mod client;
pub mod export;
pub mod server;

mod admin;
mod apps;
mod render;

/// The namespace of an application named without one, as in Argo CD.
pub const DEFAULT_APP_NAMESPACE: &str = "argocd";

/// The annotation telling where a stored application comes from.
pub const ORIGIN_ANNOTATION: &str = "flotilla.dev/origin";

/// The store key (`namespace/name`) of an application given as `namespace/name` or `name`.
pub fn app_key_of(input: &str) -> Result<String, String> {
    let input = input.trim();
    let (ns, name) = match input.split_once('/') {
        Some((ns, name)) => (ns, name),
        None => (DEFAULT_APP_NAMESPACE, input),
    };
    let ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 253
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
    };
    if ok(ns) && ok(name) {
        Ok(crate::status::app_key(ns, name))
    } else {
        Err(format!(
            "invalid application name {input:?}: expected `name` or `namespace/name` \
             (lowercase letters, digits, `-` and `.`)"
        ))
    }
}

/// Milliseconds since the Unix epoch, for the `at` of commands.
pub(crate) fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_names_default_to_the_argocd_namespace() {
        assert_eq!(app_key_of("web").as_deref(), Ok("argocd/web"));
        assert_eq!(app_key_of("team-a/web").as_deref(), Ok("team-a/web"));
        assert!(app_key_of("a/b/c").is_err());
        assert!(app_key_of("").is_err());
        assert!(app_key_of("Web").unwrap_err().contains("\"Web\""));
    }
}
