//! Applications and bots against the in-memory log, SQLite and PostgreSQL: creating an
//! application and its bot, token resets that take effect on the very next request (in
//! another process too), and adding the bot to a guild.

use std::sync::Arc;

use commands::{ChannelSpec, CommandError, Commands, Context, InviteSpec};
use domain::application::ApplicationEvent;
use domain::guild::{ChannelKind, GuildEvent};
use domain::id::ApplicationId;
use domain::permissions::Permissions;
use domain::values::ChannelName;
use domain::{streams, DomainError, DomainEvent, Resource, SnowflakeGenerator};
use store::{Direction, DynStore};

fn commands(store: &DynStore, process: u8) -> Commands {
    Commands::new(store.clone(), Arc::new(SnowflakeGenerator::new(2, process)))
}

fn bot_ctx(user: domain::UserId) -> Context {
    Context {
        bot: true,
        ..Context::user(user, "r")
    }
}

async fn guild_events(store: &DynStore, guild: domain::GuildId) -> Vec<GuildEvent> {
    store
        .read_stream(&streams::guild(guild), 1, Direction::Forwards, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| GuildEvent::from_stored(&e.event_type, e.version, e.data).unwrap())
        .collect()
}

fn is_err<T: std::fmt::Debug>(r: Result<T, CommandError>, expected: DomainError) {
    match r {
        Err(CommandError::Domain(e)) => assert_eq!(e, expected),
        other => panic!("expected {expected:?}, got {other:?}"),
    }
}

/// The whole life of a bot, on one store shared by two "processes".
async fn a_bot_is_created_reset_and_added_to_a_guild(store: DynStore, other: DynStore) {
    let c = commands(&store, 0);
    let elsewhere = commands(&other, 1);
    let owner = Context::user(
        c.register("owner", "password1", "r").await.unwrap().user_id,
        "r",
    );
    let member = Context::user(
        c.register("member", "password1", "r")
            .await
            .unwrap()
            .user_id,
        "r",
    );
    let outsider = Context::user(
        c.register("outsider", "password1", "r")
            .await
            .unwrap()
            .user_id,
        "r",
    );
    let (guild, _) = c.create_guild(&owner, "Chorus").await.unwrap();
    let (channel, _) = c
        .create_channel(
            &owner,
            guild,
            ChannelSpec {
                kind: ChannelKind::Text,
                name: ChannelName::parse("talk").unwrap(),
                parent_id: None,
                topic: None,
                nsfw: false,
                position: None,
            },
        )
        .await
        .unwrap();
    let (invite, _) = c
        .create_invite(
            &owner,
            channel,
            InviteSpec {
                max_age: 0,
                max_uses: 0,
                temporary: false,
            },
        )
        .await
        .unwrap();
    c.accept_invite(&member, &invite.code).await.unwrap();

    // An application, and its bot (owner only, once).
    let (app, _) = c
        .create_application(&owner, "Helper Bot", Some("helps"))
        .await
        .unwrap();
    is_err(
        c.create_bot(&member, app).await,
        DomainError::Unknown(Resource::Application),
    );
    let bot = c.create_bot(&owner, app).await.unwrap();
    assert_eq!(
        bot.bot_id.get(),
        app.get(),
        "a bot's id is its application's"
    );
    assert!(matches!(
        c.create_bot(&owner, app).await,
        Err(CommandError::Domain(DomainError::Invalid {
            field: "bot",
            ..
        }))
    ));
    assert_eq!(
        elsewhere.authenticate(&bot.token).await.unwrap(),
        (bot.bot_id, true)
    );
    assert_eq!(
        c.authenticate(&format!("Bot {}", bot.token)).await.unwrap(),
        (bot.bot_id, true)
    );
    // A second application of the same name: its bot gets another username.
    let (app2, _) = c
        .create_application(&owner, "Helper Bot", None)
        .await
        .unwrap();
    let bot2 = c.create_bot(&owner, app2).await.unwrap();
    assert_eq!(c.authenticate(&bot2.token).await.unwrap().0, bot2.bot_id);

    // Resetting the token: the old one fails on the next request, in both processes.
    is_err(
        c.reset_bot_token(&member, app).await,
        DomainError::Unknown(Resource::Application),
    );
    let reset = c.reset_bot_token(&owner, app).await.unwrap();
    assert_ne!(reset.token, bot.token);
    for p in [&c, &elsewhere] {
        assert!(matches!(
            p.authenticate(&bot.token).await,
            Err(CommandError::Unauthorized)
        ));
        assert_eq!(p.authenticate(&reset.token).await.unwrap().0, bot.bot_id);
    }
    let (no_bot, _) = c.create_application(&owner, "Botless", None).await.unwrap();
    is_err(
        c.reset_bot_token(&owner, no_bot).await,
        DomainError::Unknown(Resource::User),
    );

    // Adding the bot: MANAGE_GUILD, membership, a bot, a guild.
    let perms = Permissions::SEND_MESSAGES | Permissions::VIEW_CHANNEL;
    is_err(
        c.authorize_bot(&member, app, guild, perms).await,
        DomainError::MissingPermissions,
    );
    is_err(
        c.authorize_bot(&outsider, app, guild, perms).await,
        DomainError::MissingAccess,
    );
    is_err(
        c.authorize_bot(&owner, no_bot, guild, perms).await,
        DomainError::Unknown(Resource::Application),
    );
    is_err(
        c.authorize_bot(&owner, ApplicationId::new(12345), guild, perms)
            .await,
        DomainError::Unknown(Resource::Application),
    );
    is_err(
        c.authorize_bot(&owner, app, domain::GuildId::new(777), perms)
            .await,
        DomainError::Unknown(Resource::Guild),
    );
    let (bot_id, _) = elsewhere
        .authorize_bot(&owner, app, guild, perms)
        .await
        .unwrap();
    assert_eq!(bot_id, bot.bot_id);
    let events = guild_events(&store, guild).await;
    let role = events
        .iter()
        .find_map(|e| match e {
            GuildEvent::RoleCreated { role } if role.managed => Some(role.clone()),
            _ => None,
        })
        .expect("a managed role");
    assert_eq!(role.name.as_str(), "Helper Bot");
    assert_eq!(role.permissions, perms);
    assert!(events.iter().any(|e| matches!(
        e,
        GuildEvent::MemberUpdated { user_id, roles, .. } if *user_id == bot_id && roles == &vec![role.id]
    )));
    // The application records where its bot went, before the guild's events.
    let app_events = store
        .read_stream(&streams::application(app), 1, Direction::Forwards, 100)
        .await
        .unwrap();
    let authorized = app_events.last().unwrap();
    let ev = ApplicationEvent::from_stored(
        &authorized.event_type,
        authorized.version,
        authorized.data.clone(),
    )
    .unwrap();
    assert!(matches!(
        ev,
        ApplicationEvent::BotAuthorized { guild_id, role_id, authorized_by, .. }
            if guild_id == guild && role_id == role.id && authorized_by == owner.actor
    ));
    // Authorizing again changes nothing.
    let before = events.len();
    c.authorize_bot(&owner, app, guild, perms).await.unwrap();
    assert_eq!(guild_events(&store, guild).await.len(), before);

    // The bot talks with its own permissions.
    let sent = c
        .send_message(&bot_ctx(bot_id), channel, "beep", None, false, false)
        .await
        .unwrap();
    assert!(!sent.duplicate);
    is_err(
        c.send_message(&bot_ctx(bot2.bot_id), channel, "beep", None, false, false)
            .await,
        DomainError::MissingAccess,
    );
}

#[tokio::test]
async fn bots_in_memory() {
    let store: DynStore = Arc::new(store::memory::MemoryStore::new());
    a_bot_is_created_reset_and_added_to_a_guild(store.clone(), store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bots_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("chorus.db").display()
    );
    let a: DynStore = Arc::new(store::sqlite::SqliteStore::open(&url).await.unwrap());
    let b: DynStore = Arc::new(store::sqlite::SqliteStore::open(&url).await.unwrap());
    a_bot_is_created_reset_and_added_to_a_guild(a, b).await;
}

/// Fails loudly when PostgreSQL is unreachable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bots_on_postgres() {
    use sqlx::Connection;
    let base = std::env::var("CHORUS_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let mut conn = sqlx::PgConnection::connect(&format!("{base}/postgres"))
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL is not reachable at {base}: {e}"));
    let name = format!("chorus_apps_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    let url = format!("{base}/{name}");
    let a: DynStore = Arc::new(store::postgres::PostgresStore::connect(&url).await.unwrap());
    let b: DynStore = Arc::new(store::postgres::PostgresStore::connect(&url).await.unwrap());
    a_bot_is_created_reset_and_added_to_a_guild(a, b).await;
}
