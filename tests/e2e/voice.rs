//! Voice end to end through `chorus serve`: op 4 on the gateway, VOICE_STATE_UPDATE to the
//! guild, VOICE_SERVER_UPDATE to the joining session, the voice WebSocket at its endpoint,
//! and real WebRTC peers (str0m) hearing each other through the SFU; leaving closes the
//! voice connection (4014) and the others get CLIENT_DISCONNECT.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use voice::client::{ClientPeer, Swarm};

use crate::harness::{raw_gateway, Gateway, Server, Shape};

/// A gateway session with the GUILD_VOICE_STATES intent (1 << 7) besides GUILDS.
async fn connect(url: &str, token: &str) -> Gateway {
    let mut gw = raw_gateway(url).await;
    let hello = gw.next_frame().await.expect("HELLO");
    assert_eq!(hello["op"], 10);
    gw.send(json!({"op": 2, "d": {
        "token": token, "intents": 1 | (1 << 7),
        "properties": {"os": "linux", "browser": "e2e", "device": "e2e"}
    }}))
    .await;
    gw.ready = gw.wait_for("READY").await;
    gw
}

/// A joined voice connection: messages and the close code arrive on channels.
struct VoiceConn {
    messages: mpsc::UnboundedReceiver<Value>,
    closed: mpsc::UnboundedReceiver<u16>,
}

impl VoiceConn {
    async fn expect(&mut self, what: &str, f: impl Fn(&Value) -> bool) -> Value {
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            let m = tokio::time::timeout_at(end.into(), self.messages.recv())
                .await
                .unwrap_or_else(|_| panic!("no {what} within 10 s"))
                .expect("voice connection open");
            if f(&m) {
                return m;
            }
        }
    }
}

type VoiceWs =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn next(ws: &mut VoiceWs) -> Value {
    match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
        Ok(Some(Ok(Message::Text(t)))) => serde_json::from_str::<Value>(&t).unwrap(),
        other => panic!("expected a voice frame, got {other:?}"),
    }
}

/// Op 4 on the gateway, then the voice WebSocket flow with a str0m peer.
async fn join_voice(
    gw: &mut Gateway,
    user_id: &str,
    guild_id: &str,
    channel_id: &str,
) -> (VoiceConn, ClientPeer) {
    gw.send(json!({"op": 4, "d": {
        "guild_id": guild_id, "channel_id": channel_id, "self_mute": false, "self_deaf": false
    }}))
    .await;
    let server = gw.wait_for("VOICE_SERVER_UPDATE").await;
    assert_eq!(server["guild_id"], guild_id);
    let endpoint = server["endpoint"].as_str().expect("endpoint").to_owned();
    let token = server["token"].as_str().expect("token").to_owned();
    let session_id = gw.ready["session_id"].as_str().unwrap().to_owned();

    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{endpoint}?v=8"))
        .await
        .expect("voice websocket");
    let hello = next(&mut ws).await;
    assert_eq!(hello["op"], 8);
    ws.send(Message::Text(
        json!({"op": 0, "d": {"server_id": guild_id, "user_id": user_id, "session_id": session_id, "token": token}})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    let ready = next(&mut ws).await;
    assert_eq!(ready["op"], 2, "{ready}");
    let (mut peer, offer) =
        ClientPeer::new(user_id.parse().unwrap(), IpAddr::V4(Ipv4Addr::LOCALHOST), 3).unwrap();
    ws.send(Message::Text(
        json!({"op": 1, "d": {"protocol": "webrtc", "data": offer, "sdp": offer}})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    let answer = loop {
        let m = next(&mut ws).await;
        if m["op"] == 4 {
            break m;
        }
    };
    peer.accept_answer(answer["d"]["sdp"].as_str().unwrap())
        .expect("valid SDP answer");
    let (tx, messages) = mpsc::unbounded_channel();
    let (ctx, closed) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(m) = ws.next().await {
            match m {
                Ok(Message::Text(t)) => {
                    let _ = tx.send(serde_json::from_str(&t).unwrap());
                }
                Ok(Message::Close(Some(f))) => {
                    let _ = ctx.send(u16::from(f.code));
                    return;
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    });
    (VoiceConn { messages, closed }, peer)
}

async fn two_members_talk_in_a_voice_channel(shape: Shape) {
    let server = Server::start(&shape);
    let anon = server.api(None);
    let (alice, alice_id) = anon.register("alice").await;
    let (bob, bob_id) = anon.register("bob").await;
    let guild = alice
        .ok("POST", "/guilds", Some(json!({ "name": "Voice Club" })))
        .await;
    let guild_id = guild["id"].as_str().unwrap().to_owned();
    let lounge = alice
        .ok(
            "POST",
            &format!("/guilds/{guild_id}/channels"),
            Some(json!({ "name": "lounge", "type": 2 })),
        )
        .await;
    assert_eq!(lounge["type"], 2);
    assert_eq!(lounge["user_limit"], 20, "{lounge}");
    assert_eq!(lounge["bitrate"], 64_000);
    let lounge_id = lounge["id"].as_str().unwrap().to_owned();
    let invite = alice
        .ok(
            "POST",
            &format!("/channels/{lounge_id}/invites"),
            Some(json!({ "max_age": 3600 })),
        )
        .await;
    bob.ok(
        "POST",
        &format!("/invites/{}", invite["code"].as_str().unwrap()),
        None,
    )
    .await;

    let mut alice_gw = connect(&server.ws, alice.token.as_deref().unwrap()).await;
    let mut bob_gw = connect(&server.ws, bob.token.as_deref().unwrap()).await;

    let (mut alice_voice, alice_peer) =
        join_voice(&mut alice_gw, &alice_id, &guild_id, &lounge_id).await;
    // The guild sees who is in which room.
    let state = bob_gw.wait_for("VOICE_STATE_UPDATE").await;
    assert_eq!(state["user_id"], alice_id.as_str());
    assert_eq!(state["channel_id"], lounge_id.as_str());
    assert_eq!(state["member"]["user"]["id"], alice_id.as_str());
    let (_bob_voice, bob_peer) = join_voice(&mut bob_gw, &bob_id, &guild_id, &lounge_id).await;

    let swarm = Swarm::start(vec![alice_peer, bob_peer]);
    let (a, b): (u64, u64) = (alice_id.parse().unwrap(), bob_id.parse().unwrap());
    let end = Instant::now() + Duration::from_secs(15);
    loop {
        let ok = {
            let peers = swarm.peers();
            peers[0].frames_from(b) >= 20 && peers[1].frames_from(a) >= 20
        };
        if ok {
            break;
        }
        assert!(
            Instant::now() < end,
            "alice and bob did not hear each other"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(swarm.peers().iter().all(|p| p.frames_from(p.user) == 0));

    // Bob leaves with op 4 channel_id null: his voice connection is closed (4014), Alice
    // is told, and the guild sees the voice state go.
    bob_gw
        .send(json!({"op": 4, "d": {"guild_id": guild_id, "channel_id": null, "self_mute": false, "self_deaf": false}}))
        .await;
    let gone = alice_gw.wait_for("VOICE_STATE_UPDATE").await;
    let gone = if gone["user_id"] == bob_id.as_str() && gone["channel_id"].is_null() {
        gone
    } else {
        loop {
            let g = alice_gw.wait_for("VOICE_STATE_UPDATE").await;
            if g["user_id"] == bob_id.as_str() && g["channel_id"].is_null() {
                break g;
            }
        }
    };
    assert!(gone["channel_id"].is_null());
    alice_voice
        .expect("CLIENT_DISCONNECT for bob", |m| {
            m["op"] == 13 && m["d"]["user_id"] == bob_id.as_str()
        })
        .await;
    let mut bob_voice = _bob_voice;
    let code = tokio::time::timeout(Duration::from_secs(10), bob_voice.closed.recv())
        .await
        .expect("bob's voice connection closed");
    assert_eq!(code, Some(4014));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_members_talk_in_a_voice_channel_embedded() {
    two_members_talk_in_a_voice_channel(Shape::Embedded).await;
}
