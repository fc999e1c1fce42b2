use serde_json::{json, Value};

use crate::harness::{free_port, raw_gateway, Api, Gateway, Server, Shape};

/// Two users meet in a guild: an invite, two gateway sessions, and messages that reach
/// both sessions in channel order and appear in the channel's history.
async fn two_users_talk_in_a_guild(shape: Shape) {
    let server = Server::start(&shape);
    let anon = server.api(None);
    let (alice, alice_id) = anon.register("alice").await;
    let (bob, bob_id) = anon.register("bob").await;
    // Anyone's public user object (a library's fetch_user), without private fields.
    let user = bob.ok("GET", &format!("/users/{alice_id}"), None).await;
    assert_eq!(
        (&user["id"], &user["username"], &user["bot"]),
        (&json!(alice_id), &json!("alice"), &json!(false))
    );
    assert!(user.get("email").is_none(), "{user}");

    let guild = alice
        .ok("POST", "/guilds", Some(json!({ "name": "Chorus Club" })))
        .await;
    let guild_id = guild["id"].as_str().unwrap().to_owned();
    assert_eq!(guild["owner_id"], alice_id.as_str());
    let channel = alice
        .ok(
            "POST",
            &format!("/guilds/{guild_id}/channels"),
            Some(json!({ "name": "lobby", "type": 0 })),
        )
        .await;
    let channel_id = channel["id"].as_str().unwrap().to_owned();
    let invite = alice
        .ok(
            "POST",
            &format!("/channels/{channel_id}/invites"),
            Some(json!({ "max_age": 3600 })),
        )
        .await;
    let code = invite["code"].as_str().unwrap().to_owned();

    // Alice is connected before Bob joins; Bob connects while in no guild.
    let mut alice_gw = Gateway::connect(&server.ws, alice.token.as_deref().unwrap()).await;
    assert_eq!(alice_gw.guild_creates.len(), 1);
    assert_eq!(alice_gw.guild_creates[0]["id"], guild_id.as_str());
    let mut bob_gw = Gateway::connect(&server.ws, bob.token.as_deref().unwrap()).await;
    assert!(bob_gw.guild_creates.is_empty());

    let joined = bob.ok("POST", &format!("/invites/{code}"), None).await;
    assert_eq!(joined["guild"]["id"], guild_id.as_str());
    let created = bob_gw.wait_for("GUILD_CREATE").await;
    assert_eq!(created["id"], guild_id.as_str());
    assert!(created["channels"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["id"] == channel_id.as_str()));
    let added = alice_gw.wait_for("GUILD_MEMBER_ADD").await;
    assert_eq!(added["user"]["id"], bob_id.as_str());
    assert_eq!(added["guild_id"], guild_id.as_str());

    // A new channel reaches both members as CHANNEL_CREATE.
    let lounge = alice
        .ok(
            "POST",
            &format!("/guilds/{guild_id}/channels"),
            Some(json!({ "name": "lounge" })),
        )
        .await;
    for gw in [&mut alice_gw, &mut bob_gw] {
        let c = gw.wait_for("CHANNEL_CREATE").await;
        assert_eq!(c["id"], lounge["id"]);
        assert_eq!(c["name"], "lounge");
        assert!(c["permission_overwrites"].is_array());
    }

    // Both post concurrently.
    let mut posts = Vec::new();
    for i in 0..10 {
        for (who, api) in [("alice", alice.clone()), ("bob", bob.clone())] {
            let path = format!("/channels/{channel_id}/messages");
            posts.push(tokio::spawn(async move {
                api.ok(
                    "POST",
                    &path,
                    Some(json!({ "content": format!("{who} says {i}") })),
                )
                .await
            }));
        }
    }
    let mut sent = Vec::new();
    for p in posts {
        sent.push(p.await.unwrap());
    }
    for m in &sent {
        assert_eq!(m["channel_id"], channel_id.as_str());
        assert!(m["timestamp"].as_str().unwrap().ends_with("+00:00"));
    }

    let mut seen_by = Vec::new();
    for gw in [&mut alice_gw, &mut bob_gw] {
        let mut ids = Vec::new();
        while ids.len() < sent.len() {
            let m = gw.wait_for("MESSAGE_CREATE").await;
            assert_eq!(m["channel_id"], channel_id.as_str());
            ids.push(m["id"].as_str().unwrap().parse::<u64>().unwrap());
        }
        seen_by.push(ids);
    }
    assert_eq!(seen_by[0], seen_by[1], "both sessions see the same order");
    assert!(
        seen_by[0].windows(2).all(|w| w[0] < w[1]),
        "ids increase with the channel order"
    );

    let history = alice
        .ok(
            "GET",
            &format!("/channels/{channel_id}/messages?limit=100"),
            None,
        )
        .await;
    let mut history: Vec<u64> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().parse().unwrap())
        .collect();
    history.reverse(); // newest first on the wire
    assert_eq!(
        history, seen_by[0],
        "history has every message in the same order"
    );

    // Edits and deletes reach both sessions too.
    let first = seen_by[0][0].to_string();
    let author = sent.iter().find(|m| m["id"] == first.as_str()).unwrap()["author"]["id"].clone();
    let (editor, other) = if author == Value::String(alice_id.clone()) {
        (&alice, &bob)
    } else {
        (&bob, &alice)
    };
    editor
        .ok(
            "PATCH",
            &format!("/channels/{channel_id}/messages/{first}"),
            Some(json!({ "content": "edited" })),
        )
        .await;
    let r = other
        .call(
            "PATCH",
            &format!("/channels/{channel_id}/messages/{first}"),
            Some(json!({ "content": "hijack" })),
        )
        .await;
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(r.body["code"], 50005);
    for gw in [&mut alice_gw, &mut bob_gw] {
        let u = gw.wait_for("MESSAGE_UPDATE").await;
        assert_eq!(u["content"], "edited");
    }
    let r = editor
        .call(
            "DELETE",
            &format!("/channels/{channel_id}/messages/{first}"),
            None,
        )
        .await;
    assert_eq!(r.status, 204);
    for gw in [&mut alice_gw, &mut bob_gw] {
        let d = gw.wait_for("MESSAGE_DELETE").await;
        assert_eq!(d["id"], first.as_str());
    }
    let r = alice
        .call(
            "GET",
            &format!("/channels/{channel_id}/messages/{first}"),
            None,
        )
        .await;
    assert_eq!(r.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_users_talk_in_a_guild_embedded() {
    two_users_talk_in_a_guild(Shape::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_users_talk_in_a_guild_on_postgres_and_nats() {
    two_users_talk_in_a_guild(Shape::cluster().await).await;
}

/// Two processes share PostgreSQL and NATS: a message posted on one reaches a gateway
/// client connected to the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_posted_on_one_node_reaches_a_client_on_another() {
    let shape = Shape::cluster().await;
    let a = Server::start(&shape);
    let b = Server::start(&shape);
    let (alice, _) = a.api(None).register("alice").await;
    let guild = alice
        .ok("POST", "/guilds", Some(json!({ "name": "Cluster" })))
        .await;
    let guild_id = guild["id"].as_str().unwrap();
    let general = alice.first_channel(guild_id).await;

    // Alice's token works on node B (the log is shared); she listens there.
    let mut on_b = Gateway::connect(&b.ws, alice.token.as_deref().unwrap()).await;
    assert_eq!(on_b.guild_creates.len(), 1);
    let sent = alice
        .ok(
            "POST",
            &format!("/channels/{general}/messages"),
            Some(json!({ "content": "across nodes" })),
        )
        .await;
    let got = on_b.wait_for("MESSAGE_CREATE").await;
    assert_eq!(got["id"], sent["id"]);
    assert_eq!(got["content"], "across nodes");
    // And node B reads what node A wrote.
    let via_b = b
        .api(alice.token.as_deref())
        .ok("GET", &format!("/channels/{general}/messages"), None)
        .await;
    assert_eq!(via_b[0]["id"], sent["id"]);
}

/// Sends RESUME to the gateway at `url`; the first payload after HELLO, and the socket.
async fn resume_at(url: &str, token: &str, session_id: &str, seq: u64) -> (Gateway, Value) {
    let mut gw = raw_gateway(url).await;
    let hello = gw.next_frame().await.expect("HELLO");
    assert_eq!(hello["op"], 10, "{hello}");
    gw.send(json!({ "op": 6, "d": { "token": token, "session_id": session_id, "seq": seq } }))
        .await;
    let first = gw.next_frame().await.expect("an answer to RESUME");
    (gw, first)
}

/// Behind a load balancer, each node announces the balancer in `GET /gateway` and itself
/// (`--node-url`) as READY's `resume_gateway_url`, which is where bot libraries resume. A
/// dropped client resumes there, on the node that holds its session, and gets what it
/// missed; through the balancer it may land on a node that cannot resume it and is told
/// to identify again (op 9).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_resumes_on_the_node_ready_named() {
    let shape = Shape::cluster().await;
    let (port_a, port_b) = (free_port(), free_port());
    let (url_a, url_b) = (
        format!("ws://127.0.0.1:{port_a}"),
        format!("ws://127.0.0.1:{port_b}"),
    );
    // Node A stands in for the balancer's address.
    let bind_a = format!("127.0.0.1:{port_a}");
    let bind_b = format!("127.0.0.1:{port_b}");
    let a = Server::start_with(&shape, &["--bind", &bind_a, "--public-url", &url_a]);
    let b = Server::start_with(
        &shape,
        &[
            "--bind",
            &bind_b,
            "--public-url",
            &url_a,
            "--node-url",
            &url_b,
        ],
    );
    let (alice, _) = a.api(None).register("alice").await;
    let token = alice.token.clone().unwrap();
    let guild = alice
        .ok("POST", "/guilds", Some(json!({ "name": "Balanced" })))
        .await;
    let guild_id = guild["id"].as_str().unwrap();
    let general = alice.first_channel(guild_id).await;
    let say = |content: &'static str| {
        let alice = alice.clone();
        let path = format!("/channels/{general}/messages");
        async move {
            alice
                .ok("POST", &path, Some(json!({ "content": content })))
                .await
        }
    };

    for node in [&a, &b] {
        let gateway = node.api(None).ok("GET", "/gateway", None).await;
        assert_eq!(
            gateway["url"],
            url_a.as_str(),
            "GET /gateway names the balancer"
        );
    }
    let mut on_b = Gateway::connect(&b.ws, &token).await;
    assert_eq!(on_b.ready["resume_gateway_url"], url_b.as_str());
    let on_a = Gateway::connect(&a.ws, &token).await;
    assert_eq!(on_a.ready["resume_gateway_url"], url_a.as_str());
    say("before").await;
    on_b.wait_for("MESSAGE_CREATE").await;
    let seq = on_b.last_seq;
    let session_id = on_b.ready["session_id"].as_str().unwrap().to_owned();
    on_b.close_for_resume().await;
    say("missed").await;

    // Node A does not hold the session: identify again.
    let (_, answer) = resume_at(&url_a, &token, &session_id, seq).await;
    assert_eq!(
        (answer["op"].as_u64(), answer["d"].as_bool()),
        (Some(9), Some(false)),
        "{answer}"
    );

    // Node B, at resume_gateway_url, replays what was missed, then RESUMED. The session is
    // parked once the old connection's loop has ended: retry briefly.
    let mut resumed = None;
    for _ in 0..50 {
        let (gw, first) = resume_at(&url_b, &token, &session_id, seq).await;
        if first["op"] == 9 {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        }
        resumed = Some((gw, first));
        break;
    }
    let (mut gw, first) = resumed.expect("node B resumed the session");
    assert_eq!(first["op"], 0, "{first}");
    assert_eq!(first["s"].as_u64(), Some(seq + 1), "{first}");
    let mut seen = vec![first];
    while !seen.iter().any(|d| d["t"] == "MESSAGE_CREATE") {
        seen.push(gw.next_frame().await.expect("a dispatch"));
    }
    let replayed = seen.iter().find(|d| d["t"] == "MESSAGE_CREATE").unwrap();
    assert_eq!(replayed["d"]["content"], "missed", "{seen:?}");
}

/// Every REST response is `application/json` exactly, and READY has what libraries need.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_and_guild_create_carry_what_libraries_require() {
    let server = Server::start(&Shape::Embedded);
    let (alice, alice_id) = server.api(None).register("alice").await;
    let r = alice
        .call("POST", "/guilds", Some(json!({ "name": "Shapes" })))
        .await;
    assert_eq!(r.content_type.as_deref(), Some("application/json"));
    let gw = Gateway::connect(&server.ws, alice.token.as_deref().unwrap()).await;
    let ready = &gw.ready;
    assert_eq!(ready["v"], 10);
    assert_eq!(ready["user"]["id"], alice_id.as_str());
    assert_eq!(ready["guilds"][0]["unavailable"], true);
    assert!(
        ready["guilds"][0].get("name").is_none(),
        "READY carries guild stubs only"
    );
    assert!(ready["session_id"].is_string());
    assert!(ready["resume_gateway_url"]
        .as_str()
        .unwrap()
        .starts_with("ws://"));
    assert!(ready["application"]["id"].is_string());
    let g = &gw.guild_creates[0];
    for key in [
        "channels",
        "threads",
        "members",
        "roles",
        "voice_states",
        "presences",
        "stage_instances",
        "guild_scheduled_events",
        "emojis",
        "stickers",
        "features",
    ] {
        assert!(g[key].is_array(), "GUILD_CREATE.{key} is an array: {g}");
    }
    for key in [
        "afk_timeout",
        "default_message_notifications",
        "explicit_content_filter",
        "id",
        "mfa_level",
        "name",
        "nsfw_level",
        "owner_id",
        "preferred_locale",
        "premium_progress_bar_enabled",
        "system_channel_flags",
        "verification_level",
        "member_count",
        "large",
        "joined_at",
    ] {
        assert!(g.get(key).is_some(), "GUILD_CREATE.{key} is present: {g}");
    }
    assert_eq!(g["unavailable"], false);
    assert_eq!(
        g["roles"][0]["id"], g["id"],
        "@everyone's id is the guild id"
    );
}

/// A session is not sent what happened before it identified: its READY and GUILD_CREATEs
/// (and the channel history) already hold it. Messages are written in a steady burst; in
/// the middle of it the client reads the channel history and then identifies, while the
/// publisher (which tails the log behind the read models) is still announcing what the
/// history already shows. None of those may reach the session as MESSAGE_CREATE; what
/// is written after it identified must.
async fn nothing_from_before_identify_is_dispatched(shape: Shape) {
    let server = Server::start(&shape);
    let anon = server.api(None);
    let (owner, _) = anon.register("owner").await;
    let g = owner.create_guild("Backlog").await;
    let channel = owner
        .ok(
            "POST",
            &format!("/guilds/{g}/channels"),
            Some(json!({ "name": "busy" })),
        )
        .await;
    let c = channel["id"].as_str().unwrap().to_owned();
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let writer = {
        let (api, path) = (owner.clone(), format!("/channels/{c}/messages"));
        tokio::spawn(async move {
            let mut started = Some(started_tx);
            for batch in 0..20 {
                let posts: Vec<_> = (0..8)
                    .map(|i| {
                        let (api, path) = (api.clone(), path.clone());
                        tokio::spawn(async move {
                            api.ok(
                                "POST",
                                &path,
                                Some(json!({ "content": format!("old {batch}-{i}") })),
                            )
                            .await
                        })
                    })
                    .collect();
                for p in posts {
                    p.await.unwrap();
                }
                if batch == 4 {
                    let _ = started.take().map(|s| s.send(()));
                }
            }
        })
    };
    started_rx.await.unwrap();
    let history = owner
        .ok("GET", &format!("/channels/{c}/messages?limit=100"), None)
        .await;
    let before: std::collections::HashSet<String> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        before.len() >= 40,
        "{} messages before identify",
        before.len()
    );
    let mut gw = Gateway::connect(&server.ws, owner.token.as_deref().unwrap()).await;
    writer.await.unwrap();
    let marker = owner
        .ok(
            "POST",
            &format!("/channels/{c}/messages"),
            Some(json!({ "content": "new" })),
        )
        .await;
    let mut after = 0;
    loop {
        let m = gw.wait_for("MESSAGE_CREATE").await;
        let id = m["id"].as_str().unwrap().to_owned();
        assert!(
            !before.contains(&id),
            "message {id} ({}) was in the history read before identify, yet dispatched",
            m["content"]
        );
        if id == marker["id"].as_str().unwrap() {
            break;
        }
        after += 1;
    }
    // The writes after identify did arrive (the session follows the channel).
    assert!(
        after > 0,
        "no message written after identify was dispatched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_from_before_identify_is_dispatched_embedded() {
    nothing_from_before_identify_is_dispatched(Shape::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_from_before_identify_is_dispatched_on_postgres_and_nats() {
    nothing_from_before_identify_is_dispatched(Shape::cluster().await).await;
}

/// GUILD_MESSAGE_TYPING.
const TYPING_INTENT: u64 = 1 << 11;

/// `POST /channels/{id}/typing` sends TYPING_START to the sessions that asked for typing
/// and can view the channel, never to others, and refuses who could not send there.
async fn typing_reaches_who_can_see_the_channel(shape: Shape) {
    let server = Server::start(&shape);
    let anon = server.api(None);
    let (alice, alice_id) = anon.register("alice").await;
    let (bob, _) = anon.register("bob").await;
    let (carol, _) = anon.register("carol").await;
    let g = alice.create_guild("Typing").await;
    let general = alice.first_channel(&g).await;
    alice.invite(&bob, &general).await;
    let create = |name: &str, kind: u8| {
        let alice = alice.clone();
        let path = format!("/guilds/{g}/channels");
        let body = json!({ "name": name, "type": kind });
        async move {
            alice.ok("POST", &path, Some(body)).await["id"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let hidden = create("staff", 0).await;
    alice
        .ok(
            "PUT",
            &format!("/channels/{hidden}/permissions/{g}"),
            Some(json!({ "type": 0, "allow": "0", "deny": "1024" })),
        )
        .await;
    let category = create("topics", 4).await;

    let intents = 33283;
    let mut bob_gw = Gateway::connect_with_intents(
        &server.ws,
        bob.token.as_deref().unwrap(),
        intents | TYPING_INTENT,
    )
    .await;
    let mut alice_gw =
        Gateway::connect_with_intents(&server.ws, alice.token.as_deref().unwrap(), intents).await;

    // Alice types in the channel Bob cannot see, then in #general.
    for channel in [&hidden, &general] {
        let r = alice
            .call("POST", &format!("/channels/{channel}/typing"), None)
            .await;
        assert_eq!(r.status, 204, "{r:?}");
    }
    let typing = bob_gw.wait_for("TYPING_START").await;
    assert_eq!(
        typing["channel_id"],
        general.as_str(),
        "the hidden channel's came first: {typing}"
    );
    assert_eq!(typing["guild_id"], g.as_str());
    assert_eq!(typing["user_id"], alice_id.as_str());
    assert_eq!(typing["member"]["user"]["id"], alice_id.as_str());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let at = typing["timestamp"].as_u64().expect("timestamp in seconds");
    assert!(now.abs_diff(at) < 60, "{typing}");

    // Alice's own session did not ask for typing: nothing before the next event.
    alice
        .ok(
            "POST",
            &format!("/guilds/{g}/channels"),
            Some(json!({ "name": "marker" })),
        )
        .await;
    loop {
        let d = alice_gw.next_dispatch().await;
        assert_ne!(d["t"], "TYPING_START", "sent without the intent: {d}");
        if d["t"] == "CHANNEL_CREATE" && d["d"]["name"] == "marker" {
            break;
        }
    }

    // Who cannot send there is refused, in Discord's shapes.
    for (who, channel, status, code) in [
        (&carol, &general, 403, 50001),
        (&bob, &hidden, 403, 50001),
        (&alice, &category, 400, 50024),
    ] {
        let r = who
            .call("POST", &format!("/channels/{channel}/typing"), None)
            .await;
        assert_eq!(
            (r.status, r.body["code"].as_u64()),
            (status, Some(code)),
            "{r:?}"
        );
    }
    // Nothing was recorded: the channel has no messages.
    let history = alice
        .ok("GET", &format!("/channels/{general}/messages"), None)
        .await;
    assert_eq!(history, json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_reaches_who_can_see_the_channel_embedded() {
    typing_reaches_who_can_see_the_channel(Shape::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typing_reaches_who_can_see_the_channel_on_postgres_and_nats() {
    typing_reaches_who_can_see_the_channel(Shape::cluster().await).await;
}

/// Mentions in a message's content (`<@id>`, `<@!id>`, `<@&id>`) are listed in
/// `mentions` (the users, once each) and `mention_roles` (the guild's roles), in the POST's
/// answer, in MESSAGE_CREATE and in the history, as bot libraries read them.
async fn mentions_are_listed(shape: Shape) {
    let server = Server::start(&shape);
    let anon = server.api(None);
    let (alice, _) = anon.register("alice").await;
    let (bob, bob_id) = anon.register("bob").await;
    let g = alice.create_guild("Mentions").await;
    let c = alice.first_channel(&g).await;
    alice.invite(&bob, &c).await;
    let role = alice
        .ok(
            "POST",
            &format!("/guilds/{g}/roles"),
            Some(json!({ "name": "helpers" })),
        )
        .await;
    let role_id = role["id"].as_str().unwrap().to_owned();
    let mut bob_gw = Gateway::connect(&server.ws, bob.token.as_deref().unwrap()).await;
    let content = format!(
        "hey <@{bob_id}>, <@!{bob_id}> and <@&{role_id}>; not <@1234567890123> nor <@&{c}>"
    );
    let sent = alice
        .ok(
            "POST",
            &format!("/channels/{c}/messages"),
            Some(json!({ "content": content })),
        )
        .await;
    let created = bob_gw.wait_for("MESSAGE_CREATE").await;
    let history = alice
        .ok("GET", &format!("/channels/{c}/messages"), None)
        .await;
    for (what, m) in [
        ("POST", &sent),
        ("MESSAGE_CREATE", &created),
        ("history", &history[0]),
    ] {
        let mentions = m["mentions"].as_array().unwrap();
        assert_eq!(mentions.len(), 1, "{what}: {m}");
        assert_eq!(mentions[0]["id"], bob_id.as_str(), "{what}: {m}");
        assert_eq!(mentions[0]["username"], "bob", "{what}: {m}");
        assert_eq!(m["mention_roles"], json!([role_id]), "{what}: {m}");
        assert_eq!(m["mention_everyone"], false, "{what}: {m}");
    }
    // Without mentions both lists are empty.
    let plain = alice
        .ok(
            "POST",
            &format!("/channels/{c}/messages"),
            Some(json!({ "content": "<@bob>" })),
        )
        .await;
    assert_eq!(
        (&plain["mentions"], &plain["mention_roles"]),
        (&json!([]), &json!([]))
    );
    // A page's mentions are looked up together, and each message keeps its own.
    let page = alice
        .ok("GET", &format!("/channels/{c}/messages"), None)
        .await;
    assert_eq!(
        (&page[0]["mentions"], &page[0]["mention_roles"]),
        (&json!([]), &json!([]))
    );
    assert_eq!(page[1]["mentions"][0]["id"], bob_id.as_str());
    assert_eq!(page[1]["mention_roles"], json!([role_id]));

    // @everyone counts when its author may mention everyone: here, once the channel
    // denies MENTION_EVERYONE to @everyone, the owner still may and Bob no longer.
    let say = |who: &Api, text: &str| {
        let (who, path) = (who.clone(), format!("/channels/{c}/messages"));
        let body = json!({ "content": text });
        async move { who.ok("POST", &path, Some(body)).await }
    };
    assert_eq!(say(&bob, "@everyone look").await["mention_everyone"], true);
    alice
        .ok(
            "PUT",
            &format!("/channels/{c}/permissions/{g}"),
            Some(json!({ "type": 0, "allow": "0", "deny": (1u64 << 17).to_string() })),
        )
        .await;
    let denied = say(&bob, "@everyone look").await;
    assert_eq!(denied["mention_everyone"], false, "{denied}");
    assert_eq!(say(&alice, "@here look").await["mention_everyone"], true);
    let history = alice
        .ok("GET", &format!("/channels/{c}/messages?limit=3"), None)
        .await;
    let flags: Vec<&Value> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|m| &m["mention_everyone"])
        .collect();
    assert_eq!(
        flags,
        [&json!(true), &json!(false), &json!(true)],
        "{history}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mentions_are_listed_embedded() {
    mentions_are_listed(Shape::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mentions_are_listed_on_postgres_and_nats() {
    mentions_are_listed(Shape::cluster().await).await;
}
