//! Moderation commands on the in-memory log, SQLite and PostgreSQL: roles, member
//! edits, kicks, bans (with message deletion), overwrites, channel edits and deletion,
//! each recording its actor and audit reason.

use std::sync::Arc;

use commands::{
    ChannelEdit, ChannelSpec, CommandError, Commands, Context, InviteSpec, MemberEdit, RoleEdit,
    RoleSpec,
};
use domain::channel::ChannelEvent;
use domain::guild::{ChannelKind, GuildEvent};
use domain::member::RemovalReason;
use domain::permissions::{Overwrite, OverwriteTarget, Permissions};
use domain::values::ChannelName;
use domain::{streams, DomainError, DomainEvent, SnowflakeGenerator};
use store::{Actor, Direction, DynStore, RecordedEvent};

fn commands(store: &DynStore) -> Commands {
    Commands::new(store.clone(), Arc::new(SnowflakeGenerator::new(1, 0)))
}

fn with_reason(ctx: &Context, reason: &str) -> Context {
    Context {
        reason: Some(reason.to_owned()),
        ..ctx.clone()
    }
}

async fn stream(store: &DynStore, id: &str) -> Vec<RecordedEvent> {
    store
        .read_stream(id, 1, Direction::Forwards, 10_000)
        .await
        .unwrap()
}

fn denied(r: Result<impl std::fmt::Debug, CommandError>) {
    match r {
        Err(CommandError::Domain(DomainError::MissingPermissions)) => {}
        other => panic!("expected Missing Permissions, got {other:?}"),
    }
}

/// The whole moderation scenario on one store.
async fn scenario(store: DynStore) {
    let c = commands(&store);
    let owner = c.register("owner", "password1", "r").await.unwrap();
    let moder = c.register("moder", "password1", "r").await.unwrap();
    let member = c.register("member", "password1", "r").await.unwrap();
    let owner = Context::user(owner.user_id, "r-owner");
    let moder = Context::user(moder.user_id, "r-mod");
    let member = Context::user(member.user_id, "r-member");
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
    c.accept_invite(&moder, &invite.code).await.unwrap();
    c.accept_invite(&member, &invite.code).await.unwrap();

    // Roles: the owner makes a moderator role and gives it.
    let mod_perms = Permissions::KICK_MEMBERS
        | Permissions::BAN_MEMBERS
        | Permissions::MANAGE_ROLES
        | Permissions::MANAGE_NICKNAMES
        | Permissions::MODERATE_MEMBERS
        | Permissions::MANAGE_CHANNELS;
    let (mods, _) = c
        .create_role(
            &with_reason(&owner, "a team"),
            guild,
            RoleSpec {
                name: Some("Mods".into()),
                permissions: Some(mod_perms),
                hoist: Some(true),
                ..RoleSpec::default()
            },
        )
        .await
        .unwrap();
    c.set_member_role(&owner, guild, moder.actor, mods, true)
        .await
        .unwrap();
    // The moderator cannot grant what they lack, nor touch their own top role.
    denied(
        c.create_role(
            &moder,
            guild,
            RoleSpec {
                permissions: Some(Permissions::ADMINISTRATOR),
                ..RoleSpec::default()
            },
        )
        .await,
    );
    denied(
        c.edit_role(
            &moder,
            guild,
            mods,
            RoleEdit {
                name: Some("Admins".into()),
                ..RoleEdit::default()
            },
        )
        .await,
    );
    let (helpers, _) = c
        .create_role(
            &moder,
            guild,
            RoleSpec {
                name: Some("Helpers".into()),
                ..RoleSpec::default()
            },
        )
        .await
        .unwrap();
    c.edit_role(
        &moder,
        guild,
        helpers,
        RoleEdit {
            color: Some(0x00ff00),
            ..RoleEdit::default()
        },
    )
    .await
    .unwrap();
    // Members cannot kick; moderators cannot kick the owner.
    denied(c.kick_member(&member, guild, moder.actor).await);
    denied(c.kick_member(&moder, guild, owner.actor).await);

    // A nickname and a timeout, with a reason.
    let until = domain::timefmt::unix_ms(time::OffsetDateTime::now_utc()) + 60_000;
    c.edit_member(
        &with_reason(&moder, "cool down"),
        guild,
        member.actor,
        MemberEdit {
            nick: Some(Some("Quiet".into())),
            communication_disabled_until_ms: Some(Some(until)),
            roles: Some(vec![helpers]),
            ..MemberEdit::default()
        },
    )
    .await
    .unwrap();
    // More than 28 days is refused.
    let far = until + 29 * 24 * 3600 * 1000;
    assert!(matches!(
        c.edit_member(
            &moder,
            guild,
            member.actor,
            MemberEdit {
                communication_disabled_until_ms: Some(Some(far)),
                ..MemberEdit::default()
            },
        )
        .await,
        Err(CommandError::Domain(DomainError::Invalid { .. }))
    ));
    c.edit_member(
        &moder,
        guild,
        member.actor,
        MemberEdit {
            communication_disabled_until_ms: Some(None),
            ..MemberEdit::default()
        },
    )
    .await
    .unwrap();

    // Overwrites and slowmode on the channel.
    c.set_overwrite(
        &owner,
        channel,
        Overwrite::role(helpers, Permissions::NONE, Permissions::SEND_MESSAGES),
    )
    .await
    .unwrap();
    c.delete_overwrite(&owner, channel, OverwriteTarget::Role(helpers))
        .await
        .unwrap();
    c.edit_channel(
        &moder,
        channel,
        ChannelEdit {
            rate_limit_per_user: Some(30),
            topic: Some(Some("slow".into())),
            ..ChannelEdit::default()
        },
    )
    .await
    .unwrap();
    assert!(matches!(
        c.edit_channel(
            &moder,
            channel,
            ChannelEdit {
                rate_limit_per_user: Some(21_601),
                ..ChannelEdit::default()
            },
        )
        .await,
        Err(CommandError::Domain(DomainError::Invalid {
            field: "rate_limit_per_user",
            ..
        }))
    ));

    // The member speaks; then a kick, a rejoin, and a ban that deletes their messages.
    let sent = c
        .send_message(&member, channel, "spam", None, false, false)
        .await
        .unwrap();
    c.kick_member(&with_reason(&moder, "spam"), guild, member.actor)
        .await
        .unwrap();
    c.accept_invite(&member, &invite.code).await.unwrap();
    let banned = c
        .ban_member(&with_reason(&moder, "more spam"), guild, member.actor, 3600)
        .await
        .unwrap();
    assert_eq!(banned.deleted_messages, 1);
    assert!(matches!(
        c.accept_invite(&member, &invite.code).await,
        Err(CommandError::Domain(DomainError::Banned))
    ));
    c.unban_member(&moder, guild, member.actor).await.unwrap();

    // Leaving, and deleting a role and the channel.
    c.leave_guild(&moder, guild).await.unwrap();
    c.delete_role(&owner, guild, helpers).await.unwrap();
    c.delete_channel(&with_reason(&owner, "closing"), channel)
        .await
        .unwrap();

    // What the guild's stream recorded, with actors and reasons.
    let events = stream(&store, &streams::guild(guild)).await;
    let find = |pred: &dyn Fn(&GuildEvent) -> bool| {
        events
            .iter()
            .find(|e| {
                GuildEvent::from_stored(&e.event_type, e.version, e.data.clone())
                    .is_ok_and(|ev| pred(&ev))
            })
            .unwrap_or_else(|| panic!("event not found"))
            .clone()
    };
    let created = find(&|e| matches!(e, GuildEvent::RoleCreated { role } if role.id == mods));
    assert_eq!(created.metadata.actor, Actor::User(owner.actor.get()));
    assert_eq!(created.metadata.reason.as_deref(), Some("a team"));
    let timeout = find(
        &|e| matches!(e, GuildEvent::MemberUpdated { communication_disabled_until_ms: Some(_), nick: Some(n), .. } if n.as_str() == "Quiet"),
    );
    assert_eq!(timeout.metadata.actor, Actor::User(moder.actor.get()));
    assert_eq!(timeout.metadata.reason.as_deref(), Some("cool down"));
    let kick = find(
        &|e| matches!(e, GuildEvent::MemberRemoved { reason: RemovalReason::Kick, user_id } if *user_id == member.actor),
    );
    assert_eq!(kick.metadata.reason.as_deref(), Some("spam"));
    assert_eq!(kick.metadata.correlation_id, "r-mod");
    let ban = find(
        &|e| matches!(e, GuildEvent::MemberBanned { delete_message_seconds: 3600, user_id } if *user_id == member.actor),
    );
    assert_eq!(ban.metadata.reason.as_deref(), Some("more spam"));
    find(&|e| matches!(e, GuildEvent::MemberUnbanned { .. }));
    find(
        &|e| matches!(e, GuildEvent::MemberRemoved { reason: RemovalReason::Leave, user_id } if *user_id == moder.actor),
    );
    find(&|e| matches!(e, GuildEvent::RoleDeleted { role_id } if *role_id == helpers));
    find(&|e| matches!(e, GuildEvent::ChannelOverwriteSet { .. }));
    find(&|e| matches!(e, GuildEvent::ChannelOverwriteDeleted { .. }));
    find(&|e| {
        matches!(
            e,
            GuildEvent::ChannelUpdated {
                rate_limit_per_user: 30,
                ..
            }
        )
    });
    let deleted =
        find(&|e| matches!(e, GuildEvent::ChannelDeleted { channel_id } if *channel_id == channel));
    assert_eq!(deleted.metadata.reason.as_deref(), Some("closing"));

    // The ban deleted the message in the channel's stream, as the moderator.
    let channel_events = stream(&store, &streams::channel(channel)).await;
    let deletion = channel_events
        .iter()
        .find(|e| {
            matches!(
                ChannelEvent::from_stored(&e.event_type, e.version, e.data.clone()),
                Ok(ChannelEvent::MessageDeleted { message_id }) if message_id == sent.message_id
            )
        })
        .expect("the ban deleted the message");
    assert_eq!(deletion.metadata.actor, Actor::User(moder.actor.get()));
    assert_eq!(deletion.metadata.reason.as_deref(), Some("more spam"));
    assert!(banned.position >= deletion.position);

    // Unknown guilds are unknown.
    assert!(matches!(
        c.kick_member(&owner, domain::GuildId::new(42), member.actor)
            .await,
        Err(CommandError::Domain(DomainError::Unknown(
            domain::Resource::Guild
        )))
    ));
}

#[tokio::test]
async fn moderation_in_memory() {
    scenario(Arc::new(store::memory::MemoryStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moderation_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("c.db").display());
    scenario(Arc::new(
        store::sqlite::SqliteStore::open(&url).await.unwrap(),
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moderation_on_postgres() {
    use sqlx::Connection;
    let base = std::env::var("CHORUS_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let mut conn = sqlx::PgConnection::connect(&format!("{base}/postgres"))
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL is not reachable at {base}: {e}"));
    let name = format!("chorus_mod_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    let store = store::postgres::PostgresStore::connect(&format!("{base}/{name}"))
        .await
        .unwrap();
    scenario(Arc::new(store)).await;
}
