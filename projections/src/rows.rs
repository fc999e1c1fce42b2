//! Read-model rows as Rust values, and their decoding from `sqlx::Any` rows.

use domain::id::Id;
use domain::{ChannelId, GuildId, MessageId, RoleId, UserId};
use sqlx::any::AnyRow;
use sqlx::Row as _;

use crate::db::to_u64;

/// A column holding a snowflake id; a zero or negative value is a decode error.
pub(crate) fn id<T>(row: &AnyRow, col: &str) -> Result<Id<T>, sqlx::Error> {
    let v: i64 = row.try_get(col)?;
    checked_id(v).ok_or_else(|| bad(col, v))
}

/// A nullable snowflake column.
pub(crate) fn opt_id<T>(row: &AnyRow, col: &str) -> Result<Option<Id<T>>, sqlx::Error> {
    match row.try_get::<Option<i64>, _>(col)? {
        None => Ok(None),
        Some(v) => checked_id(v).map(Some).ok_or_else(|| bad(col, v)),
    }
}

pub(crate) fn checked_id<T>(v: i64) -> Option<Id<T>> {
    if v > 0 {
        Id::new_checked(to_u64(v))
    } else {
        None
    }
}

fn bad(col: &str, v: i64) -> sqlx::Error {
    sqlx::Error::Decode(format!("column {col}: {v} is not a snowflake id").into())
}

pub(crate) fn int(row: &AnyRow, col: &str) -> Result<i64, sqlx::Error> {
    row.try_get(col)
}

pub(crate) fn opt_int(row: &AnyRow, col: &str) -> Result<Option<i64>, sqlx::Error> {
    row.try_get(col)
}

pub(crate) fn flag(row: &AnyRow, col: &str) -> Result<bool, sqlx::Error> {
    Ok(row.try_get::<i64, _>(col)? != 0)
}

pub(crate) fn text(row: &AnyRow, col: &str) -> Result<String, sqlx::Error> {
    row.try_get(col)
}

pub(crate) fn opt_text(row: &AnyRow, col: &str) -> Result<Option<String>, sqlx::Error> {
    row.try_get(col)
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct UserRow {
    pub id: UserId,
    pub username: String,
    pub bot: bool,
    pub created_at: i64,
}

impl UserRow {
    pub const COLUMNS: &'static str = "id, username, bot, created_at";

    pub fn decode(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(UserRow {
            id: id(row, "id")?,
            username: text(row, "username")?,
            bot: flag(row, "bot")?,
            created_at: int(row, "created_at")?,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct GuildRow {
    pub id: GuildId,
    pub name: String,
    pub owner_id: UserId,
    pub everyone_permissions: u64,
    pub created_at: i64,
}

impl GuildRow {
    pub const COLUMNS: &'static str = "id, name, owner_id, everyone_permissions, created_at";

    pub fn decode(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(GuildRow {
            id: id(row, "id")?,
            name: text(row, "name")?,
            owner_id: id(row, "owner_id")?,
            everyone_permissions: to_u64(int(row, "everyone_permissions")?),
            created_at: int(row, "created_at")?,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ChannelRow {
    pub id: ChannelId,
    pub guild_id: Option<GuildId>,
    pub kind: i64,
    pub name: String,
    pub position: i64,
    pub parent_id: Option<ChannelId>,
    pub topic: Option<String>,
    pub nsfw: bool,
    pub last_message_id: Option<MessageId>,
    pub created_at: i64,
    pub rate_limit_per_user: i64,
    /// Its own overwrites (JSON), which apply unless `permission_synced`.
    pub permission_overwrites: String,
    pub permission_synced: bool,
    pub deleted_at: Option<i64>,
}

impl ChannelRow {
    pub const COLUMNS: &'static str =
        "id, guild_id, type, name, position, parent_id, topic, nsfw, last_message_id, created_at, \
         rate_limit_per_user, permission_overwrites, permission_synced, deleted_at";

    pub fn decode(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(ChannelRow {
            id: id(row, "id")?,
            guild_id: opt_id(row, "guild_id")?,
            kind: int(row, "type")?,
            name: text(row, "name")?,
            position: int(row, "position")?,
            parent_id: opt_id(row, "parent_id")?,
            topic: opt_text(row, "topic")?,
            nsfw: flag(row, "nsfw")?,
            last_message_id: opt_id(row, "last_message_id")?,
            created_at: int(row, "created_at")?,
            rate_limit_per_user: int(row, "rate_limit_per_user")?,
            permission_overwrites: text(row, "permission_overwrites")?,
            permission_synced: flag(row, "permission_synced")?,
            deleted_at: opt_int(row, "deleted_at")?,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MemberRow {
    pub guild_id: GuildId,
    pub user_id: UserId,
    pub joined_at: i64,
    pub nick: Option<String>,
    pub communication_disabled_until: Option<i64>,
    pub mute: bool,
    pub deaf: bool,
    /// From `member_roles` (filled by the query that needs them), by id.
    pub roles: Vec<RoleId>,
}

impl MemberRow {
    pub const COLUMNS: &'static str =
        "guild_id, user_id, joined_at, nick, communication_disabled_until, mute, deaf";

    pub fn decode(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(MemberRow {
            guild_id: id(row, "guild_id")?,
            user_id: id(row, "user_id")?,
            joined_at: int(row, "joined_at")?,
            nick: opt_text(row, "nick")?,
            communication_disabled_until: opt_int(row, "communication_disabled_until")?,
            mute: flag(row, "mute")?,
            deaf: flag(row, "deaf")?,
            roles: Vec::new(),
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct InviteRow {
    pub code: String,
    pub guild_id: GuildId,
    pub channel_id: ChannelId,
    pub inviter_id: UserId,
    pub max_age: i64,
    pub max_uses: i64,
    pub uses: i64,
    pub temporary: bool,
    pub created_at: i64,
}

impl InviteRow {
    pub const COLUMNS: &'static str =
        "code, guild_id, channel_id, inviter_id, max_age, max_uses, uses, temporary, created_at";

    pub fn decode(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(InviteRow {
            code: text(row, "code")?,
            guild_id: id(row, "guild_id")?,
            channel_id: id(row, "channel_id")?,
            inviter_id: id(row, "inviter_id")?,
            max_age: int(row, "max_age")?,
            max_uses: int(row, "max_uses")?,
            uses: int(row, "uses")?,
            temporary: flag(row, "temporary")?,
            created_at: int(row, "created_at")?,
        })
    }

    /// When it expires, Unix ms (`None`: never).
    pub fn expires_at(&self) -> Option<i64> {
        (self.max_age > 0).then(|| self.created_at.saturating_add(self.max_age * 1000))
    }

    /// Whether it can still be used at `now_ms`.
    pub fn usable(&self, now_ms: i64) -> bool {
        let expired = self.expires_at().is_some_and(|t| now_ms >= t);
        let used_up = self.max_uses > 0 && self.uses >= self.max_uses;
        !expired && !used_up
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct MessageRow {
    pub id: MessageId,
    pub channel_id: ChannelId,
    pub guild_id: Option<GuildId>,
    pub author_id: UserId,
    pub content: String,
    pub nonce: Option<String>,
    pub tts: bool,
    pub created_at: i64,
    pub edited_at: Option<i64>,
    pub deleted_at: Option<i64>,
    pub revision: i64,
    pub pinned_at: Option<i64>,
    pub mention_everyone: bool,
}

impl MessageRow {
    pub const COLUMNS: &'static str = "id, channel_id, guild_id, author_id, content, nonce, tts, \
         created_at, edited_at, deleted_at, revision, pinned_at, mention_everyone";

    pub fn decode(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(MessageRow {
            id: id(row, "id")?,
            channel_id: id(row, "channel_id")?,
            guild_id: opt_id(row, "guild_id")?,
            author_id: id(row, "author_id")?,
            content: text(row, "content")?,
            nonce: opt_text(row, "nonce")?,
            tts: flag(row, "tts")?,
            created_at: int(row, "created_at")?,
            edited_at: opt_int(row, "edited_at")?,
            deleted_at: opt_int(row, "deleted_at")?,
            revision: int(row, "revision")?,
            pinned_at: opt_int(row, "pinned_at")?,
            mention_everyone: flag(row, "mention_everyone")?,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RoleRow {
    pub guild_id: GuildId,
    pub id: RoleId,
    pub name: String,
    pub color: i64,
    pub hoist: bool,
    pub position: i64,
    pub permissions: u64,
    pub managed: bool,
    pub mentionable: bool,
    /// For a bot's managed role, the bot.
    pub bot_id: Option<UserId>,
}

impl RoleRow {
    pub const COLUMNS: &'static str =
        "guild_id, id, name, color, hoist, position, permissions, managed, mentionable, bot_id";

    pub fn decode(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(RoleRow {
            guild_id: id(row, "guild_id")?,
            id: id(row, "id")?,
            name: text(row, "name")?,
            color: int(row, "color")?,
            hoist: flag(row, "hoist")?,
            position: int(row, "position")?,
            permissions: to_u64(int(row, "permissions")?),
            managed: flag(row, "managed")?,
            mentionable: flag(row, "mentionable")?,
            bot_id: opt_id(row, "bot_id")?,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AuditRow {
    pub guild_id: GuildId,
    pub id: u64,
    pub user_id: Option<UserId>,
    pub target_id: Option<i64>,
    pub action_type: i64,
    pub changes: String,
    pub options: Option<String>,
    pub reason: Option<String>,
}

impl AuditRow {
    pub const COLUMNS: &'static str =
        "guild_id, id, user_id, target_id, action_type, changes, options, reason";

    pub fn decode(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(AuditRow {
            guild_id: id(row, "guild_id")?,
            id: to_u64(int(row, "id")?),
            user_id: opt_id(row, "user_id")?,
            target_id: opt_int(row, "target_id")?,
            action_type: int(row, "action_type")?,
            changes: text(row, "changes")?,
            options: opt_text(row, "options")?,
            reason: opt_text(row, "reason")?,
        })
    }
}
