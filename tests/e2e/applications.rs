use serde_json::{json, Value};

use crate::harness::{Gateway, Server, Shape};

/// An owner makes an application and a bot, adds the bot to a guild, and the bot logs in
/// as libraries do (`GET /users/@me`, `GET /oauth2/applications/@me`, the gateway with
/// `Bot <token>`), receives a message and answers; a token reset locks the old token out
/// at once.
async fn a_bot_joins_a_guild_and_talks(shape: Shape) {
    let server = Server::start(&shape);
    let anon = server.api(None);
    let (owner, owner_id) = anon.register("owner").await;
    let (member, _) = anon.register("member").await;
    let (stranger, _) = anon.register("stranger").await;
    let guild = owner
        .ok("POST", "/guilds", Some(json!({ "name": "Bots" })))
        .await;
    let guild_id = guild["id"].as_str().unwrap().to_owned();
    let channel_id = owner.first_channel(&guild_id).await;
    owner.invite(&member, &channel_id).await;

    // The application and its bot.
    let r = owner
        .call("POST", "/applications", Some(json!({ "name": "Helper" })))
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    let app_id = r.body["id"].as_str().unwrap().to_owned();
    assert_eq!(r.body["owner"]["id"], owner_id.as_str());
    assert_eq!(r.body["verify_key"].as_str().unwrap().len(), 64);
    let r = stranger
        .call("GET", &format!("/applications/{app_id}"), None)
        .await;
    assert_eq!(
        (r.status, r.body["code"].clone()),
        (404, json!(10002)),
        "{r:?}"
    );
    let r = stranger
        .call("POST", &format!("/applications/{app_id}/bot"), None)
        .await;
    assert_eq!(
        (r.status, r.body["code"].clone()),
        (404, json!(10002)),
        "{r:?}"
    );
    let bot = owner
        .ok("POST", &format!("/applications/{app_id}/bot"), None)
        .await;
    let token = bot["token"].as_str().unwrap().to_owned();
    assert_eq!(
        bot["user"]["id"],
        app_id.as_str(),
        "a bot's id is its application's"
    );
    let r = owner
        .call("POST", &format!("/applications/{app_id}/bot"), None)
        .await;
    assert_eq!(
        (r.status, r.body["code"].clone()),
        (400, json!(50035)),
        "{r:?}"
    );

    // The bot's login sequence, with and without "Bot ".
    let bot_api = anon.with_token(&format!("Bot {token}"));
    let me = bot_api.ok("GET", "/users/@me", None).await;
    assert_eq!(me["bot"], true);
    assert_eq!(
        anon.with_token(&token).ok("GET", "/users/@me", None).await["id"],
        me["id"]
    );
    let app = bot_api.ok("GET", "/oauth2/applications/@me", None).await;
    for key in [
        "id",
        "name",
        "description",
        "icon",
        "bot_public",
        "bot_require_code_grant",
        "owner",
        "verify_key",
        "flags",
    ] {
        assert!(app.get(key).is_some(), "application lacks {key}: {app}");
    }
    assert_eq!(app["id"], app_id.as_str());
    assert_eq!(app["name"], "Helper");
    assert_eq!(app["owner"]["id"], owner_id.as_str());
    let r = owner.call("GET", "/oauth2/applications/@me", None).await;
    assert_eq!(
        r.status, 404,
        "a human has no application of its own: {r:?}"
    );
    let gw = bot_api.ok("GET", "/gateway/bot", None).await;
    assert_eq!(gw["shards"], 1);
    assert!(gw["session_start_limit"]["max_concurrency"]
        .as_u64()
        .is_some());

    // Adding it to the guild: bad input, then the owner.
    let authorize =
        |perms: &str| format!("/oauth2/authorize?client_id={app_id}&scope=bot&permissions={perms}");
    let body = json!({ "guild_id": guild_id, "permissions": "3072", "authorize": true });
    let r = member
        .call("POST", &authorize("3072"), Some(body.clone()))
        .await;
    assert_eq!(
        (r.status, r.body["code"].clone()),
        (403, json!(50013)),
        "{r:?}"
    );
    let r = stranger
        .call("POST", &authorize("3072"), Some(body.clone()))
        .await;
    assert_eq!(
        (r.status, r.body["code"].clone()),
        (403, json!(50001)),
        "{r:?}"
    );
    let r = owner
        .call(
            "POST",
            "/oauth2/authorize?client_id=1&scope=bot",
            Some(body.clone()),
        )
        .await;
    assert_eq!(
        (r.status, r.body["code"].clone()),
        (404, json!(10002)),
        "{r:?}"
    );
    let r = owner
        .call(
            "POST",
            &format!("/oauth2/authorize?client_id={app_id}&scope=identify"),
            Some(body.clone()),
        )
        .await;
    assert_eq!(r.status, 400, "{r:?}");
    let r = owner
        .call(
            "POST",
            &authorize("x"),
            Some(json!({ "guild_id": guild_id, "permissions": "lots", "authorize": true })),
        )
        .await;
    assert_eq!(
        (r.status, r.body["code"].clone()),
        (400, json!(50035)),
        "{r:?}"
    );
    let r = owner
        .call(
            "POST",
            &authorize("3072"),
            Some(json!({ "guild_id": "7", "permissions": "3072", "authorize": true })),
        )
        .await;
    assert_eq!(
        (r.status, r.body["code"].clone()),
        (404, json!(10004)),
        "{r:?}"
    );

    let mut owner_gw = Gateway::connect(&server.ws, owner.token.as_deref().unwrap()).await;
    owner
        .ok("POST", &authorize("3072"), Some(body.clone()))
        .await;
    // (GUILD_MEMBER_ADD needs the privileged GUILD_MEMBERS intent, which the harness's
    // sessions do not ask for.)

    // The bot connects with "Bot <token>" and sees the guild with its managed role.
    let mut bot_gw = Gateway::connect(&server.ws, &format!("Bot {token}")).await;
    assert_eq!(bot_gw.ready["user"]["bot"], true);
    assert_eq!(bot_gw.ready["application"]["id"], app_id.as_str());
    assert_eq!(bot_gw.guild_creates.len(), 1);
    let g = &bot_gw.guild_creates[0];
    assert_eq!(g["id"], guild_id.as_str());
    let roles = g["roles"].as_array().unwrap();
    let managed: Vec<&Value> = roles.iter().filter(|r| r["managed"] == true).collect();
    assert_eq!(managed.len(), 1, "one managed role: {roles:?}");
    assert_eq!(managed[0]["name"], "Helper");
    assert_eq!(managed[0]["permissions"], "3072");
    // Tagged with its bot, as discord.py's `Role.is_bot_managed()` and discord.js's
    // `role.tags.botId` read it; other roles carry no tags at all.
    assert_eq!(managed[0]["tags"]["bot_id"], app_id.as_str(), "{roles:?}");
    for other in roles.iter().filter(|r| r["managed"] == false) {
        assert!(other.get("tags").is_none(), "untagged role: {other}");
    }
    let bot_role_id = managed[0]["id"].as_str().unwrap().to_owned();

    // It receives a message and answers with its token.
    owner
        .ok(
            "POST",
            &format!("/channels/{channel_id}/messages"),
            Some(json!({ "content": "hello bot" })),
        )
        .await;
    let m = bot_gw.wait_for("MESSAGE_CREATE").await;
    assert_eq!(m["content"], "hello bot");
    let reply = bot_api
        .ok(
            "POST",
            &format!("/channels/{channel_id}/messages"),
            Some(json!({ "content": "beep" })),
        )
        .await;
    assert_eq!(reply["author"]["bot"], true);
    let mine = owner_gw.wait_for("MESSAGE_CREATE").await;
    assert_eq!(mine["content"], "hello bot");
    let m = owner_gw.wait_for("MESSAGE_CREATE").await;
    assert_eq!(m["content"], "beep");
    assert_eq!(m["author"]["id"], app_id.as_str());

    // A reset locks the old token out on the very next request.
    let r = stranger
        .call("POST", &format!("/applications/{app_id}/bot/reset"), None)
        .await;
    assert_eq!(r.status, 404, "{r:?}");
    let reset = owner
        .ok("POST", &format!("/applications/{app_id}/bot/reset"), None)
        .await;
    let new_token = reset["token"].as_str().unwrap();
    assert_ne!(new_token, token);
    assert_eq!(bot_api.call("GET", "/users/@me", None).await.status, 401);
    let fresh = anon.with_token(&format!("Bot {new_token}"));
    assert_eq!(fresh.ok("GET", "/users/@me", None).await["bot"], true);

    // Kicked, the bot takes its managed role with it, as on Discord.
    let r = owner
        .call(
            "DELETE",
            &format!("/guilds/{guild_id}/members/{app_id}"),
            None,
        )
        .await;
    assert_eq!(r.status, 204, "{r:?}");
    let removed = owner_gw.wait_for("GUILD_MEMBER_REMOVE").await;
    assert_eq!(removed["user"]["id"], app_id.as_str());
    let gone = owner_gw.wait_for("GUILD_ROLE_DELETE").await;
    assert_eq!(gone["role_id"], bot_role_id.as_str());
    let roles = owner
        .ok("GET", &format!("/guilds/{guild_id}/roles"), None)
        .await;
    assert!(
        roles
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["id"] != bot_role_id.as_str()),
        "{roles}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_joins_a_guild_and_talks_embedded() {
    a_bot_joins_a_guild_and_talks(Shape::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_joins_a_guild_and_talks_on_postgres_and_nats() {
    a_bot_joins_a_guild_and_talks(Shape::cluster().await).await;
}
