//! API errors as the real server returns them: `Status` objects with a reason and an HTTP code.

use serde_json::{json, Value};

/// A failed request, rendered as a `metav1.Status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status code.
    pub code: u16,
    /// `NotFound`, `AlreadyExists`, `Conflict`, `Invalid`, `BadRequest`, `Gone`, ...
    pub reason: &'static str,
    /// Human message, worded like the real server's.
    pub message: String,
    /// `details` (name, group, kind, causes).
    pub details: Option<Value>,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: String) -> ApiError {
        ApiError {
            code,
            reason,
            message,
            details: None,
        }
    }

    /// 404: `<plural>.<group> "<name>" not found`.
    pub fn not_found(qualified: &str, name: &str) -> ApiError {
        ApiError::new(404, "NotFound", format!("{qualified} \"{name}\" not found"))
            .with_details(json!({"name": name, "kind": qualified}))
    }

    /// 409 on create of an existing name.
    pub fn already_exists(qualified: &str, name: &str) -> ApiError {
        ApiError::new(
            409,
            "AlreadyExists",
            format!("{qualified} \"{name}\" already exists"),
        )
        .with_details(json!({"name": name, "kind": qualified}))
    }

    /// 409 on a stale resourceVersion.
    pub fn conflict(qualified: &str, name: &str) -> ApiError {
        ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {qualified} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
            ),
        )
        .with_details(json!({"name": name, "kind": qualified}))
    }

    /// 422 with one cause naming the field.
    pub fn invalid(kind: &str, name: &str, field: &str, problem: &str) -> ApiError {
        ApiError::new(
            422,
            "Invalid",
            format!("{kind} \"{name}\" is invalid: {field}: {problem}"),
        )
        .with_details(json!({
            "name": name,
            "kind": kind,
            "causes": [{"reason": "FieldValueInvalid", "message": problem, "field": field}]
        }))
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "BadRequest", message.into())
    }

    /// 410: the requested resourceVersion is older than what the server keeps.
    pub fn gone(message: impl Into<String>) -> ApiError {
        ApiError::new(410, "Expired", message.into())
    }

    /// 405.
    pub fn method_not_allowed(message: impl Into<String>) -> ApiError {
        ApiError::new(405, "MethodNotAllowed", message.into())
    }

    /// 415.
    pub fn unsupported_media_type(content_type: &str) -> ApiError {
        ApiError::new(415, "UnsupportedMediaType", format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {content_type:?})"))
    }

    /// An injected fault with an arbitrary code.
    pub fn injected(code: u16) -> ApiError {
        let reason = match code {
            429 => "TooManyRequests",
            500 => "InternalError",
            503 => "ServiceUnavailable",
            504 => "Timeout",
            409 => "Conflict",
            _ => "InternalError",
        };
        ApiError::new(code, reason, format!("kube-sim: injected fault ({code})"))
    }

    fn with_details(mut self, details: Value) -> ApiError {
        self.details = Some(details);
        self
    }

    /// The `Status` object.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            status["details"] = d.clone();
        }
        status
    }
}
