//! The voice WebSocket end to end: real WebSocket clients go through HELLO, IDENTIFY,
//! READY, SELECT_PROTOCOL and SESSION_DESCRIPTION, then real WebRTC peers (str0m) hear each
//! other through the SFU. Bad input closes only the offending connection with Discord's
//! voice close code; the room carries on.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use voice::client::{ClientPeer, Swarm};
use voice::server::{VoiceConfig, VoiceHandle};
use voice::signalling::VoiceGateway;
use voice::token::{VoiceGrant, VoiceTokens};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const GUILD: u64 = 10;
const ROOM: u64 = 20;
const HEARTBEAT: Duration = Duration::from_millis(400);

struct App {
    addr: SocketAddr,
    tokens: VoiceTokens,
    voice: VoiceHandle,
    gateway: VoiceGateway<VoiceTokens>,
}

async fn spawn_app() -> App {
    let voice = VoiceHandle::start(VoiceConfig::new((LOCALHOST, 0).into()))
        .await
        .expect("voice UDP");
    let tokens = VoiceTokens::new("test secret");
    let gateway =
        VoiceGateway::new(voice.clone(), tokens.clone()).with_heartbeat_interval(HEARTBEAT);
    let listener = tokio::net::TcpListener::bind((LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let routes = gateway.clone().routes();
    tokio::spawn(async move { axum::serve(listener, routes).await });
    App {
        addr,
        tokens,
        voice,
        gateway,
    }
}

impl App {
    fn token(&self, user: u64, session: &str) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        self.tokens.issue(&VoiceGrant {
            guild_id: GUILD,
            channel_id: ROOM,
            user_id: user,
            session_id: session.into(),
            expires_at: now + 60,
            mute: false,
            deaf: false,
        })
    }

    fn identify(&self, user: u64) -> Value {
        json!({"op": 0, "d": {
            "server_id": GUILD.to_string(), "user_id": user.to_string(),
            "session_id": format!("s{user}"), "token": self.token(user, &format!("s{user}")),
        }})
    }

    async fn connect(&self) -> Ws {
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/voice?v=8", self.addr))
            .await
            .expect("voice websocket");
        let hello = recv(&mut ws).await;
        assert_eq!(hello["op"], 8);
        assert_eq!(
            hello["d"]["heartbeat_interval"],
            HEARTBEAT.as_millis() as u64
        );
        ws
    }
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

async fn recv(ws: &mut Ws) -> Value {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a message within 5 s")
            .expect("open")
            .expect("ok");
        match m {
            Message::Text(t) => return serde_json::from_str(&t).unwrap(),
            Message::Close(c) => panic!("closed: {c:?}"),
            _ => continue,
        }
    }
}

async fn recv_op(ws: &mut Ws, op: u64) -> Value {
    loop {
        let v = recv(ws).await;
        if v["op"] == op {
            return v;
        }
    }
}

/// Read until the server closes; the close code.
async fn close_code(ws: &mut Ws) -> u16 {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("closed within 5 s");
        match m {
            Some(Ok(Message::Close(Some(frame)))) => return u16::from(frame.code),
            Some(Ok(Message::Close(None))) | None => return u16::from(CloseCode::Status),
            Some(Ok(_)) => continue,
            Some(Err(e)) => panic!("error instead of a close frame: {e}"),
        }
    }
}

/// A joined member: its WebSocket runs on a task that heartbeats and collects messages.
struct Member {
    messages: mpsc::UnboundedReceiver<Value>,
    close: mpsc::UnboundedReceiver<u16>,
    hangup: Option<tokio::sync::oneshot::Sender<()>>,
}

/// IDENTIFY, SELECT_PROTOCOL with a str0m peer's offer, SESSION_DESCRIPTION; the peer.
async fn join(app: &App, user: u64) -> (Member, ClientPeer) {
    let mut ws = app.connect().await;
    send(&mut ws, app.identify(user)).await;
    let ready = recv_op(&mut ws, 2).await;
    assert_eq!(ready["d"]["port"], app.voice.announced().port());
    assert_eq!(ready["d"]["ip"], "127.0.0.1");
    let (mut peer, offer) = ClientPeer::new(user, LOCALHOST, 3).unwrap();
    send(
        &mut ws,
        json!({"op": 1, "d": {"protocol": "webrtc", "data": offer, "sdp": offer}}),
    )
    .await;
    let desc = recv_op(&mut ws, 4).await;
    assert_eq!(desc["d"]["audio_codec"], "opus");
    peer.accept_answer(desc["d"]["sdp"].as_str().unwrap())
        .expect("a valid answer");

    let (tx, messages) = mpsc::unbounded_channel();
    let (ctx, close) = mpsc::unbounded_channel();
    let (hangup, mut hung) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let mut beat = tokio::time::interval(HEARTBEAT / 3);
        let mut nonce = 0u64;
        loop {
            tokio::select! {
                _ = beat.tick() => {
                    nonce += 1;
                    if ws.send(Message::Text(json!({"op": 3, "d": {"t": nonce}}).to_string().into())).await.is_err() {
                        return;
                    }
                }
                _ = &mut hung => {
                    let _ = ws.close(None).await;
                    return;
                }
                m = ws.next() => match m {
                    Some(Ok(Message::Text(t))) => { let _ = tx.send(serde_json::from_str(&t).unwrap()); }
                    Some(Ok(Message::Close(Some(f)))) => { let _ = ctx.send(u16::from(f.code)); return; }
                    Some(Ok(_)) => {}
                    _ => return,
                }
            }
        }
    });
    (
        Member {
            messages,
            close,
            hangup: Some(hangup),
        },
        peer,
    )
}

impl Member {
    /// Wait for a message matching `f`.
    async fn expect(&mut self, what: &str, f: impl Fn(&Value) -> bool) -> Value {
        let end = Instant::now() + Duration::from_secs(5);
        loop {
            let m = tokio::time::timeout_at(end.into(), self.messages.recv())
                .await
                .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
                .expect("connection open");
            if f(&m) {
                return m;
            }
        }
    }
}

async fn hear_each_other(swarm: &Swarm, users: &[u64], min: u64) {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let ok = swarm.peers().iter().all(|p| {
            users
                .iter()
                .filter(|u| **u != p.user)
                .all(|u| p.frames_from(*u) >= min)
        });
        if ok {
            return;
        }
        assert!(Instant::now() < end, "peers did not hear each other");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_join_through_the_voice_websocket_hear_each_other_and_see_speaking_and_disconnects(
) {
    let app = spawn_app().await;
    let (mut a, pa) = join(&app, 1).await;
    let (mut b, pb) = join(&app, 2).await;
    let swarm = Swarm::start(vec![pa, pb]);
    hear_each_other(&swarm, &[1, 2], 10).await;
    assert!(swarm.peers().iter().all(|p| p.frames_from(p.user) == 0));

    // The SSRC map and the speaking indicator (the peers send at -20 dBov).
    let ssrc = a
        .expect("SPEAKING for 2 with its ssrc", |m| {
            m["op"] == 5 && m["d"]["user_id"] == "2"
        })
        .await;
    assert!(ssrc["d"]["ssrc"].as_u64().unwrap() > 0);
    a.expect("2 speaking", |m| {
        m["op"] == 5 && m["d"]["user_id"] == "2" && m["d"]["speaking"] == 1
    })
    .await;
    b.expect("1 speaking", |m| {
        m["op"] == 5 && m["d"]["user_id"] == "1" && m["d"]["speaking"] == 1
    })
    .await;
    a.expect("heartbeat ack", |m| m["op"] == 6 && m["d"]["t"].is_u64())
        .await;

    // 2 hangs up: 1 is told, and the room has only 1.
    b.hangup.take().unwrap().send(()).unwrap();
    a.expect("CLIENT_DISCONNECT for 2", |m| {
        m["op"] == 13 && m["d"]["user_id"] == "2"
    })
    .await;
    let end = Instant::now() + Duration::from_secs(3);
    while app.voice.inspect(ROOM).await.unwrap().len() != 1 {
        assert!(Instant::now() < end, "2's transport was not removed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moderator_disconnect_closes_with_4014_and_a_second_session_replaces_the_first_with_4006()
{
    let app = spawn_app().await;
    let (mut a, pa) = join(&app, 1).await;
    let (mut b, pb) = join(&app, 2).await;
    let swarm = Swarm::start(vec![pa, pb]);
    hear_each_other(&swarm, &[1, 2], 5).await;

    app.gateway.disconnect(ROOM, 2);
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(5), b.close.recv())
            .await
            .unwrap(),
        Some(4014)
    );
    a.expect("CLIENT_DISCONNECT for 2", |m| {
        m["op"] == 13 && m["d"]["user_id"] == "2"
    })
    .await;

    // 1 identifies again on a new connection: the old one is closed with 4006.
    let mut again = app.connect().await;
    send(&mut again, app.identify(1)).await;
    recv_op(&mut again, 2).await;
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(5), a.close.recv())
            .await
            .unwrap(),
        Some(4006)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_the_documented_close_code_and_the_room_stays_healthy() {
    let app = spawn_app().await;
    let (_a, pa) = join(&app, 1).await;
    let (_b, pb) = join(&app, 2).await;
    let swarm = Swarm::start(vec![pa, pb]);
    hear_each_other(&swarm, &[1, 2], 5).await;

    let identify = |user: u64| app.identify(user);
    let valid_offer = ClientPeer::new(99, LOCALHOST, 1).unwrap().1;
    let mut wrong_user = identify(50);
    wrong_user["d"]["user_id"] = json!("51");
    let mut wrong_session = identify(52);
    wrong_session["d"]["session_id"] = json!("someone else's");
    let mut bad_token = identify(53);
    bad_token["d"]["token"] = json!("not.a-token");

    // (what, messages to send, expected close code)
    let cases: Vec<(&str, Vec<Value>, u16)> = vec![
        ("invalid token", vec![bad_token], 4004),
        ("token of another user", vec![wrong_user], 4004),
        ("token of another session", vec![wrong_session], 4004),
        ("not JSON", vec![json!("raw:not json")], 4002),
        (
            "IDENTIFY without fields",
            vec![json!({"op": 0, "d": {"token": "x"}})],
            4002,
        ),
        ("no op", vec![json!({"d": {}})], 4002),
        (
            "SELECT_PROTOCOL before IDENTIFY",
            vec![json!({"op": 1, "d": {"protocol": "webrtc", "data": valid_offer}})],
            4003,
        ),
        (
            "SPEAKING before IDENTIFY",
            vec![json!({"op": 5, "d": {"speaking": 1}})],
            4003,
        ),
        ("IDENTIFY twice", vec![identify(60), identify(60)], 4005),
        ("unknown opcode", vec![json!({"op": 99, "d": {}})], 4001),
        ("a server opcode", vec![json!({"op": 2, "d": {}})], 4001),
        (
            "protocol udp",
            vec![
                identify(61),
                json!({"op": 1, "d": {"protocol": "udp", "data": {"address": "1.2.3.4", "port": 5, "mode": "aead_aes256_gcm_rtpsize"}}}),
            ],
            4012,
        ),
        (
            "malformed SDP",
            vec![
                identify(62),
                json!({"op": 1, "d": {"protocol": "webrtc", "data": "v=0\r\nnonsense"}}),
            ],
            4002,
        ),
        (
            "SDP without audio",
            vec![
                identify(63),
                json!({"op": 1, "d": {"protocol": "webrtc", "data": "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"}}),
            ],
            4002,
        ),
        (
            "missing SDP",
            vec![identify(64), json!({"op": 1, "d": {"protocol": "webrtc"}})],
            4002,
        ),
        (
            "unknown encryption mode",
            vec![
                identify(65),
                json!({"op": 1, "d": {"protocol": "webrtc", "data": {"mode": "xsalsa20_poly1305", "sdp": valid_offer}}}),
            ],
            4016,
        ),
    ];
    for (what, msgs, code) in cases {
        let mut ws = app.connect().await;
        for m in msgs {
            let text = match m {
                Value::String(s) if s.starts_with("raw:") => s[4..].to_string(),
                m => m.to_string(),
            };
            if ws.send(Message::Text(text.into())).await.is_err() {
                break;
            }
        }
        assert_eq!(close_code(&mut ws).await, code, "{what}");
    }

    // Silence: no heartbeat closes with 4009 after 1.5 intervals.
    let mut ws = app.connect().await;
    let started = Instant::now();
    assert_eq!(close_code(&mut ws).await, 4009, "no heartbeat");
    assert!(started.elapsed() >= HEARTBEAT);

    // The room is intact: both still in it, both still hearing each other.
    let room = app.voice.inspect(ROOM).await.unwrap();
    assert_eq!(room.iter().map(|p| p.user).collect::<Vec<_>>(), vec![1, 2]);
    let before: Vec<u64> = swarm
        .peers()
        .iter()
        .map(|p| p.received.values().map(|r| r.frames).sum())
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after: Vec<u64> = swarm
        .peers()
        .iter()
        .map(|p| p.received.values().map(|r| r.frames).sum())
        .collect();
    assert!(
        after.iter().zip(&before).all(|(a, b)| a >= &(b + 5)),
        "{before:?} -> {after:?}"
    );
}
