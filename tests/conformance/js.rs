//! discord.js (conformance/js/bot.js, installed by `npm ci` in scripts/test.sh): login,
//! ready, messageCreate, channel.send.

use std::path::PathBuf;

use crate::script::{root, Script};
use crate::world::World;

/// `node`, and the installed discord.js next to the script.
fn node() -> PathBuf {
    let modules = root().join("conformance/js/node_modules/discord.js");
    assert!(
        modules.exists(),
        "{} is missing: run scripts/test.sh (it runs npm ci in conformance/js)",
        modules.display()
    );
    PathBuf::from(std::env::var_os("CHORUS_CONFORMANCE_NODE").unwrap_or_else(|| "node".into()))
}

#[tokio::test]
async fn discord_js_bot_round_trip() {
    let world = World::new("discordjs").await;
    let mut bot = Script::start(&node(), &[&root().join("conformance/js/bot.js")], &world);
    bot.step("ready", 30);
    let said = world.human_says("ping").await;
    assert_eq!(bot.step("message", 15), said);
    let reply_id = bot.step("reply", 15);
    bot.finish(15);
    let reply = world
        .human
        .ok(
            "GET",
            &format!("/channels/{}/messages/{reply_id}", world.channel_id),
            None,
        )
        .await;
    assert_eq!(reply["content"], "pong");
    assert_eq!(reply["author"]["id"], world.bot_id.as_str());
}
