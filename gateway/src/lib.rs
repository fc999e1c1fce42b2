//! The client edge: Discord-shaped REST routes under `/api/v10`, `/api/v9` and `/api`,
//! and the WebSocket gateway at the root path of the same address.
//!
//! Architecture invariant: the gateway never writes SQL and never appends events itself;
//! writes go through `commands`, reads through `projections::queries`.

mod error;
mod extract;
mod ratelimit;
mod rest;
mod serve;
pub mod ws;

use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, HeaderValue, Request};
use axum::response::{IntoResponse, Response};
use axum::Router;
use commands::Commands;
use projections::{Projections, ReadDb};
use tower_http::trace::TraceLayer;

pub use error::{ApiError, ApiResult};
pub use serve::serve;

/// Settings of the client edge.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// The gateway URL clients are told to connect to (`ws://host:port`), as returned by
    /// `GET /gateway`: the cluster's entry point.
    pub public_ws_url: String,
    /// This node's own gateway URL, READY's `resume_gateway_url`: a session is kept by the
    /// node it was opened on, so a client must come back to that node to resume it.
    pub node_ws_url: String,
    /// Heartbeat interval announced in HELLO.
    pub heartbeat_interval: Duration,
    /// How long a write waits for the read models to include it before answering.
    pub read_your_writes_timeout: Duration,
    /// REST requests allowed per second per token (or client address), Discord's global
    /// limit; 0 turns rate limiting off.
    pub rate_limit_per_second: u32,
    /// Voice: how op 4 is answered (token secret, where rooms live). `None`: no voice.
    pub voice: Option<voice::placement::VoiceRouting>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            public_ws_url: "ws://127.0.0.1:8080".into(),
            node_ws_url: "ws://127.0.0.1:8080".into(),
            heartbeat_interval: Duration::from_millis(41_250),
            read_your_writes_timeout: Duration::from_secs(5),
            rate_limit_per_second: 50,
            voice: None,
        }
    }
}

/// Everything a request handler needs.
#[derive(Clone)]
pub struct AppState {
    pub commands: Arc<Commands>,
    pub projections: Arc<Projections>,
    pub db: ReadDb,
    pub hub: Arc<ws::Hub>,
    pub config: Arc<GatewayConfig>,
}

impl AppState {
    /// Waits until the read models include `position` (read-your-writes).
    pub async fn settle(&self, position: u64) -> ApiResult<()> {
        if self
            .projections
            .wait_for(position, self.config.read_your_writes_timeout)
            .await
        {
            Ok(())
        } else {
            Err(ApiError::Unavailable(format!(
                "read models did not reach position {position} in time"
            )))
        }
    }
}

/// A JSON response with `Content-Type: application/json` exactly (discord.py compares
/// the whole header).
pub(crate) fn json_body(value: &impl serde::Serialize) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response(),
        Err(e) => ApiError::Internal(e.to_string()).into_response(),
    }
}

/// The current user object (`/users/@me`, READY's `user`): the public user plus the
/// account fields libraries expect.
pub(crate) fn current_user(user: &projections::wire::User) -> serde_json::Value {
    let mut v = serde_json::to_value(user).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert("mfa_enabled".into(), false.into());
        o.insert("verified".into(), true.into());
        o.insert("email".into(), serde_json::Value::Null);
        o.insert("locale".into(), "en-US".into());
        o.insert("premium_type".into(), 0.into());
    }
    v
}

/// The whole HTTP surface: REST under the API prefixes, the gateway at `/`.
pub fn router(state: AppState) -> Router {
    let api = rest::routes();
    Router::new()
        .route("/", axum::routing::get(ws::upgrade))
        .nest("/api/v10", api.clone())
        .nest("/api/v9", api.clone())
        .nest("/api", api)
        .fallback(|| async { ApiError::NotFound })
        .layer(axum::extract::DefaultBodyLimit::max(1024 * 1024))
        .layer(axum::middleware::from_fn_with_state(
            ratelimit::RateLimiter::new(state.config.rate_limit_per_second),
            ratelimit::limit,
        ))
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
                let request_id = req
                    .headers()
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id)
            }),
        )
        .with_state(state)
}
