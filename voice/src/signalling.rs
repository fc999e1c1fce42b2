//! Discord's voice WebSocket, for the `webrtc` protocol.
//!
//! ```text
//! client                                   server
//!   ── connect ws://{endpoint}/?v=8 ──────▶
//!   ◀───────────── HELLO (8) {heartbeat_interval}
//!   ── IDENTIFY (0) {server_id, user_id, session_id, token} ──▶
//!   ◀───────────── READY (2) {ssrc, ip, port, modes}
//!   ── SELECT_PROTOCOL (1) {protocol: "webrtc", data: "<SDP offer>"} ──▶
//!   ◀───────────── SESSION_DESCRIPTION (4) {audio_codec: "opus", sdp: "<SDP answer>", ...}
//!   ── HEARTBEAT (3) {t} ──▶  ◀── HEARTBEAT_ACK (6) {t}
//!   ── SPEAKING (5) {speaking, delay, ssrc} ──▶   ◀── SPEAKING (5) {user_id, ssrc, speaking}
//!   ◀───────────── CLIENT_DISCONNECT (13) {user_id}   when someone else leaves
//! ```
//!
//! The server also sends SPEAKING on its own: `{user_id, ssrc, speaking: 0, mid}` when a
//! consumer opens (which SSRC and m-line carry whom, as Discord maps SSRCs to users through
//! SPEAKING), and `speaking: 1/0` from the RFC 6464 audio levels of each producer.
//!
//! Close codes (Discord's voice close codes):
//!
//! | code | when |
//! | --- | --- |
//! | 4001 | unknown opcode |
//! | 4002 | payload not JSON or missing fields; SDP offer malformed or without audio |
//! | 4003 | anything but IDENTIFY or HEARTBEAT before IDENTIFY |
//! | 4004 | the token is invalid, expired, or names another user or session |
//! | 4005 | a second IDENTIFY |
//! | 4006 | the session was replaced by a newer one, or its transport died or went silent |
//! | 4009 | no heartbeat within 1.5 heartbeat intervals |
//! | 4011 | the token is for a room this node does not serve |
//! | 4012 | SELECT_PROTOCOL with a protocol other than `webrtc` |
//! | 4014 | disconnected by the server (left the channel, moved, or kicked from voice) |
//! | 4016 | SELECT_PROTOCOL with an encryption `mode` other than DTLS-SRTP |
//!
//! Bad input closes only that connection; the room and everyone else in it carry on.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::server::VoiceHandle;
use crate::sfu::{LeaveReason, RoomId, SfuEvent, UserId};
use crate::token::{AuthError, Identify, VoiceAuth, VoiceGrant};

/// Voice gateway opcodes.
pub mod op {
    /// Client: begin a voice session.
    pub const IDENTIFY: u64 = 0;
    /// Client: the protocol and the SDP offer.
    pub const SELECT_PROTOCOL: u64 = 1;
    /// Server: identified.
    pub const READY: u64 = 2;
    /// Client: keep alive.
    pub const HEARTBEAT: u64 = 3;
    /// Server: the SDP answer.
    pub const SESSION_DESCRIPTION: u64 = 4;
    /// Both: speaking state.
    pub const SPEAKING: u64 = 5;
    /// Server: heartbeat acknowledged.
    pub const HEARTBEAT_ACK: u64 = 6;
    /// Server: the heartbeat interval.
    pub const HELLO: u64 = 8;
    /// Server: a user left the room.
    pub const CLIENT_DISCONNECT: u64 = 13;
}

/// Voice close codes.
pub mod close {
    /// Unknown opcode.
    pub const UNKNOWN_OPCODE: u16 = 4001;
    /// Failed to decode payload.
    pub const FAILED_TO_DECODE: u16 = 4002;
    /// Not authenticated.
    pub const NOT_AUTHENTICATED: u16 = 4003;
    /// Authentication failed.
    pub const AUTHENTICATION_FAILED: u16 = 4004;
    /// Already authenticated.
    pub const ALREADY_AUTHENTICATED: u16 = 4005;
    /// Session no longer valid.
    pub const SESSION_NO_LONGER_VALID: u16 = 4006;
    /// Session timeout.
    pub const SESSION_TIMEOUT: u16 = 4009;
    /// Server not found.
    pub const SERVER_NOT_FOUND: u16 = 4011;
    /// Unknown protocol.
    pub const UNKNOWN_PROTOCOL: u16 = 4012;
    /// Disconnected.
    pub const DISCONNECTED: u16 = 4014;
    /// Unknown encryption mode.
    pub const UNKNOWN_ENCRYPTION_MODE: u16 = 4016;
}

enum Outgoing {
    Json(Value),
    Close(u16, &'static str),
}

struct Member {
    session: u64,
    guild_id: u64,
    tx: mpsc::UnboundedSender<Outgoing>,
    /// The SSRC and m-line on which this member hears each speaker.
    consumers: HashMap<UserId, (u32, String)>,
}

#[derive(Default)]
struct Rooms {
    rooms: HashMap<RoomId, HashMap<UserId, Member>>,
}

impl Rooms {
    fn send_others(&self, room: RoomId, except: UserId, payload: &Value) {
        if let Some(r) = self.rooms.get(&room) {
            for (u, m) in r {
                if *u != except {
                    let _ = m.tx.send(Outgoing::Json(payload.clone()));
                }
            }
        }
    }
}

/// A participant the SFU dropped (its transport died or went silent): the voice state
/// should be cleared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Departure {
    /// The guild.
    pub guild_id: u64,
    /// The room.
    pub channel_id: RoomId,
    /// The user.
    pub user_id: UserId,
}

/// The voice WebSocket endpoint: state shared by every connection.
pub struct VoiceGateway<A> {
    voice: VoiceHandle,
    auth: Arc<A>,
    rooms: Arc<Mutex<Rooms>>,
    heartbeat_interval: Duration,
    next_session: Arc<AtomicU64>,
    departures: tokio::sync::broadcast::Sender<Departure>,
}

impl<A> Clone for VoiceGateway<A> {
    fn clone(&self) -> Self {
        VoiceGateway {
            voice: self.voice.clone(),
            auth: self.auth.clone(),
            rooms: self.rooms.clone(),
            heartbeat_interval: self.heartbeat_interval,
            next_session: self.next_session.clone(),
            departures: self.departures.clone(),
        }
    }
}

impl<A: VoiceAuth> VoiceGateway<A> {
    /// A gateway over the running SFU `voice`, admitting whom `auth` admits. Spawns the task
    /// that relays SFU events (speaking, consumers, leaves) to the connections.
    pub fn new(voice: VoiceHandle, auth: A) -> Self {
        let gw = VoiceGateway {
            voice,
            auth: Arc::new(auth),
            rooms: Arc::new(Mutex::new(Rooms::default())),
            heartbeat_interval: Duration::from_millis(13_750),
            next_session: Arc::new(AtomicU64::new(1)),
            departures: tokio::sync::broadcast::channel(1024).0,
        };
        tokio::spawn(relay(
            gw.voice.subscribe(),
            gw.rooms.clone(),
            gw.departures.clone(),
        ));
        gw
    }

    /// Use another heartbeat interval (tests use a short one).
    pub fn with_heartbeat_interval(mut self, interval: Duration) -> Self {
        self.heartbeat_interval = interval;
        self
    }

    /// The SFU this gateway drives.
    pub fn voice(&self) -> &VoiceHandle {
        &self.voice
    }

    /// Disconnect `user` from `room` (left the channel, moved, kicked from voice): the
    /// connection closes with 4014, the others get CLIENT_DISCONNECT.
    pub fn disconnect(&self, room: RoomId, user: UserId) {
        let member = self
            .rooms
            .lock()
            .expect("rooms lock")
            .rooms
            .get_mut(&room)
            .and_then(|r| r.remove(&user));
        if let Some(m) = member {
            let _ =
                m.tx.send(Outgoing::Close(close::DISCONNECTED, "disconnected"));
        }
        self.voice.leave(room, user);
        let rooms = self.rooms.lock().expect("rooms lock");
        rooms.send_others(room, user, &client_disconnect(user));
    }

    /// The rooms `user` has a voice connection in (on this node).
    pub fn rooms_of(&self, user: UserId) -> Vec<RoomId> {
        let rooms = self.rooms.lock().expect("rooms lock");
        rooms
            .rooms
            .iter()
            .filter(|(_, r)| r.contains_key(&user))
            .map(|(room, _)| *room)
            .collect()
    }

    /// `user`'s voice state now says `channel`: disconnect them from every other room of
    /// `guild_id` on this node (a leave, a move, a disconnect by a moderator).
    pub fn follow_voice_state(&self, guild_id: u64, user: UserId, channel: Option<RoomId>) {
        let stale: Vec<RoomId> = {
            let rooms = self.rooms.lock().expect("rooms lock");
            rooms
                .rooms
                .iter()
                .filter(|(room, r)| {
                    Some(**room) != channel && r.get(&user).is_some_and(|m| m.guild_id == guild_id)
                })
                .map(|(room, _)| *room)
                .collect()
        };
        for room in stale {
            self.disconnect(room, user);
        }
    }

    /// The member's server mute and deafen changed: apply them in every room they are in.
    pub fn set_member_voice(&self, guild_id: u64, user: UserId, mute: bool, deaf: bool) {
        let rooms: Vec<RoomId> = {
            let rooms = self.rooms.lock().expect("rooms lock");
            rooms
                .rooms
                .iter()
                .filter(|(_, r)| r.get(&user).is_some_and(|m| m.guild_id == guild_id))
                .map(|(room, _)| *room)
                .collect()
        };
        for room in rooms {
            self.voice.set_server_mute(room, user, mute);
            self.voice.set_server_deaf(room, user, deaf);
        }
    }

    /// Participants the SFU dropped from now on.
    pub fn departures(&self) -> tokio::sync::broadcast::Receiver<Departure> {
        self.departures.subscribe()
    }

    /// The axum routes: `GET /voice` upgrades to the voice WebSocket.
    pub fn routes(self) -> axum::Router {
        axum::Router::new()
            .route("/voice", get(upgrade::<A>))
            .with_state(self)
    }
}

fn client_disconnect(user: UserId) -> Value {
    json!({"op": op::CLIENT_DISCONNECT, "d": {"user_id": user.to_string()}})
}

async fn upgrade<A: VoiceAuth>(
    State(gw): State<VoiceGateway<A>>,
    ws: WebSocketUpgrade,
) -> Response {
    ws.on_upgrade(move |socket| session(gw, socket))
}

/// Relay SFU events to the connections of the room they concern.
async fn relay(
    mut events: tokio::sync::broadcast::Receiver<SfuEvent>,
    rooms: Arc<Mutex<Rooms>>,
    departures: tokio::sync::broadcast::Sender<Departure>,
) {
    loop {
        let e = match events.recv().await {
            Ok(e) => e,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
            Err(_) => return,
        };
        let mut rooms = rooms.lock().expect("rooms lock");
        match e {
            SfuEvent::ConsumerOpened {
                room,
                listener,
                speaker,
                mid,
                ssrc,
            } => {
                if let Some(m) = rooms
                    .rooms
                    .get_mut(&room)
                    .and_then(|r| r.get_mut(&listener))
                {
                    let _ = m.tx.send(Outgoing::Json(json!({"op": op::SPEAKING, "d": {
                        "user_id": speaker.to_string(), "ssrc": ssrc, "speaking": 0, "mid": mid
                    }})));
                    m.consumers.insert(speaker, (ssrc, mid));
                }
            }
            SfuEvent::ConsumerClosed {
                room,
                listener,
                speaker,
            } => {
                if let Some(m) = rooms
                    .rooms
                    .get_mut(&room)
                    .and_then(|r| r.get_mut(&listener))
                {
                    m.consumers.remove(&speaker);
                }
            }
            SfuEvent::Speaking {
                room,
                user,
                speaking,
            } => {
                if let Some(r) = rooms.rooms.get(&room) {
                    for (u, m) in r {
                        if *u == user {
                            continue;
                        }
                        let (ssrc, mid) = m.consumers.get(&user).cloned().unwrap_or_default();
                        let _ = m.tx.send(Outgoing::Json(json!({"op": op::SPEAKING, "d": {
                            "user_id": user.to_string(), "ssrc": ssrc, "speaking": u8::from(speaking), "mid": mid
                        }})));
                    }
                }
            }
            SfuEvent::Left { room, user, reason } => {
                if matches!(reason, LeaveReason::Timeout | LeaveReason::TransportClosed) {
                    let member = rooms.rooms.get_mut(&room).and_then(|r| r.remove(&user));
                    if let Some(m) = member {
                        let _ = m.tx.send(Outgoing::Close(
                            close::SESSION_NO_LONGER_VALID,
                            "transport closed",
                        ));
                        rooms.send_others(room, user, &client_disconnect(user));
                        let _ = departures.send(Departure {
                            guild_id: m.guild_id,
                            channel_id: room,
                            user_id: user,
                        });
                    }
                }
            }
            SfuEvent::Connected { .. } => {}
        }
        rooms.rooms.retain(|_, r| !r.is_empty());
    }
}

/// Why a connection is closing, with its close code.
struct Fail(u16, &'static str);

enum Phase {
    Hello,
    Identified(VoiceGrant),
    Selected(VoiceGrant),
}

struct Conn<A> {
    gw: VoiceGateway<A>,
    session: u64,
    phase: Phase,
    tx: mpsc::UnboundedSender<Outgoing>,
}

async fn session<A: VoiceAuth>(gw: VoiceGateway<A>, mut socket: WebSocket) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let interval = gw.heartbeat_interval;
    let mut conn = Conn {
        session: gw.next_session.fetch_add(1, Ordering::Relaxed),
        gw,
        phase: Phase::Hello,
        tx,
    };
    let hello =
        json!({"op": op::HELLO, "d": {"v": 8, "heartbeat_interval": interval.as_millis() as u64}});
    if socket
        .send(Message::Text(hello.to_string().into()))
        .await
        .is_err()
    {
        return;
    }
    let grace = interval + interval / 2;
    let mut deadline = tokio::time::Instant::now() + grace;
    let outcome: Option<(u16, &'static str)> = loop {
        tokio::select! {
            msg = socket.recv() => {
                let text = match msg {
                    Some(Ok(Message::Text(t))) => t.to_string(),
                    Some(Ok(Message::Binary(b))) => match String::from_utf8(b.to_vec()) {
                        Ok(t) => t,
                        Err(_) => break Some((close::FAILED_TO_DECODE, "payload is not UTF-8 JSON")),
                    },
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break None,
                };
                match conn.handle(&text).await {
                    Ok(Heartbeat::Yes) => deadline = tokio::time::Instant::now() + grace,
                    Ok(Heartbeat::No) => {}
                    Err(Fail(code, reason)) => break Some((code, reason)),
                }
            }
            out = rx.recv() => match out {
                Some(Outgoing::Json(v)) => {
                    if socket.send(Message::Text(v.to_string().into())).await.is_err() {
                        break None;
                    }
                }
                Some(Outgoing::Close(code, reason)) => break Some((code, reason)),
                None => break None,
            },
            _ = tokio::time::sleep_until(deadline) => break Some((close::SESSION_TIMEOUT, "session timeout")),
        }
    };
    if let Some((code, reason)) = outcome {
        let _ = socket
            .send(Message::Close(Some(CloseFrame {
                code,
                reason: reason.into(),
            })))
            .await;
    }
    conn.leave();
}

enum Heartbeat {
    Yes,
    No,
}

fn field<'a>(d: &'a Value, name: &str) -> Result<&'a Value, Fail> {
    d.get(name)
        .ok_or(Fail(close::FAILED_TO_DECODE, "a field is missing"))
}

impl<A: VoiceAuth> Conn<A> {
    fn send(&self, v: Value) {
        let _ = self.tx.send(Outgoing::Json(v));
    }

    async fn handle(&mut self, text: &str) -> Result<Heartbeat, Fail> {
        let v: Value = serde_json::from_str(text)
            .map_err(|_| Fail(close::FAILED_TO_DECODE, "payload is not JSON"))?;
        let opcode = v
            .get("op")
            .and_then(Value::as_u64)
            .ok_or(Fail(close::FAILED_TO_DECODE, "op is missing"))?;
        let d = v.get("d").cloned().unwrap_or(Value::Null);
        match opcode {
            op::HEARTBEAT => {
                let t = d.get("t").cloned().unwrap_or(d);
                self.send(json!({"op": op::HEARTBEAT_ACK, "d": {"t": t}}));
                Ok(Heartbeat::Yes)
            }
            op::IDENTIFY => {
                if !matches!(self.phase, Phase::Hello) {
                    return Err(Fail(close::ALREADY_AUTHENTICATED, "already authenticated"));
                }
                let identify: Identify = serde_json::from_value(d)
                    .map_err(|_| Fail(close::FAILED_TO_DECODE, "IDENTIFY is malformed"))?;
                let grant = self.gw.auth.verify(&identify).await.map_err(|e| match e {
                    AuthError::Failed => {
                        Fail(close::AUTHENTICATION_FAILED, "authentication failed")
                    }
                    AuthError::ServerNotFound => Fail(close::SERVER_NOT_FOUND, "server not found"),
                })?;
                self.register(&grant);
                let addr = self.gw.voice.announced();
                self.send(json!({"op": op::READY, "d": {
                    "ssrc": (grant.user_id & 0xffff_ffff) as u32,
                    "ip": addr.ip().to_string(),
                    "port": addr.port(),
                    "modes": ["dtls-srtp"],
                    "heartbeat_interval": self.gw.heartbeat_interval.as_millis() as u64,
                }}));
                self.phase = Phase::Identified(grant);
                Ok(Heartbeat::No)
            }
            op::SELECT_PROTOCOL => {
                let grant = match &self.phase {
                    Phase::Hello => {
                        return Err(Fail(close::NOT_AUTHENTICATED, "not authenticated"))
                    }
                    Phase::Identified(g) | Phase::Selected(g) => g.clone(),
                };
                let protocol = field(&d, "protocol")?
                    .as_str()
                    .ok_or(Fail(close::FAILED_TO_DECODE, "protocol is not a string"))?;
                if protocol != "webrtc" {
                    return Err(Fail(close::UNKNOWN_PROTOCOL, "unknown protocol"));
                }
                let data = field(&d, "data")?;
                let sdp = match data {
                    Value::String(s) => s.as_str(),
                    Value::Object(o) => {
                        if let Some(mode) = o.get("mode") {
                            if mode.as_str() != Some("dtls-srtp") {
                                return Err(Fail(
                                    close::UNKNOWN_ENCRYPTION_MODE,
                                    "unknown encryption mode",
                                ));
                            }
                        }
                        o.get("sdp")
                            .and_then(Value::as_str)
                            .ok_or(Fail(close::FAILED_TO_DECODE, "data.sdp is missing"))?
                    }
                    _ => d
                        .get("sdp")
                        .and_then(Value::as_str)
                        .ok_or(Fail(close::FAILED_TO_DECODE, "the SDP offer is missing"))?,
                };
                let answer = self
                    .gw
                    .voice
                    .join(grant.channel_id, grant.user_id, sdp.to_owned())
                    .await
                    .map_err(|_| Fail(close::SERVER_NOT_FOUND, "voice server stopped"))?
                    .map_err(|_| Fail(close::FAILED_TO_DECODE, "the SDP offer is malformed"))?;
                if grant.mute {
                    self.gw
                        .voice
                        .set_server_mute(grant.channel_id, grant.user_id, true);
                }
                if grant.deaf {
                    self.gw
                        .voice
                        .set_server_deaf(grant.channel_id, grant.user_id, true);
                }
                self.send(json!({"op": op::SESSION_DESCRIPTION, "d": {
                    "audio_codec": "opus",
                    "video_codec": null,
                    "media_session_id": format!("{:x}", self.session),
                    "mode": "dtls-srtp",
                    "sdp": answer,
                }}));
                self.phase = Phase::Selected(grant);
                Ok(Heartbeat::No)
            }
            op::SPEAKING => {
                let grant = match &self.phase {
                    Phase::Hello => {
                        return Err(Fail(close::NOT_AUTHENTICATED, "not authenticated"))
                    }
                    Phase::Identified(g) | Phase::Selected(g) => g,
                };
                let speaking = field(&d, "speaking")?
                    .as_u64()
                    .ok_or(Fail(close::FAILED_TO_DECODE, "speaking is not a number"))?;
                let rooms = self.gw.rooms.lock().expect("rooms lock");
                if let Some(r) = rooms.rooms.get(&grant.channel_id) {
                    for (u, m) in r {
                        if *u == grant.user_id {
                            continue;
                        }
                        let (ssrc, mid) =
                            m.consumers.get(&grant.user_id).cloned().unwrap_or_default();
                        let _ = m.tx.send(Outgoing::Json(json!({"op": op::SPEAKING, "d": {
                            "user_id": grant.user_id.to_string(), "ssrc": ssrc, "speaking": speaking, "mid": mid
                        }})));
                    }
                }
                Ok(Heartbeat::No)
            }
            op::READY
            | op::SESSION_DESCRIPTION
            | op::HEARTBEAT_ACK
            | op::HELLO
            | op::CLIENT_DISCONNECT => {
                // Server-to-client opcodes a client may not send.
                Err(Fail(close::UNKNOWN_OPCODE, "unknown opcode"))
            }
            _ => Err(Fail(close::UNKNOWN_OPCODE, "unknown opcode")),
        }
    }

    /// Become the room's connection for this user; an older one is closed with 4006.
    fn register(&self, grant: &VoiceGrant) {
        let mut rooms = self.gw.rooms.lock().expect("rooms lock");
        let old = rooms.rooms.entry(grant.channel_id).or_default().insert(
            grant.user_id,
            Member {
                session: self.session,
                guild_id: grant.guild_id,
                tx: self.tx.clone(),
                consumers: HashMap::new(),
            },
        );
        if let Some(old) = old {
            let _ = old.tx.send(Outgoing::Close(
                close::SESSION_NO_LONGER_VALID,
                "replaced by a new session",
            ));
        }
    }

    /// The connection ended: if it still owns its place in the room, leave.
    fn leave(&self) {
        let grant = match &self.phase {
            Phase::Hello => return,
            Phase::Identified(g) | Phase::Selected(g) => g,
        };
        let mut rooms = self.gw.rooms.lock().expect("rooms lock");
        let owned = rooms
            .rooms
            .get(&grant.channel_id)
            .and_then(|r| r.get(&grant.user_id))
            .is_some_and(|m| m.session == self.session);
        if owned {
            if let Some(r) = rooms.rooms.get_mut(&grant.channel_id) {
                r.remove(&grant.user_id);
            }
            self.gw.voice.leave(grant.channel_id, grant.user_id);
            rooms.send_others(
                grant.channel_id,
                grant.user_id,
                &client_disconnect(grant.user_id),
            );
            rooms.rooms.retain(|_, r| !r.is_empty());
        }
    }
}
