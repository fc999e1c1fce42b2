//! Command handlers against the in-memory log (the same handlers run on SQLite and
//! PostgreSQL in the end-to-end suite).

use std::sync::Arc;

use commands::{ChannelSpec, CommandError, Commands, Context, InviteSpec};
use domain::channel::ChannelEvent;
use domain::guild::ChannelKind;
use domain::values::ChannelName;
use domain::{streams, DomainError, DomainEvent, Resource, SnowflakeGenerator};
use store::{Direction, DynStore};

fn commands(store: &DynStore, process: u8) -> Commands {
    Commands::new(store.clone(), Arc::new(SnowflakeGenerator::new(1, process)))
}

fn memory() -> DynStore {
    Arc::new(store::memory::MemoryStore::new())
}

#[tokio::test]
async fn a_registered_user_logs_in_and_both_tokens_authenticate() {
    let store = memory();
    let c = commands(&store, 0);
    let reg = c.register("Alice", "correct horse", "req-1").await.unwrap();
    assert_eq!(c.authenticate(&reg.token).await.unwrap().0, reg.user_id);
    let (id, token) = c.login("alice", "correct horse", "req-2").await.unwrap();
    assert_eq!(id, reg.user_id);
    assert_eq!(
        c.authenticate(&format!("Bot {token}")).await.unwrap().0,
        reg.user_id
    );
    // Another process sees the token too.
    let other = commands(&store, 1);
    assert_eq!(other.authenticate(&token).await.unwrap().0, reg.user_id);
}

#[tokio::test]
async fn wrong_passwords_unknown_users_and_forged_tokens_are_unauthorized() {
    let store = memory();
    let c = commands(&store, 0);
    let reg = c.register("alice", "correct horse", "r").await.unwrap();
    assert!(matches!(
        c.login("alice", "wrong horse", "r").await,
        Err(CommandError::Unauthorized)
    ));
    assert!(matches!(
        c.login("bob", "correct horse", "r").await,
        Err(CommandError::Unauthorized)
    ));
    let forged = commands::auth::mint_token(reg.user_id);
    assert!(matches!(
        c.authenticate(&forged).await,
        Err(CommandError::Unauthorized)
    ));
    assert!(matches!(
        c.authenticate("nonsense").await,
        Err(CommandError::Unauthorized)
    ));
}

#[tokio::test]
async fn a_username_is_taken_once_even_by_concurrent_registrations() {
    let store = memory();
    let a = commands(&store, 0);
    let b = commands(&store, 1);
    let (ra, rb) = tokio::join!(
        a.register("carol", "password1", "r"),
        b.register("CAROL", "password2", "r")
    );
    let ok = [ra.is_ok(), rb.is_ok()].iter().filter(|x| **x).count();
    assert_eq!(ok, 1, "exactly one registration wins");
    let err = ra.err().or(rb.err()).unwrap();
    assert!(matches!(
        err,
        CommandError::Domain(DomainError::UsernameTaken)
    ));
}

#[tokio::test]
async fn every_event_records_its_actor_and_correlation_id() {
    let store = memory();
    let c = commands(&store, 0);
    let reg = c
        .register("alice", "correct horse", "req-42")
        .await
        .unwrap();
    let ctx = Context {
        reason: Some("setting up".into()),
        ..Context::user(reg.user_id, "req-43")
    };
    let (guild, _) = c.create_guild(&ctx, "Chorus").await.unwrap();
    let events = store
        .read_stream(&streams::guild(guild), 1, Direction::Forwards, 10)
        .await
        .unwrap();
    assert!(!events.is_empty());
    for e in events {
        assert_eq!(e.metadata.actor, store::Actor::User(reg.user_id.get()));
        assert_eq!(e.metadata.correlation_id, "req-43");
        assert_eq!(e.metadata.reason.as_deref(), Some("setting up"));
    }
}

async fn guild_with_member(
    store: &DynStore,
) -> (
    Commands,
    Context,
    Context,
    domain::GuildId,
    domain::ChannelId,
) {
    let c = commands(store, 0);
    let owner = c.register("owner", "password1", "r").await.unwrap();
    let member = c.register("member", "password1", "r").await.unwrap();
    let owner = Context::user(owner.user_id, "r");
    let member = Context::user(member.user_id, "r");
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
    let (joined, _) = c.accept_invite(&member, &invite.code).await.unwrap();
    assert_eq!(joined, guild);
    (c, owner, member, guild, channel)
}

#[tokio::test]
async fn an_invited_member_sends_edits_and_deletes_messages() {
    let store = memory();
    let (c, owner, member, _, channel) = guild_with_member(&store).await;
    let sent = c
        .send_message(&member, channel, "hello", None, false, false)
        .await
        .unwrap();
    c.edit_message(&member, channel, sent.message_id, "hello again")
        .await
        .unwrap();
    let err = c
        .edit_message(&owner, channel, sent.message_id, "hijack")
        .await
        .unwrap_err();
    assert!(matches!(err, CommandError::Domain(DomainError::NotAuthor)));
    c.delete_message(&owner, channel, sent.message_id)
        .await
        .unwrap();
    let err = c
        .delete_message(&member, channel, sent.message_id)
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        CommandError::Domain(DomainError::Unknown(Resource::Message))
    ));
}

#[tokio::test]
async fn outsiders_cannot_send_and_unknown_channels_are_unknown() {
    let store = memory();
    let (c, ..) = guild_with_member(&store).await;
    let (_, channel) = {
        let (.., g, ch) = guild_with_member(&memory()).await;
        (g, ch)
    };
    let stranger = c.register("stranger", "password1", "r").await.unwrap();
    let ctx = Context::user(stranger.user_id, "r");
    // A channel id from another log does not exist here.
    let err = c
        .send_message(&ctx, channel, "hi", None, false, false)
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        CommandError::Domain(DomainError::Unknown(Resource::Channel))
    ));
}

#[tokio::test]
async fn an_enforced_nonce_returns_the_first_message() {
    let store = memory();
    let (c, _, member, _, channel) = guild_with_member(&store).await;
    let a = c
        .send_message(&member, channel, "once", Some("n-1"), true, false)
        .await
        .unwrap();
    let b = c
        .send_message(&member, channel, "once", Some("n-1"), true, false)
        .await
        .unwrap();
    assert_eq!(a.message_id, b.message_id);
    assert!(!a.duplicate);
    assert!(b.duplicate);
    let revision = store
        .stream_revision(&streams::channel(channel))
        .await
        .unwrap();
    assert_eq!(revision, 2, "ChannelOpened and one MessageCreated");
}

#[tokio::test]
async fn a_used_up_invite_is_rejected() {
    let store = memory();
    let (c, owner, _, _, channel) = guild_with_member(&store).await;
    let (invite, _) = c
        .create_invite(
            &owner,
            channel,
            InviteSpec {
                max_age: 0,
                max_uses: 1,
                temporary: false,
            },
        )
        .await
        .unwrap();
    let a = c.register("first", "password1", "r").await.unwrap();
    let b = c.register("second", "password1", "r").await.unwrap();
    c.accept_invite(&Context::user(a.user_id, "r"), &invite.code)
        .await
        .unwrap();
    let err = c
        .accept_invite(&Context::user(b.user_id, "r"), &invite.code)
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        CommandError::Domain(DomainError::InviteInvalid)
    ));
    let err = c
        .accept_invite(&Context::user(b.user_id, "r"), "nope!")
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        CommandError::Domain(DomainError::Unknown(Resource::Invite))
    ));
}

/// Several "processes" (separate command handlers with their own caches and snowflake
/// generators) send to one channel at once: ids increase strictly with the revision.
/// `stores[0]` sets up the guild; each of the others is one sender process's own
/// connection to the log.
pub async fn message_ids_increase_with_revision_under_concurrent_senders(stores: Vec<DynStore>) {
    let store = stores[0].clone();
    let (c, _, member, _, channel) = guild_with_member(&store).await;
    drop(c);
    let mut tasks = Vec::new();
    for (process, store) in (0..4u8).zip(stores[1..].iter().cloned()) {
        let member = member.clone();
        tasks.push(tokio::spawn(async move {
            let c = commands(&store, process + 1);
            for i in 0..50 {
                c.send_message(
                    &member,
                    channel,
                    &format!("p{process} m{i}"),
                    None,
                    false,
                    false,
                )
                .await
                .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let events = store
        .read_stream(&streams::channel(channel), 1, Direction::Forwards, 10_000)
        .await
        .unwrap();
    let ids: Vec<u64> = events
        .iter()
        .filter_map(|e| {
            match ChannelEvent::from_stored(&e.event_type, e.version, e.data.clone()).unwrap() {
                ChannelEvent::MessageCreated { message_id, .. } => Some(message_id.get()),
                _ => None,
            }
        })
        .collect();
    assert_eq!(ids.len(), 200);
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "ids follow the revision order"
    );
    let processes: std::collections::HashSet<u8> = ids
        .iter()
        .map(|&id| domain::snowflake::process(id))
        .collect();
    assert!(processes.len() > 1, "several processes allocated ids");
}

#[tokio::test]
async fn message_ids_increase_with_revision_under_concurrent_senders_in_memory() {
    let store = memory();
    message_ids_increase_with_revision_under_concurrent_senders(vec![store; 5]).await;
}

/// A fresh PostgreSQL database; fails loudly when PostgreSQL is unreachable.
async fn fresh_postgres() -> String {
    use sqlx::Connection;
    let base = std::env::var("CHORUS_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let mut conn = sqlx::PgConnection::connect(&format!("{base}/postgres"))
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL is not reachable at {base}: {e}"));
    let name = format!("chorus_cmd_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    format!("{base}/{name}")
}

/// Each "process" has its own connection pool and appender, as separate nodes would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_ids_increase_with_revision_under_concurrent_senders_on_postgres() {
    let url = fresh_postgres().await;
    let mut stores: Vec<DynStore> = Vec::new();
    for _ in 0..5 {
        stores.push(Arc::new(
            store::postgres::PostgresStore::connect(&url).await.unwrap(),
        ));
    }
    message_ids_increase_with_revision_under_concurrent_senders(stores).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_ids_increase_with_revision_under_concurrent_senders_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chorus.db");
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let mut stores: Vec<DynStore> = Vec::new();
    for _ in 0..5 {
        stores.push(Arc::new(
            store::sqlite::SqliteStore::open(&url).await.unwrap(),
        ));
    }
    message_ids_increase_with_revision_under_concurrent_senders(stores).await;
}
