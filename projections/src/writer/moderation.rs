//! The moderation events in the read models: roles, member roles and edits, bans,
//! channel edits, deletions and overwrites, and the audit log.
//!
//! Most become plain statements in log order ([`Op::Exec`]). Channel overwrites follow
//! the domain's rules (a channel synced with its category shows the category's list; a
//! change to a synced channel first copies it), which needs the rows as they are, so
//! those are read-modify-write operations ([`ChannelOp`]) on the `channels` table only.
//! Audit entries whose changes compare with the previous state ([`AuditOp`]) read the
//! other tables before the event's own operations run. Operations run in log order, each
//! after the pending inserts of the tables it touches (see `Plan::write`).

use domain::guild::GuildEvent;
use domain::member::RemovalReason;
use domain::permissions::{Overwrite, OverwriteTarget};
use domain::RoleId;
use serde_json::{json, Value};
use sqlx::{AnyConnection, Row as _};
use store::{Actor, RecordedEvent};

use super::{b, Op, Plan, Target, Val};
use crate::db::{to_i64, to_u64};
use crate::schema::Table;
use crate::Result;

/// Discord's audit log action types.
pub mod action {
    pub const GUILD_UPDATE: i64 = 1;
    pub const CHANNEL_CREATE: i64 = 10;
    pub const CHANNEL_UPDATE: i64 = 11;
    pub const CHANNEL_DELETE: i64 = 12;
    pub const CHANNEL_OVERWRITE_CREATE: i64 = 13;
    pub const CHANNEL_OVERWRITE_UPDATE: i64 = 14;
    pub const CHANNEL_OVERWRITE_DELETE: i64 = 15;
    pub const MEMBER_KICK: i64 = 20;
    pub const MEMBER_BAN_ADD: i64 = 22;
    pub const MEMBER_BAN_REMOVE: i64 = 23;
    pub const MEMBER_UPDATE: i64 = 24;
    pub const MEMBER_ROLE_UPDATE: i64 = 25;
    pub const ROLE_CREATE: i64 = 30;
    pub const ROLE_UPDATE: i64 = 31;
    pub const ROLE_DELETE: i64 = 32;
    pub const INVITE_CREATE: i64 = 40;
    pub const INVITE_DELETE: i64 = 42;
    pub const MESSAGE_DELETE: i64 = 72;
    pub const MESSAGE_BULK_DELETE: i64 = 73;
    pub const MESSAGE_PIN: i64 = 74;
    pub const MESSAGE_UNPIN: i64 = 75;
}

/// A change of an audit entry: `{key, old_value?, new_value?}`.
pub(crate) fn change(key: &str, old: Option<Value>, new: Option<Value>) -> Value {
    let mut c = json!({ "key": key });
    if let Some(o) = old {
        c["old_value"] = o;
    }
    if let Some(n) = new {
        c["new_value"] = n;
    }
    c
}

fn new_value(key: &str, v: Value) -> Value {
    change(key, None, Some(v))
}

/// The id of the `k`th (0 or 1) audit entry of an event: a snowflake of the event's time
/// whose low 22 bits come from its global position, so a rebuild gives the same ids and
/// they sort by time.
pub(crate) fn entry_id(at_ms: i64, position: u64, k: u64) -> i64 {
    let ms = to_u64(at_ms.max(0)).saturating_sub(domain::snowflake::DISCORD_EPOCH_MS);
    to_i64((ms << 22) | ((position.wrapping_mul(2) + k) & 0x3f_ffff))
}

/// Who acted, from the event's metadata.
fn actor_id(e: &RecordedEvent) -> Option<i64> {
    match e.metadata.actor {
        Actor::User(id) | Actor::Bot(id) => Some(to_i64(id)),
        _ => None,
    }
}

/// What every audit entry of an event shares.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub guild_id: i64,
    pub id: i64,
    pub user_id: Option<i64>,
    pub reason: Option<String>,
    pub position: i64,
}

impl Entry {
    pub fn of(e: &RecordedEvent, guild_id: i64, at: i64, k: u64) -> Entry {
        Entry {
            guild_id,
            id: entry_id(at, e.position, k),
            user_id: actor_id(e),
            reason: e.metadata.reason.clone(),
            position: to_i64(e.position),
        }
    }

    /// The rows of an update's entry: none when nothing it records changed.
    fn update_rows(&self, target_id: i64, action_type: i64, changes: Vec<Value>) -> Vec<Vec<Val>> {
        if changes.is_empty() {
            return Vec::new();
        }
        vec![self.row(Some(target_id), action_type, changes, None)]
    }

    /// The audit_log row.
    pub fn row(
        &self,
        target_id: Option<i64>,
        action_type: i64,
        changes: Vec<Value>,
        options: Option<Value>,
    ) -> Vec<Val> {
        vec![
            Val::Int(self.guild_id),
            Val::Int(self.id),
            Val::OptInt(self.user_id),
            Val::OptInt(target_id),
            Val::Int(action_type),
            Val::Text(Value::Array(changes).to_string()),
            Val::OptText(options.map(|o| o.to_string())),
            Val::OptText(self.reason.clone()),
            Val::Int(self.position),
        ]
    }
}

fn id_str(id: i64) -> Value {
    Value::String(to_u64(id).to_string())
}

fn opt_id_str(id: Option<i64>) -> Value {
    id.map_or(Value::Null, id_str)
}

/// A channel change that depends on the rows as they are.
#[derive(Debug)]
pub(crate) enum ChannelOp {
    Updated {
        id: i64,
        name: String,
        position: i64,
        parent_id: Option<i64>,
        topic: Option<String>,
        nsfw: bool,
        rate_limit_per_user: i64,
        synced: bool,
    },
    Deleted {
        id: i64,
        at: i64,
    },
    OverwriteSet {
        id: i64,
        overwrite: Overwrite,
    },
    OverwriteDeleted {
        id: i64,
        target: OverwriteTarget,
    },
    /// A role is gone: every channel of the guild loses its overwrite.
    RoleGone {
        guild_id: i64,
        role_id: RoleId,
    },
}

/// An audit entry computed from the state before its event.
#[derive(Debug)]
pub(crate) enum AuditOp {
    /// `MemberUpdated`: MEMBER_UPDATE and/or MEMBER_ROLE_UPDATE, by what changed.
    Member {
        entry: Entry,
        user_id: i64,
        nick: Option<String>,
        roles: Vec<i64>,
        until: Option<i64>,
        mute: bool,
        deaf: bool,
    },
    /// `ChannelOverwriteSet`: CREATE or UPDATE, by whether it existed.
    Overwrite {
        entry: Entry,
        channel_id: i64,
        overwrite: Overwrite,
    },
    /// `RoleUpdated`: ROLE_UPDATE with the changed fields, old and new.
    Role {
        entry: Entry,
        role: domain::role::Role,
    },
    /// `ChannelUpdated`: CHANNEL_UPDATE with the changed fields, old and new.
    Channel {
        entry: Entry,
        channel_id: i64,
        fields: ChannelFields,
    },
    /// `GuildRenamed`: GUILD_UPDATE with the old and the new name.
    GuildName { entry: Entry, name: String },
    /// `InviteDeleted`: INVITE_DELETE with what the invite was (its guild, which the
    /// entry's `guild_id` is set to, comes from the row).
    Invite { entry: Entry, code: String },
    /// `MessageDeleted` by someone else than the author: MESSAGE_DELETE.
    Message {
        entry: Entry,
        channel_id: i64,
        message_id: i64,
        actor: Option<i64>,
    },
    /// `MessagePinned` / `MessageUnpinned`: MESSAGE_PIN / MESSAGE_UNPIN on the message's
    /// author, with the channel and the message (the guild and author come from its row).
    Pin {
        entry: Entry,
        channel_id: i64,
        message_id: i64,
        pinned: bool,
    },
    /// `MessagesBulkDeleted`: MESSAGE_BULK_DELETE on the channel, with the count (the
    /// channel's guild comes from its row).
    BulkDelete {
        entry: Entry,
        channel_id: i64,
        count: usize,
    },
}

/// The fields of a channel that its CHANNEL_UPDATE audit entry compares, as stored.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ChannelFields {
    pub name: String,
    pub position: i64,
    pub parent_id: Option<i64>,
    pub topic: Option<String>,
    pub nsfw: bool,
    pub rate_limit_per_user: i64,
}

impl ChannelFields {
    /// `{key, old_value?, new_value}` for each field that differs from `old` (all of them
    /// when there is no old row). A null old value is left out, as Discord does.
    fn changes(&self, old: Option<&ChannelFields>) -> Vec<Value> {
        let fields = |f: &ChannelFields| {
            [
                ("name", json!(f.name)),
                ("position", json!(f.position)),
                ("parent_id", opt_id_str(f.parent_id)),
                ("topic", json!(f.topic)),
                ("nsfw", json!(f.nsfw)),
                ("rate_limit_per_user", json!(f.rate_limit_per_user)),
            ]
        };
        diff(old.map(fields), fields(self))
    }
}

/// The changes between `old` and `new` (key, value) lists of the same keys in the same
/// order: every key whose value differs, with `old_value` unless it was null (or there is
/// no old state at all), and `new_value` unless it is null.
fn diff<const N: usize>(old: Option<[(&str, Value); N]>, new: [(&str, Value); N]) -> Vec<Value> {
    let present = |v: Value| (!v.is_null()).then_some(v);
    match old {
        None => new
            .into_iter()
            .map(|(key, v)| change(key, None, present(v)))
            .collect(),
        Some(old) => old
            .into_iter()
            .zip(new)
            .filter(|((_, o), (_, n))| o != n)
            .map(|((key, o), (_, n))| change(key, present(o), present(n)))
            .collect(),
    }
}

impl ChannelOp {
    pub fn table(&self) -> Table {
        Table::Channels
    }
}

impl AuditOp {
    /// The tables it reads.
    pub fn reads(&self) -> &'static [Table] {
        match self {
            AuditOp::Member { .. } => &[Table::Members, Table::MemberRoles, Table::Roles],
            AuditOp::Overwrite { .. } => &[Table::Channels, Table::Roles],
            AuditOp::Role { .. } => &[Table::Roles],
            AuditOp::Channel { .. } => &[Table::Channels],
            AuditOp::GuildName { .. } => &[Table::Guilds],
            AuditOp::Invite { .. } => &[Table::Invites],
            AuditOp::Message { .. } => &[Table::Messages],
            AuditOp::BulkDelete { .. } => &[Table::Channels],
            AuditOp::Pin { .. } => &[Table::Messages],
        }
    }
}

fn overwrite_options(o: &OverwriteTarget, role_name: Option<String>) -> Value {
    let mut v = json!({
        "id": o.id().to_string(),
        "type": o.discord_type().to_string(),
    });
    if let Some(n) = role_name {
        v["role_name"] = Value::String(n);
    }
    v
}

impl Plan {
    fn audit(&mut self, row: Vec<Val>) {
        self.push(Op::Insert(Table::AuditLog, row));
    }

    fn exec(&mut self, table: Table, sql: &'static str, vals: Vec<Val>) {
        self.push(Op::Exec { table, sql, vals });
    }

    /// Plans a guild event other than GuildCreated / ChannelCreated / MemberJoined.
    pub(super) fn moderation(
        &mut self,
        e: &RecordedEvent,
        guild_id: i64,
        at: i64,
        ev: GuildEvent,
    ) -> bool {
        let entry = |k| Entry::of(e, guild_id, at, k);
        match ev {
            GuildEvent::GuildCreated { .. }
            | GuildEvent::ChannelCreated { .. }
            | GuildEvent::MemberJoined { .. } => return false,
            GuildEvent::RoleCreated { role } => {
                let id = to_i64(role.id.get());
                self.push(Op::Insert(Table::Roles, role_row(guild_id, &role)));
                self.audit(entry(0).row(Some(id), action::ROLE_CREATE, role_changes(&role), None));
            }
            GuildEvent::RoleUpdated { role } => {
                let id = to_i64(role.id.get());
                self.push(Op::Audit(AuditOp::Role {
                    entry: entry(0),
                    role: role.clone(),
                }));
                let mut row = role_row(guild_id, &role);
                // guild_id, id, then the rest: an update keyed by (guild_id, id).
                let rest = row.split_off(2);
                let mut vals = row;
                vals.extend(rest);
                self.exec(
                    Table::Roles,
                    "UPDATE {t} SET name = $3, color = $4, hoist = $5, position = $6, \
                     permissions = $7, managed = $8, mentionable = $9, bot_id = $10 \
                     WHERE guild_id = $1 AND id = $2",
                    vals,
                );
                if id == guild_id {
                    self.exec(
                        Table::Guilds,
                        "UPDATE {t} SET everyone_permissions = $2 WHERE id = $1",
                        vec![
                            Val::Int(guild_id),
                            Val::Int(to_i64(role.permissions.bits())),
                        ],
                    );
                }
            }
            GuildEvent::RoleDeleted { role_id } => {
                let id = to_i64(role_id.get());
                self.exec(
                    Table::Roles,
                    "DELETE FROM {t} WHERE guild_id = $1 AND id = $2",
                    vec![Val::Int(guild_id), Val::Int(id)],
                );
                self.exec(
                    Table::MemberRoles,
                    "DELETE FROM {t} WHERE guild_id = $1 AND role_id = $2",
                    vec![Val::Int(guild_id), Val::Int(id)],
                );
                self.push(Op::Channel(ChannelOp::RoleGone { guild_id, role_id }));
                self.audit(entry(0).row(Some(id), action::ROLE_DELETE, vec![], None));
            }
            GuildEvent::RolesReordered { positions } => {
                for p in positions {
                    self.exec(
                        Table::Roles,
                        "UPDATE {t} SET position = $3 WHERE guild_id = $1 AND id = $2",
                        vec![
                            Val::Int(guild_id),
                            Val::Int(to_i64(p.role_id.get())),
                            Val::Int(i64::from(p.position)),
                        ],
                    );
                }
            }
            GuildEvent::MemberUpdated {
                user_id,
                nick,
                roles,
                communication_disabled_until_ms,
                mute,
                deaf,
            } => {
                let user = to_i64(user_id.get());
                let nick = nick.map(|n| n.into_string());
                let until = communication_disabled_until_ms.map(to_i64);
                let roles: Vec<i64> = roles.iter().map(|r| to_i64(r.get())).collect();
                self.push(Op::Audit(AuditOp::Member {
                    entry: entry(0),
                    user_id: user,
                    nick: nick.clone(),
                    roles: roles.clone(),
                    until,
                    mute,
                    deaf,
                }));
                self.exec(
                    Table::Members,
                    "UPDATE {t} SET nick = $3, communication_disabled_until = $4, mute = $5, \
                     deaf = $6 WHERE guild_id = $1 AND user_id = $2",
                    vec![
                        Val::Int(guild_id),
                        Val::Int(user),
                        Val::OptText(nick),
                        Val::OptInt(until),
                        b(mute),
                        b(deaf),
                    ],
                );
                self.exec(
                    Table::MemberRoles,
                    "DELETE FROM {t} WHERE guild_id = $1 AND user_id = $2",
                    vec![Val::Int(guild_id), Val::Int(user)],
                );
                for role in roles {
                    self.push(Op::Insert(
                        Table::MemberRoles,
                        vec![Val::Int(guild_id), Val::Int(user), Val::Int(role)],
                    ));
                }
            }
            GuildEvent::MemberRemoved { user_id, reason } => {
                let user = to_i64(user_id.get());
                self.exec(
                    Table::Members,
                    "DELETE FROM {t} WHERE guild_id = $1 AND user_id = $2",
                    vec![Val::Int(guild_id), Val::Int(user)],
                );
                self.exec(
                    Table::MemberRoles,
                    "DELETE FROM {t} WHERE guild_id = $1 AND user_id = $2",
                    vec![Val::Int(guild_id), Val::Int(user)],
                );
                if reason == RemovalReason::Kick {
                    self.audit(entry(0).row(Some(user), action::MEMBER_KICK, vec![], None));
                }
            }
            GuildEvent::MemberBanned {
                user_id,
                delete_message_seconds,
            } => {
                let user = to_i64(user_id.get());
                self.exec(
                    Table::Bans,
                    "DELETE FROM {t} WHERE guild_id = $1 AND user_id = $2",
                    vec![Val::Int(guild_id), Val::Int(user)],
                );
                self.push(Op::Insert(
                    Table::Bans,
                    vec![
                        Val::Int(guild_id),
                        Val::Int(user),
                        Val::OptText(e.metadata.reason.clone()),
                        Val::Int(at),
                    ],
                ));
                let options = (delete_message_seconds > 0).then(
                    || json!({ "delete_message_seconds": delete_message_seconds.to_string() }),
                );
                self.audit(entry(0).row(Some(user), action::MEMBER_BAN_ADD, vec![], options));
            }
            GuildEvent::MemberUnbanned { user_id } => {
                let user = to_i64(user_id.get());
                self.exec(
                    Table::Bans,
                    "DELETE FROM {t} WHERE guild_id = $1 AND user_id = $2",
                    vec![Val::Int(guild_id), Val::Int(user)],
                );
                self.audit(entry(0).row(Some(user), action::MEMBER_BAN_REMOVE, vec![], None));
            }
            GuildEvent::ChannelUpdated {
                channel_id,
                kind: _,
                name,
                position,
                parent_id,
                topic,
                nsfw,
                rate_limit_per_user,
                permission_synced,
            } => {
                let id = to_i64(channel_id.get());
                let parent = parent_id.map(|p| to_i64(p.get()));
                let topic = topic.map(|t| t.into_string());
                self.push(Op::Audit(AuditOp::Channel {
                    entry: entry(0),
                    channel_id: id,
                    fields: ChannelFields {
                        name: name.as_str().to_owned(),
                        position: i64::from(position),
                        parent_id: parent,
                        topic: topic.clone(),
                        nsfw,
                        rate_limit_per_user: i64::from(rate_limit_per_user),
                    },
                }));
                self.push(Op::Channel(ChannelOp::Updated {
                    id,
                    name: name.into_string(),
                    position: i64::from(position),
                    parent_id: parent,
                    topic,
                    nsfw,
                    rate_limit_per_user: i64::from(rate_limit_per_user),
                    synced: permission_synced && parent.is_some(),
                }));
            }
            GuildEvent::ChannelDeleted { channel_id } => {
                let id = to_i64(channel_id.get());
                self.push(Op::Channel(ChannelOp::Deleted { id, at }));
                self.audit(entry(0).row(Some(id), action::CHANNEL_DELETE, vec![], None));
            }
            GuildEvent::ChannelOverwriteSet {
                channel_id,
                overwrite,
            } => {
                let id = to_i64(channel_id.get());
                self.push(Op::Audit(AuditOp::Overwrite {
                    entry: entry(0),
                    channel_id: id,
                    overwrite,
                }));
                self.push(Op::Channel(ChannelOp::OverwriteSet { id, overwrite }));
            }
            GuildEvent::ChannelOverwriteDeleted { channel_id, target } => {
                let id = to_i64(channel_id.get());
                self.push(Op::Channel(ChannelOp::OverwriteDeleted { id, target }));
                self.audit(entry(0).row(
                    Some(id),
                    action::CHANNEL_OVERWRITE_DELETE,
                    vec![],
                    Some(overwrite_options(&target, None)),
                ));
            }
            GuildEvent::GuildRenamed { name } => {
                self.push(Op::Audit(AuditOp::GuildName {
                    entry: entry(0),
                    name: name.as_str().to_owned(),
                }));
                self.exec(
                    Table::Guilds,
                    "UPDATE {t} SET name = $2 WHERE id = $1",
                    vec![Val::Int(guild_id), Val::Text(name.as_str().to_owned())],
                );
            }
        }
        true
    }
}

pub(super) fn role_row(guild_id: i64, role: &domain::role::Role) -> Vec<Val> {
    vec![
        Val::Int(guild_id),
        Val::Int(to_i64(role.id.get())),
        Val::Text(role.name.as_str().to_owned()),
        Val::Int(i64::from(role.color)),
        b(role.hoist),
        Val::Int(i64::from(role.position)),
        Val::Int(to_i64(role.permissions.bits())),
        b(role.managed),
        b(role.mentionable),
        Val::OptInt(role.bot_id.map(|u| to_i64(u.get()))),
    ]
}

/// The fields a role's audit entries record, in Discord's order.
type RoleFields = [(&'static str, Value); 5];

fn role_fields(
    name: &str,
    permissions: u64,
    color: i64,
    hoist: bool,
    mentionable: bool,
) -> RoleFields {
    [
        ("name", json!(name)),
        ("permissions", Value::String(permissions.to_string())),
        ("color", json!(color)),
        ("hoist", json!(hoist)),
        ("mentionable", json!(mentionable)),
    ]
}

fn fields_of(role: &domain::role::Role) -> RoleFields {
    role_fields(
        role.name.as_str(),
        role.permissions.bits(),
        i64::from(role.color),
        role.hoist,
        role.mentionable,
    )
}

fn role_changes(role: &domain::role::Role) -> Vec<Value> {
    diff(None, fields_of(role))
}

/// The changes of a channel creation's audit entry.
pub(crate) fn channel_created_changes(
    name: &str,
    kind: u8,
    nsfw: bool,
    parent: Option<i64>,
) -> Vec<Value> {
    let mut c = vec![
        new_value("name", Value::String(name.to_owned())),
        new_value("type", json!(kind)),
        new_value("nsfw", json!(nsfw)),
        new_value("permission_overwrites", json!([])),
    ];
    if parent.is_some() {
        c.push(new_value("parent_id", opt_id_str(parent)));
    }
    c
}

// ---- execution ----

fn parse_overwrites(raw: &str) -> Vec<Overwrite> {
    serde_json::from_str(raw).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "unreadable permission_overwrites; treating as none");
        Vec::new()
    })
}

fn overwrites_json(list: &[Overwrite]) -> String {
    serde_json::to_string(list).unwrap_or_else(|_| "[]".to_owned())
}

/// A channel's (parent, own overwrites, synced).
async fn load(
    conn: &mut AnyConnection,
    ch: &str,
    id: i64,
) -> Result<Option<(Option<i64>, Vec<Overwrite>, bool)>> {
    let row = sqlx::query(&format!(
        "SELECT parent_id, permission_overwrites, permission_synced FROM {ch} WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let parent: Option<i64> = row.try_get(0)?;
    let raw: String = row.try_get(1)?;
    let synced: i64 = row.try_get(2)?;
    Ok(Some((parent, parse_overwrites(&raw), synced != 0)))
}

/// The overwrites that govern a channel (its category's while synced).
pub(crate) async fn effective(
    conn: &mut AnyConnection,
    ch: &str,
    id: i64,
) -> Result<Vec<Overwrite>> {
    let Some((parent, own, synced)) = load(conn, ch, id).await? else {
        return Ok(Vec::new());
    };
    if let (true, Some(parent)) = (synced, parent) {
        if let Some((_, parent_own, _)) = load(conn, ch, parent).await? {
            return Ok(parent_own);
        }
    }
    Ok(own)
}

async fn store_list(
    conn: &mut AnyConnection,
    ch: &str,
    id: i64,
    list: &[Overwrite],
    synced: bool,
) -> Result<()> {
    sqlx::query(&format!(
        "UPDATE {ch} SET permission_overwrites = $2, permission_synced = $3 WHERE id = $1"
    ))
    .bind(id)
    .bind(overwrites_json(list))
    .bind(i64::from(synced))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

impl ChannelOp {
    pub async fn apply(self, conn: &mut AnyConnection, target: &Target) -> Result<()> {
        let ch = target.name(Table::Channels);
        match self {
            ChannelOp::Updated {
                id,
                name,
                position,
                parent_id,
                topic,
                nsfw,
                rate_limit_per_user,
                synced,
            } => {
                let own = match (synced, parent_id) {
                    (true, Some(p)) => load(conn, &ch, p)
                        .await?
                        .map(|(_, o, _)| o)
                        .unwrap_or_default(),
                    _ => effective(conn, &ch, id).await?,
                };
                sqlx::query(&format!(
                    "UPDATE {ch} SET name = $2, position = $3, parent_id = $4, topic = $5, \
                     nsfw = $6, rate_limit_per_user = $7, permission_overwrites = $8, \
                     permission_synced = $9 WHERE id = $1"
                ))
                .bind(id)
                .bind(name)
                .bind(position)
                .bind(parent_id)
                .bind(topic)
                .bind(i64::from(nsfw))
                .bind(rate_limit_per_user)
                .bind(overwrites_json(&own))
                .bind(i64::from(synced))
                .execute(&mut *conn)
                .await?;
            }
            ChannelOp::Deleted { id, at } => {
                let removed = load(conn, &ch, id)
                    .await?
                    .map(|(_, o, _)| o)
                    .unwrap_or_default();
                sqlx::query(&format!(
                    "UPDATE {ch} SET permission_overwrites = CASE WHEN permission_synced = 1 \
                     THEN $2 ELSE permission_overwrites END, parent_id = NULL, \
                     permission_synced = 0 WHERE parent_id = $1"
                ))
                .bind(id)
                .bind(overwrites_json(&removed))
                .execute(&mut *conn)
                .await?;
                // Kept, flagged: CHANNEL_DELETE renders the channel as it was.
                sqlx::query(&format!(
                    "UPDATE {ch} SET deleted_at = $2 WHERE id = $1 AND deleted_at IS NULL"
                ))
                .bind(id)
                .bind(at)
                .execute(&mut *conn)
                .await?;
            }
            ChannelOp::OverwriteSet { id, overwrite } => {
                let mut list = effective(conn, &ch, id).await?;
                match list.iter_mut().find(|o| o.target == overwrite.target) {
                    Some(existing) => *existing = overwrite,
                    None => list.push(overwrite),
                }
                store_list(conn, &ch, id, &list, false).await?;
            }
            ChannelOp::OverwriteDeleted { id, target } => {
                let mut list = effective(conn, &ch, id).await?;
                list.retain(|o| o.target != target);
                store_list(conn, &ch, id, &list, false).await?;
            }
            ChannelOp::RoleGone { guild_id, role_id } => {
                let rows = sqlx::query(&format!(
                    "SELECT id, permission_overwrites, permission_synced FROM {ch} \
                     WHERE guild_id = $1 ORDER BY id"
                ))
                .bind(guild_id)
                .fetch_all(&mut *conn)
                .await?;
                for row in rows {
                    let id: i64 = row.try_get(0)?;
                    let raw: String = row.try_get(1)?;
                    let synced: i64 = row.try_get(2)?;
                    let mut list = parse_overwrites(&raw);
                    let before = list.len();
                    list.retain(|o| o.target != OverwriteTarget::Role(role_id));
                    if list.len() != before {
                        store_list(conn, &ch, id, &list, synced != 0).await?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// The physical name to read `t` from: the target's table when it rebuilds it, the live
/// one otherwise.
fn source(target: &Target, t: Table) -> String {
    if target.includes(t) {
        target.name(t)
    } else {
        t.name().to_owned()
    }
}

/// A message's author and guild, from its row (`None`: no such row).
async fn message_author(
    conn: &mut AnyConnection,
    target: &Target,
    channel_id: i64,
    message_id: i64,
) -> Result<Option<(i64, Option<i64>)>> {
    let row = sqlx::query(&format!(
        "SELECT author_id, guild_id FROM {} WHERE channel_id = $1 AND id = $2",
        source(target, Table::Messages)
    ))
    .bind(channel_id)
    .bind(message_id)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(match row {
        Some(row) => Some((row.try_get(0)?, row.try_get(1)?)),
        None => None,
    })
}

async fn role_name(
    conn: &mut AnyConnection,
    target: &Target,
    guild_id: i64,
    role_id: i64,
) -> Result<Option<String>> {
    let row = sqlx::query(&format!(
        "SELECT name FROM {} WHERE guild_id = $1 AND id = $2",
        source(target, Table::Roles)
    ))
    .bind(guild_id)
    .bind(role_id)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(|r| r.try_get::<String, _>(0)).transpose()?)
}

impl AuditOp {
    /// The audit rows of this entry (none when nothing it records changed).
    pub async fn rows(self, conn: &mut AnyConnection, target: &Target) -> Result<Vec<Vec<Val>>> {
        match self {
            AuditOp::Member {
                mut entry,
                user_id,
                nick,
                roles,
                until,
                mute,
                deaf,
            } => {
                let guild_id = entry.guild_id;
                let old = sqlx::query(&format!(
                    "SELECT nick, communication_disabled_until, mute, deaf FROM {} \
                     WHERE guild_id = $1 AND user_id = $2",
                    source(target, Table::Members)
                ))
                .bind(guild_id)
                .bind(user_id)
                .fetch_optional(&mut *conn)
                .await?;
                let (old_nick, old_until, old_mute, old_deaf) = match old {
                    Some(r) => (
                        r.try_get::<Option<String>, _>(0)?,
                        r.try_get::<Option<i64>, _>(1)?,
                        r.try_get::<i64, _>(2)? != 0,
                        r.try_get::<i64, _>(3)? != 0,
                    ),
                    None => (None, None, false, false),
                };
                let old_roles: Vec<i64> = sqlx::query(&format!(
                    "SELECT role_id FROM {} WHERE guild_id = $1 AND user_id = $2 ORDER BY role_id",
                    source(target, Table::MemberRoles)
                ))
                .bind(guild_id)
                .bind(user_id)
                .fetch_all(&mut *conn)
                .await?
                .iter()
                .map(|r| r.try_get::<i64, _>(0))
                .collect::<std::result::Result<_, _>>()?;
                let mut out = Vec::new();
                let mut changes = Vec::new();
                if old_nick != nick {
                    changes.push(change("nick", Some(json!(old_nick)), Some(json!(nick))));
                }
                if old_until != until {
                    let ts = |v: Option<i64>| json!(v.map(crate::render::ts));
                    changes.push(change(
                        "communication_disabled_until",
                        Some(ts(old_until)),
                        Some(ts(until)),
                    ));
                }
                if old_mute != mute {
                    changes.push(change("mute", Some(json!(old_mute)), Some(json!(mute))));
                }
                if old_deaf != deaf {
                    changes.push(change("deaf", Some(json!(old_deaf)), Some(json!(deaf))));
                }
                if !changes.is_empty() {
                    out.push(entry.row(Some(user_id), action::MEMBER_UPDATE, changes, None));
                }
                let added: Vec<i64> = roles
                    .iter()
                    .filter(|r| !old_roles.contains(r))
                    .copied()
                    .collect();
                let removed: Vec<i64> = old_roles
                    .iter()
                    .filter(|r| !roles.contains(r))
                    .copied()
                    .collect();
                if !added.is_empty() || !removed.is_empty() {
                    let mut changes = Vec::new();
                    for (key, list) in [("$add", added), ("$remove", removed)] {
                        if list.is_empty() {
                            continue;
                        }
                        let mut partial = Vec::with_capacity(list.len());
                        for r in list {
                            let name = role_name(conn, target, guild_id, r).await?;
                            partial.push(json!({ "id": to_u64(r).to_string(), "name": name }));
                        }
                        changes.push(new_value(key, Value::Array(partial)));
                    }
                    if !out.is_empty() {
                        entry.id += 1;
                    }
                    out.push(entry.row(Some(user_id), action::MEMBER_ROLE_UPDATE, changes, None));
                }
                Ok(out)
            }
            AuditOp::Overwrite {
                entry,
                channel_id,
                overwrite,
            } => {
                let ch = source(target, Table::Channels);
                let before = effective(conn, &ch, channel_id).await?;
                let old = before.iter().find(|o| o.target == overwrite.target);
                let perm = |p: domain::permissions::Permissions| json!(p.bits().to_string());
                let (action, changes) = match old {
                    Some(old) => (
                        action::CHANNEL_OVERWRITE_UPDATE,
                        vec![
                            change("allow", Some(perm(old.allow)), Some(perm(overwrite.allow))),
                            change("deny", Some(perm(old.deny)), Some(perm(overwrite.deny))),
                        ],
                    ),
                    None => (
                        action::CHANNEL_OVERWRITE_CREATE,
                        vec![
                            new_value("id", json!(overwrite.target.id().to_string())),
                            new_value("type", json!(overwrite.target.discord_type())),
                            new_value("allow", perm(overwrite.allow)),
                            new_value("deny", perm(overwrite.deny)),
                        ],
                    ),
                };
                let role = match overwrite.target {
                    OverwriteTarget::Role(r) => {
                        role_name(conn, target, entry.guild_id, to_i64(r.get())).await?
                    }
                    OverwriteTarget::Member(_) => None,
                };
                Ok(vec![entry.row(
                    Some(channel_id),
                    action,
                    changes,
                    Some(overwrite_options(&overwrite.target, role)),
                )])
            }
            AuditOp::Role { entry, role } => {
                let id = to_i64(role.id.get());
                let old = sqlx::query(&format!(
                    "SELECT name, permissions, color, hoist, mentionable FROM {} \
                     WHERE guild_id = $1 AND id = $2",
                    source(target, Table::Roles)
                ))
                .bind(entry.guild_id)
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?;
                let old = match old {
                    Some(r) => Some(role_fields(
                        &r.try_get::<String, _>(0)?,
                        to_u64(r.try_get::<i64, _>(1)?),
                        r.try_get::<i64, _>(2)?,
                        r.try_get::<i64, _>(3)? != 0,
                        r.try_get::<i64, _>(4)? != 0,
                    )),
                    None => None,
                };
                Ok(entry.update_rows(id, action::ROLE_UPDATE, diff(old, fields_of(&role))))
            }
            AuditOp::Channel {
                entry,
                channel_id,
                fields,
            } => {
                let old = sqlx::query(&format!(
                    "SELECT name, position, parent_id, topic, nsfw, rate_limit_per_user \
                     FROM {} WHERE id = $1",
                    source(target, Table::Channels)
                ))
                .bind(channel_id)
                .fetch_optional(&mut *conn)
                .await?;
                let old = match old {
                    Some(r) => Some(ChannelFields {
                        name: r.try_get(0)?,
                        position: r.try_get(1)?,
                        parent_id: r.try_get(2)?,
                        topic: r.try_get(3)?,
                        nsfw: r.try_get::<i64, _>(4)? != 0,
                        rate_limit_per_user: r.try_get(5)?,
                    }),
                    None => None,
                };
                let changes = fields.changes(old.as_ref());
                Ok(entry.update_rows(channel_id, action::CHANNEL_UPDATE, changes))
            }
            AuditOp::GuildName { entry, name } => {
                let old: Option<String> = sqlx::query(&format!(
                    "SELECT name FROM {} WHERE id = $1",
                    source(target, Table::Guilds)
                ))
                .bind(entry.guild_id)
                .fetch_optional(&mut *conn)
                .await?
                .map(|r| r.try_get(0))
                .transpose()?;
                let changes = diff(old.map(|o| [("name", json!(o))]), [("name", json!(name))]);
                Ok(entry.update_rows(entry.guild_id, action::GUILD_UPDATE, changes))
            }
            AuditOp::Invite { mut entry, code } => {
                let row = sqlx::query(&format!(
                    "SELECT guild_id, channel_id, inviter_id, uses, max_uses, max_age, temporary \
                     FROM {} WHERE code = $1",
                    source(target, Table::Invites)
                ))
                .bind(&code)
                .fetch_optional(&mut *conn)
                .await?;
                let Some(r) = row else { return Ok(vec![]) };
                entry.guild_id = r.try_get(0)?;
                let old = |key: &str, v: Value| change(key, Some(v), None);
                let changes = vec![
                    old("code", json!(code)),
                    old("channel_id", id_str(r.try_get(1)?)),
                    old("inviter_id", id_str(r.try_get(2)?)),
                    old("uses", json!(r.try_get::<i64, _>(3)?)),
                    old("max_uses", json!(r.try_get::<i64, _>(4)?)),
                    old("max_age", json!(r.try_get::<i64, _>(5)?)),
                    old("temporary", json!(r.try_get::<i64, _>(6)? != 0)),
                ];
                Ok(vec![entry.row(None, action::INVITE_DELETE, changes, None)])
            }
            AuditOp::Message {
                mut entry,
                channel_id,
                message_id,
                actor,
            } => {
                let Some((author, guild)) =
                    message_author(conn, target, channel_id, message_id).await?
                else {
                    return Ok(vec![]);
                };
                match (guild, actor) {
                    (Some(g), Some(a)) if a != author => {
                        entry.guild_id = g;
                        Ok(vec![entry.row(
                            Some(author),
                            action::MESSAGE_DELETE,
                            vec![],
                            Some(json!({ "channel_id": to_u64(channel_id).to_string(), "count": "1" })),
                        )])
                    }
                    _ => Ok(vec![]),
                }
            }
            AuditOp::Pin {
                mut entry,
                channel_id,
                message_id,
                pinned,
            } => {
                let Some((author, Some(guild))) =
                    message_author(conn, target, channel_id, message_id).await?
                else {
                    return Ok(vec![]);
                };
                entry.guild_id = guild;
                let action = if pinned {
                    action::MESSAGE_PIN
                } else {
                    action::MESSAGE_UNPIN
                };
                Ok(vec![entry.row(
                    Some(author),
                    action,
                    vec![],
                    Some(json!({
                        "channel_id": to_u64(channel_id).to_string(),
                        "message_id": to_u64(message_id).to_string(),
                    })),
                )])
            }
            AuditOp::BulkDelete {
                mut entry,
                channel_id,
                count,
            } => {
                let guild: Option<Option<i64>> = sqlx::query_scalar(&format!(
                    "SELECT guild_id FROM {} WHERE id = $1",
                    source(target, Table::Channels)
                ))
                .bind(channel_id)
                .fetch_optional(&mut *conn)
                .await?;
                let Some(Some(g)) = guild else {
                    return Ok(vec![]);
                };
                entry.guild_id = g;
                Ok(vec![entry.row(
                    Some(channel_id),
                    action::MESSAGE_BULK_DELETE,
                    vec![],
                    Some(json!({ "count": count.to_string() })),
                )])
            }
        }
    }
}
