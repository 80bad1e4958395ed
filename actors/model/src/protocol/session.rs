//! Sessions on the control API (`/v1/sessions`): a workspace, a profile, and the sandbox
//! running them now (if any).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionView {
    pub id: String,
    pub name: String,
    pub profile: String,
    pub workspace_id: String,
    /// The session's sandbox now; none while stopped.
    #[serde(default)]
    pub current_vmid: Option<u32>,
    /// `running` (it has a sandbox) or `stopped`.
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionsResponse {
    pub sessions: Vec<SessionView>,
}

/// `POST /v1/sessions`: a workspace (existing, or created) and a sandbox of `profile` with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSessionRequest {
    pub name: String,
    pub profile: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace_create: Option<crate::protocol::CreateWorkspaceRequest>,
}

/// `POST /v1/sessions/{id}/fork`: a new session on a copy of this one's workspace (or on
/// another workspace), with this one's profile unless another is given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForkSessionRequest {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace_id: Option<String>,
}
