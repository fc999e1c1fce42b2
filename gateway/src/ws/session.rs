//! One gateway connection: HELLO, IDENTIFY or RESUME, READY and GUILD_CREATEs, then
//! dispatches (filtered by the session's intents, with `s` from 1) and client opcodes,
//! with Discord's limits and close codes.
//!
//! Discord's behaviour this follows, and the choices where Discord leaves room:
//! - `?v=` must be 9 or 10 (4012 otherwise); `encoding` must be `json` or absent
//!   (`etf` is closed with 4002: Chorus does not speak ETF); `compress` is `zlib-stream`,
//!   `zstd-stream` or absent (anything else: 4002).
//! - IDENTIFY's token may carry `Bot `; `intents` is required (4013 when missing or with
//!   an undefined bit). Privileged intents (GUILD_MEMBERS, GUILD_PRESENCES,
//!   MESSAGE_CONTENT) are granted to every session: Chorus has no developer portal to
//!   enable them in, and the libraries' defaults ask for them. `shard` must be valid
//!   (4010); with `[i, n]` the session receives the guilds with `(id >> 22) % n == i`.
//!   IDENTIFY's `compress: true` (per-payload zlib) is not done: payloads are sent as
//!   asked in the URL, which every library accepts.
//! - A client payload over 4096 bytes closes with 4002, more than 120 payloads in 60 s
//!   with 4008, an unknown opcode with 4001, anything but HEARTBEAT/IDENTIFY/RESUME
//!   before identifying with 4003, a second IDENTIFY with 4005, a bad token with 4004.
//! - Every heartbeat is acknowledged (op 11). A client that sends no heartbeat for 1.5
//!   heartbeat intervals is a zombie: the server closes with 4009 (session timed out,
//!   not resumable), as Discord does.
//! - A session survives a dropped connection (or a client close other than 1000/1001)
//!   for a while and can be resumed (`resume.rs`); RESUME with an `s` past the last one
//!   sent closes with 4007.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, Request, State};
use axum::response::Response;
use futures::FutureExt;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::compress::{Compression, Compressor};
use super::hub::{Dispatch, Lane};
use super::resume::{self, Session};
use super::socket::{Incoming, Kind, Socket, Upgrade};
use super::{close, intents, op};
use crate::AppState;
use projections::queries;

/// Largest client payload Discord accepts.
const MAX_PAYLOAD: usize = 4096;
/// Client payloads allowed per [`RATE_WINDOW`].
const RATE_LIMIT: u32 = 120;
const RATE_WINDOW: Duration = Duration::from_secs(60);
/// Initial read buffer of a connection (tungstenite grows it for larger frames).
const READ_BUFFER: usize = 128;
/// How long a client may take to IDENTIFY after HELLO.
const IDENTIFY_TIMEOUT: Duration = Duration::from_secs(30);

/// `GET /` with an upgrade: the gateway.
pub async fn upgrade(
    State(state): State<AppState>,
    Query(params): Query<HashMap<String, String>>,
    mut request: Request,
) -> Response {
    let Some(upgrade) = Upgrade::from_request(&mut request) else {
        return crate::json_body(
            &json!({ "message": "Chorus gateway: connect with a WebSocket", "code": 0 }),
        );
    };
    // Client frames are mostly ~20-byte heartbeats: a small read buffer (grown on demand)
    // keeps idle sessions cheap. Frames above the payload limit are read (up to 64 KiB)
    // so that they can be refused with Discord's close code. Data frames to the client
    // do not go through tungstenite's output buffer (`socket.rs`).
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_message_size(Some(64 * 1024))
        .max_frame_size(Some(64 * 1024));
    upgrade.accept(config, move |socket| async move {
        let mut conn = Connection::new(state, socket);
        // The handshake's state (HELLO, the query, READY's queries) lives in its own
        // boxed future, freed before the long-lived session loop starts, so an idle
        // session's task holds only what `live` needs.
        match Box::pin(conn.handshake(params)).await {
            Ok(mut session) => {
                // The session loop and the close are boxed too: a future holds room for
                // every state it can be in, and the close's would otherwise sit unused
                // beside the loop for the whole session.
                let end = Box::pin(conn.live(&mut session)).await;
                let hub = conn.state.hub.clone();
                Box::pin(conn.close(end)).await;
                if end.resumable {
                    resume::park(&hub, session);
                }
            }
            Err(end) => Box::pin(conn.close(end)).await,
        }
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
    #[serde(default)]
    shard: Option<[u64; 2]>,
}

#[derive(Deserialize)]
struct Resume {
    token: String,
    session_id: String,
    #[serde(default)]
    seq: Option<u64>,
}

#[derive(Deserialize)]
struct RequestGuildMembers {
    guild_id: domain::GuildId,
    #[serde(default)]
    query: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    user_ids: Option<Value>,
    #[serde(default)]
    nonce: Option<String>,
}

/// Why a connection ends: the close code and reason sent, and whether the session stays
/// resumable.
#[derive(Clone, Copy, Debug)]
struct End {
    code: u16,
    reason: &'static str,
    resumable: bool,
}

impl End {
    /// A close with Discord's meaning for `code`: the codes Discord documents as "start
    /// a new session" invalidate the session.
    const fn new(code: u16, reason: &'static str) -> End {
        let resumable = !matches!(
            code,
            close::AUTHENTICATION_FAILED
                | close::INVALID_SEQ
                | close::SESSION_TIMED_OUT
                | close::INVALID_SHARD
                | close::SHARDING_REQUIRED
                | close::INVALID_API_VERSION
                | close::INVALID_INTENTS
                | close::DISALLOWED_INTENTS
                | 1000
                | 1001
        );
        End {
            code,
            reason,
            resumable,
        }
    }

    const fn final_(code: u16, reason: &'static str) -> End {
        End {
            code,
            reason,
            resumable: false,
        }
    }
}

const SEND_FAILED: End = End::new(close::UNKNOWN_ERROR, "send failed");
const DECODE: End = End::new(close::DECODE_ERROR, "Error while decoding payload");

/// What woke an identified session's task.
enum Woke {
    Frame(Result<Frame, End>),
    Dispatch(Option<Arc<Dispatch>>),
    Timeout,
}

/// A dispatch frame's text before its `d`: `{"op":0,"t":NAME,"s":SEQ,"d":`.
pub(crate) fn dispatch_head(name: &str, seq: u64) -> String {
    format!("{{\"op\":0,\"t\":\"{name}\",\"s\":{seq},\"d\":")
}

/// What the handshake's read loop does next.
enum Start {
    Identify(Identify),
    Resume(Resume),
}

struct Connection {
    state: AppState,
    socket: Socket,
    compressor: Compressor,
    /// When the client last sent a heartbeat (or HELLO was sent).
    last_heartbeat: Instant,
    /// The client's payload rate: start of the current window and payloads in it.
    window_start: Instant,
    window_count: u32,
}

impl Connection {
    fn new(state: AppState, socket: Socket) -> Self {
        let now = Instant::now();
        Connection {
            state,
            socket,
            compressor: Compressor::Plain,
            last_heartbeat: now,
            window_start: now,
            window_count: 0,
        }
    }

    /// Sends one payload, compressed if the client asked for it.
    async fn send_text(&mut self, text: String) -> Result<(), End> {
        self.send_parts(&[text.as_bytes()]).await
    }

    /// Sends one payload made of `parts` (JSON text once joined), compressed if the
    /// client asked for it. Uncompressed, the parts are written as they are.
    async fn send_parts(&mut self, parts: &[&[u8]]) -> Result<(), End> {
        let sent = if self.compressor.is_plain() {
            self.socket.send(Kind::Text, parts).await
        } else {
            let text = parts.concat();
            let compressed = self.compressor.compress(&text).map_err(|e| {
                tracing::error!(error = %e, "gateway compression failed");
                End::final_(close::UNKNOWN_ERROR, "Unknown error")
            })?;
            match compressed {
                Some(bytes) => self.socket.send(Kind::Binary, &[&bytes]).await,
                None => self.socket.send(Kind::Text, &[&text]).await,
            }
        };
        sent.map_err(|_| SEND_FAILED)
    }

    async fn send_json(&mut self, value: &Value) -> Result<(), End> {
        self.send_text(value.to_string()).await
    }

    async fn send_op(&mut self, op: u8, d: Value) -> Result<(), End> {
        self.send_json(&json!({ "op": op, "d": d, "s": null, "t": null }))
            .await
    }

    /// Sends a dispatch with sequence number `seq`.
    async fn send_dispatch(&mut self, seq: u64, name: &str, data: &str) -> Result<(), End> {
        // `d` is written as it is, never copied into a frame string.
        let head = dispatch_head(name, seq);
        self.send_parts(&[head.as_bytes(), data.as_bytes(), b"}"])
            .await
    }

    /// Lends the session's sending state to its mailbox, so that the hub writes its
    /// dispatches while the task waits (`hub.rs`, `Lane`); false if it was not lent
    /// (something is queued, the connection is compressed or has no shared writer).
    fn lend(&self, session: &mut Session) -> bool {
        let Some(out) = self.socket.outbound() else {
            return false;
        };
        if !self.compressor.is_plain() {
            return false;
        }
        let lane = Lane {
            out: out.clone(),
            user_id: session.user_id,
            intents: session.intents,
            since: session.since,
            seq: session.seq,
            sent: std::mem::take(&mut session.sent),
        };
        match session.mailbox.lend(lane) {
            Ok(()) => true,
            Err(lane) => {
                session.sent = lane.sent;
                false
            }
        }
    }

    /// Takes back what [`Connection::lend`] lent, with what the hub sent meanwhile.
    fn take_back(session: &mut Session) {
        if let Some(lane) = session.mailbox.reclaim() {
            session.seq = lane.seq;
            session.sent = lane.sent;
        }
    }

    /// Sends a dispatch to the session if its intents include it, with the next `s`,
    /// and keeps it for replay.
    async fn deliver(&mut self, session: &mut Session, dispatch: Arc<Dispatch>) -> Result<(), End> {
        if dispatch.known_at(session.since) {
            return Ok(());
        }
        // A VOICE_STATE_UPDATE that moved this session's voice state (a moderator's move)
        // is followed by VOICE_SERVER_UPDATE for the new room (voice.rs).
        let follow_up = super::voice::after_state_update(&self.state, session, &dispatch);
        if let Some(data) = dispatch.data_for(session.user_id, session.intents) {
            self.send_numbered(session, &dispatch, data).await?;
        }
        match follow_up {
            Some(update) => self.send_numbered(session, &update, &update.data).await,
            None => Ok(()),
        }
    }

    /// Sends `data` (`dispatch`'s `d` as this session sees it) with the next `s`, and
    /// keeps the dispatch for replay.
    async fn send_numbered(
        &mut self,
        session: &mut Session,
        dispatch: &Arc<Dispatch>,
        data: &str,
    ) -> Result<(), End> {
        let seq = session.seq + 1;
        self.send_dispatch(seq, &dispatch.name, data).await?;
        session.seq = seq;
        session.remember(seq, dispatch.clone());
        Ok(())
    }

    async fn close(self, end: End) {
        self.socket.close(end.code, end.reason).await;
    }

    fn interval(&self) -> Duration {
        self.state.config.heartbeat_interval
    }

    /// A client that sends no heartbeat for this long is a zombie.
    fn heartbeat_timeout(&self) -> Duration {
        self.interval() + self.interval() / 2
    }

    /// HELLO, then IDENTIFY (READY and the GUILD_CREATEs) or RESUME (the replay and
    /// RESUMED).
    async fn handshake(&mut self, params: HashMap<String, String>) -> Result<Session, End> {
        if let Some(v) = params.get("v") {
            if !matches!(v.as_str(), "9" | "10") {
                return Err(End::new(close::INVALID_API_VERSION, "Invalid API version"));
            }
        }
        if params.get("encoding").is_some_and(|e| e != "json") {
            return Err(End::new(
                close::DECODE_ERROR,
                "Only encoding=json is supported",
            ));
        }
        let compression = Compression::parse(params.get("compress").map(String::as_str))
            .map_err(|_| End::new(close::DECODE_ERROR, "Unknown compress value"))?;
        drop(params);
        self.compressor = Compressor::new(compression).map_err(|e| {
            tracing::error!(error = %e, "cannot create a compression context");
            End::final_(close::UNKNOWN_ERROR, "Unknown error")
        })?;
        let interval = self.interval().as_millis() as u64;
        self.send_op(op::HELLO, json!({ "heartbeat_interval": interval }))
            .await?;
        self.last_heartbeat = Instant::now();
        // Before IDENTIFY: heartbeats are answered, anything else is refused.
        let deadline = Instant::now() + IDENTIFY_TIMEOUT;
        loop {
            let heartbeat_deadline = self.last_heartbeat + self.heartbeat_timeout();
            let frame = tokio::select! {
                frame = self.read_frame() => frame?,
                _ = tokio::time::sleep_until(deadline.min(heartbeat_deadline)) => {
                    return Err(End::final_(close::SESSION_TIMED_OUT, "Session timed out"));
                }
            };
            let start = match frame.op {
                op::HEARTBEAT => {
                    self.heartbeat().await?;
                    continue;
                }
                op::IDENTIFY => Start::Identify(
                    serde_json::from_value(frame.d)
                        .map_err(|_| End::new(close::DECODE_ERROR, "Invalid IDENTIFY payload"))?,
                ),
                op::RESUME => Start::Resume(
                    serde_json::from_value(frame.d)
                        .map_err(|_| End::new(close::DECODE_ERROR, "Invalid RESUME payload"))?,
                ),
                0..=11 => return Err(End::new(close::NOT_AUTHENTICATED, "Not authenticated")),
                _ => return Err(End::new(close::UNKNOWN_OPCODE, "Unknown opcode")),
            };
            match start {
                Start::Identify(identify) => return self.identify(identify).await,
                Start::Resume(r) => {
                    if let Some(session) = self.resume(r).await? {
                        return Ok(session);
                    }
                    // Not resumable: INVALID_SESSION(false) was sent; the client may
                    // identify on this connection or reconnect.
                }
            }
        }
    }

    /// Acknowledges a heartbeat.
    async fn heartbeat(&mut self) -> Result<(), End> {
        self.last_heartbeat = Instant::now();
        self.send_op(op::HEARTBEAT_ACK, Value::Null).await
    }

    /// Reads the next client payload, enforcing the size and rate limits.
    async fn read_frame(&mut self) -> Result<Frame, End> {
        let bytes = match self.socket.recv().await {
            Err(_) => return Err(End::new(close::UNKNOWN_ERROR, "connection lost")),
            Ok(Incoming::Data(bytes)) => bytes,
            Ok(Incoming::Close(code)) => {
                // Closing with 1000 or 1001 invalidates the session (Discord's rule);
                // any other code (or none) keeps it resumable.
                let end = End::new(code, "closed by client");
                return Err(End {
                    resumable: !matches!(code, 1000 | 1001),
                    ..end
                });
            }
        };
        let now = Instant::now();
        if now.duration_since(self.window_start) >= RATE_WINDOW {
            self.window_start = now;
            self.window_count = 0;
        }
        self.window_count += 1;
        if self.window_count > RATE_LIMIT {
            return Err(End::new(close::RATE_LIMITED, "You are being rate limited."));
        }
        if bytes.len() > MAX_PAYLOAD {
            return Err(End::new(close::DECODE_ERROR, "Payload too large"));
        }
        serde_json::from_slice(&bytes).map_err(|_| DECODE)
    }

    /// Authenticates, subscribes, and sends READY and one GUILD_CREATE per guild.
    async fn identify(&mut self, identify: Identify) -> Result<Session, End> {
        const FAILED: End = End::new(close::AUTHENTICATION_FAILED, "Authentication failed");
        let internal = |e: projections::Error| {
            tracing::error!(error = %e, "gateway read failed");
            End::final_(close::UNKNOWN_ERROR, "Unknown error")
        };
        let Some(intents) = identify.intents.filter(|i| intents::valid(*i)) else {
            return Err(End::new(close::INVALID_INTENTS, "Invalid intent(s)"));
        };
        let shard = identify.shard.unwrap_or([0, 1]);
        if shard[1] == 0 || shard[0] >= shard[1] {
            return Err(End::new(close::INVALID_SHARD, "Invalid shard"));
        }
        let (user_id, _bot) = self
            .state
            .commands
            .authenticate(&identify.token)
            .await
            .map_err(|_| FAILED)?;
        // Everything read from here on reflects at least this position of the log.
        let since = self
            .state
            .db
            .checkpoint(projections::READ_MODELS)
            .await
            .map_err(internal)?;
        let user = queries::user(&self.state.db, user_id)
            .await
            .map_err(internal)?
            .ok_or(FAILED)?;
        let user = crate::current_user(&user);
        let guilds: Vec<domain::GuildId> = queries::guild_ids_of(&self.state.db, user_id)
            .await
            .map_err(internal)?
            .into_iter()
            .filter(|g| (g.get() >> 22) % shard[1] == shard[0])
            .collect();
        let raw: Vec<u64> = guilds.iter().map(|g| g.get()).collect();
        let (registration, mailbox) =
            self.state
                .hub
                .register(user_id.get(), &raw)
                .await
                .map_err(|e| {
                    tracing::error!(error = %e, "bus subscription failed");
                    End::final_(close::UNKNOWN_ERROR, "Unknown error")
                })?;
        let mut session = Session {
            registration,
            mailbox,
            user_id: user_id.get(),
            intents,
            session_id: hex::encode(rand::random::<[u8; 16]>()),
            seq: 0,
            since,
            sent: VecDeque::new(),
            voice: Default::default(),
        };
        // A bot's user id is its application's id (as on Discord: domain/src/application.rs),
        // so `application.id` is the user's id; humans get the same harmless stub, which
        // discord.js requires to be present.
        let ready = json!({
            "v": 10,
            "user": user,
            "guilds": guilds.iter().map(|g| json!({ "id": g, "unavailable": true })).collect::<Vec<_>>(),
            "session_id": session.session_id,
            "session_type": "normal",
            "resume_gateway_url": self.state.config.node_ws_url,
            "application": { "id": user_id, "flags": 0 },
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": [],
            "user_settings": {},
            "shard": shard,
        });
        self.deliver_own(&mut session, "READY", &ready).await?;
        for g in guilds {
            if let Some(payload) = queries::guild_create_payload(&self.state.db, g, user_id)
                .await
                .map_err(internal)?
            {
                let mut payload = serde_json::to_value(&payload).unwrap_or_default();
                // Only the channels this user can view (ws/audience.rs).
                if !self
                    .state
                    .hub
                    .filter_guild_create(user_id.get(), &mut payload)
                    .await
                {
                    continue;
                }
                self.deliver_own(&mut session, "GUILD_CREATE", &payload)
                    .await?;
            }
        }
        Ok(session)
    }

    /// Sends a dispatch made for this session alone (READY, GUILD_CREATE at start-up,
    /// chunks): every session receives those whatever its intents.
    async fn deliver_own(
        &mut self,
        session: &mut Session,
        name: &str,
        data: &Value,
    ) -> Result<(), End> {
        let Some(dispatch) = Dispatch::new(name.to_owned(), data).map(Arc::new) else {
            return Err(End::final_(close::UNKNOWN_ERROR, "Unknown error"));
        };
        self.send_numbered(session, &dispatch, &dispatch.data).await
    }

    /// Takes a parked session back: replays what the client missed and sends RESUMED.
    /// `Ok(None)` after INVALID_SESSION(false) when the session cannot be resumed.
    async fn resume(&mut self, r: Resume) -> Result<Option<Session>, End> {
        let hub = self.state.hub.clone();
        let user = self.state.commands.authenticate(&r.token).await.ok();
        let session = resume::take(&hub, &r.session_id);
        let mut session = match (session, user) {
            (Some(s), Some((user, _))) if s.user_id == user.get() => s,
            (Some(s), _) => {
                // Someone else's token: the session stays parked for its owner.
                resume::park(&hub, s);
                self.send_op(op::INVALID_SESSION, Value::Bool(false))
                    .await?;
                return Ok(None);
            }
            (None, _) => {
                self.send_op(op::INVALID_SESSION, Value::Bool(false))
                    .await?;
                return Ok(None);
            }
        };
        let seq = r.seq.unwrap_or(0);
        if seq > session.seq {
            return Err(End::new(close::INVALID_SEQ, "Invalid seq"));
        }
        if !session.can_replay_after(seq) {
            self.send_op(op::INVALID_SESSION, Value::Bool(false))
                .await?;
            return Ok(None);
        }
        session.acknowledge(seq);
        let replay: Vec<(u64, Arc<Dispatch>)> = session.sent.iter().cloned().collect();
        for (s, d) in replay {
            // The session's intents are unchanged, so it sees what it saw the first time.
            if let Some(data) = d.data_for(session.user_id, session.intents) {
                self.send_dispatch(s, &d.name, data).await?;
            }
        }
        // What arrived while the client was away, then RESUMED (Discord's order).
        let mailbox = session.mailbox.clone();
        while let Some(Some(d)) = mailbox.recv().now_or_never() {
            self.deliver(&mut session, d).await?;
        }
        self.deliver_own(&mut session, "RESUMED", &json!({}))
            .await?;
        Ok(Some(session))
    }

    /// Answers REQUEST_GUILD_MEMBERS with one GUILD_MEMBERS_CHUNK from the read models.
    async fn request_members(&mut self, session: &mut Session, d: Value) -> Result<(), End> {
        let req: RequestGuildMembers = serde_json::from_value(d).map_err(|_| DECODE)?;
        let user = domain::UserId::new(session.user_id);
        let payload = queries::guild_create_payload(&self.state.db, req.guild_id, user)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "gateway read failed");
                End::final_(close::UNKNOWN_ERROR, "Unknown error")
            })?;
        let Some(payload) = payload else {
            // Not a member of that guild: Discord sends nothing.
            return Ok(());
        };
        let wanted: Option<Vec<String>> = match req.user_ids {
            Some(Value::Array(ids)) => Some(
                ids.iter()
                    .map(|v| {
                        v.as_str()
                            .map(str::to_owned)
                            .unwrap_or_else(|| v.to_string())
                    })
                    .collect(),
            ),
            Some(Value::String(id)) => Some(vec![id]),
            Some(Value::Number(n)) => Some(vec![n.to_string()]),
            _ => None,
        };
        let query = req.query.unwrap_or_default().to_lowercase();
        let limit = req.limit.filter(|l| *l > 0).unwrap_or(usize::MAX);
        let mut members: Vec<Value> = Vec::new();
        let mut found: Vec<String> = Vec::new();
        for m in &payload.members {
            let v = serde_json::to_value(m).unwrap_or_default();
            let id = v["user"]["id"].as_str().unwrap_or_default().to_owned();
            let name = v["user"]["username"].as_str().unwrap_or_default();
            let keep = match &wanted {
                Some(ids) => ids.contains(&id),
                None => name.to_lowercase().starts_with(&query),
            };
            if keep && members.len() < limit {
                found.push(id);
                members.push(v);
            }
        }
        let not_found: Vec<String> = wanted
            .unwrap_or_default()
            .into_iter()
            .filter(|id| !found.contains(id))
            .collect();
        let mut chunk = json!({
            "guild_id": req.guild_id,
            "members": members,
            "chunk_index": 0,
            "chunk_count": 1,
            "not_found": not_found,
        });
        if let Some(nonce) = req.nonce {
            chunk["nonce"] = nonce.into();
        }
        if session.intents & intents::GUILD_PRESENCES != 0 {
            chunk["presences"] = json!([]);
        }
        self.deliver_own(session, "GUILD_MEMBERS_CHUNK", &chunk)
            .await
    }

    /// Handles one client payload of an identified session.
    async fn client_op(&mut self, session: &mut Session, frame: Frame) -> Result<(), End> {
        match frame.op {
            op::HEARTBEAT => {
                // `d` is the last `s` the client received: what it may forget.
                if let Some(seq) = frame.d.as_u64().filter(|s| *s <= session.seq) {
                    session.acknowledge(seq);
                }
                self.heartbeat().await
            }
            op::IDENTIFY | op::RESUME => Err(End::new(
                close::ALREADY_AUTHENTICATED,
                "Already authenticated",
            )),
            op::REQUEST_GUILD_MEMBERS => self.request_members(session, frame.d).await,
            op::VOICE_STATE_UPDATE => {
                match super::voice::state_update(&self.state, session, frame.d).await {
                    Ok(Some(update)) => self.deliver(session, update).await,
                    Ok(None) => Ok(()),
                    Err(super::voice::Malformed) => Err(DECODE),
                }
            }
            op::PRESENCE_UPDATE => Ok(()),
            // Opcodes Discord defines that a client does not send here.
            op::DISPATCH | op::RECONNECT | op::INVALID_SESSION | op::HELLO | op::HEARTBEAT_ACK => {
                Err(End::new(close::UNKNOWN_OPCODE, "Unknown opcode"))
            }
            _ => Err(End::new(close::UNKNOWN_OPCODE, "Unknown opcode")),
        }
    }

    /// The identified session: dispatches out, client payloads in.
    async fn live(&mut self, session: &mut Session) -> End {
        let mailbox = session.mailbox.clone();
        // One timer for the session, moved only when a heartbeat moves the deadline (not
        // re-registered on every dispatch).
        let mut deadline = self.last_heartbeat + self.heartbeat_timeout();
        let timeout = tokio::time::sleep_until(deadline);
        tokio::pin!(timeout);
        loop {
            let due = self.last_heartbeat + self.heartbeat_timeout();
            if due != deadline {
                deadline = due;
                timeout.as_mut().reset(deadline);
            }
            let lent = self.lend(session);
            let woke = tokio::select! {
                frame = self.read_frame() => Woke::Frame(frame),
                dispatch = mailbox.recv() => Woke::Dispatch(dispatch),
                _ = &mut timeout => Woke::Timeout,
            };
            if lent {
                Self::take_back(session);
            }
            let step = match woke {
                // Client payloads are rare (a heartbeat every ~41 s) and their handlers'
                // futures are large (commands, queries): boxed, so the idle session's
                // task does not carry their size.
                Woke::Frame(Ok(f)) => Box::pin(self.client_op(session, f)).await,
                Woke::Frame(Err(end)) => Err(end),
                Woke::Dispatch(Some(d)) => self.deliver(session, d).await,
                Woke::Dispatch(None) => Err(End::final_(
                    close::UNKNOWN_ERROR,
                    "Session could not keep up",
                )),
                Woke::Timeout => Err(End::new(close::SESSION_TIMED_OUT, "Session timed out")),
            };
            if let Err(end) = step {
                return end;
            }
        }
    }
}
