//! The one edge error type: every failure becomes Discord's error body
//! `{"code": N, "message": "...", "errors": {...}}` with the matching status, by one
//! exhaustive match. 5xx causes are logged, never sent to the client.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use commands::CommandError;
use domain::{DomainError, Resource};
use serde_json::{json, Value};

#[derive(Debug)]
pub enum ApiError {
    Unauthorized,
    NotFound,
    MethodNotAllowed,
    Unknown(Resource),
    MissingAccess,
    MissingPermissions,
    NotAuthor,
    Banned,
    WrongChannelType,
    /// 50034: a bulk delete named a message older than two weeks.
    MessagesTooOld,
    /// 30003: the channel has the most pins it may have.
    MaxPins,
    /// 10026 Unknown Ban.
    UnknownBan,
    /// 20016: slowmode; `retry_after` in seconds.
    Slowmode {
        retry_after: u64,
    },
    /// 50035 with per-field errors: (field path, error code, message).
    InvalidForm(Vec<(String, &'static str, String)>),
    /// 50109: the body is not JSON.
    InvalidJson(String),
    PayloadTooLarge,
    Unavailable(String),
    Internal(String),
}

impl ApiError {
    pub fn field(path: impl Into<String>, code: &'static str, message: impl Into<String>) -> Self {
        ApiError::InvalidForm(vec![(path.into(), code, message.into())])
    }
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        match e {
            DomainError::Unknown(r) => ApiError::Unknown(r),
            DomainError::AlreadyExists(_) => {
                ApiError::field("id", "ALREADY_EXISTS", "This resource already exists.")
            }
            DomainError::UsernameTaken => ApiError::field(
                "username",
                "USERNAME_ALREADY_TAKEN",
                "Username is unavailable. Try adding numbers, letters, underscores _ , or periods.",
            ),
            // Slowmode refusals of a message send (the domain says how long to wait).
            DomainError::Invalid { field, message }
                if field == "rate_limit_per_user" && message.starts_with("Slowmode is on") =>
            {
                let retry_after = message
                    .split_whitespace()
                    .find_map(|w| w.parse::<u64>().ok())
                    .unwrap_or(1);
                ApiError::Slowmode { retry_after }
            }
            DomainError::Invalid { field, message } => {
                let code = if message.starts_with("Must be between") {
                    "BASE_TYPE_BAD_LENGTH"
                } else {
                    "BASE_TYPE_INVALID"
                };
                ApiError::field(field, code, message)
            }
            DomainError::MissingAccess => ApiError::MissingAccess,
            DomainError::MissingPermissions => ApiError::MissingPermissions,
            DomainError::NotAuthor => ApiError::NotAuthor,
            DomainError::InviteInvalid => ApiError::Unknown(Resource::Invite),
            DomainError::Banned => ApiError::Banned,
            DomainError::WrongChannelType => ApiError::WrongChannelType,
            DomainError::MessagesTooOld => ApiError::MessagesTooOld,
            DomainError::MaxPins => ApiError::MaxPins,
        }
    }
}

impl From<CommandError> for ApiError {
    fn from(e: CommandError) -> Self {
        match e {
            CommandError::Domain(d) => d.into(),
            CommandError::Unauthorized => ApiError::Unauthorized,
            CommandError::Contention(s) => ApiError::Unavailable(s),
            CommandError::Store(s) => ApiError::Internal(s.to_string()),
            CommandError::Internal(s) => ApiError::Internal(s),
        }
    }
}

impl From<projections::Error> for ApiError {
    fn from(e: projections::Error) -> Self {
        ApiError::Internal(e.to_string())
    }
}

fn unknown(r: Resource) -> (u32, &'static str) {
    match r {
        Resource::User => (10013, "Unknown User"),
        Resource::Guild => (10004, "Unknown Guild"),
        Resource::Channel => (10003, "Unknown Channel"),
        Resource::Message => (10008, "Unknown Message"),
        Resource::Invite => (10006, "Unknown Invite"),
        Resource::Role => (10011, "Unknown Role"),
        Resource::Member => (10007, "Unknown Member"),
        Resource::Application => (10002, "Unknown Application"),
    }
}

/// Nests `a.b.0.c` into `{"a": {"b": {"0": {"c": {"_errors": [...]}}}}}` as Discord does.
fn nest(errors: &mut serde_json::Map<String, Value>, path: &str, code: &str, message: &str) {
    let mut node = errors;
    for part in path.split('.').filter(|p| !p.is_empty()) {
        node = node
            .entry(part.to_owned())
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("error nodes are objects");
    }
    let list = node.entry("_errors").or_insert_with(|| json!([]));
    if let Some(list) = list.as_array_mut() {
        list.push(json!({ "code": code, "message": message }));
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message, errors): (StatusCode, u32, String, Option<Value>) = match self {
            ApiError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                0,
                "401: Unauthorized".into(),
                None,
            ),
            ApiError::NotFound => (StatusCode::NOT_FOUND, 0, "404: Not Found".into(), None),
            ApiError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                0,
                "405: Method Not Allowed".into(),
                None,
            ),
            ApiError::Unknown(r) => {
                let (code, message) = unknown(r);
                (StatusCode::NOT_FOUND, code, message.into(), None)
            }
            ApiError::MissingAccess => {
                (StatusCode::FORBIDDEN, 50001, "Missing Access".into(), None)
            }
            ApiError::MissingPermissions => (
                StatusCode::FORBIDDEN,
                50013,
                "Missing Permissions".into(),
                None,
            ),
            ApiError::NotAuthor => (
                StatusCode::FORBIDDEN,
                50005,
                "Cannot edit a message authored by another user".into(),
                None,
            ),
            ApiError::Banned => (
                StatusCode::FORBIDDEN,
                40007,
                "The user is banned from this guild.".into(),
                None,
            ),
            ApiError::WrongChannelType => (
                StatusCode::BAD_REQUEST,
                50024,
                "Cannot execute action on this channel type".into(),
                None,
            ),
            ApiError::MessagesTooOld => (
                StatusCode::BAD_REQUEST,
                50034,
                "You can only bulk delete messages that are under 14 days old.".into(),
                None,
            ),
            ApiError::MaxPins => (
                StatusCode::BAD_REQUEST,
                30003,
                format!(
                    "Maximum number of pins reached ({})",
                    domain::channel::MAX_PINS
                ),
                None,
            ),
            ApiError::UnknownBan => (StatusCode::NOT_FOUND, 10026, "Unknown Ban".into(), None),
            ApiError::Slowmode { retry_after } => {
                let body = json!({
                    "code": 20016,
                    "message": "This action cannot be performed due to slowmode rate limit.",
                    "retry_after": retry_after as f64,
                    "global": false,
                });
                let mut response =
                    (StatusCode::TOO_MANY_REQUESTS, crate::json_body(&body)).into_response();
                if let Ok(v) = HeaderValue::from_str(&retry_after.to_string()) {
                    response.headers_mut().insert("retry-after", v);
                }
                return response;
            }
            ApiError::InvalidForm(fields) => {
                let mut errors = serde_json::Map::new();
                for (path, code, message) in &fields {
                    nest(&mut errors, path, code, message);
                }
                (
                    StatusCode::BAD_REQUEST,
                    50035,
                    "Invalid Form Body".into(),
                    Some(Value::Object(errors)),
                )
            }
            ApiError::InvalidJson(detail) => {
                tracing::debug!(%detail, "invalid JSON body");
                (
                    StatusCode::BAD_REQUEST,
                    50109,
                    "The request body contains invalid JSON.".into(),
                    None,
                )
            }
            ApiError::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                40005,
                "Request entity too large".into(),
                None,
            ),
            ApiError::Unavailable(detail) => {
                tracing::warn!(%detail, "command gave up after repeated conflicts");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    0,
                    "503: Service Unavailable".into(),
                    None,
                )
            }
            ApiError::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    0,
                    "500: Internal Server Error".into(),
                    None,
                )
            }
        };
        let mut body = json!({ "code": code, "message": message });
        if let Some(errors) = errors {
            body["errors"] = errors;
        }
        let mut response = (status, crate::json_body(&body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert("retry-after", HeaderValue::from_static("1"));
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
