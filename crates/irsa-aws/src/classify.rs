//! What an AWS failure means for the diagnosis: a fact ("no such role"), the operator's own
//! missing permission, or AWS being unavailable. The last two are never a verdict on the setup.

use std::fmt::Debug;

use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use irsa_core::{Reason, Unavailable};

/// How one call ended, for counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    /// Answered.
    Success,
    /// The thing asked for does not exist.
    NotFound,
    /// The operator may not ask.
    AccessDenied,
    /// AWS throttled after every retry.
    Throttled,
    /// Timeout, network, 5xx or anything else.
    Error,
}

impl Outcome {
    /// Label value for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::NotFound => "not_found",
            Outcome::AccessDenied => "access_denied",
            Outcome::Throttled => "throttled",
            Outcome::Error => "error",
        }
    }
}

const NOT_FOUND: [&str; 3] = [
    "NoSuchEntity",
    "ResourceNotFoundException",
    "NotFoundException",
];
const DENIED: [&str; 6] = [
    "AccessDenied",
    "AccessDeniedException",
    "UnauthorizedOperation",
    "InvalidClientTokenId",
    "ExpiredToken",
    "UnrecognizedClientException",
];
const THROTTLED: [&str; 5] = [
    "Throttling",
    "ThrottlingException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "SlowDown",
];

/// A failed call, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The class.
    pub outcome: Outcome,
    /// The service's code and message, or the transport error.
    pub detail: String,
}

impl Failure {
    /// Classifies an SDK error by its error code, then by what kind of failure it was.
    pub fn from_sdk<E, R>(err: &SdkError<E, R>) -> Failure
    where
        E: ProvideErrorMetadata + Debug,
        R: Debug,
    {
        let code = err.code().unwrap_or_default();
        let outcome = if NOT_FOUND.contains(&code) {
            Outcome::NotFound
        } else if DENIED.contains(&code) {
            Outcome::AccessDenied
        } else if THROTTLED.contains(&code) {
            Outcome::Throttled
        } else {
            Outcome::Error
        };
        let detail = match (err, err.code()) {
            (_, Some(code)) => format!("{code}: {}", err.message().unwrap_or("no message")),
            (SdkError::TimeoutError(_), None) => "timed out".to_string(),
            (SdkError::DispatchFailure(e), None) => format!("could not reach AWS: {e:?}"),
            (other, None) => format!("{other:?}"),
        };
        Failure { outcome, detail }
    }

    /// What the diagnosis should say: `AwsAccessDenied` naming the permission, otherwise
    /// `AwsApiUnavailable`. Both become condition status Unknown.
    pub fn unavailable(&self, action: &str, subject: &str) -> Unavailable {
        match self.outcome {
            Outcome::AccessDenied => Unavailable {
                reason: Reason::AwsAccessDenied,
                detail: format!(
                    "the operator may not call {action} on {subject} ({}); grant its IAM role {action}",
                    self.detail
                ),
            },
            _ => Unavailable {
                reason: Reason::AwsApiUnavailable,
                detail: format!("{action} on {subject} failed after retries: {}", self.detail),
            },
        }
    }
}
