//! discord.py (conformance/python/bot.py, in the virtual environment scripts/test.sh
//! makes): READY, the human typing, fetching the human's user, the human's message, a
//! reply (sent while showing the bot typing), a role, an overwrite (with their
//! dispatches arriving in discord.py's cache), an invite, a purge (bulk delete), pinning
//! and listing pins, and a command that reads `guild.me` permissions.

use std::path::PathBuf;

use serde_json::Value;

use crate::script::{root, Script};
use crate::world::World;

/// The interpreter of the conformance virtual environment.
fn python() -> PathBuf {
    let path = std::env::var_os("CHORUS_CONFORMANCE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/conformance/venv/bin/python"));
    assert!(
        path.exists(),
        "{} is missing: run scripts/test.sh (it makes the virtual environment with \
         conformance/python/requirements.txt) or set CHORUS_CONFORMANCE_PYTHON",
        path.display()
    );
    path
}

#[tokio::test]
async fn discord_py_bot_round_trip() {
    let world = World::new("discordpy").await;
    let mut bot = Script::start(
        &python(),
        &[&root().join("conformance/python/bot.py")],
        &world,
    );
    bot.step("ready", 30);
    world.human_types().await;
    bot.step("typing", 15);
    let said = world.human_says("ping").await;
    assert_eq!(bot.step("message", 15), said);
    let reply_id = bot.step("reply", 15);
    bot.step("role", 15);
    bot.step("role_event", 15);
    bot.step("overwrite", 15);
    bot.step("channel_update", 15);
    let code = bot.step("invite", 15);
    let invite = world
        .human
        .ok("GET", &format!("/invites/{code}"), None)
        .await;
    assert_eq!(invite["guild"]["id"], world.guild_id.as_str());
    assert_eq!(bot.step("purge", 15), "3");
    bot.step("pins", 15);
    bot.step("awaiting_command", 15);
    world.human_says("!perms").await;
    let perms = bot.step("command", 15);
    assert!(perms.contains("manage_roles=True"), "{perms}");
    bot.finish(15);

    // What the bot said is in the channel's history.
    let history = world
        .human
        .ok(
            "GET",
            &format!("/channels/{}/messages?limit=10", world.channel_id),
            None,
        )
        .await;
    let contents: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["author"]["id"] == world.bot_id.as_str())
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert!(contents.contains(&"pong"), "{history}");
    assert!(
        contents.iter().any(|c| c.starts_with("perms value=")),
        "{history}"
    );
    let reply: &Value = history
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == reply_id.as_str())
        .expect("the reply is in the history");
    assert_eq!(reply["content"], "pong");
}
