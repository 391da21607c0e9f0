//! Errors of the Messages API and their classification: which are retried, which stop the run,
//! and the hint each message ends with.

use serde::Deserialize;

use crate::agent::retry::{RetryHeaders, RetryPolicy};

/// Why a call failed. Each message ends with what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// 401: the key or token was refused.
    #[error(
        "authentication failed (HTTP {status}): {message} (hint: check ANTHROPIC_API_KEY or ANTHROPIC_AUTH_TOKEN)"
    )]
    Auth {
        /// HTTP status.
        status: u16,
        /// The API's message.
        message: String,
        /// `request-id`.
        request_id: Option<String>,
    },
    /// 403: the key may not use this model or workspace.
    #[error(
        "permission denied (HTTP 403): {message} (hint: the key lacks access to this model or workspace)"
    )]
    Permission {
        /// The API's message.
        message: String,
        /// `request-id`.
        request_id: Option<String>,
    },
    /// 402: a billing problem on the account.
    #[error(
        "billing problem (HTTP 402): {message} (hint: check the plan and payment details in the Anthropic console)"
    )]
    Billing {
        /// The API's message.
        message: String,
        /// `request-id`.
        request_id: Option<String>,
    },
    /// 429 with a spend-limit error code: retrying cannot help, the run must stop.
    #[error(
        "spend limit reached ({error_code}): {message} (hint: raise the spend limit in the Anthropic console; retrying will not help)"
    )]
    SpendLimit {
        /// `enforced_spend_limit_reached` or `contract_spend_limit_reached`.
        error_code: String,
        /// The API's message.
        message: String,
        /// `request-id`.
        request_id: Option<String>,
    },
    /// 404: unknown model or endpoint.
    #[error("not found (HTTP 404): {message} (hint: check the model id and the base URL)")]
    NotFound {
        /// The API's message.
        message: String,
        /// `request-id`.
        request_id: Option<String>,
    },
    /// 413: the request body is too large.
    #[error(
        "request too large (HTTP 413): {message} (hint: the prompt is too large; lower the context budget)"
    )]
    TooLarge {
        /// The API's message.
        message: String,
    },
    /// Any other HTTP error status.
    #[error("API error (HTTP {status}, {error_type}): {message}{}", status_hint(*.status))]
    Status {
        /// HTTP status.
        status: u16,
        /// `error.type` from the body.
        error_type: String,
        /// The API's message.
        message: String,
        /// `request-id`.
        request_id: Option<String>,
    },
    /// An `event: error` after the stream had begun.
    #[error("stream error ({error_type}): {message}")]
    Stream {
        /// `error.type`, e.g. `overloaded_error`.
        error_type: String,
        /// The API's message.
        message: String,
    },
    /// The stream ended before `message_stop`.
    #[error(
        "the response stream ended before message_stop (hint: the connection was cut; it is retried)"
    )]
    Incomplete,
    /// The connection failed or broke.
    #[error(
        "connection to the Messages API failed: {message} (hint: check the network and the base URL)"
    )]
    Connection {
        /// What failed.
        message: String,
    },
    /// An attempt took too long.
    #[error("the request timed out: {message} (hint: raise the request timeout)")]
    Timeout {
        /// What timed out.
        message: String,
    },
    /// The server sent something that is not the documented shape.
    #[error("unreadable response from the Messages API: {message}")]
    Decode {
        /// What could not be read.
        message: String,
    },
    /// The client configuration is unusable.
    #[error("invalid API client configuration: {message}")]
    Config {
        /// What is wrong.
        message: String,
    },
    /// Every allowed attempt failed with a retryable error.
    #[error("gave up after {attempts} attempts: {last}")]
    Exhausted {
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: Box<ApiError>,
    },
}

fn status_hint(status: u16) -> &'static str {
    match status {
        400 | 422 => {
            " (hint: the request was rejected as invalid; this is a bug or an unsupported option)"
        }
        429 => " (hint: rate limited; wait or lower the request rate)",
        529 => " (hint: the API is overloaded; try again later)",
        s if s >= 500 => " (hint: a server-side error; try again later)",
        _ => "",
    }
}

impl ApiError {
    /// Whether the engine must stop the whole run (bad credentials, billing, spend limit)
    /// rather than just this iteration.
    pub fn is_critical(&self) -> bool {
        match self {
            ApiError::Auth { .. }
            | ApiError::Permission { .. }
            | ApiError::Billing { .. }
            | ApiError::SpendLimit { .. }
            | ApiError::Config { .. } => true,
            ApiError::Exhausted { last, .. } => last.is_critical(),
            _ => false,
        }
    }

    /// The HTTP status behind the error, if it came from one.
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Auth { status, .. } | ApiError::Status { status, .. } => Some(*status),
            ApiError::Permission { .. } => Some(403),
            ApiError::Billing { .. } => Some(402),
            ApiError::SpendLimit { .. } => Some(429),
            ApiError::NotFound { .. } => Some(404),
            ApiError::TooLarge { .. } => Some(413),
            ApiError::Exhausted { last, .. } => last.status(),
            _ => None,
        }
    }
}

/// A failed attempt, with what the retry policy needs.
pub(super) struct Failure {
    pub(super) error: ApiError,
    pub(super) retry: bool,
    pub(super) headers: Box<RetryHeaders>,
}

impl Failure {
    pub(super) fn transient(error: ApiError) -> Self {
        Failure {
            error,
            retry: true,
            headers: Box::default(),
        }
    }

    pub(super) fn fatal(error: ApiError) -> Self {
        Failure {
            error,
            retry: false,
            headers: Box::default(),
        }
    }
}

pub(super) fn transport(e: &reqwest::Error) -> ApiError {
    // The URL may carry nothing secret, but strip it anyway to keep messages short.
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    if e.is_timeout() {
        ApiError::Timeout { message: msg }
    } else {
        ApiError::Connection { message: msg }
    }
}

/// The body of an error response (contracts §1.6), as far as the client reads it.
#[derive(Debug, Default, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    error: Option<ErrorDetail>,
    #[serde(default)]
    request_id: Option<String>,
}

/// The `error` object of an error response or of a stream's `error` event.
#[derive(Debug, Default, PartialEq, Deserialize)]
pub(super) struct ErrorDetail {
    /// `error.type`, e.g. `rate_limit_error`.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    /// The API's message.
    #[serde(default)]
    pub message: Option<String>,
    /// Newer: `details.error_code`.
    #[serde(default)]
    details: Option<ErrorDetails>,
}

impl ErrorDetail {
    /// The failure a stream's `error` event ends the attempt with: an overloaded or internal
    /// error is retried.
    pub fn into_failure(self) -> Failure {
        let error_type = self.kind.unwrap_or_else(|| "unknown_error".to_string());
        let retry = matches!(error_type.as_str(), "overloaded_error" | "api_error");
        Failure {
            error: ApiError::Stream {
                error_type,
                message: self.message.unwrap_or_default(),
            },
            retry,
            headers: Box::default(),
        }
    }
}

#[derive(Debug, Default, PartialEq, Deserialize)]
struct ErrorDetails {
    #[serde(default)]
    error_code: Option<String>,
}

/// Maps an HTTP error response to a typed error and the retry decision.
pub(super) fn classify(
    status: u16,
    body: &str,
    request_id: Option<String>,
    headers: RetryHeaders,
) -> Failure {
    let parsed: ErrorBody = serde_json::from_str(body).unwrap_or_default();
    let detail = parsed.error.unwrap_or_default();
    let error_type = detail.kind.unwrap_or_else(|| "unknown_error".to_string());
    let message = detail.message.unwrap_or_else(|| {
        body.chars()
            .take(200)
            .collect::<String>()
            .trim()
            .to_string()
    });
    let request_id = request_id.or(parsed.request_id);
    let error_code = detail.details.and_then(|d| d.error_code);
    if status == 429
        && let Some(code) = error_code.filter(|c| {
            matches!(
                c.as_str(),
                "enforced_spend_limit_reached" | "contract_spend_limit_reached"
            )
        })
    {
        return Failure {
            error: ApiError::SpendLimit {
                error_code: code,
                message,
                request_id,
            },
            retry: false,
            headers: Box::new(headers),
        };
    }
    let retry = RetryPolicy::should_retry_status(status, &headers);
    let error = match status {
        401 => ApiError::Auth {
            status,
            message,
            request_id,
        },
        402 => ApiError::Billing {
            message,
            request_id,
        },
        403 => ApiError::Permission {
            message,
            request_id,
        },
        404 => ApiError::NotFound {
            message,
            request_id,
        },
        413 => ApiError::TooLarge { message },
        _ => ApiError::Status {
            status,
            error_type,
            message,
            request_id,
        },
    };
    Failure {
        error,
        retry,
        headers: Box::new(headers),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(status: u16, body: &str) -> Failure {
        classify(status, body, None, RetryHeaders::default())
    }

    #[test]
    fn a_spend_limit_is_critical_and_not_retried() {
        let f = failure(
            429,
            r#"{"type":"error","error":{"type":"rate_limit_error","message":"over","details":{"error_code":"enforced_spend_limit_reached"}},"request_id":"req_1"}"#,
        );
        assert!(!f.retry);
        assert!(f.error.is_critical());
        assert!(matches!(
            &f.error,
            ApiError::SpendLimit { error_code, request_id, .. }
                if error_code == "enforced_spend_limit_reached" && request_id.as_deref() == Some("req_1")
        ));
    }

    #[test]
    fn rate_limits_and_overloads_are_retried() {
        let f = failure(
            429,
            r#"{"type":"error","error":{"type":"rate_limit_error","message":"slow down","details":{"error_code":"ramp_limit_exceeded"}}}"#,
        );
        assert!(f.retry);
        assert!(!f.error.is_critical());
        assert_eq!(f.error.status(), Some(429));
        assert!(failure(529, "{}").retry);
        let auth = failure(
            401,
            r#"{"error":{"type":"authentication_error","message":"bad key"}}"#,
        );
        assert!(!auth.retry);
        assert!(auth.error.is_critical());
    }

    #[test]
    fn a_body_that_is_not_the_documented_shape_becomes_the_message() {
        let f = failure(502, "<html>Bad gateway</html>");
        assert!(f.retry);
        assert_eq!(
            f.error.to_string(),
            "API error (HTTP 502, unknown_error): <html>Bad gateway</html> (hint: a server-side error; try again later)"
        );
        let f = failure(404, r#"{"error":"Not found"}"#);
        assert!(f.error.to_string().contains(r#"{"error":"Not found"}"#));
    }

    #[test]
    fn stream_errors_retry_when_overloaded_or_internal() {
        let detail = |kind: &str| ErrorDetail {
            kind: Some(kind.into()),
            message: Some("m".into()),
            details: None,
        };
        assert!(detail("overloaded_error").into_failure().retry);
        assert!(detail("api_error").into_failure().retry);
        assert!(!detail("invalid_request_error").into_failure().retry);
        assert!(!ErrorDetail::default().into_failure().retry);
    }
}
