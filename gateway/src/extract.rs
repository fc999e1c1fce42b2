//! Extractors whose rejections use Discord's error body: JSON bodies (any content type,
//! unknown fields ignored, type errors reported per field), the bearer token, path ids,
//! the audit reason and the request id.

use axum::extract::{FromRef, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use bytes::Bytes;
use domain::{Id, UserId};
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::AppState;

/// A JSON body. Bodies are parsed whatever the `Content-Type`, as Discord is lenient.
pub struct Body<T>(pub T);

impl<S, T> FromRequest<S> for Body<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge
            } else {
                ApiError::InvalidJson(e.body_text())
            }
        })?;
        let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        parse(bytes).map(Body)
    }
}

/// Parses a JSON body: syntax errors are 50109, type errors 50035 with the field path.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| ApiError::InvalidJson(e.to_string()))?;
    if !value.is_object() {
        return Err(ApiError::field(
            "",
            "DICT_TYPE_CONVERT",
            "Only dictionaries may be used in a DictType",
        ));
    }
    let mut path = String::new();
    let de = serde_path(&value, &mut path);
    de.map_err(|message| {
        let code = if message.contains("missing field") {
            "BASE_TYPE_REQUIRED"
        } else {
            "BASE_TYPE_INVALID"
        };
        let field = message
            .split('`')
            .nth(1)
            .filter(|_| message.contains("missing field"))
            .map(str::to_owned)
            .unwrap_or(path);
        let message = if code == "BASE_TYPE_REQUIRED" {
            "This field is required".to_owned()
        } else {
            message
        };
        ApiError::field(field, code, message)
    })
}

/// Deserialises and finds the failing field by trying each top-level key.
fn serde_path<T: DeserializeOwned>(
    value: &serde_json::Value,
    path: &mut String,
) -> Result<T, String> {
    match T::deserialize(value) {
        Ok(v) => Ok(v),
        Err(e) => {
            let message = e.to_string();
            // Locate the offending key: the first one whose removal changes the error.
            if let Some(obj) = value.as_object() {
                for key in obj.keys() {
                    let mut without = obj.clone();
                    without.remove(key);
                    match T::deserialize(&serde_json::Value::Object(without)) {
                        Ok(_) => {
                            *path = key.clone();
                            break;
                        }
                        Err(e2) if e2.to_string() != message => {
                            *path = key.clone();
                            break;
                        }
                        Err(_) => {}
                    }
                }
            }
            Err(message)
        }
    }
}

/// The authenticated user (from the `Authorization` header, with or without `Bot `).
#[derive(Debug, Clone, Copy)]
pub struct Auth {
    pub user_id: UserId,
    pub bot: bool,
}

impl<S> FromRequestParts<S> for Auth
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let state = AppState::from_ref(state);
        let token = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or(ApiError::Unauthorized)?;
        let (user_id, bot) = state.commands.authenticate(token).await?;
        Ok(Auth { user_id, bot })
    }
}

/// Request metadata: the request id (for correlation) and the audit reason.
#[derive(Debug, Clone)]
pub struct Meta {
    pub request_id: String,
    pub reason: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for Meta {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let request_id = parts
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let reason = parts
            .headers
            .get("x-audit-log-reason")
            .and_then(|v| v.to_str().ok())
            .map(percent_decode)
            .filter(|r| !r.is_empty())
            .map(|r| r.chars().take(512).collect());
        Ok(Meta { request_id, reason })
    }
}

impl Meta {
    pub fn context(&self, auth: Auth) -> commands::Context {
        commands::Context {
            actor: auth.user_id,
            bot: auth.bot,
            correlation_id: self.request_id.clone(),
            reason: self.reason.clone(),
        }
    }
}

/// Discord clients percent-encode the audit reason.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if let (Some(high), Some(low)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((high * 16 + low) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses a path segment as an id; a malformed one is reported like Discord does.
pub fn path_id<T>(raw: &str, field: &'static str) -> Result<Id<T>, ApiError> {
    raw.parse().map_err(|_| {
        ApiError::field(
            field,
            "NUMBER_TYPE_COERCE",
            format!(
                "Value \"{}\" is not snowflake.",
                raw.chars().take(32).collect::<String>()
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Form {
        name: String,
        count: Option<u32>,
    }

    #[test]
    fn syntax_errors_are_invalid_json_and_type_errors_name_the_field() {
        assert!(matches!(
            parse::<Form>(b"{nope"),
            Err(ApiError::InvalidJson(_))
        ));
        match parse::<Form>(br#"{"name": "x", "count": "many"}"#) {
            Err(ApiError::InvalidForm(f)) => assert_eq!(f[0].0, "count"),
            other => panic!("{other:?}"),
        }
        match parse::<Form>(br#"{"count": 1}"#) {
            Err(ApiError::InvalidForm(f)) => {
                assert_eq!(f[0].0, "name");
                assert_eq!(f[0].1, "BASE_TYPE_REQUIRED");
            }
            other => panic!("{other:?}"),
        }
        assert!(parse::<Form>(br#"{"name": "x", "unknown": true}"#).is_ok());
        assert!(matches!(
            parse::<Form>(b"[1]"),
            Err(ApiError::InvalidForm(_))
        ));
    }

    #[test]
    fn audit_reasons_are_percent_decoded() {
        assert_eq!(percent_decode("spam%20bot%21"), "spam bot!");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%é%"), "%é%");
    }
}
