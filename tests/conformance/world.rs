//! The world every library's scenario starts from: a running server, a human who owns a
//! guild with a text channel, and a bot that is a member of that guild.

use std::future::Future;
use std::time::Duration;

use serde_json::json;

use crate::harness::{Api, Server, Shape};
use crate::redact::Redactor;

/// What the bot is granted when it is added: view, send, read history, create invites,
/// manage channels, manage messages (bulk delete) and manage roles (which includes
/// channel overwrites).
pub const BOT_PERMISSIONS: u64 = 1 | 1 << 4 | 1 << 10 | 1 << 11 | 1 << 13 | 1 << 16 | 1 << 28;

/// A server with a guild (owned by a human) with a text channel, and a bot application
/// authorized into it.
pub struct World {
    pub server: Server,
    /// The human, authenticated.
    pub human: Api,
    pub human_id: String,
    pub guild_id: String,
    pub channel_id: String,
    /// The bot's token (without `Bot `).
    pub bot_token: String,
    pub bot_id: String,
    /// Names the world's ids in snapshots.
    pub redactor: Redactor,
}

impl World {
    /// Starts an embedded server and sets the world up over REST.
    pub async fn new(bot_name: &str) -> World {
        let server = Server::start(&Shape::Embedded);
        let anon = server.api(None);
        let (human, human_id) = anon.register("human").await;
        let guild = human
            .ok("POST", "/guilds", Some(json!({ "name": "Conformance" })))
            .await;
        let guild_id = guild["id"].as_str().unwrap().to_owned();
        let channel = human
            .ok(
                "POST",
                &format!("/guilds/{guild_id}/channels"),
                Some(json!({ "name": "bots", "type": 0 })),
            )
            .await;
        let channel_id = channel["id"].as_str().unwrap().to_owned();
        // The bot: an application with a bot user, authorized into the guild the way the
        // "Add to server" page does it.
        let application = human
            .ok("POST", "/applications", Some(json!({ "name": bot_name })))
            .await;
        let application_id = application["id"].as_str().unwrap().to_owned();
        let bot = human
            .ok("POST", &format!("/applications/{application_id}/bot"), None)
            .await;
        let bot_token = bot["token"].as_str().expect("bot token").to_owned();
        let bot_id = bot["user"]["id"].as_str().expect("bot user").to_owned();
        human
            .ok(
                "POST",
                &format!(
                    "/oauth2/authorize?client_id={application_id}&scope=bot&permissions={BOT_PERMISSIONS}"
                ),
                Some(json!({
                    "guild_id": guild_id,
                    "permissions": BOT_PERMISSIONS.to_string(),
                    "authorize": true,
                })),
            )
            .await;
        let mut redactor = Redactor::default();
        redactor.name(&guild_id, "guild");
        redactor.name(&channel_id, "channel");
        redactor.name(&human_id, "human");
        // A bot user's id is its application's id.
        redactor.name(&application_id, "application");
        redactor.name(&bot_id, "bot");
        World {
            bot_token,
            server,
            human,
            human_id,
            guild_id,
            channel_id,
            bot_id,
            redactor,
        }
    }

    /// `host:port` of the server.
    pub fn host_port(&self) -> &str {
        self.server.http.trim_start_matches("http://")
    }

    /// The human posts a message in the channel and gets its id.
    /// The human starts typing in the channel (TYPING_START to the bot).
    pub async fn human_types(&self) {
        let r = self
            .human
            .call(
                "POST",
                &format!("/channels/{}/typing", self.channel_id),
                None,
            )
            .await;
        assert_eq!(r.status, 204, "{r:?}");
    }

    pub async fn human_says(&self, content: &str) -> String {
        let m = self
            .human
            .ok(
                "POST",
                &format!("/channels/{}/messages", self.channel_id),
                Some(json!({ "content": content })),
            )
            .await;
        m["id"].as_str().unwrap().to_owned()
    }
}

/// Awaits `fut`, failing the test with `what` after `secs` seconds (a failure bound, not a
/// pace: every step normally takes milliseconds).
pub async fn within<T>(secs: u64, what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), fut)
        .await
        .unwrap_or_else(|_| panic!("timed out after {secs} s waiting for {what}"))
}
