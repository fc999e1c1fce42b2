//! twilight (twilight-http, twilight-gateway, twilight-model): a bot connects, sees
//! READY and GUILD_CREATE, answers a human's message, creates a role, sets a channel
//! overwrite and sees GUILD_ROLE_CREATE and CHANNEL_UPDATE. Every frame the shard
//! receives is parsed with twilight's own parser (an error fails the test) and the
//! dispatches and REST bodies are snapshotted.

use std::time::Duration;

use futures::StreamExt as _;
use serde_json::Value;
use twilight_gateway::{
    parse, ConfigBuilder, Event, EventTypeFlags, Intents, Message, Shard, ShardId,
};
use twilight_http::Client;
use twilight_model::channel::permission_overwrite::PermissionOverwriteType;
use twilight_model::guild::Permissions;
use twilight_model::http::permission_overwrite::{
    PermissionOverwrite, PermissionOverwriteType as OverwriteKind,
};
use twilight_model::id::Id;

use crate::redact::Redactor;
use crate::world::{within, World};

/// A shard whose every frame is checked and whose dispatches are kept raw.
struct Bot {
    shard: Shard,
    redactor: Redactor,
}

impl Bot {
    /// The next event twilight deserializes, with its raw dispatch (`t`, `d`).
    async fn next(&mut self) -> (Event, Value) {
        loop {
            let message = within(15, "a gateway frame", self.shard.next())
                .await
                .expect("the shard's stream ended")
                .unwrap_or_else(|e| panic!("twilight failed to receive: {e:?}"));
            let text = match message {
                Message::Text(text) => text,
                Message::Close(frame) => panic!("the gateway closed the connection: {frame:?}"),
            };
            let raw: Value = serde_json::from_str(&text).expect("the gateway sends JSON");
            match parse(text, EventTypeFlags::all()) {
                Ok(Some(event)) => return (Event::from(event), raw),
                // An event type twilight does not model: skipped, as a bot would.
                Ok(None) => continue,
                Err(e) => panic!("twilight cannot deserialize {raw}: {e:?}"),
            }
        }
    }

    /// Skips events until `pick` accepts one; returns what it picked and the raw `d`.
    async fn wait<T>(
        &mut self,
        what: &str,
        mut pick: impl FnMut(&Event) -> Option<T>,
    ) -> (T, Value) {
        within(15, what, async {
            loop {
                let (event, raw) = self.next().await;
                if let Some(found) = pick(&event) {
                    return (found, raw);
                }
            }
        })
        .await
    }

    /// Snapshots a dispatch's `t` and redacted `d`.
    fn snapshot(&self, name: &str, raw: &Value) {
        let shown = serde_json::json!({ "t": raw["t"], "d": self.redactor.apply(&raw["d"]) });
        insta::assert_json_snapshot!(name, shown);
    }
}

/// Reads a REST response as raw JSON and as twilight's model; both must succeed.
async fn body<T: serde::de::DeserializeOwned>(response: twilight_http::Response<T>) -> (T, Value) {
    let bytes = response.bytes().await.expect("response body");
    let raw: Value = serde_json::from_slice(&bytes).expect("REST answers JSON");
    let model = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("twilight cannot deserialize {raw}: {e}"));
    (model, raw)
}

#[tokio::test]
async fn twilight_bot_round_trip() {
    let world = World::new("twilight").await;
    let guild_id = Id::new(world.guild_id.parse().unwrap());
    let channel_id = Id::new(world.channel_id.parse().unwrap());
    let human_id = Id::new(world.human_id.parse().unwrap());
    let bot_id = Id::new(world.bot_id.parse().unwrap());

    let http = Client::builder()
        .proxy(world.host_port().to_owned(), true)
        .ratelimiter(None)
        .timeout(Duration::from_secs(10))
        .token(world.bot_token.clone())
        .build();
    let intents = Intents::GUILDS | Intents::GUILD_MESSAGES | Intents::MESSAGE_CONTENT;
    let config = ConfigBuilder::new(world.bot_token.clone(), intents)
        .proxy_url(world.server.ws.clone())
        .build();
    let mut bot = Bot {
        shard: Shard::with_config(ShardId::ONE, config),
        redactor: world.redactor.clone(),
    };

    // REST: who am I.
    let (me, raw) = body(http.current_user().await.expect("GET /users/@me")).await;
    assert_eq!(me.id, bot_id);
    insta::assert_json_snapshot!("rest_current_user", world.redactor.apply(&raw));

    // READY, then the guild.
    let (ready, raw) = bot
        .wait("READY", |e| match e {
            Event::Ready(r) => Some(r.clone()),
            _ => None,
        })
        .await;
    assert_eq!(ready.user.id, bot_id);
    assert_eq!(ready.guilds.len(), 1);
    assert_eq!(ready.guilds[0].id, guild_id);
    bot.snapshot("gateway_ready", &raw);

    let (guild, raw) = bot
        .wait("GUILD_CREATE", |e| match e {
            Event::GuildCreate(g) => Some(g.clone()),
            _ => None,
        })
        .await;
    let twilight_model::gateway::payload::incoming::GuildCreate::Available(guild) = *guild else {
        panic!("the guild is unavailable: {raw}");
    };
    assert_eq!(guild.id, guild_id);
    assert!(guild.channels.iter().any(|c| c.id == channel_id));
    assert!(guild.members.iter().any(|m| m.user.id == bot_id));
    assert!(
        guild.roles.iter().any(|r| r.id.cast() == guild_id),
        "@everyone"
    );
    bot.snapshot("gateway_guild_create", &raw);

    // A human speaks; the bot hears it and replies.
    let said = world.human_says("ping").await;
    let (message, raw) = bot
        .wait("MESSAGE_CREATE from the human", |e| match e {
            Event::MessageCreate(m) if m.author.id == human_id => Some(m.clone()),
            _ => None,
        })
        .await;
    assert_eq!(message.id.to_string(), said);
    assert_eq!(message.content, "ping");
    assert_eq!(message.guild_id, Some(guild_id));
    bot.snapshot("gateway_message_create", &raw);

    let (reply, raw) = body(
        http.create_message(channel_id)
            .content("pong")
            .reply(message.id)
            .await
            .expect("POST /channels/{id}/messages"),
    )
    .await;
    assert_eq!(reply.content, "pong");
    assert_eq!(reply.author.id, bot_id);
    insta::assert_json_snapshot!("rest_create_message", world.redactor.apply(&raw));
    bot.wait("MESSAGE_CREATE of the reply", |e| match e {
        Event::MessageCreate(m) if m.id == reply.id => Some(()),
        _ => None,
    })
    .await;

    // A role, announced by GUILD_ROLE_CREATE.
    let (role, raw) = body(
        http.create_role(guild_id)
            .name("muted")
            .permissions(Permissions::empty())
            .await
            .expect("POST /guilds/{id}/roles"),
    )
    .await;
    assert_eq!(role.name, "muted");
    insta::assert_json_snapshot!("rest_create_role", world.redactor.apply(&raw));
    let (_, raw) = bot
        .wait("GUILD_ROLE_CREATE", |e| match e {
            Event::RoleCreate(r) if r.role.id == role.id && r.guild_id == guild_id => Some(()),
            _ => None,
        })
        .await;
    let mut named = bot.redactor.clone();
    named.name(&role.id.to_string(), "role");
    bot.redactor = named;
    bot.snapshot("gateway_guild_role_create", &raw);

    // An overwrite denying the role SEND_MESSAGES, announced by CHANNEL_UPDATE.
    let overwrite = PermissionOverwrite {
        allow: None,
        deny: Some(Permissions::SEND_MESSAGES),
        id: role.id.cast(),
        kind: OverwriteKind::Role,
    };
    let response = http
        .update_channel_permission(channel_id, &overwrite)
        .await
        .expect("PUT /channels/{id}/permissions/{id}");
    assert_eq!(response.status().get(), 204);
    let (channel, raw) = bot
        .wait("CHANNEL_UPDATE with the overwrite", |e| match e {
            Event::ChannelUpdate(c) if c.id == channel_id => Some(c.clone()),
            _ => None,
        })
        .await;
    let overwrites = channel.permission_overwrites.clone().unwrap_or_default();
    assert!(
        overwrites.iter().any(|o| o.id == role.id.cast()
            && o.deny.contains(Permissions::SEND_MESSAGES)
            && o.kind == PermissionOverwriteType::Role),
        "{raw}"
    );
    bot.snapshot("gateway_channel_update", &raw);
}
