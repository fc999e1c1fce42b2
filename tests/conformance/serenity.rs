//! serenity: a bot connects (READY, GUILD_CREATE), receives a human's message and
//! answers it. serenity logs payloads it cannot deserialize as warnings instead of
//! failing, so every warning or error it logs fails the test.

use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use serenity::all::{
    ClientBuilder, Context, EventHandler, GatewayIntents, Guild, GuildId, HttpBuilder, Message,
    Ready, UserId,
};
use serenity::async_trait;
use tokio::sync::mpsc;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context as LayerContext, SubscriberExt as _};
use tracing_subscriber::Layer;

use crate::world::{within, World};

/// What the handler saw, in order.
#[derive(Debug)]
enum Seen {
    Ready {
        user: UserId,
        guilds: Vec<GuildId>,
    },
    Guild {
        id: GuildId,
        channels: usize,
        members: usize,
    },
    Message(Box<Message>),
    Replied(Result<Box<Message>, String>),
}

struct Handler {
    seen: mpsc::UnboundedSender<Seen>,
    human: UserId,
}

#[async_trait]
impl EventHandler for Handler {
    async fn ready(&self, _ctx: Context, ready: Ready) {
        let guilds = ready.guilds.iter().map(|g| g.id).collect();
        let _ = self.seen.send(Seen::Ready {
            user: ready.user.id,
            guilds,
        });
    }

    async fn guild_create(&self, _ctx: Context, guild: Guild, _is_new: Option<bool>) {
        let _ = self.seen.send(Seen::Guild {
            id: guild.id,
            channels: guild.channels.len(),
            members: guild.members.len(),
        });
    }

    async fn message(&self, ctx: Context, message: Message) {
        if message.author.id != self.human {
            return;
        }
        let _ = self.seen.send(Seen::Message(Box::new(message.clone())));
        let replied = message.channel_id.say(&ctx.http, "pong").await;
        let _ = self.seen.send(Seen::Replied(
            replied.map(Box::new).map_err(|e| e.to_string()),
        ));
    }
}

/// Records every warning and error serenity logs.
#[derive(Clone, Default)]
struct Complaints(Arc<Mutex<Vec<String>>>);

impl<S: tracing::Subscriber> Layer<S> for Complaints {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: LayerContext<'_, S>) {
        let meta = event.metadata();
        if *meta.level() <= tracing::Level::WARN && meta.target().starts_with("serenity") {
            struct Text(String);
            impl Visit for Text {
                fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
                    self.0.push_str(&format!("{}={value:?} ", field.name()));
                }
            }
            let mut text = Text(format!("{} {}: ", meta.level(), meta.target()));
            event.record(&mut text);
            self.0.lock().unwrap().push(text.0);
        }
    }
}

#[tokio::test]
async fn serenity_bot_receives_a_message() {
    let complaints = Complaints::default();
    let _log =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(complaints.clone()));
    let world = World::new("serenity").await;
    let guild_id = GuildId::new(world.guild_id.parse().unwrap());
    let human = UserId::new(world.human_id.parse().unwrap());

    let http = HttpBuilder::new(&world.bot_token)
        .proxy(world.server.http.clone())
        .ratelimiter_disabled(true)
        .build();
    let (tx, mut seen) = mpsc::unbounded_channel();
    let intents =
        GatewayIntents::GUILDS | GatewayIntents::GUILD_MESSAGES | GatewayIntents::MESSAGE_CONTENT;
    let mut client = ClientBuilder::new_with_http(http, intents)
        .event_handler(Handler { seen: tx, human })
        .await
        .expect("build the serenity client");
    let shards = client.shard_manager.clone();
    let running = tokio::spawn(async move { client.start().await });

    async fn next(seen: &mut mpsc::UnboundedReceiver<Seen>) -> Seen {
        within(15, "a serenity event", seen.recv())
            .await
            .expect("the handler is gone")
    }
    match next(&mut seen).await {
        Seen::Ready { user, guilds } => {
            assert_eq!(user.to_string(), world.bot_id);
            assert_eq!(guilds, vec![guild_id]);
        }
        other => panic!("expected READY, got {other:?}"),
    }
    match next(&mut seen).await {
        Seen::Guild {
            id,
            channels,
            members,
        } => {
            assert_eq!(id, guild_id);
            assert!(
                channels >= 1 && members >= 1,
                "{channels} channels, {members} members"
            );
        }
        other => panic!("expected GUILD_CREATE, got {other:?}"),
    }
    let said = world.human_says("ping").await;
    match next(&mut seen).await {
        Seen::Message(m) => {
            assert_eq!(m.id.to_string(), said);
            assert_eq!(m.content, "ping");
            assert_eq!(m.guild_id, Some(guild_id));
        }
        other => panic!("expected the message, got {other:?}"),
    }
    match next(&mut seen).await {
        Seen::Replied(Ok(m)) => assert_eq!(m.content, "pong"),
        other => panic!("expected the reply to be sent, got {other:?}"),
    }
    shards.shutdown_all().await;
    let _ = within(15, "serenity to stop", running).await;
    let complaints = complaints.0.lock().unwrap().clone();
    assert!(
        complaints.is_empty(),
        "serenity complained:\n{}",
        complaints.join("\n")
    );
}
