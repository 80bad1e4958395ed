//! The one place where an error code becomes an HTTP status, and errors become the
//! `{"error","code","message","details"?}` envelope.

use agentlab_actors::model::{ErrorCode, ErrorEnvelope, Refusal};
use agentlab_actors::root::SpawnError;
use agentlab_actors::store::StoreError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub code: ErrorCode,
    pub envelope: ErrorEnvelope,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError { code, envelope: ErrorEnvelope::new(code, message) }
    }
}

/// HTTP status of every code. Exhaustive on purpose: a new code must pick its status here.
pub fn status_for(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::BadRequest
        | ErrorCode::MalformedJson
        | ErrorCode::BodyRequired
        | ErrorCode::InvalidValue
        | ErrorCode::UnknownProfile
        | ErrorCode::Unsupported
        | ErrorCode::InvalidPath
        | ErrorCode::SecretsInvalid => StatusCode::BAD_REQUEST,
        ErrorCode::JobNotFound
        | ErrorCode::ArtifactNotFound
        | ErrorCode::ExposureNotFound
        | ErrorCode::WorkspaceNotFound
        | ErrorCode::SessionNotFound => StatusCode::NOT_FOUND,
        ErrorCode::WorkspaceAttached => StatusCode::CONFLICT,
        ErrorCode::JobFinalized => StatusCode::CONFLICT,
        ErrorCode::ArtifactTooLarge | ErrorCode::QuotaExceeded => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::ArtifactExists | ErrorCode::ArtifactPathConflict => StatusCode::CONFLICT,
        ErrorCode::InsufficientStorage => StatusCode::INSUFFICIENT_STORAGE,
        ErrorCode::NoIsolation => StatusCode::PRECONDITION_FAILED,
        ErrorCode::MissingBearerToken => StatusCode::UNAUTHORIZED,
        ErrorCode::InvalidToken | ErrorCode::RemoteAddressDenied => StatusCode::FORBIDDEN,
        ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::ProvisionFailed => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::ProxmoxUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::RouteNotFound | ErrorCode::SandboxNotFound => StatusCode::NOT_FOUND,
        ErrorCode::InvalidState | ErrorCode::Conflict => StatusCode::CONFLICT,
        ErrorCode::StoreFailed | ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::ActorUnavailable | ErrorCode::DaemonUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::ClientTimeout => StatusCode::GATEWAY_TIMEOUT,
        ErrorCode::BadResponse => StatusCode::BAD_GATEWAY,
    }
}

impl ApiError {
    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.envelope = self.envelope.with_details(details);
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = status_for(self.code);
        if status.is_server_error() {
            tracing::error!(code = self.code.as_str(), message = %self.envelope.message, "request failed");
        }
        let mut response = (status, axum::Json(self.envelope)).into_response();
        // For middleware that counts outcomes by code (the guest listener's refusals).
        response.extensions_mut().insert(self.code);
        response
    }
}

impl From<SpawnError> for ApiError {
    fn from(e: SpawnError) -> Self {
        ApiError::new(ErrorCode::ActorUnavailable, e.to_string())
    }
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        ApiError::new(refusal.code, refusal.message)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::SandboxNotFound(vmid) => {
                ApiError::new(ErrorCode::SandboxNotFound, format!("sandbox {vmid} not found"))
            }
            StoreError::SandboxExists(vmid) => {
                ApiError::new(ErrorCode::Conflict, format!("sandbox {vmid} already exists"))
            }
            StoreError::StateConflict { .. } | StoreError::JobStateConflict { .. } => {
                ApiError::new(ErrorCode::InvalidState, e.to_string())
            }
            StoreError::JobNotFound(id) => ApiError::new(ErrorCode::JobNotFound, format!("job {id} not found")),
            other => ApiError::new(ErrorCode::StoreFailed, format!("database error: {other}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_a_status_and_client_errors_are_4xx() {
        for code in ErrorCode::ALL {
            let status = status_for(*code);
            let is_validation = code.as_str().starts_with("v1/validation/");
            assert!(!is_validation || status.is_client_error(), "{}", code.as_str());
        }
    }
}
