//! Test harness: a fresh event log and read-model database per test, on SQLite (a
//! tempdir) or PostgreSQL (a fresh database on `CHORUS_TEST_DATABASE_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`; an unreachable server fails the test),
//! and a `World` that runs domain commands through `decide` and appends their events.

#![allow(dead_code)]

use std::collections::HashMap;
use std::time::Duration;

use domain::channel::{self, ChannelCommand, ChannelEvent, ChannelState};
use domain::guild::{self, ChannelKind, GuildCommand, GuildState};
use domain::invite::{self, InviteCommand, InviteState};
use domain::user::{self, UserCommand, UserState};
use domain::values::{ChannelName, Content, GuildName, Nonce, Username};
use domain::{Aggregate, ChannelId, DomainEvent, GuildId, MessageId, UserId};
use projections::ReadDb;
use sqlx::Connection as _;
use store::{Actor, DynStore, ExpectedRevision, Metadata, NewEvent, StreamAppend};
use time::OffsetDateTime;

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs an async test body once per backend, as `NAME::sqlite` and `NAME::postgres`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::common::Backend::Sqlite).await
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name($crate::common::Backend::Postgres).await
                }
            }
        )*
    };
}

/// A fresh event log and read-model database.
pub struct Env {
    pub backend: Backend,
    pub store: DynStore,
    pub db: ReadDb,
    /// The database URL, to open more connections (a second runner).
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

pub const WAIT: Duration = Duration::from_secs(30);

fn admin_url() -> String {
    std::env::var("CHORUS_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// `url` with its database name replaced.
fn with_database(url: &str, name: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a postgres:// URL");
    let (authority, tail) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, ""),
    };
    let query = tail.split_once('?').map(|(_, q)| q);
    match query {
        Some(q) => format!("{scheme}://{authority}/{name}?{q}"),
        None => format!("{scheme}://{authority}/{name}"),
    }
}

pub async fn env(backend: Backend) -> Env {
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("chorus.db");
            let path = path.to_str().expect("utf-8 path").to_owned();
            let store = store::SqliteStore::open(&path)
                .await
                .expect("open the SQLite event log");
            let url = format!("sqlite://{path}");
            let db = ReadDb::connect(&url)
                .await
                .expect("connect the read models");
            Env {
                backend,
                store: std::sync::Arc::new(store),
                db,
                url,
                _dir: Some(dir),
            }
        }
        Backend::Postgres => {
            let admin = admin_url();
            let mut conn = sqlx::PgConnection::connect(&admin)
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "PostgreSQL at {admin} is unreachable ({e}); set CHORUS_TEST_DATABASE_URL"
                    )
                });
            let name = format!("chorus_proj_{}", uuid::Uuid::new_v4().simple());
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&mut conn)
                .await
                .expect("create a test database");
            let url = with_database(&admin, &name);
            let store = store::PostgresStore::connect(&url)
                .await
                .expect("open the PostgreSQL event log");
            let db = ReadDb::connect(&url)
                .await
                .expect("connect the read models");
            Env {
                backend,
                store: std::sync::Arc::new(store),
                db,
                url,
                _dir: None,
            }
        }
    }
}

fn new_events<E: DomainEvent>(events: &[E], actor: UserId, at: OffsetDateTime) -> Vec<NewEvent> {
    events
        .iter()
        .map(|e| NewEvent {
            event_id: uuid::Uuid::new_v4(),
            event_type: e.event_type().to_owned(),
            version: e.version(),
            data: e.to_data(),
            metadata: Metadata {
                actor: Actor::User(actor.get()),
                occurred_at: at,
                correlation_id: "test".to_owned(),
                reason: None,
            },
        })
        .collect()
}

/// Domain state and command helpers on top of a store: every command goes through the
/// aggregate's `decide` and appends with the stream's exact expected revision.
pub struct World {
    pub store: DynStore,
    next_id: u64,
    /// Event time: advances one second per command, so rows are deterministic.
    clock: OffsetDateTime,
    users: HashMap<UserId, (UserState, u64)>,
    guilds: HashMap<GuildId, (GuildState, u64)>,
    channels: HashMap<ChannelId, (ChannelState, u64)>,
    invites: HashMap<String, (InviteState, u64)>,
    /// The position of the last append.
    pub position: u64,
}

fn expected(revision: u64) -> ExpectedRevision {
    if revision == 0 {
        ExpectedRevision::NoStream
    } else {
        ExpectedRevision::Exact(revision)
    }
}

fn evolve<A: Aggregate>(state: &mut (A, u64), events: &[A::Event]) {
    for e in events {
        state.0.evolve(e);
        state.1 += 1;
    }
}

impl World {
    pub fn new(store: DynStore) -> World {
        World {
            store,
            // Snowflake-shaped ids that increase: (2024-01-01 - epoch) << 22.
            next_id: (1_704_067_200_000 - domain::snowflake::DISCORD_EPOCH_MS) << 22,
            clock: OffsetDateTime::from_unix_timestamp(1_704_067_200).expect("time"),
            users: HashMap::new(),
            guilds: HashMap::new(),
            channels: HashMap::new(),
            invites: HashMap::new(),
            position: 0,
        }
    }

    pub fn id(&mut self) -> u64 {
        self.next_id += 1 << 22;
        self.next_id
    }

    fn tick(&mut self) -> OffsetDateTime {
        self.clock += time::Duration::seconds(1);
        self.clock
    }

    pub fn now_ms(&self) -> u64 {
        domain::timefmt::unix_ms(self.clock)
    }

    async fn append(&mut self, appends: Vec<StreamAppend>) {
        let results = self.store.append_many(appends).await.expect("append");
        self.position = results
            .iter()
            .map(|r| r.position)
            .max()
            .unwrap_or(self.position);
    }

    pub async fn register(&mut self, name: &str, bot: bool) -> UserId {
        let id = UserId::new(self.id());
        let at = self.tick();
        let username = Username::parse(name).expect("username");
        let events = user::decide(
            &UserState::default(),
            UserCommand::Register {
                user_id: id,
                username: username.clone(),
                password_hash: (!bot).then(|| "$argon2id$test".to_owned()),
                bot,
            },
        )
        .expect("register");
        let claim = user::claim_username(&Default::default(), id).expect("claim");
        self.append(vec![
            StreamAppend {
                stream_id: domain::streams::username(&username),
                expected: ExpectedRevision::NoStream,
                events: new_events(&claim, id, at),
            },
            StreamAppend {
                stream_id: domain::streams::user(id),
                expected: ExpectedRevision::NoStream,
                events: new_events(&events, id, at),
            },
        ])
        .await;
        let mut state = (UserState::default(), 0);
        evolve(&mut state, &events);
        self.users.insert(id, state);
        id
    }

    /// Creates a guild owned by `owner`; returns it and its general channel.
    pub async fn create_guild(&mut self, owner: UserId, name: &str) -> (GuildId, ChannelId) {
        let guild_id = GuildId::new(self.id());
        let general = ChannelId::new(self.id());
        let at = self.tick();
        let events = guild::decide(
            &GuildState::default(),
            GuildCommand::Create {
                guild_id,
                name: GuildName::parse(name).expect("guild name"),
                owner_id: owner,
                general_channel_id: general,
            },
        )
        .expect("create guild");
        let opened = vec![ChannelEvent::ChannelOpened {
            channel_id: general,
            guild_id: Some(guild_id),
        }];
        self.append(vec![
            StreamAppend {
                stream_id: domain::streams::guild(guild_id),
                expected: ExpectedRevision::NoStream,
                events: new_events(&events, owner, at),
            },
            StreamAppend {
                stream_id: domain::streams::channel(general),
                expected: ExpectedRevision::NoStream,
                events: new_events(&opened, owner, at),
            },
        ])
        .await;
        let mut g = (GuildState::default(), 0);
        evolve(&mut g, &events);
        self.guilds.insert(guild_id, g);
        let mut c = (ChannelState::default(), 0);
        evolve(&mut c, &opened);
        self.channels.insert(general, c);
        (guild_id, general)
    }

    pub async fn create_channel(
        &mut self,
        actor: UserId,
        guild_id: GuildId,
        kind: ChannelKind,
        name: &str,
        parent: Option<ChannelId>,
    ) -> ChannelId {
        let channel_id = ChannelId::new(self.id());
        let at = self.tick();
        let g = self.guilds.get(&guild_id).expect("known guild");
        let events = guild::decide(
            &g.0,
            GuildCommand::CreateChannel {
                actor,
                channel_id,
                kind,
                name: ChannelName::parse(name).expect("channel name"),
                parent_id: parent,
                topic: (kind == ChannelKind::Text)
                    .then(|| domain::values::Topic::parse("a topic").expect("topic")),
                nsfw: false,
                position: None,
            },
        )
        .expect("create channel");
        let opened = vec![ChannelEvent::ChannelOpened {
            channel_id,
            guild_id: Some(guild_id),
        }];
        let revision = g.1;
        self.append(vec![
            StreamAppend {
                stream_id: domain::streams::guild(guild_id),
                expected: expected(revision),
                events: new_events(&events, actor, at),
            },
            StreamAppend {
                stream_id: domain::streams::channel(channel_id),
                expected: ExpectedRevision::NoStream,
                events: new_events(&opened, actor, at),
            },
        ])
        .await;
        if let Some(g) = self.guilds.get_mut(&guild_id) {
            evolve(g, &events);
        }
        let mut c = (ChannelState::default(), 0);
        evolve(&mut c, &opened);
        self.channels.insert(channel_id, c);
        channel_id
    }

    pub async fn create_invite(
        &mut self,
        inviter: UserId,
        guild_id: GuildId,
        channel_id: ChannelId,
        code: &str,
        max_age: u32,
        max_uses: u32,
    ) {
        let at = self.tick();
        let now_ms = domain::timefmt::unix_ms(at);
        let g = &self.guilds.get(&guild_id).expect("known guild").0;
        let events = invite::decide(
            &InviteState::default(),
            g,
            InviteCommand::Create {
                code: code.to_owned(),
                channel_id,
                inviter_id: inviter,
                max_age,
                max_uses,
                temporary: false,
                now_ms,
            },
        )
        .expect("create invite");
        self.append(vec![StreamAppend {
            stream_id: domain::streams::invite(code),
            expected: ExpectedRevision::NoStream,
            events: new_events(&events, inviter, at),
        }])
        .await;
        let mut s = (InviteState::default(), 0);
        evolve(&mut s, &events);
        self.invites.insert(code.to_owned(), s);
    }

    /// Uses an invite: `InviteUsed` and the guild's `MemberJoined`, in one append.
    pub async fn join(&mut self, user_id: UserId, code: &str) {
        let at = self.tick();
        let now_ms = domain::timefmt::unix_ms(at);
        let inv = self.invites.get(code).expect("known invite");
        let guild_id = inv.0.info.as_ref().expect("created").guild_id;
        let g = &self.guilds.get(&guild_id).expect("known guild").0;
        let used =
            invite::decide(&inv.0, g, InviteCommand::Use { user_id, now_ms }).expect("use invite");
        let joined = guild::decide(
            g,
            GuildCommand::Join {
                user_id,
                invite_code: Some(code.to_owned()),
            },
        )
        .expect("join");
        let (inv_rev, g_rev) = (inv.1, self.guilds[&guild_id].1);
        let mut appends = vec![StreamAppend {
            stream_id: domain::streams::invite(code),
            expected: expected(inv_rev),
            events: new_events(&used, user_id, at),
        }];
        if !joined.is_empty() {
            appends.push(StreamAppend {
                stream_id: domain::streams::guild(guild_id),
                expected: expected(g_rev),
                events: new_events(&joined, user_id, at),
            });
        }
        self.append(appends).await;
        if let Some(s) = self.invites.get_mut(code) {
            evolve(s, &used);
        }
        if let Some(g) = self.guilds.get_mut(&guild_id) {
            evolve(g, &joined);
        }
    }

    fn guild_of(&self, channel_id: ChannelId) -> GuildId {
        self.channels[&channel_id]
            .0
            .guild_id
            .expect("a guild channel")
    }

    async fn channel_command(&mut self, channel_id: ChannelId, actor: UserId, cmd: ChannelCommand) {
        let at = self.tick();
        let guild_id = self.guild_of(channel_id);
        let c = &self.channels[&channel_id];
        let events =
            channel::decide(&c.0, &self.guilds[&guild_id].0, cmd).expect("channel command");
        let revision = c.1;
        self.append(vec![StreamAppend {
            stream_id: domain::streams::channel(channel_id),
            expected: expected(revision),
            events: new_events(&events, actor, at),
        }])
        .await;
        if let Some(c) = self.channels.get_mut(&channel_id) {
            evolve(c, &events);
        }
    }

    pub async fn send(
        &mut self,
        channel_id: ChannelId,
        author: UserId,
        content: &str,
        nonce: Option<&str>,
    ) -> MessageId {
        let message_id = MessageId::new(self.id());
        self.channel_command(
            channel_id,
            author,
            ChannelCommand::Send {
                message_id,
                channel_id,
                author_id: author,
                content: Content::parse(content).expect("content"),
                nonce: nonce.map(|n| Nonce::parse(n).expect("nonce")),
                enforce_nonce: false,
                tts: false,
            },
        )
        .await;
        message_id
    }

    /// Sends `n` messages in one append (a long log without a long test).
    pub async fn send_many(&mut self, channel_id: ChannelId, author: UserId, n: usize) {
        let at = self.tick();
        let guild_id = self.guild_of(channel_id);
        let mut state = self.channels[&channel_id].clone();
        let first_revision = state.1;
        let mut events = Vec::with_capacity(n);
        for i in 0..n {
            let message_id = MessageId::new(self.id());
            let e = channel::decide(
                &state.0,
                &self.guilds[&guild_id].0,
                ChannelCommand::Send {
                    message_id,
                    channel_id,
                    author_id: author,
                    content: Content::parse(&format!("bulk {i}")).expect("content"),
                    nonce: None,
                    enforce_nonce: false,
                    tts: false,
                },
            )
            .expect("send");
            evolve(&mut state, &e);
            events.extend(e);
        }
        self.append(vec![StreamAppend {
            stream_id: domain::streams::channel(channel_id),
            expected: expected(first_revision),
            events: new_events(&events, author, at),
        }])
        .await;
        self.channels.insert(channel_id, state);
    }

    pub async fn edit(
        &mut self,
        channel_id: ChannelId,
        actor: UserId,
        id: MessageId,
        content: &str,
    ) {
        self.channel_command(
            channel_id,
            actor,
            ChannelCommand::Edit {
                message_id: id,
                actor,
                content: Content::parse(content).expect("content"),
            },
        )
        .await;
    }

    pub async fn delete(&mut self, channel_id: ChannelId, actor: UserId, id: MessageId) {
        self.channel_command(
            channel_id,
            actor,
            ChannelCommand::Delete {
                message_id: id,
                actor,
            },
        )
        .await;
    }

    /// Runs a guild command (`cmd` gets the clock, Unix ms) as `actor`, with an audit
    /// reason; returns the events it recorded.
    pub async fn guild_command(
        &mut self,
        guild_id: GuildId,
        actor: UserId,
        reason: Option<&str>,
        cmd: impl FnOnce(u64) -> GuildCommand,
    ) -> Vec<domain::guild::GuildEvent> {
        let at = self.tick();
        let now = self.now_ms();
        let g = self.guilds.get(&guild_id).expect("known guild");
        let events = guild::decide(&g.0, cmd(now)).expect("guild command");
        let mut encoded = new_events(&events, actor, at);
        for e in &mut encoded {
            e.metadata.reason = reason.map(str::to_owned);
        }
        let revision = g.1;
        if !events.is_empty() {
            self.append(vec![StreamAppend {
                stream_id: domain::streams::guild(guild_id),
                expected: expected(revision),
                events: encoded,
            }])
            .await;
        }
        if let Some(g) = self.guilds.get_mut(&guild_id) {
            evolve(g, &events);
        }
        events
    }

    /// Appends raw events to a stream (for unknown or malformed events).
    pub async fn append_raw(&mut self, stream_id: &str, event_type: &str, data: serde_json::Value) {
        let at = self.tick();
        self.append(vec![StreamAppend {
            stream_id: stream_id.to_owned(),
            expected: ExpectedRevision::Any,
            events: vec![NewEvent {
                event_id: uuid::Uuid::new_v4(),
                event_type: event_type.to_owned(),
                version: 1,
                data,
                metadata: Metadata {
                    actor: Actor::System,
                    occurred_at: at,
                    correlation_id: "test".to_owned(),
                    reason: None,
                },
            }],
        }])
        .await;
    }
}

/// A small community: alice owns "Chorus" with #general, a category, #dev inside it and a
/// voice room; bob joins through an invite; a few messages, one edited, one deleted.
pub struct Community {
    pub alice: UserId,
    pub bob: UserId,
    pub guild: GuildId,
    pub general: ChannelId,
    pub category: ChannelId,
    pub dev: ChannelId,
    pub voice: ChannelId,
    pub messages: Vec<MessageId>,
    pub edited: MessageId,
    pub deleted: MessageId,
}

pub async fn community(w: &mut World) -> Community {
    let alice = w.register("alice", false).await;
    let bob = w.register("bob", true).await;
    let (guild, general) = w.create_guild(alice, "Chorus").await;
    let category = w
        .create_channel(alice, guild, ChannelKind::Category, "Projects", None)
        .await;
    let dev = w
        .create_channel(alice, guild, ChannelKind::Text, "dev", Some(category))
        .await;
    let voice = w
        .create_channel(alice, guild, ChannelKind::Voice, "Lounge", None)
        .await;
    w.create_invite(alice, guild, general, "chorus", 0, 0).await;
    w.join(bob, "chorus").await;
    let mut messages = Vec::new();
    messages.push(w.send(general, alice, "hello", Some("n1")).await);
    messages.push(w.send(general, bob, "hi alice", None).await);
    messages.push(w.send(general, alice, "typo", None).await);
    messages.push(w.send(dev, bob, "in dev", None).await);
    let edited = messages[2];
    w.edit(general, alice, edited, "fixed").await;
    let deleted = w.send(general, bob, "oops", None).await;
    w.delete(general, bob, deleted).await;
    Community {
        alice,
        bob,
        guild,
        general,
        category,
        dev,
        voice,
        messages,
        edited,
        deleted,
    }
}

/// What [`moderation`] did to the community.
pub struct Moderation {
    pub carol: UserId,
    pub dave: UserId,
    pub eve: UserId,
    pub mods: domain::RoleId,
    pub helpers: domain::RoleId,
    /// carol's message alice deleted (a moderator's deletion).
    pub removed: MessageId,
}

/// Moderation on top of [`community`]: roles (created, given, edited, reordered, one
/// deleted), a member edit with nickname, roles and timeout, overwrites on the category
/// (#dev follows it) and on #general, slowmode, a kick, a ban that stays, a ban that is
/// lifted, and a moderator's message deletion; every command with an audit reason.
pub async fn moderation(w: &mut World, c: &Community) -> Moderation {
    use domain::guild::GuildEvent;
    use domain::permissions::{Overwrite, Permissions};
    use domain::role::RoleName;
    let carol = w.register("carol", false).await;
    let dave = w.register("dave", false).await;
    let eve = w.register("eve", false).await;
    w.join(carol, "chorus").await;
    w.join(dave, "chorus").await;
    let (alice, bob, g) = (c.alice, c.bob, c.guild);
    let mods = domain::RoleId::new(w.id());
    let mod_perms = Permissions::KICK_MEMBERS
        | Permissions::BAN_MEMBERS
        | Permissions::MANAGE_ROLES
        | Permissions::MANAGE_NICKNAMES
        | Permissions::MODERATE_MEMBERS
        | Permissions::VIEW_AUDIT_LOG;
    w.guild_command(g, alice, Some("a team"), |now_ms| {
        GuildCommand::CreateRole {
            actor: alice,
            role_id: mods,
            name: RoleName::parse("Mods").unwrap(),
            permissions: mod_perms,
            color: 0x3498db,
            hoist: true,
            mentionable: true,
            now_ms,
        }
    })
    .await;
    w.guild_command(g, alice, None, |now_ms| GuildCommand::AddMemberRole {
        actor: alice,
        user_id: bob,
        role_id: mods,
        now_ms,
    })
    .await;
    let helpers = domain::RoleId::new(w.id());
    w.guild_command(g, bob, None, |now_ms| GuildCommand::CreateRole {
        actor: bob,
        role_id: helpers,
        name: RoleName::parse("Helpers").unwrap(),
        permissions: Permissions::NONE,
        color: 0,
        hoist: false,
        mentionable: false,
        now_ms,
    })
    .await;
    w.guild_command(g, bob, Some("greener"), |now_ms| GuildCommand::EditRole {
        actor: bob,
        role_id: helpers,
        name: None,
        permissions: None,
        color: Some(0x2ecc71),
        hoist: None,
        mentionable: None,
        now_ms,
    })
    .await;
    // The owner deletes carol's message (before her timeout).
    let removed = w.send(c.general, carol, "hmm", None).await;
    w.delete(c.general, alice, removed).await;
    let until = w.now_ms() + 3_600_000;
    w.guild_command(g, bob, Some("cool down"), |now_ms| {
        GuildCommand::EditMember {
            actor: bob,
            user_id: carol,
            nick: Some(Some(domain::member::Nickname::parse("Caz").unwrap())),
            roles: Some(vec![helpers]),
            communication_disabled_until_ms: Some(Some(until)),
            mute: None,
            deaf: None,
            now_ms,
        }
    })
    .await;
    // A role that only lives a moment, with an overwrite that goes with it.
    let temp = domain::RoleId::new(w.id());
    w.guild_command(g, alice, None, |now_ms| GuildCommand::CreateRole {
        actor: alice,
        role_id: temp,
        name: RoleName::parse("Temp").unwrap(),
        permissions: Permissions::NONE,
        color: 0,
        hoist: false,
        mentionable: false,
        now_ms,
    })
    .await;
    w.guild_command(g, alice, None, |now_ms| GuildCommand::SetOverwrite {
        actor: alice,
        channel_id: c.general,
        overwrite: Overwrite::role(temp, Permissions::ADD_REACTIONS, Permissions::NONE),
        now_ms,
    })
    .await;
    w.guild_command(g, alice, Some("cleanup"), |now_ms| {
        GuildCommand::DeleteRole {
            actor: alice,
            role_id: temp,
            now_ms,
        }
    })
    .await;
    w.guild_command(g, alice, None, |now_ms| GuildCommand::ReorderRoles {
        actor: alice,
        positions: vec![(helpers, 1), (mods, 2)],
        now_ms,
    })
    .await;
    // Overwrites: the category (its synced #dev follows), and #general's own.
    w.guild_command(g, alice, Some("quiet helpers"), |now_ms| {
        GuildCommand::SetOverwrite {
            actor: alice,
            channel_id: c.category,
            overwrite: Overwrite::role(helpers, Permissions::NONE, Permissions::SEND_MESSAGES),
            now_ms,
        }
    })
    .await;
    w.guild_command(g, alice, None, |now_ms| GuildCommand::SetOverwrite {
        actor: alice,
        channel_id: c.general,
        overwrite: Overwrite::member(carol, Permissions::ATTACH_FILES, Permissions::EMBED_LINKS),
        now_ms,
    })
    .await;
    w.guild_command(g, alice, None, |now_ms| GuildCommand::SetOverwrite {
        actor: alice,
        channel_id: c.general,
        overwrite: Overwrite::member(carol, Permissions::ATTACH_FILES, Permissions::NONE),
        now_ms,
    })
    .await;
    w.guild_command(g, alice, Some("slow down"), |now_ms| {
        GuildCommand::EditChannel {
            actor: alice,
            channel_id: c.general,
            name: None,
            topic: Some(Some(domain::values::Topic::parse("be nice").unwrap())),
            nsfw: None,
            position: None,
            parent_id: None,
            rate_limit_per_user: Some(10),
            lock_permissions: false,
            now_ms,
        }
    })
    .await;
    // A kick (dave comes back), a ban that stays, a ban that is lifted.
    w.guild_command(g, bob, Some("spam"), |now_ms| GuildCommand::KickMember {
        actor: bob,
        user_id: dave,
        now_ms,
    })
    .await;
    w.join(dave, "chorus").await;
    let banned = w
        .guild_command(g, bob, Some("more spam"), |now_ms| {
            GuildCommand::BanMember {
                actor: bob,
                user_id: dave,
                delete_message_seconds: 0,
                now_ms,
            }
        })
        .await;
    assert!(matches!(banned[0], GuildEvent::MemberBanned { .. }));
    w.guild_command(g, bob, None, |now_ms| GuildCommand::BanMember {
        actor: bob,
        user_id: eve,
        delete_message_seconds: 0,
        now_ms,
    })
    .await;
    w.guild_command(g, bob, Some("forgiven"), |now_ms| {
        GuildCommand::UnbanMember {
            actor: bob,
            user_id: eve,
            now_ms,
        }
    })
    .await;
    Moderation {
        carol,
        dave,
        eve,
        mods,
        helpers,
        removed,
    }
}
