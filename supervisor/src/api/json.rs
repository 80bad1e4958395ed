//! Request bodies: at most 1 MiB, strict JSON (unknown fields and trailing data refused),
//! every rejection in the error envelope with a stable code.

use super::error::ApiError;
use agentlab_actors::model::ErrorCode;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;

pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Like `axum::Json`, with our rejections. Request types carry `deny_unknown_fields`.
pub struct StrictJson<T>(pub T);

impl<S, T> FromRequest<S> for StrictJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(ErrorCode::BodyTooLarge, format!("request body too large (limit {MAX_BODY_BYTES} bytes)"))
            } else {
                ApiError::new(ErrorCode::BadRequest, format!("cannot read request body: {rejection}"))
            }
        })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::new(ErrorCode::BodyRequired, "request body is required"));
        }
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let (code, what) = if inner.is_data() {
                (ErrorCode::InvalidValue, "invalid request")
            } else {
                (ErrorCode::MalformedJson, "malformed JSON")
            };
            let at = if path == "." { String::new() } else { format!(" at `{path}`") };
            ApiError::new(code, format!("{what}{at}: {inner}"))
        })?;
        de.end().map_err(|_| ApiError::new(ErrorCode::MalformedJson, "malformed JSON: unexpected trailing data"))?;
        Ok(StrictJson(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::extract::DefaultBodyLimit;
    use axum::routing::post;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        name: String,
    }

    async fn echo(StrictJson(body): StrictJson<Body>) -> String {
        body.name
    }

    async fn send(body: Vec<u8>) -> (u16, String) {
        let app = Router::new().route("/", post(echo)).layer(DefaultBodyLimit::max(MAX_BODY_BYTES));
        let request = Request::post("/").header("content-type", "application/json").body(axum::body::Body::from(body));
        let response = app.oneshot(request.unwrap_or_default()).await.unwrap_or_else(|e| match e {});
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    #[tokio::test]
    async fn accepts_exact_bodies() {
        assert_eq!(send(br#"{"name":"a"}"#.to_vec()).await, (200, "a".to_string()));
    }

    #[tokio::test]
    async fn rejects_with_stable_codes() {
        let cases: [(Vec<u8>, u16, &str); 5] = [
            (br#"{"name":"a","extra":1}"#.to_vec(), 400, "v1/validation/invalid_value"),
            (br#"{"name":"a"} {"#.to_vec(), 400, "v1/validation/malformed_json"),
            (br#"{"name":"#.to_vec(), 400, "v1/validation/malformed_json"),
            (b"  ".to_vec(), 400, "v1/validation/body_required"),
            (vec![b' '; MAX_BODY_BYTES + 10], 413, "v1/validation/body_too_large"),
        ];
        for (body, status, code) in cases {
            let (got_status, got_body) = send(body).await;
            assert_eq!(got_status, status, "{got_body}");
            let json: serde_json::Value = serde_json::from_str(&got_body).unwrap_or_default();
            assert_eq!(json["code"], code, "{got_body}");
            assert_eq!(json["error"], json["message"]);
        }
    }
}
