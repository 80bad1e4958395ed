//! Stable error codes of the control API, `v1/<domain>/<reason>`.
//!
//! Each code is chosen where the error is made, never derived from message text (the Go
//! version sniffed messages, D13 in docs/reference/compatibility.md). The HTTP status of each code is decided in one
//! place, in the daemon's API layer.

use serde::{Deserialize, Serialize};

macro_rules! error_codes {
    ($($variant:ident => $code:literal,)*) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode { $($variant,)* }

        impl ErrorCode {
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => $code,)* }
            }
        }
    };
}

error_codes! {
    BadRequest => "v1/validation/bad_request",
    MalformedJson => "v1/validation/malformed_json",
    BodyRequired => "v1/validation/body_required",
    BodyTooLarge => "v1/validation/body_too_large",
    InvalidValue => "v1/validation/invalid_value",
    UnknownProfile => "v1/validation/unknown_profile",
    Unsupported => "v1/validation/unsupported",
    ProvisionFailed => "v1/sandbox/provision_failed",
    ProxmoxUnavailable => "v1/proxmox/unavailable",
    MethodNotAllowed => "v1/validation/method_not_allowed",
    RouteNotFound => "v1/resource/route_not_found",
    SandboxNotFound => "v1/sandbox/not_found",
    InvalidState => "v1/sandbox/invalid_state",
    Conflict => "v1/resource/conflict",
    StoreFailed => "v1/internal/store",
    ActorUnavailable => "v1/internal/actor_unavailable",
    Internal => "v1/internal/error",
    JobNotFound => "v1/job/not_found",
    JobFinalized => "v1/job/finalized",
    ArtifactNotFound => "v1/artifact/not_found",
    ExposureNotFound => "v1/exposure/not_found",
    WorkspaceNotFound => "v1/workspace/not_found",
    WorkspaceAttached => "v1/workspace/attached",
    SessionNotFound => "v1/session/not_found",
    InvalidPath => "v1/artifact/invalid_path",
    ArtifactTooLarge => "v1/artifact/too_large",
    ArtifactExists => "v1/artifact/exists",
    ArtifactPathConflict => "v1/artifact/path_conflict",
    QuotaExceeded => "v1/artifact/quota_exceeded",
    InsufficientStorage => "v1/storage/insufficient",
    NoIsolation => "v1/network/no_isolation",
    SecretsInvalid => "v1/secrets/invalid",
    MissingBearerToken => "v1/auth/missing_bearer_token",
    InvalidToken => "v1/auth/invalid_token",
    RemoteAddressDenied => "v1/auth/remote_address_denied",
    RateLimited => "v1/auth/rate_limited",
    // Client-side codes: the CLI uses them when it never got a daemon answer.
    DaemonUnavailable => "v1/client/daemon_unavailable",
    ClientTimeout => "v1/client/timeout",
    BadResponse => "v1/client/bad_response",
}

impl ErrorCode {
    pub fn parse(code: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.iter().copied().find(|c| c.as_str() == code)
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// The error body of every failed request: `{"error","code","message","details"?}`.
/// `error` and `message` carry the same sentence (scripts written for the Go version read
/// either); `code` is kept as text so that a newer daemon's codes still parse.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorEnvelope {
    pub error: String,
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

impl ErrorEnvelope {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        let message = message.into();
        ErrorEnvelope { error: message.clone(), code: code.as_str().to_string(), message, details: None }
    }

    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = Some(details);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_are_unique_versioned_and_parse_back() {
        let mut seen = HashSet::new();
        for code in ErrorCode::ALL {
            let text = code.as_str();
            assert!(seen.insert(text), "duplicate code {text}");
            assert!(text.starts_with("v1/") && text.split('/').count() == 3, "{text}");
            assert_eq!(ErrorCode::parse(text), Some(*code));
        }
    }

    #[test]
    fn envelope_has_the_wire_shape() {
        let env = ErrorEnvelope::new(ErrorCode::SandboxNotFound, "sandbox 1001 not found");
        let json = serde_json::to_value(&env).unwrap_or_default();
        assert_eq!(
            json,
            serde_json::json!({"error": "sandbox 1001 not found", "code": "v1/sandbox/not_found", "message": "sandbox 1001 not found"})
        );
    }
}
