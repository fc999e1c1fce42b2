//! The REST responses libraries read at login that the bot scenarios do not snapshot
//! themselves: `GET /gateway` (serenity), `GET /gateway/bot` (discord.js, twilight's
//! recommended-shards helper) and `GET /oauth2/applications/@me` (discord.py), asked
//! with `Bot <token>` as the libraries ask.

use crate::world::World;

#[tokio::test]
async fn login_responses_keep_their_shape() {
    let world = World::new("shapes").await;
    let bot = world.server.api(Some(&format!("Bot {}", world.bot_token)));
    for (name, path) in [
        ("rest_gateway", "/gateway"),
        ("rest_gateway_bot", "/gateway/bot"),
        ("rest_oauth2_application", "/oauth2/applications/@me"),
    ] {
        let reply = bot.call("GET", path, None).await;
        assert_eq!(reply.status, 200, "GET {path}: {reply:?}");
        assert_eq!(
            reply.content_type.as_deref(),
            Some("application/json"),
            "discord.py compares the whole Content-Type"
        );
        insta::assert_json_snapshot!(name, world.redactor.apply(&reply.body));
    }
    let url = bot.ok("GET", "/gateway", None).await["url"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        url.trim_end_matches('/'),
        world.server.ws,
        "the gateway URL is reachable"
    );
}
