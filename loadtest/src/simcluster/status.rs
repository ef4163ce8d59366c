//! Kubernetes `Status` error bodies and the API error type handlers return.

use serde_json::{json, Value};

/// An error answered to a client as a Kubernetes `Status` body.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{code} {reason}: {message}")]
pub struct ApiError {
    /// HTTP status code.
    pub code: u16,
    /// Machine-readable reason (`NotFound`, `Conflict`, ...).
    pub reason: &'static str,
    /// Human-readable message.
    pub message: String,
    /// `details` of the Status (name, group, kind, causes).
    pub details: Option<Value>,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    /// 404 for a named object of a resource.
    pub fn not_found(qualified: &str, name: &str) -> Self {
        let (resource, group) = split_qualified(qualified);
        ApiError {
            details: Some(json!({"name": name, "group": group, "kind": resource})),
            ..Self::new(404, "NotFound", format!("{qualified} \"{name}\" not found"))
        }
    }

    /// 404 for a path that names no resource.
    pub fn no_route(path: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("the server could not find the requested resource ({path})"),
        )
    }

    /// 409 when creating an object that exists.
    pub fn already_exists(qualified: &str, name: &str) -> Self {
        let (resource, group) = split_qualified(qualified);
        ApiError {
            details: Some(json!({"name": name, "group": group, "kind": resource})),
            ..Self::new(
                409,
                "AlreadyExists",
                format!("{qualified} \"{name}\" already exists"),
            )
        }
    }

    /// 409 for a stale resourceVersion or failed precondition.
    pub fn conflict(qualified: &str, name: &str, why: &str) -> Self {
        let (resource, group) = split_qualified(qualified);
        ApiError {
            details: Some(json!({"name": name, "group": group, "kind": resource})),
            ..Self::new(
                409,
                "Conflict",
                format!("Operation cannot be fulfilled on {qualified} \"{name}\": {why}"),
            )
        }
    }

    /// 409 for server-side apply conflicts, with one `FieldManagerConflict` cause per field.
    pub fn apply_conflict(message: String, causes: Vec<Value>) -> Self {
        ApiError {
            details: Some(json!({"causes": causes})),
            ..Self::new(409, "Conflict", message)
        }
    }

    /// 400 for a malformed request.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// 422 for an invalid object.
    pub fn invalid(kind: &str, name: &str, field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        ApiError {
            details: Some(json!({"name": name, "kind": kind, "causes": [
                {"reason": "FieldValueInvalid", "message": message, "field": field}]})),
            ..Self::new(
                422,
                "Invalid",
                format!("{kind} \"{name}\" is invalid: {field}: {message}"),
            )
        }
    }

    /// 422 for a patch that cannot be applied.
    pub fn invalid_patch(message: impl Into<String>) -> Self {
        Self::new(422, "Invalid", message)
    }

    /// 405 for a verb the resource does not allow.
    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(405, "MethodNotAllowed", message)
    }

    /// 415 for an unsupported patch content type.
    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(415, "UnsupportedMediaType", message)
    }

    /// 401 for a missing or wrong bearer token.
    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    /// 500 injected by fault injection.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message)
    }

    /// 429 injected by fault injection.
    pub fn too_many_requests() -> Self {
        ApiError {
            details: Some(json!({"retryAfterSeconds": 1})),
            ..Self::new(
                429,
                "TooManyRequests",
                "the server has received too many requests and has asked us to try again later",
            )
        }
    }

    /// 410 for an expired resourceVersion or continue token.
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    /// 503 while a cluster is shutting down.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(503, "ServiceUnavailable", message)
    }

    /// The `Status` object for this error.
    pub fn to_status(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            s["details"] = d.clone();
        }
        s
    }
}

fn split_qualified(q: &str) -> (&str, &str) {
    q.split_once('.').unwrap_or((q, ""))
}

/// A `Status` of success (for deletions that return no object).
pub fn success_status(details: Value) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details})
}
