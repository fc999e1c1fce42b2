//! One gateway connection.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::Response;
use futures::SinkExt;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::hub::{Mailbox, Registration};
use super::{close, op};
use crate::AppState;
use projections::queries;

/// Largest client payload Discord accepts.
const MAX_PAYLOAD: usize = 4096;
/// Initial read buffer of a connection (tungstenite grows it for larger frames).
const READ_BUFFER: usize = 128;
/// How long a client may take to IDENTIFY after HELLO.
const IDENTIFY_TIMEOUT: Duration = Duration::from_secs(30);

/// `GET /` with an upgrade: the gateway.
pub async fn upgrade(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let Ok(ws) = ws else {
        return crate::json_body(
            &json!({ "message": "Chorus gateway: connect with a WebSocket", "code": 0 }),
        );
    };
    // Client frames are mostly ~20-byte heartbeats: a small read buffer (grown on demand)
    // keeps idle sessions cheap.
    ws.read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_message_size(64 * 1024)
        .max_frame_size(64 * 1024)
        .on_upgrade(move |socket| async move {
            let mut conn = Connection::new(state, socket);
            // The handshake's state (HELLO, the query, READY's queries) lives in its own
            // boxed future, freed before the long-lived session loop starts, so an idle
            // session's task holds only what `live` needs.
            let code = match Box::pin(conn.handshake(params)).await {
                Ok((registration, rx)) => conn.live(registration, rx).await,
                Err(code) => code,
            };
            conn.close(code).await;
        })
}

#[derive(Deserialize)]
struct Frame {
    op: u8,
    #[serde(default)]
    d: Value,
}

#[derive(Deserialize)]
struct Identify {
    token: String,
    #[serde(default)]
    intents: Option<u64>,
}

/// Why a connection ends: a close code and reason.
type Close = (u16, &'static str);

struct Connection {
    state: AppState,
    socket: WebSocket,
    seq: u64,
    session_id: String,
}

impl Connection {
    fn new(state: AppState, socket: WebSocket) -> Self {
        Connection {
            state,
            socket,
            seq: 0,
            session_id: String::new(),
        }
    }

    async fn send_json(&mut self, value: &Value) -> Result<(), Close> {
        let text = value.to_string();
        self.socket
            .send(Message::Text(text.into()))
            .await
            .map_err(|_| (close::UNKNOWN_ERROR, "send failed"))
    }

    /// Sends a dispatch with the next sequence number.
    async fn dispatch(&mut self, name: &str, data: &str) -> Result<(), Close> {
        self.seq += 1;
        let frame = format!(
            "{{\"op\":0,\"t\":\"{name}\",\"s\":{},\"d\":{data}}}",
            self.seq
        );
        self.socket
            .send(Message::Text(Utf8Bytes::from(frame)))
            .await
            .map_err(|_| (close::UNKNOWN_ERROR, "send failed"))
    }

    async fn close(mut self, (code, reason): Close) {
        let _ = self
            .socket
            .send(Message::Close(Some(CloseFrame {
                code,
                reason: reason.into(),
            })))
            .await;
        let _ = self.socket.close().await;
    }

    fn interval(&self) -> Duration {
        self.state.config.heartbeat_interval
    }

    /// HELLO, then IDENTIFY, then READY and the GUILD_CREATEs.
    async fn handshake(
        &mut self,
        params: HashMap<String, String>,
    ) -> Result<(Registration, Arc<Mailbox>), Close> {
        if let Some(v) = params.get("v") {
            if !matches!(v.as_str(), "9" | "10") {
                return Err((close::INVALID_API_VERSION, "Invalid API version"));
            }
        }
        if params.get("encoding").is_some_and(|e| e != "json") {
            return Err((close::DECODE_ERROR, "Only encoding=json is supported"));
        }
        drop(params);
        let hello = json!({ "op": op::HELLO, "d": { "heartbeat_interval": self.interval().as_millis() as u64 }, "s": null, "t": null });
        self.send_json(&hello).await?;
        // Before IDENTIFY: heartbeats are answered, anything else is refused.
        let deadline = Instant::now() + IDENTIFY_TIMEOUT;
        let identify = loop {
            let frame = match tokio::time::timeout_at(deadline, self.read_frame()).await {
                Err(_) => return Err((close::SESSION_TIMED_OUT, "Identify timed out")),
                Ok(frame) => frame?,
            };
            match frame.op {
                op::HEARTBEAT => self.ack().await?,
                op::IDENTIFY => match serde_json::from_value::<Identify>(frame.d) {
                    Ok(i) => break i,
                    Err(_) => return Err((close::DECODE_ERROR, "Invalid IDENTIFY payload")),
                },
                op::RESUME => {
                    // Sessions are not resumable yet: tell the client to identify anew.
                    let invalid =
                        json!({ "op": op::INVALID_SESSION, "d": false, "s": null, "t": null });
                    self.send_json(&invalid).await?;
                }
                0..=11 => return Err((close::NOT_AUTHENTICATED, "Not authenticated")),
                _ => return Err((close::UNKNOWN_OPCODE, "Unknown opcode")),
            }
        };
        let _ = identify.intents;
        self.ready(&identify.token).await
    }

    async fn ack(&mut self) -> Result<(), Close> {
        self.send_json(&json!({ "op": op::HEARTBEAT_ACK, "d": null, "s": null, "t": null }))
            .await
    }

    /// Reads the next client frame, enforcing the payload limit.
    async fn read_frame(&mut self) -> Result<Frame, Close> {
        loop {
            let msg = match self.socket.recv().await {
                None | Some(Err(_)) => return Err((close::UNKNOWN_ERROR, "connection lost")),
                Some(Ok(m)) => m,
            };
            let bytes: Vec<u8> = match msg {
                Message::Text(t) => t.as_bytes().to_vec(),
                Message::Binary(b) => b.to_vec(),
                Message::Close(_) => return Err((1000, "closed by client")),
                Message::Ping(_) | Message::Pong(_) => continue,
            };
            if bytes.len() > MAX_PAYLOAD {
                return Err((close::DECODE_ERROR, "Payload too large"));
            }
            return serde_json::from_slice(&bytes)
                .map_err(|_| (close::DECODE_ERROR, "Error while decoding payload"));
        }
    }

    /// Authenticates, subscribes, and sends READY and one GUILD_CREATE per guild.
    async fn ready(&mut self, token: &str) -> Result<(Registration, Arc<Mailbox>), Close> {
        const FAILED: Close = (close::AUTHENTICATION_FAILED, "Authentication failed");
        let internal = |e: projections::Error| {
            tracing::error!(error = %e, "gateway read failed");
            (close::UNKNOWN_ERROR, "Unknown error")
        };
        let (user_id, _bot) = self
            .state
            .commands
            .authenticate(token)
            .await
            .map_err(|_| FAILED)?;
        let user = queries::user(&self.state.db, user_id)
            .await
            .map_err(internal)?
            .ok_or(FAILED)?;
        let user = crate::current_user(&user);
        let guilds = queries::guild_ids_of(&self.state.db, user_id)
            .await
            .map_err(internal)?;
        let raw: Vec<u64> = guilds.iter().map(|g| g.get()).collect();
        let (registration, rx) =
            self.state
                .hub
                .register(user_id.get(), &raw)
                .await
                .map_err(|e| {
                    tracing::error!(error = %e, "bus subscription failed");
                    (close::UNKNOWN_ERROR, "Unknown error")
                })?;
        self.session_id = hex::encode(rand::random::<[u8; 16]>());
        let ready = json!({
            "v": 10,
            "user": user,
            "guilds": guilds.iter().map(|g| json!({ "id": g, "unavailable": true })).collect::<Vec<_>>(),
            "session_id": self.session_id,
            "session_type": "normal",
            "resume_gateway_url": self.state.config.public_ws_url,
            "application": { "id": user_id, "flags": 0 },
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": [],
            "user_settings": {},
            "shard": [0, 1],
        });
        self.dispatch("READY", &ready.to_string()).await?;
        for g in guilds {
            if let Some(payload) = queries::guild_create_payload(&self.state.db, g, user_id)
                .await
                .map_err(internal)?
            {
                self.dispatch(
                    "GUILD_CREATE",
                    &serde_json::to_string(&payload).unwrap_or_default(),
                )
                .await?;
            }
        }
        Ok((registration, rx))
    }

    /// The identified session: dispatches out, heartbeats in.
    async fn live(&mut self, registration: Registration, mailbox: Arc<Mailbox>) -> Close {
        let _registration = registration;
        // A client that misses a heartbeat by more than half an interval is gone.
        let timeout = self.interval() + self.interval() / 2;
        let mut deadline = Instant::now() + timeout;
        loop {
            tokio::select! {
                frame = self.read_frame() => {
                    let frame = match frame {
                        Ok(f) => f,
                        Err(c) => return c,
                    };
                    match frame.op {
                        op::HEARTBEAT => {
                            deadline = Instant::now() + timeout;
                            if let Err(c) = self.ack().await {
                                return c;
                            }
                        }
                        op::IDENTIFY => return (close::ALREADY_AUTHENTICATED, "Already authenticated"),
                        op::PRESENCE_UPDATE | op::VOICE_STATE_UPDATE | op::REQUEST_GUILD_MEMBERS => {}
                        op::RESUME => return (close::ALREADY_AUTHENTICATED, "Already authenticated"),
                        _ => return (close::UNKNOWN_OPCODE, "Unknown opcode"),
                    }
                }
                dispatch = mailbox.recv() => {
                    let Some(d) = dispatch else {
                        return (close::UNKNOWN_ERROR, "Session could not keep up");
                    };
                    if let Err(c) = self.dispatch(&d.name, &d.data).await {
                        return c;
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    return (close::SESSION_TIMED_OUT, "Heartbeat timed out");
                }
            }
        }
    }
}
