//! From the bootstrap descriptor to the job payload: read the descriptor cloud-init wrote,
//! then use the cached payload of an earlier run of the runner, or fetch it once (the token
//! is single use) and cache it in the secrets directory before anything else happens.

use crate::config::RetryPolicy;
use crate::daemon::{CallError, with_retries};
use crate::http::{Body, Client, Request, Url};
use crate::journal::Journal;
use crate::secrets::{PAYLOAD_CACHE, SecretsDir};
use agentlab_model::protocol::guest::{BootstrapDescriptor, BootstrapPayload, FETCH_PATH, FetchRequest, NO_JOB_ERROR};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("cannot read bootstrap descriptor {path}: {source}; cloud-init writes it from the sandbox's snippet")]
    ReadDescriptor { path: String, source: std::io::Error },
    #[error("bad bootstrap descriptor {path}: {why}")]
    BadDescriptor { path: String, why: String },
    #[error("cannot read the cached payload: {0}")]
    ReadCache(std::io::Error),
    #[error("the cached payload is not valid: {0}")]
    BadCache(serde_json::Error),
    #[error("the daemon sent a payload this runner cannot read: {0}")]
    BadPayload(serde_json::Error),
    #[error("cannot cache the payload: {0}")]
    WriteCache(std::io::Error),
    #[error("bootstrap fetch: {0}")]
    Fetch(#[from] CallError),
}

pub enum Obtained {
    Payload(Box<BootstrapPayload>),
    /// 404 `job not found`: the sandbox has no job; nothing to do.
    NoJob,
}

pub fn read_descriptor(path: &Path) -> Result<BootstrapDescriptor, BootstrapError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|source| BootstrapError::ReadDescriptor { path: shown.clone(), source })?;
    BootstrapDescriptor::parse(&text).map_err(|e| BootstrapError::BadDescriptor { path: shown, why: e.to_string() })
}

enum Fetch {
    Got(Option<Vec<u8>>),
    Pooled,
}

/// The payload: cached, or fetched with retries and then cached.
pub fn obtain(
    descriptor: &BootstrapDescriptor,
    controller: &Url,
    secrets: &SecretsDir,
    policy: RetryPolicy,
    journal: &mut Journal,
) -> Result<Obtained, BootstrapError> {
    if let Some(cached) = secrets.cached_payload().map_err(BootstrapError::ReadCache)? {
        journal.say("using the payload cached by an earlier run (the bootstrap token is single use)");
        let payload = serde_json::from_slice(&cached).map_err(BootstrapError::BadCache)?;
        return Ok(Obtained::Payload(Box::new(payload)));
    }
    let url = controller.join(FETCH_PATH);
    journal.say(&format!("fetching the job payload from {url} (vmid {})", descriptor.vmid));
    let request = FetchRequest { token: descriptor.token.clone(), vmid: descriptor.vmid };
    let body = serde_json::to_vec(&request).map_err(BootstrapError::BadPayload)?;
    let client = Client::default();
    let mut told_pooled = false;
    let fetched = loop {
        let attempt = with_retries(policy, "bootstrap fetch", journal, || {
            let response = client.post(Request {
                url: &url,
                bearer: None,
                content_type: "application/json",
                body: Body::Bytes(&body),
            })?;
            match response.status {
                // The sandbox is in the warm pool: the daemon held the request until its
                // long-poll ran out; ask again (not a failure, so not counted as a retry).
                204 => Ok(Fetch::Pooled),
                200..=299 => Ok(Fetch::Got(Some(response.body))),
                404 if response.error_field().as_deref() == Some(NO_JOB_ERROR) => Ok(Fetch::Got(None)),
                _ => Err(CallError::from_response(&response)),
            }
        });
        let answer = match attempt {
            Ok(answer) => answer,
            // A pooled sandbox has no job to lose by waiting: a daemon away for longer than
            // the retries (a restart, an upgrade) is waited for, so the pool's sandbox stays
            // usable; it asks again after the policy's longest back-off (30 s by default).
            // Before the pool answered once, the retries' verdict stands.
            Err(e) if told_pooled => {
                journal
                    .say(&format!("the daemon is not answering ({e}); the sandbox stays in the pool and asks again"));
                crate::clock::sleep(policy.delay_after(policy.attempts));
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        match answer {
            Fetch::Got(got) => break got,
            Fetch::Pooled if !told_pooled => {
                journal.say("the sandbox is in the warm pool: waiting for a job");
                told_pooled = true;
            }
            Fetch::Pooled => {}
        }
    };
    let Some(raw) = fetched else { return Ok(Obtained::NoJob) };
    let payload: BootstrapPayload = serde_json::from_slice(&raw).map_err(BootstrapError::BadPayload)?;
    secrets.write(PAYLOAD_CACHE, &raw).map_err(BootstrapError::WriteCache)?;
    Ok(Obtained::Payload(Box::new(payload)))
}

/// Every secret value the runner knows, for the redactor.
pub fn secret_values(descriptor: &BootstrapDescriptor, payload: &BootstrapPayload) -> Vec<String> {
    let mut values = vec![descriptor.token.clone(), payload.runner_token.clone(), payload.artifact.token.clone()];
    values.extend(payload.git.token.clone());
    values.extend(payload.git.ssh_private_key.clone());
    values.extend(payload.env.values().cloned());
    values.extend(payload.claude_settings_json.clone());
    values
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::test_dir;

    fn payload_json() -> String {
        r#"{"job":{"id":"job_1","repo_url":"/r","task":"t","mode":"dangerous","profile":"p","agent":"custom",
            "keepalive":false,"ttl_minutes":5,"timeout_seconds":60},
            "git":{"token":"git-token-123","ssh_private_key":"-----BEGIN-----\nkeyline-abcdef\n-----END-----\n"},
            "env":{"API_KEY":"env-secret-456","SHORT":"1"},"claude_settings_json":"{\"a\":\"settings-789\"}",
            "artifact":{"endpoint":"http://127.0.0.1:1/upload","token":"artifact-token-1"},
            "runner_token":"runner-token-1","policy":{"mode":"dangerous","inner_sandbox":"none"}}"#
            .to_string()
    }

    #[test]
    fn every_secret_of_the_payload_is_listed() {
        let payload: BootstrapPayload = serde_json::from_str(&payload_json()).unwrap();
        let descriptor =
            BootstrapDescriptor { token: "b".repeat(43), controller: "http://127.0.0.1:1".into(), vmid: 1001 };
        let redactor = agentlab_model::model::redact::Redactor::new(secret_values(&descriptor, &payload));
        let text = format!(
            "{} runner-token-1 artifact-token-1 git-token-123 keyline-abcdef env-secret-456 settings-789 SHORT=1",
            "b".repeat(43)
        );
        let redacted = redactor.redact(&text);
        assert_eq!(redacted.matches("[REDACTED]").count(), 6, "{redacted}");
        assert!(redacted.contains("settings-789") && redacted.ends_with("SHORT=1"), "{redacted}");
        assert_eq!(redactor.redact(r#"{"a":"settings-789"}"#), "[REDACTED]");
    }

    #[test]
    fn a_cached_payload_is_used_without_fetching() {
        let dir = test_dir("bootstrap-cache");
        let secrets = SecretsDir::open(&dir.join("secrets")).unwrap();
        secrets.write(PAYLOAD_CACHE, payload_json().as_bytes()).unwrap();
        let descriptor =
            BootstrapDescriptor { token: "b".repeat(43), controller: "http://127.0.0.1:1".into(), vmid: 1001 };
        // Port 1: a fetch would fail, so success proves the cache was used.
        let controller = Url::parse(&descriptor.controller).unwrap();
        let policy = RetryPolicy { attempts: 1, base_delay: std::time::Duration::from_millis(1) };
        let mut journal = Journal::new(Default::default()).quiet();
        let got = obtain(&descriptor, &controller, &secrets, policy, &mut journal);
        assert!(matches!(got, Ok(Obtained::Payload(p)) if p.job.id == "job_1"));
        secrets.write(PAYLOAD_CACHE, b"{").unwrap();
        assert!(matches!(
            obtain(&descriptor, &controller, &secrets, policy, &mut journal),
            Err(BootstrapError::BadCache(_))
        ));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn descriptor_errors_say_which_file_and_why() {
        let dir = test_dir("descriptor");
        let missing = read_descriptor(&dir.join("none.json")).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(missing.contains("cannot read bootstrap descriptor") && missing.contains("none.json"), "{missing}");
        std::fs::write(dir.join("bad.json"), "{").unwrap();
        let bad = read_descriptor(&dir.join("bad.json")).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(bad.contains("bad bootstrap descriptor"), "{bad}");
        let _ = std::fs::remove_dir_all(dir);
    }
}
