//! A request the domain refused or could not carry out, with the API code it maps to.
//!
//! Actors answer their callers with this; the control API turns it into the error
//! envelope (`From<Refusal> for ApiError` in the daemon), the code chosen where the
//! refusal was made.

use super::ErrorCode;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    pub code: ErrorCode,
    pub message: String,
}

impl Refusal {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Refusal {
        Refusal { code, message: message.into() }
    }
}
