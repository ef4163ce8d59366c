//! Bearer-token authentication of the API: the server's check and the client's header.
//!
//! The token is compared in constant time (over SHA-256 digests, so the length of the
//! configured token does not leak either) and never logged, echoed or put in an error.

use sha2::{Digest, Sha256};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// The metadata key the token travels in.
pub const AUTHORIZATION: &str = "authorization";

/// Set on calls a node forwards to the leader, so that they are not forwarded again.
pub const FORWARDED: &str = "x-flotilla-forwarded";

/// Why a token cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The token has characters an HTTP header cannot carry.
    #[error("the API token is not usable in an HTTP header (only visible ASCII is allowed)")]
    NotAscii,
    /// The token is empty.
    #[error("the API token is empty")]
    Empty,
}

/// The server side: refuses calls without the configured token.
#[derive(Clone)]
pub struct TokenCheck {
    digest: Option<[u8; 32]>,
}

impl std::fmt::Debug for TokenCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCheck")
            .field("enabled", &self.digest.is_some())
            .finish()
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Whether two digests are equal, looking at every byte whatever the first difference.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl TokenCheck {
    /// Check calls against `token`; `None` lets every call through.
    pub fn new(token: Option<&str>) -> Self {
        Self {
            digest: token.map(|t| digest(t.as_bytes())),
        }
    }

    /// Whether the request carries the token.
    pub fn check<T>(&self, req: &Request<T>) -> Result<(), Status> {
        let Some(want) = &self.digest else {
            return Ok(());
        };
        let Some(value) = req.metadata().get(AUTHORIZATION) else {
            return Err(Status::unauthenticated(
                "missing bearer token: this node requires `authorization: Bearer <token>` \
                 (flotilla: --token-file or FLOTILLA_TOKEN)",
            ));
        };
        let given = value
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim);
        match given {
            Some(t) if same(&digest(t.as_bytes()), want) => Ok(()),
            Some(_) => Err(Status::unauthenticated("invalid bearer token")),
            None => Err(Status::unauthenticated(
                "malformed authorization header: expected `Bearer <token>`",
            )),
        }
    }
}

impl Interceptor for TokenCheck {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        self.check(&req)?;
        Ok(req)
    }
}

/// The client side: adds `authorization: Bearer <token>` to every call.
#[derive(Clone, Default)]
pub struct BearerToken {
    value: Option<MetadataValue<Ascii>>,
    forwarded: bool,
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BearerToken")
            .field("set", &self.value.is_some())
            .finish()
    }
}

impl BearerToken {
    /// A header for `token`; `None` sends none.
    pub fn new(token: Option<&str>) -> Result<Self, AuthError> {
        let value = match token.map(str::trim) {
            None => None,
            Some("") => return Err(AuthError::Empty),
            Some(t) => {
                if !t.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(AuthError::NotAscii);
                }
                let mut v: MetadataValue<Ascii> = format!("Bearer {t}")
                    .parse()
                    .map_err(|_| AuthError::NotAscii)?;
                v.set_sensitive(true);
                Some(v)
            }
        };
        Ok(Self {
            value,
            forwarded: false,
        })
    }

    /// The same token, marking calls as forwarded by a node.
    pub fn forwarded(mut self) -> Self {
        self.forwarded = true;
        self
    }
}

impl Interceptor for BearerToken {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(v) = &self.value {
            req.metadata_mut().insert(AUTHORIZATION, v.clone());
        }
        if self.forwarded {
            req.metadata_mut()
                .insert(FORWARDED, MetadataValue::from_static("1"));
        }
        Ok(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(header: Option<&str>) -> Request<()> {
        let mut r = Request::new(());
        if let Some(h) = header {
            r.metadata_mut()
                .insert(AUTHORIZATION, h.parse().expect("ascii"));
        }
        r
    }

    #[test]
    fn only_the_configured_token_passes() {
        let c = TokenCheck::new(Some("s3cret"));
        assert!(c.check(&with(Some("Bearer s3cret"))).is_ok());
        let wrong = c.check(&with(Some("Bearer s3cre"))).expect_err("wrong");
        assert_eq!(wrong.code(), tonic::Code::Unauthenticated);
        assert!(!wrong.message().contains("s3cre"));
        let missing = c.check(&with(None)).expect_err("missing");
        assert!(missing.message().contains("missing bearer token"));
        let basic = c.check(&with(Some("Basic abc"))).expect_err("basic");
        assert!(basic.message().contains("malformed"));
        assert!(TokenCheck::new(None).check(&with(None)).is_ok());
    }

    #[test]
    fn client_header_is_sensitive_and_checked() {
        let mut b = BearerToken::new(Some("tok")).expect("token");
        let req = b.call(Request::new(())).expect("call");
        assert!(TokenCheck::new(Some("tok")).check(&req).is_ok());
        assert!(!format!("{b:?}").contains("tok"));
        assert!(matches!(
            BearerToken::new(Some("a\nb")),
            Err(AuthError::NotAscii)
        ));
        assert!(matches!(BearerToken::new(Some(" ")), Err(AuthError::Empty)));
    }
}
