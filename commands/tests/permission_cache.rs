//! The permission cache is never stale for commands: once a revocation (an overwrite, a
//! role taken away, a role's permissions cut, a timeout, a ban) has returned success on
//! one node, the very next send on another node is judged by it. Each "node" is a
//! separate `Commands` with its own connection pool, appender and warm cache, over the
//! same database, as two `chorus serve` processes would be.

use std::sync::Arc;

use commands::{
    ChannelSpec, CommandError, Commands, Context, InviteSpec, MemberEdit, RoleEdit, RoleSpec,
};
use domain::guild::ChannelKind;
use domain::permissions::{Overwrite, OverwriteTarget, Permissions};
use domain::values::ChannelName;
use domain::{ChannelId, DomainError, GuildId, RoleId, SnowflakeGenerator};
use store::DynStore;

const ROUNDS: usize = 200;

fn node(store: DynStore, process: u8) -> Commands {
    Commands::new(store, Arc::new(SnowflakeGenerator::new(2, process)))
}

fn now_ms() -> u64 {
    domain::timefmt::unix_ms(time::OffsetDateTime::now_utc())
}

struct World {
    admin: Commands,
    sender: Commands,
    owner: Context,
    member: Context,
    guild: GuildId,
    channel: ChannelId,
    speaker: RoleId,
    invite: String,
}

/// A guild whose @everyone cannot send; the member sends through the `speaker` role.
async fn world(a: DynStore, b: DynStore) -> World {
    let admin = node(a, 0);
    let sender = node(b, 1);
    let owner = admin.register("owner", "password1", "r").await.unwrap();
    let member = admin.register("member", "password1", "r").await.unwrap();
    let owner = Context::user(owner.user_id, "r");
    let member = Context::user(member.user_id, "r");
    let (guild, _) = admin.create_guild(&owner, "Chorus").await.unwrap();
    let (channel, _) = admin
        .create_channel(
            &owner,
            guild,
            ChannelSpec {
                kind: ChannelKind::Text,
                name: ChannelName::parse("hammer").unwrap(),
                parent_id: None,
                topic: None,
                nsfw: false,
                position: None,
            },
        )
        .await
        .unwrap();
    let everyone = Permissions::DEFAULT_EVERYONE.difference(Permissions::SEND_MESSAGES);
    admin
        .edit_role(
            &owner,
            guild,
            RoleId::new(guild.get()),
            RoleEdit {
                permissions: Some(everyone),
                ..RoleEdit::default()
            },
        )
        .await
        .unwrap();
    let (speaker, _) = admin
        .create_role(
            &owner,
            guild,
            RoleSpec {
                name: Some("speaker".into()),
                permissions: Some(Permissions::SEND_MESSAGES),
                ..RoleSpec::default()
            },
        )
        .await
        .unwrap();
    let (invite, _) = admin
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
    let w = World {
        admin,
        sender,
        owner,
        member,
        guild,
        channel,
        speaker,
        invite: invite.code,
    };
    w.sender.accept_invite(&w.member, &w.invite).await.unwrap();
    w.restore_role().await;
    w
}

impl World {
    async fn send(&self, round: usize) -> Result<(), CommandError> {
        self.sender
            .send_message(
                &self.member,
                self.channel,
                &format!("round {round}"),
                None,
                false,
                false,
            )
            .await
            .map(|_| ())
    }

    async fn restore_role(&self) {
        self.admin
            .set_member_role(
                &self.owner,
                self.guild,
                self.member.actor,
                self.speaker,
                true,
            )
            .await
            .unwrap();
    }

    /// Revokes the member's right to send in one of five ways; returns how to undo it.
    async fn revoke(&self, round: usize) -> &'static str {
        let (owner, guild, member) = (&self.owner, self.guild, self.member.actor);
        match round % 5 {
            0 => {
                let deny = Overwrite {
                    target: OverwriteTarget::Member(member),
                    allow: Permissions::NONE,
                    deny: Permissions::SEND_MESSAGES,
                };
                self.admin
                    .set_overwrite(owner, self.channel, deny)
                    .await
                    .unwrap();
                "overwrite"
            }
            1 => {
                self.admin
                    .set_member_role(owner, guild, member, self.speaker, false)
                    .await
                    .unwrap();
                "role"
            }
            2 => {
                self.admin
                    .edit_role(
                        owner,
                        guild,
                        self.speaker,
                        RoleEdit {
                            permissions: Some(Permissions::NONE),
                            ..RoleEdit::default()
                        },
                    )
                    .await
                    .unwrap();
                "role permissions"
            }
            3 => {
                let edit = MemberEdit {
                    communication_disabled_until_ms: Some(Some(now_ms() + 600_000)),
                    ..MemberEdit::default()
                };
                self.admin
                    .edit_member(owner, guild, member, edit)
                    .await
                    .unwrap();
                "timeout"
            }
            _ => {
                self.admin
                    .ban_member(owner, guild, member, 0)
                    .await
                    .unwrap();
                "ban"
            }
        }
    }

    async fn undo(&self, kind: &str) {
        let (owner, guild, member) = (&self.owner, self.guild, self.member.actor);
        match kind {
            "overwrite" => {
                self.admin
                    .delete_overwrite(owner, self.channel, OverwriteTarget::Member(member))
                    .await
                    .unwrap();
            }
            "role" => self.restore_role().await,
            "role permissions" => {
                self.admin
                    .edit_role(
                        owner,
                        guild,
                        self.speaker,
                        RoleEdit {
                            permissions: Some(Permissions::SEND_MESSAGES),
                            ..RoleEdit::default()
                        },
                    )
                    .await
                    .unwrap();
            }
            "timeout" => {
                let edit = MemberEdit {
                    communication_disabled_until_ms: Some(None),
                    ..MemberEdit::default()
                };
                self.admin
                    .edit_member(owner, guild, member, edit)
                    .await
                    .unwrap();
            }
            _ => {
                self.admin.unban_member(owner, guild, member).await.unwrap();
                self.sender
                    .accept_invite(&self.member, &self.invite)
                    .await
                    .unwrap();
                self.restore_role().await;
            }
        }
    }
}

async fn revoke_then_send(a: DynStore, b: DynStore) {
    let w = world(a, b).await;
    let mut refused = std::collections::BTreeMap::<&str, usize>::new();
    for round in 0..ROUNDS {
        // Allowed, and the sending node's cache is warm.
        w.send(round).await.unwrap_or_else(|e| {
            panic!("round {round}: a send before the revocation failed: {e:?}")
        });
        let kind = w.revoke(round).await;
        match w.send(round).await {
            Err(CommandError::Domain(
                DomainError::MissingPermissions | DomainError::MissingAccess,
            )) => *refused.entry(kind).or_default() += 1,
            other => panic!("round {round}: a send after a {kind} revocation was judged {other:?}"),
        }
        w.undo(kind).await;
    }
    assert_eq!(refused.values().sum::<usize>(), ROUNDS, "{refused:?}");
    assert_eq!(
        refused.len(),
        5,
        "every kind of revocation ran: {refused:?}"
    );
}

/// A fresh PostgreSQL database; fails loudly when PostgreSQL is unreachable.
async fn fresh_postgres() -> String {
    use sqlx::Connection;
    let base = std::env::var("CHORUS_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let mut conn = sqlx::PgConnection::connect(&format!("{base}/postgres"))
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL is not reachable at {base}: {e}"));
    let name = format!("chorus_perm_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    format!("{base}/{name}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_send_is_accepted_after_a_revocation_on_another_node_on_postgres() {
    let url = fresh_postgres().await;
    let a: DynStore = Arc::new(store::postgres::PostgresStore::connect(&url).await.unwrap());
    let b: DynStore = Arc::new(store::postgres::PostgresStore::connect(&url).await.unwrap());
    revoke_then_send(a, b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_send_is_accepted_after_a_revocation_on_another_node_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("chorus.db").display()
    );
    let a: DynStore = Arc::new(store::sqlite::SqliteStore::open(&url).await.unwrap());
    let b: DynStore = Arc::new(store::sqlite::SqliteStore::open(&url).await.unwrap());
    revoke_then_send(a, b).await;
}

/// Counts the event log calls a command makes.
struct Counting {
    inner: DynStore,
    reads: std::sync::atomic::AtomicUsize,
    appends: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl store::EventStore for Counting {
    async fn append_many(
        &self,
        appends: Vec<store::StreamAppend>,
    ) -> store::Result<Vec<store::AppendResult>> {
        self.appends
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.append_many(appends).await
    }
    async fn read_stream(
        &self,
        stream_id: &str,
        from: u64,
        direction: store::Direction,
        limit: usize,
    ) -> store::Result<Vec<store::RecordedEvent>> {
        self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner
            .read_stream(stream_id, from, direction, limit)
            .await
    }
    async fn read_streams_forwards(
        &self,
        from: &[(&str, u64)],
        limit: usize,
    ) -> store::Result<Vec<store::RecordedEvent>> {
        self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.read_streams_forwards(from, limit).await
    }
    async fn read_all(&self, after: u64, limit: usize) -> store::Result<Vec<store::RecordedEvent>> {
        self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.read_all(after, limit).await
    }
    async fn stream_revision(&self, stream_id: &str) -> store::Result<u64> {
        self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.stream_revision(stream_id).await
    }
    async fn head(&self) -> store::Result<u64> {
        self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.head().await
    }
    fn watch_head(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.watch_head()
    }
}

/// Sending a message reads the channel and its guild's permission pieces in one call to
/// the log, then appends: the permission check costs no extra round trip.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permission_checked_send_makes_one_read_and_one_append() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("chorus.db").display()
    );
    let sqlite: DynStore = Arc::new(store::sqlite::SqliteStore::open(&url).await.unwrap());
    let counting = Arc::new(Counting {
        inner: sqlite.clone(),
        reads: 0.into(),
        appends: 0.into(),
    });
    let w = world(sqlite, counting.clone()).await;
    w.send(0).await.unwrap(); // warm
    let (reads, appends) = (
        counting.reads.load(std::sync::atomic::Ordering::SeqCst),
        counting.appends.load(std::sync::atomic::Ordering::SeqCst),
    );
    for round in 1..=10 {
        w.send(round).await.unwrap();
    }
    let reads = counting.reads.load(std::sync::atomic::Ordering::SeqCst) - reads;
    let appends = counting.appends.load(std::sync::atomic::Ordering::SeqCst) - appends;
    assert_eq!(
        (reads, appends),
        (10, 10),
        "one read and one append per send"
    );
    // And the check is real: a denied member's send is refused after that same one read.
    w.revoke(1).await;
    assert!(w.send(11).await.is_err());
}
