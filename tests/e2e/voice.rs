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

use crate::harness::{free_port, raw_gateway, Api, Gateway, Server, Shape};

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

/// The next voice frame, or the close code (None: closed without one).
async fn next_or_close(ws: &mut VoiceWs) -> Result<Value, Option<u16>> {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return Ok(serde_json::from_str::<Value>(&t).unwrap()),
            Ok(Some(Ok(Message::Close(f)))) => return Err(f.map(|f| u16::from(f.code))),
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(_)) | None) => return Err(None),
            Err(_) => panic!("no voice frame within 10 s"),
        }
    }
}

async fn next(ws: &mut VoiceWs) -> Value {
    next_or_close(ws)
        .await
        .unwrap_or_else(|code| panic!("expected a voice frame, got close {code:?}"))
}

/// Op 4 on the gateway; the VOICE_SERVER_UPDATE's endpoint and token.
async fn op4(gw: &mut Gateway, guild_id: &str, channel_id: &str) -> (String, String) {
    gw.send(json!({"op": 4, "d": {
        "guild_id": guild_id, "channel_id": channel_id, "self_mute": false, "self_deaf": false
    }}))
    .await;
    let server = gw.wait_for("VOICE_SERVER_UPDATE").await;
    assert_eq!(server["guild_id"], guild_id);
    (
        server["endpoint"].as_str().expect("endpoint").to_owned(),
        server["token"].as_str().expect("token").to_owned(),
    )
}

/// Opens the voice WebSocket at `endpoint` and IDENTIFYs with `token`: the socket after
/// READY, or the close code the server answered with.
async fn identify(
    gw: &Gateway,
    endpoint: &str,
    user_id: &str,
    guild_id: &str,
    token: &str,
) -> Result<VoiceWs, Option<u16>> {
    let session_id = gw.ready["session_id"].as_str().unwrap();
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
    let ready = next_or_close(&mut ws).await?;
    assert_eq!(ready["op"], 2, "{ready}");
    Ok(ws)
}

/// SELECT_PROTOCOL with a str0m peer's offer on an identified voice socket; then the
/// socket is read (and heartbeated) by a task.
async fn start_media(mut ws: VoiceWs, user_id: &str) -> (VoiceConn, ClientPeer) {
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
        // Heartbeats keep the connection alive however long the test takes.
        let mut beat = tokio::time::interval(Duration::from_secs(5));
        loop {
            let m = tokio::select! {
                m = ws.next() => m,
                _ = beat.tick() => {
                    let hb = json!({"op": 3, "d": {"t": 1}}).to_string();
                    if ws.send(Message::Text(hb.into())).await.is_err() {
                        return;
                    }
                    continue;
                }
            };
            match m {
                Some(Ok(Message::Text(t))) => {
                    let _ = tx.send(serde_json::from_str(&t).unwrap());
                }
                Some(Ok(Message::Close(Some(f)))) => {
                    let _ = ctx.send(u16::from(f.code));
                    return;
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return,
            }
        }
    });
    (VoiceConn { messages, closed }, peer)
}

/// Op 4 on the gateway, then the voice WebSocket flow with a str0m peer.
async fn join_voice(
    gw: &mut Gateway,
    user_id: &str,
    guild_id: &str,
    channel_id: &str,
) -> (VoiceConn, ClientPeer) {
    let (endpoint, token) = op4(gw, guild_id, channel_id).await;
    let ws = identify(gw, &endpoint, user_id, guild_id, &token)
        .await
        .unwrap_or_else(|code| panic!("voice IDENTIFY refused with {code:?}"));
    start_media(ws, user_id).await
}

/// Drives the peers until each has heard at least 20 frames from every other, and none
/// from itself.
async fn hear_each_other(peers: Vec<ClientPeer>) -> Swarm {
    let swarm = Swarm::start(peers);
    let ids: Vec<u64> = swarm.peers().iter().map(|p| p.user).collect();
    let end = Instant::now() + Duration::from_secs(15);
    loop {
        let ok = swarm.peers().iter().all(|p| {
            ids.iter()
                .filter(|u| **u != p.user)
                .all(|u| p.frames_from(*u) >= 20)
        });
        if ok {
            break;
        }
        let heard: Vec<_> = swarm.peers().iter().map(|p| (p.user, p.heard())).collect();
        assert!(
            Instant::now() < end,
            "the peers did not hear each other: {heard:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(swarm.peers().iter().all(|p| p.frames_from(p.user) == 0));
    swarm
}

/// The close code a voice connection was closed with.
async fn closed_with(conn: &mut VoiceConn) -> Option<u16> {
    tokio::time::timeout(Duration::from_secs(10), conn.closed.recv())
        .await
        .expect("the voice connection was closed within 10 s")
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
    alice.invite(&bob, &lounge_id).await;

    let mut alice_gw = connect(&server.ws, alice.token.as_deref().unwrap()).await;
    let mut bob_gw = connect(&server.ws, bob.token.as_deref().unwrap()).await;

    let (mut alice_voice, alice_peer) =
        join_voice(&mut alice_gw, &alice_id, &guild_id, &lounge_id).await;
    // The guild sees who is in which room.
    let state = bob_gw.wait_for("VOICE_STATE_UPDATE").await;
    assert_eq!(state["user_id"], alice_id.as_str());
    assert_eq!(state["channel_id"], lounge_id.as_str());
    assert_eq!(state["member"]["user"]["id"], alice_id.as_str());
    // A session that connects now sees Alice in the room in GUILD_CREATE's voice_states.
    let late = crate::harness::Gateway::connect(&server.ws, bob.token.as_deref().unwrap()).await;
    let states = late.guild_creates[0]["voice_states"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(states.len(), 1, "{states:?}");
    assert_eq!(states[0]["user_id"], alice_id.as_str());
    assert_eq!(states[0]["channel_id"], lounge_id.as_str());
    assert_eq!(states[0]["self_mute"], false);
    drop(late);
    let (_bob_voice, bob_peer) = join_voice(&mut bob_gw, &bob_id, &guild_id, &lounge_id).await;

    let _swarm = hear_each_other(vec![alice_peer, bob_peer]).await;

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
    assert_eq!(closed_with(&mut bob_voice).await, Some(4014));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_members_talk_in_a_voice_channel_embedded() {
    two_members_talk_in_a_voice_channel(Shape::Embedded).await;
}

/// A voice channel named `name` in the guild.
async fn voice_channel(owner: &Api, guild_id: &str, name: &str) -> String {
    let c = owner
        .ok(
            "POST",
            &format!("/guilds/{guild_id}/channels"),
            Some(json!({ "name": name, "type": 2 })),
        )
        .await;
    c["id"].as_str().unwrap().to_owned()
}

/// Every dispatch `gw` receives until the CHANNEL_CREATE of a text channel named
/// `marker`, which `owner` creates now: what the gateway sent for everything before it.
async fn dispatches_until(
    gw: &mut Gateway,
    owner: &Api,
    guild_id: &str,
    marker: &str,
) -> Vec<Value> {
    owner
        .ok(
            "POST",
            &format!("/guilds/{guild_id}/channels"),
            Some(json!({ "name": marker })),
        )
        .await;
    let mut seen = Vec::new();
    loop {
        let d = gw.next_dispatch().await;
        if d["t"] == "CHANNEL_CREATE" && d["d"]["name"] == marker {
            return seen;
        }
        seen.push(d);
    }
}

fn count(dispatches: &[Value], t: &str) -> usize {
    dispatches.iter().filter(|d| d["t"] == t).count()
}

/// After `user_id`'s VOICE_STATE_UPDATE in `channel_id` (skipping other dispatches, but
/// no VOICE_SERVER_UPDATE), the very next dispatch: the VOICE_SERVER_UPDATE's endpoint
/// and token.
async fn moved_server_update(
    gw: &mut Gateway,
    user_id: &str,
    channel_id: &str,
) -> (String, String) {
    loop {
        let d = gw.next_dispatch().await;
        assert_ne!(
            d["t"], "VOICE_SERVER_UPDATE",
            "before the move's voice state: {d}"
        );
        if d["t"] == "VOICE_STATE_UPDATE"
            && d["d"]["user_id"] == user_id
            && d["d"]["channel_id"] == channel_id
        {
            break;
        }
    }
    let update = gw.next_dispatch().await;
    assert_eq!(update["t"], "VOICE_SERVER_UPDATE", "{update}");
    (
        update["d"]["endpoint"]
            .as_str()
            .expect("endpoint")
            .to_owned(),
        update["d"]["token"].as_str().expect("token").to_owned(),
    )
}

/// A moderator moves a member to another voice channel: the member's old voice connection
/// is closed (4014) and their gateway session gets, after the VOICE_STATE_UPDATE, a
/// VOICE_SERVER_UPDATE whose token opens the new room. The member's own op 4 move gets
/// exactly one VOICE_SERVER_UPDATE, a disconnect none.
async fn a_moved_member_gets_a_voice_server_update(shape: Shape) {
    let server = Server::start(&shape);
    let anon = server.api(None);
    let (alice, alice_id) = anon.register("alice").await;
    let (bob, bob_id) = anon.register("bob").await;
    let g = alice.create_guild("Moves").await;
    let lounge = voice_channel(&alice, &g, "lounge").await;
    let den = voice_channel(&alice, &g, "den").await;
    alice.invite(&bob, &lounge).await;
    let mut alice_gw = connect(&server.ws, alice.token.as_deref().unwrap()).await;
    let mut bob_gw = connect(&server.ws, bob.token.as_deref().unwrap()).await;
    let (mut bob_lounge, _bob_peer) = join_voice(&mut bob_gw, &bob_id, &g, &lounge).await;

    alice
        .ok(
            "PATCH",
            &format!("/guilds/{g}/members/{bob_id}"),
            Some(json!({ "channel_id": den })),
        )
        .await;
    let (endpoint, token) = moved_server_update(&mut bob_gw, &bob_id, &den).await;
    let host = server.http.trim_start_matches("http://");
    assert_eq!(endpoint, format!("{host}/voice"));
    assert_eq!(closed_with(&mut bob_lounge).await, Some(4014));
    // The new token is for the den: Bob, reconnected with it, hears Alice there.
    let ws = identify(&bob_gw, &endpoint, &bob_id, &g, &token)
        .await
        .unwrap_or_else(|code| panic!("the moved member's token was refused: {code:?}"));
    let (_bob_den, bob_peer) = start_media(ws, &bob_id).await;
    let (_alice_den, alice_peer) = join_voice(&mut alice_gw, &alice_id, &g, &den).await;
    drop(hear_each_other(vec![alice_peer, bob_peer]).await);

    // Bob's own op 4 move is answered once, not again when its VOICE_STATE_UPDATE comes.
    bob_gw
        .send(json!({"op": 4, "d": {"guild_id": g, "channel_id": lounge, "self_mute": false, "self_deaf": false}}))
        .await;
    let seen = dispatches_until(&mut bob_gw, &alice, &g, "after-op4").await;
    assert_eq!(count(&seen, "VOICE_SERVER_UPDATE"), 1, "{seen:?}");
    assert!(
        seen.iter().any(|d| d["t"] == "VOICE_STATE_UPDATE"
            && d["d"]["user_id"] == bob_id.as_str()
            && d["d"]["channel_id"] == lounge.as_str()),
        "{seen:?}"
    );
    // A moderator's disconnect sends no VOICE_SERVER_UPDATE.
    alice
        .ok(
            "PATCH",
            &format!("/guilds/{g}/members/{bob_id}"),
            Some(json!({ "channel_id": null })),
        )
        .await;
    let seen = dispatches_until(&mut bob_gw, &alice, &g, "after-disconnect").await;
    assert_eq!(count(&seen, "VOICE_SERVER_UPDATE"), 0, "{seen:?}");
    assert!(
        seen.iter().any(|d| d["t"] == "VOICE_STATE_UPDATE"
            && d["d"]["user_id"] == bob_id.as_str()
            && d["d"]["channel_id"].is_null()),
        "{seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_member_gets_a_voice_server_update_embedded() {
    a_moved_member_gets_a_voice_server_update(Shape::Embedded).await;
}

/// The clustered shape: one API node (`--role api`) and two voice nodes (`--role voice`)
/// on one PostgreSQL database and NATS, with the same `--voice-endpoints` and
/// `--voice-secret`. Rooms land on the voice node rendezvous hashing picks; that node
/// accepts the token, the other refuses it (4011); two members in one room talk through
/// their node's SFU; a moderator's move to a room on the other node closes the old
/// connection (4014) and points the member at the other node. The API node serves no voice
/// WebSocket and the voice nodes no REST.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_are_placed_on_voice_nodes_in_a_cluster() {
    let shape = Shape::cluster().await;
    let endpoints: Vec<String> = (0..2)
        .map(|_| format!("127.0.0.1:{}", free_port()))
        .collect();
    let list = endpoints.join(",");
    let secret = "e2e-cluster-voice-secret";
    let api_node = Server::start_with(
        &shape,
        &[
            "--role",
            "api",
            "--voice-endpoints",
            &list,
            "--voice-secret",
            secret,
        ],
    );
    let voice_nodes: Vec<Server> = endpoints
        .iter()
        .map(|e| {
            Server::start_with(
                &shape,
                &[
                    "--role",
                    "voice",
                    "--bind",
                    e,
                    "--voice-endpoints",
                    &list,
                    "--voice-secret",
                    secret,
                ],
            )
        })
        .collect();
    for (node, e) in voice_nodes.iter().zip(&endpoints) {
        assert_eq!(node.http, format!("http://{e}"));
        // A voice node serves no REST.
        let r = node.api(None).call("GET", "/gateway", None).await;
        assert_eq!(r.status, 404, "{r:?}");
    }
    // The API node serves no voice WebSocket.
    let api_host = api_node.http.trim_start_matches("http://").to_owned();
    match tokio_tungstenite::connect_async(format!("ws://{api_host}/voice?v=8")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 404),
        other => panic!("the API node answered a voice WebSocket: {other:?}"),
    }

    let placement = voice::placement::Placement::new(endpoints.clone());
    let anon = api_node.api(None);
    let (alice, alice_id) = anon.register("alice").await;
    let (bob, bob_id) = anon.register("bob").await;
    let (carol, carol_id) = anon.register("carol").await;
    let g = alice.create_guild("Cluster Voice").await;
    // One room on each voice node.
    let mut rooms: Vec<Option<String>> = vec![None, None];
    for i in 0.. {
        assert!(i < 40, "40 rooms and still not one on each voice node");
        let id = voice_channel(&alice, &g, &format!("room-{i}")).await;
        let at = placement.endpoint_for(id.parse().unwrap());
        let node = endpoints.iter().position(|e| e == at).unwrap();
        rooms[node].get_or_insert(id);
        if rooms.iter().all(Option::is_some) {
            break;
        }
    }
    let rooms: Vec<String> = rooms.into_iter().map(Option::unwrap).collect();
    alice.invite(&bob, &rooms[0]).await;
    alice.invite(&carol, &rooms[0]).await;
    let ws = &api_node.ws;
    let mut alice_gw = connect(ws, alice.token.as_deref().unwrap()).await;
    let mut bob_gw = connect(ws, bob.token.as_deref().unwrap()).await;
    let mut carol_gw = connect(ws, carol.token.as_deref().unwrap()).await;

    // Each VOICE_SERVER_UPDATE points at the node holding the room; that node accepts the
    // token, the other refuses it with 4011.
    let mut conns = Vec::new();
    let mut peers = Vec::new();
    for (gw, user, room, node) in [
        (&mut alice_gw, &alice_id, &rooms[0], 0),
        (&mut bob_gw, &bob_id, &rooms[0], 0),
        (&mut carol_gw, &carol_id, &rooms[1], 1),
    ] {
        let (endpoint, token) = op4(gw, &g, room).await;
        assert_eq!(endpoint, format!("{}/voice", endpoints[node]));
        let other = format!("{}/voice", endpoints[1 - node]);
        match identify(gw, &other, user, &g, &token).await {
            Err(code) => assert_eq!(code, Some(4011), "the other voice node's refusal"),
            Ok(_) => panic!("{other} accepted a token for a room placed on {endpoint}"),
        }
        let ws = identify(gw, &endpoint, user, &g, &token)
            .await
            .unwrap_or_else(|code| panic!("{endpoint} refused its own room's token: {code:?}"));
        let (conn, peer) = start_media(ws, user).await;
        conns.push(conn);
        peers.push(peer);
    }
    let carol_peer = peers.pop().unwrap();
    // Alice and Bob talk through the first voice node's SFU.
    let swarm = hear_each_other(peers).await;
    assert!(
        swarm
            .peers()
            .iter()
            .all(|p| p.frames_from(carol_peer.user) == 0),
        "nobody hears Carol, who is in another room"
    );
    drop(swarm);

    // Alice moves Bob to the room on the other node: the first node closes his connection
    // (it follows the log through NATS) and his session is pointed at the second node.
    alice
        .ok(
            "PATCH",
            &format!("/guilds/{g}/members/{bob_id}"),
            Some(json!({ "channel_id": rooms[1] })),
        )
        .await;
    let (endpoint, token) = moved_server_update(&mut bob_gw, &bob_id, &rooms[1]).await;
    assert_eq!(endpoint, format!("{}/voice", endpoints[1]));
    assert_eq!(closed_with(&mut conns[1]).await, Some(4014));
    let ws = identify(&bob_gw, &endpoint, &bob_id, &g, &token)
        .await
        .unwrap_or_else(|code| panic!("the moved member's token was refused: {code:?}"));
    let (_bob_there, bob_peer) = start_media(ws, &bob_id).await;
    drop(hear_each_other(vec![carol_peer, bob_peer]).await);
}

/// The page script: gateway, op 4, voice WebSocket and an RTCPeerConnection with the fake
/// microphone; resolves when the SDP answer is applied.
const PAGE_JOIN: &str = r#"
(async (gatewayUrl, token, guildId, channelId) => {
  const frames = (ws) => { const q = []; const waiters = [];
    ws.onmessage = (m) => { const v = JSON.parse(m.data); const w = waiters.findIndex(([f]) => f(v));
      if (w >= 0) { const [[, r]] = waiters.splice(w, 1); r(v); } else q.push(v); };
    return (f) => new Promise((r) => { const i = q.findIndex(f); if (i >= 0) { r(q.splice(i, 1)[0]); } else waiters.push([f, r]); }); };
  const open = (url) => new Promise((r, e) => { const ws = new WebSocket(url); ws.onopen = () => r(ws); ws.onerror = e; });
  const gw = await open(gatewayUrl + '/?v=10&encoding=json'); const gwNext = frames(gw);
  await gwNext((v) => v.op === 10);
  gw.send(JSON.stringify({op: 2, d: {token, intents: 129, properties: {os: 'linux', browser: 'chromium', device: 'chromium'}}}));
  const ready = await gwNext((v) => v.t === 'READY');
  setInterval(() => gw.send(JSON.stringify({op: 1, d: null})), 10000);
  gw.send(JSON.stringify({op: 4, d: {guild_id: guildId, channel_id: channelId, self_mute: false, self_deaf: false}}));
  const server = (await gwNext((v) => v.t === 'VOICE_SERVER_UPDATE')).d;
  const vws = await open('ws://' + server.endpoint + '?v=8'); const vNext = frames(vws);
  await vNext((v) => v.op === 8);
  vws.send(JSON.stringify({op: 0, d: {server_id: guildId, user_id: ready.d.user.id, session_id: ready.d.session_id, token: server.token}}));
  await vNext((v) => v.op === 2);
  setInterval(() => vws.send(JSON.stringify({op: 3, d: {t: Date.now()}})), 5000);
  const pc = new RTCPeerConnection();
  const media = await navigator.mediaDevices.getUserMedia({audio: true});
  pc.addTrack(media.getAudioTracks()[0], media);
  pc.addTransceiver('audio', {direction: 'recvonly'});
  await pc.setLocalDescription(await pc.createOffer());
  vws.send(JSON.stringify({op: 1, d: {protocol: 'webrtc', data: pc.localDescription.sdp}}));
  const desc = await vNext((v) => v.op === 4);
  await pc.setRemoteDescription({type: 'answer', sdp: desc.d.sdp});
  window.__pc = pc; window.__gw = gw; window.__vws = vws;
  return 'joined';
})"#;

/// Inbound audio packets this page has received.
const PAGE_INBOUND: &str = r#"(async () => { let n = 0;
  (await window.__pc.getStats()).forEach((r) => { if (r.type === 'inbound-rtp' && r.kind === 'audio') n += r.packetsReceived; });
  return n; })()"#;

struct Cdp {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    next_id: u64,
}

impl Cdp {
    async fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        self.ws
            .send(Message::Text(msg.to_string().into()))
            .await
            .unwrap();
        loop {
            let m = tokio::time::timeout(Duration::from_secs(30), self.ws.next())
                .await
                .expect("CDP answer within 30 s")
                .expect("CDP open")
                .expect("CDP ok");
            if let Message::Text(t) = m {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["id"] == id {
                    assert!(v.get("error").is_none(), "{method} failed: {v}");
                    return v["result"].clone();
                }
            }
        }
    }

    async fn eval(&mut self, session: &str, expression: String) -> Value {
        let r = self
            .call(
                Some(session),
                "Runtime.evaluate",
                json!({"expression": expression, "awaitPromise": true, "returnByValue": true}),
            )
            .await;
        assert!(
            r.get("exceptionDetails").is_none(),
            "page script failed: {r}"
        );
        r["result"]["value"].clone()
    }
}

/// Two headless Chromium pages (fake microphone) join one voice channel through the
/// gateway and the voice WebSocket with RTCPeerConnection, and each page's getStats shows
/// inbound audio from the other growing. Fails if chromium is not installed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_chromium_pages_hear_each_other_through_the_sfu() {
    let chromium = ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find(|c| {
            std::process::Command::new(c)
                .arg("--version")
                .output()
                .is_ok()
        })
        .expect("chromium is not installed: apt-get install chromium (scripts/test.sh does)");
    let server = Server::start(&Shape::Embedded);
    let anon = server.api(None);
    let (alice, _) = anon.register("alice").await;
    let (bob, _) = anon.register("bob").await;
    let guild = alice
        .ok("POST", "/guilds", Some(json!({"name": "Browsers"})))
        .await;
    let guild_id = guild["id"].as_str().unwrap().to_owned();
    let room = alice
        .ok(
            "POST",
            &format!("/guilds/{guild_id}/channels"),
            Some(json!({"name": "talk", "type": 2})),
        )
        .await;
    let room_id = room["id"].as_str().unwrap().to_owned();
    alice.invite(&bob, &room_id).await;

    let profile = tempfile::tempdir().unwrap();
    let mut browser = std::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--no-first-run",
            "--use-fake-device-for-media-stream",
            "--use-fake-ui-for-media-stream",
            "--allow-loopback-in-peer-connection",
            "--remote-debugging-port=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("about:blank")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start chromium");
    let port_file = profile.path().join("DevToolsActivePort");
    let end = Instant::now() + Duration::from_secs(30);
    let devtools = loop {
        if let Ok(s) = std::fs::read_to_string(&port_file) {
            let mut lines = s.lines();
            if let (Some(port), Some(path)) = (lines.next(), lines.next()) {
                break format!("ws://127.0.0.1:{port}{path}");
            }
        }
        assert!(
            Instant::now() < end,
            "chromium did not open its DevTools port"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (ws, _) = tokio_tungstenite::connect_async(devtools)
        .await
        .expect("CDP");
    let mut cdp = Cdp { ws, next_id: 0 };

    let mut pages = Vec::new();
    for token in [alice.token.clone().unwrap(), bob.token.clone().unwrap()] {
        // An http://127.0.0.1 page is a secure context (getUserMedia works there).
        let target = cdp
            .call(
                None,
                "Target.createTarget",
                json!({"url": format!("{}/api/v10/gateway", server.http)}),
            )
            .await;
        let session = cdp
            .call(
                None,
                "Target.attachToTarget",
                json!({"targetId": target["targetId"], "flatten": true}),
            )
            .await["sessionId"]
            .as_str()
            .unwrap()
            .to_owned();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let joined = cdp
            .eval(
                &session,
                format!(
                    "{PAGE_JOIN}({:?}, {:?}, {:?}, {:?})",
                    server.ws, token, guild_id, room_id
                ),
            )
            .await;
        assert_eq!(joined, "joined");
        pages.push(session);
    }
    let mut first = Vec::new();
    let end = Instant::now() + Duration::from_secs(20);
    for page in &pages {
        loop {
            let n = cdp
                .eval(page, PAGE_INBOUND.to_owned())
                .await
                .as_u64()
                .unwrap_or(0);
            if n > 0 {
                first.push(n);
                break;
            }
            assert!(Instant::now() < end, "a page received no inbound audio");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (page, before) in pages.iter().zip(first) {
        let after = cdp
            .eval(page, PAGE_INBOUND.to_owned())
            .await
            .as_u64()
            .unwrap();
        assert!(
            after >= before + 50,
            "inbound audio grows: {before} -> {after}"
        );
    }
    let _ = browser.kill();
    let _ = browser.wait();
}
