//! Talking to the daemon: how an answer is classified, the retry loop with capped
//! exponential back-off, and runner reports.
//!
//! Transient failures (connection errors, 408, 429, 5xx) are retried: the daemon may be
//! restarting. Other refusals are final. Every report's text is redacted before it leaves.

use crate::clock;
use crate::config::RetryPolicy;
use crate::http::{Body, Client, HttpError, Request, Response, Url};
use crate::journal::Journal;
use agentlab_model::model::redact::Redactor;
use agentlab_model::protocol::guest::{REPORT_PATH, RunnerReport};

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("{0}")]
    Transient(String),
    #[error("{message}")]
    Refused { status: u16, message: String },
    /// 409 on a report: the job is already final on the daemon's side.
    #[error("the daemon says the job is already final ({0})")]
    AlreadyFinal(String),
    #[error("gave up after {attempts} attempts: {last}")]
    GaveUp { attempts: u32, last: String },
}

impl CallError {
    /// A failed answer: transient if the daemon might answer differently later.
    pub fn from_response(response: &Response) -> CallError {
        let message = response.error_message();
        match response.status {
            408 | 429 | 500..=599 => CallError::Transient(message),
            status => CallError::Refused { status, message },
        }
    }
}

impl From<HttpError> for CallError {
    fn from(e: HttpError) -> CallError {
        if e.is_transient() {
            CallError::Transient(e.to_string())
        } else {
            CallError::Refused { status: 0, message: e.to_string() }
        }
    }
}

/// Calls `attempt` until it succeeds, fails for good, or `policy.attempts` are used up,
/// sleeping the back-off between tries and saying why in the journal.
pub fn with_retries<T>(
    policy: RetryPolicy,
    what: &str,
    journal: &mut Journal,
    mut attempt: impl FnMut() -> Result<T, CallError>,
) -> Result<T, CallError> {
    let mut failures = 0;
    loop {
        match attempt() {
            Ok(value) => return Ok(value),
            Err(CallError::Transient(why)) => {
                failures += 1;
                if failures >= policy.attempts {
                    return Err(CallError::GaveUp { attempts: failures, last: why });
                }
                let delay = policy.delay_after(failures);
                journal.say(&format!(
                    "{what} failed (attempt {failures}/{}): {why}; retrying in {} ms",
                    policy.attempts,
                    delay.as_millis()
                ));
                clock::sleep(delay);
            }
            Err(other) => return Err(other),
        }
    }
}

/// Sends [`RunnerReport`]s for one job.
pub struct Reporter {
    client: Client,
    url: Url,
    runner_token: String,
    job_id: String,
    vmid: u32,
    redactor: Redactor,
}

impl Reporter {
    pub fn new(controller: &Url, runner_token: String, job_id: String, vmid: u32, redactor: Redactor) -> Reporter {
        Reporter { client: Client::default(), url: controller.join(REPORT_PATH), runner_token, job_id, vmid, redactor }
    }

    /// A report for this job with only the status set; fill in the rest.
    pub fn blank(&self, status: agentlab_model::protocol::guest::ReportStatus) -> RunnerReport {
        RunnerReport {
            job_id: self.job_id.clone(),
            vmid: self.vmid,
            status,
            phase: None,
            message: None,
            log: None,
            log_offset: None,
            exit_code: None,
            commit: None,
            duration_seconds: None,
            artifacts: Vec::new(),
        }
    }

    /// One attempt. Text fields are redacted here, whoever filled them in.
    pub fn send(&self, mut report: RunnerReport) -> Result<(), CallError> {
        report.message = report.message.map(|m| self.redactor.redact(&m));
        report.log = report.log.map(|l| self.redactor.redact(&l));
        let body = serde_json::to_vec(&report)
            .map_err(|e| CallError::Refused { status: 0, message: format!("cannot encode the report: {e}") })?;
        let response = self.client.post(Request {
            url: &self.url,
            bearer: Some(&self.runner_token),
            content_type: "application/json",
            body: Body::Bytes(&body),
        })?;
        match response.status {
            200..=299 => Ok(()),
            409 => Err(CallError::AlreadyFinal(response.error_message())),
            _ => Err(CallError::from_response(&response)),
        }
    }

    /// With retries under `policy`.
    pub fn send_with_retries(
        &self,
        report: &RunnerReport,
        policy: RetryPolicy,
        journal: &mut Journal,
    ) -> Result<(), CallError> {
        let what = match (report.status.is_final(), report.phase) {
            (true, _) => "final report".to_string(),
            (false, Some(phase)) => format!("{} report", phase.as_str()),
            (false, None) => "log report".to_string(),
        };
        with_retries(policy, &what, journal, || self.send(report.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn response(status: u16, body: &str) -> Response {
        Response { status, headers: Vec::new(), body: body.as_bytes().to_vec() }
    }

    #[test]
    fn answers_are_classified() {
        assert!(matches!(CallError::from_response(&response(503, "")), CallError::Transient(_)));
        assert!(matches!(CallError::from_response(&response(429, "")), CallError::Transient(_)));
        let refused =
            CallError::from_response(&response(403, r#"{"error":"bad token","code":"v1/x","message":"bad token"}"#));
        assert!(matches!(&refused, CallError::Refused { status: 403, message } if message == "HTTP 403: bad token"));
        assert!(CallError::from(HttpError::Https("https://h".into())).to_string().contains("plain HTTP"));
    }

    #[test]
    fn retries_stop_on_success_refusal_or_exhaustion() {
        let policy = RetryPolicy { attempts: 3, base_delay: Duration::from_millis(1) };
        let mut journal = Journal::new(Redactor::default()).quiet();
        let mut calls = 0;
        let result = with_retries(policy, "test", &mut journal, || {
            calls += 1;
            if calls < 3 { Err(CallError::Transient("busy".into())) } else { Ok(calls) }
        });
        assert_eq!(result.ok(), Some(3));

        calls = 0;
        let result: Result<(), _> = with_retries(policy, "test", &mut journal, || {
            calls += 1;
            Err(CallError::Transient("down".into()))
        });
        assert!(matches!(result, Err(CallError::GaveUp { attempts: 3, .. })));
        assert_eq!(calls, 3);

        calls = 0;
        let result: Result<(), _> = with_retries(policy, "test", &mut journal, || {
            calls += 1;
            Err(CallError::Refused { status: 403, message: "no".into() })
        });
        assert!(matches!(result, Err(CallError::Refused { status: 403, .. })));
        assert_eq!(calls, 1, "a refusal is not retried");
    }
}
