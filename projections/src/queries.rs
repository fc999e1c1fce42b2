//! What the REST API and the gateway read: Discord-shaped [`wire`] values from the read
//! models. Every function takes a [`ReadDb`]; call [`Projections::wait_for`] first with
//! the position a command returned to read your own writes.
//!
//! [`Projections::wait_for`]: crate::Projections::wait_for

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use domain::{ChannelId, GuildId, MessageId, RoleId, UserId};
use sqlx::any::AnyRow;
use sqlx::AnyConnection;
use sqlx::Row as _;

use crate::db::to_i64;
use crate::render;
use crate::rows::{
    self, AuditRow, ChannelRow, GuildRow, InviteRow, MemberRow, MessageRow, RoleRow, UserRow,
};
use crate::wire;
use crate::{ReadDb, Result};

/// Above this many members a guild is `large`, and `GUILD_CREATE` lists only the
/// connecting user's member.
pub const LARGE_THRESHOLD: u64 = 250;

/// Where a page of messages starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageAnchor {
    /// The newest messages.
    Latest,
    /// Messages older than this id.
    Before(MessageId),
    /// Messages newer than this id (the oldest ones after it).
    After(MessageId),
    /// Messages around this id (including it): half newer, half at or older.
    Around(MessageId),
}

fn id_param<T>(id: domain::id::Id<T>) -> i64 {
    to_i64(id.get())
}

// ---- rows (shared with the publisher) ----

pub(crate) async fn user_row(conn: &mut AnyConnection, id: UserId) -> Result<Option<UserRow>> {
    let row = sqlx::query(&format!(
        "SELECT {} FROM users WHERE id = $1",
        UserRow::COLUMNS
    ))
    .bind(id_param(id))
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.as_ref().map(UserRow::decode).transpose()?)
}

/// Fills rendered messages' `mentions` (the users each one's content mentions that exist)
/// and `mention_roles` (the roles it mentions that its guild has), in content order, with
/// one query for the users and one for the roles of all of them.
pub(crate) async fn fill_mentions(
    conn: &mut AnyConnection,
    msgs: &mut [wire::Message],
) -> Result<()> {
    let mentioned: Vec<(Vec<u64>, Vec<u64>)> = msgs
        .iter()
        .map(|m| render::mentioned_ids(&m.content))
        .collect();
    let distinct = |ids: &mut dyn Iterator<Item = u64>| {
        let mut ids: Vec<u64> = ids.collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    };
    let user_ids = distinct(&mut mentioned.iter().flat_map(|(u, _)| u.iter().copied()));
    let role_ids = distinct(&mut mentioned.iter().flat_map(|(_, r)| r.iter().copied()));
    let mut users: HashMap<u64, UserRow> = HashMap::new();
    if !user_ids.is_empty() {
        let sql = format!(
            "SELECT {} FROM users WHERE id IN ({})",
            UserRow::COLUMNS,
            placeholders(1, user_ids.len())
        );
        let mut q = sqlx::query(&sql);
        for u in &user_ids {
            q = q.bind(to_i64(*u));
        }
        for row in q.fetch_all(&mut *conn).await? {
            let user = UserRow::decode(&row)?;
            users.insert(user.id.get(), user);
        }
    }
    // Role ids are snowflakes, unique across guilds; each message keeps its guild's.
    let mut roles: HashMap<RoleId, GuildId> = HashMap::new();
    if !role_ids.is_empty() {
        let sql = format!(
            "SELECT guild_id, id FROM roles WHERE id IN ({})",
            placeholders(1, role_ids.len())
        );
        let mut q = sqlx::query(&sql);
        for r in &role_ids {
            q = q.bind(to_i64(*r));
        }
        for row in q.fetch_all(&mut *conn).await? {
            roles.insert(rows::id(&row, "id")?, rows::id(&row, "guild_id")?);
        }
    }
    for (msg, (user_ids, role_ids)) in msgs.iter_mut().zip(mentioned) {
        msg.mentions = user_ids
            .iter()
            .filter_map(|u| users.get(u))
            .map(render::user)
            .collect();
        msg.mention_roles = match msg.guild_id {
            Some(guild) => role_ids
                .into_iter()
                .filter_map(RoleId::new_checked)
                .filter(|r| roles.get(r) == Some(&guild))
                .collect(),
            None => Vec::new(),
        };
    }
    Ok(())
}

/// `$first, $first+1, ...`: `n` bind placeholders.
fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) async fn guild_row(conn: &mut AnyConnection, id: GuildId) -> Result<Option<GuildRow>> {
    let row = sqlx::query(&format!(
        "SELECT {} FROM guilds WHERE id = $1",
        GuildRow::COLUMNS
    ))
    .bind(id_param(id))
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.as_ref().map(GuildRow::decode).transpose()?)
}

/// When the channel's most recently pinned live message was pinned (Unix ms), if any.
pub(crate) async fn last_pin(conn: &mut AnyConnection, channel: ChannelId) -> Result<Option<i64>> {
    Ok(sqlx::query_scalar(
        "SELECT MAX(pinned_at) FROM messages WHERE channel_id = $1 AND deleted_at IS NULL",
    )
    .bind(id_param(channel))
    .fetch_one(&mut *conn)
    .await?)
}

/// A page of a channel's pinned live messages, the most recently pinned first: up to
/// `limit` pinned before `before_ms` (Unix ms; `None`: the newest), each with when it
/// was pinned, and whether more are left past the page.
#[tracing::instrument(skip(db))]
pub async fn pins(
    db: &ReadDb,
    channel_id: ChannelId,
    before_ms: Option<i64>,
    limit: u32,
) -> Result<(Vec<(i64, wire::Message)>, bool)> {
    let mut conn = db.pool.acquire().await?;
    let rows = sqlx::query(&format!(
        "{MESSAGE_SELECT} WHERE m.channel_id = $1 AND m.deleted_at IS NULL \
         AND m.pinned_at IS NOT NULL AND m.pinned_at < $2 \
         ORDER BY m.pinned_at DESC, m.id DESC LIMIT $3"
    ))
    .bind(id_param(channel_id))
    .bind(before_ms.unwrap_or(i64::MAX))
    .bind(i64::from(limit) + 1)
    .fetch_all(&mut *conn)
    .await?;
    let more = rows.len() > limit as usize;
    let rows = &rows[..rows.len().min(limit as usize)];
    let pinned_at = rows
        .iter()
        .map(|r| rows::opt_int(r, "pinned_at").map(Option::unwrap_or_default))
        .collect::<std::result::Result<Vec<i64>, _>>()?;
    let messages = render_messages(&mut conn, rows).await?;
    Ok((pinned_at.into_iter().zip(messages).collect(), more))
}

/// The guild of a channel, from its row (`None` for a DM channel or a missing row).
pub(crate) async fn channel_guild(
    conn: &mut AnyConnection,
    id: ChannelId,
) -> Result<Option<GuildId>> {
    Ok(channel_row(conn, id).await?.and_then(|c| c.guild_id))
}

pub(crate) async fn channel_row(
    conn: &mut AnyConnection,
    id: ChannelId,
) -> Result<Option<ChannelRow>> {
    let row = sqlx::query(&format!(
        "SELECT {} FROM channels WHERE id = $1",
        ChannelRow::COLUMNS
    ))
    .bind(id_param(id))
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.as_ref().map(ChannelRow::decode).transpose()?)
}

/// A member with its roles (never @everyone, by id); `None` if the user is not one.
pub(crate) async fn member_row(
    conn: &mut AnyConnection,
    guild: GuildId,
    user: UserId,
) -> Result<Option<MemberRow>> {
    // The member and its roles in one round trip: one row per role, or one row with a
    // NULL role for a member without any.
    let rows = sqlx::query(&format!(
        "SELECT m.*, r.role_id FROM \
         (SELECT {} FROM members WHERE guild_id = $1 AND user_id = $2) m \
         LEFT JOIN member_roles r ON r.guild_id = m.guild_id AND r.user_id = m.user_id \
         ORDER BY r.role_id",
        MemberRow::COLUMNS
    ))
    .bind(id_param(guild))
    .bind(id_param(user))
    .fetch_all(&mut *conn)
    .await?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let mut m = MemberRow::decode(first)?;
    for r in &rows {
        if let Some(role) = rows::opt_id(r, "role_id")? {
            m.roles.push(role);
        }
    }
    Ok(Some(m))
}

/// A guild's roles, lowest first (position, then id descending as Discord ranks ties).
pub(crate) async fn role_rows(conn: &mut AnyConnection, guild: GuildId) -> Result<Vec<RoleRow>> {
    let rows = sqlx::query(&format!(
        "SELECT {} FROM roles WHERE guild_id = $1 ORDER BY position, id DESC",
        RoleRow::COLUMNS
    ))
    .bind(id_param(guild))
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.iter().map(RoleRow::decode).collect::<Result<_, _>>()?)
}

/// One role of a guild.
pub(crate) async fn role_row(
    conn: &mut AnyConnection,
    guild: GuildId,
    role: domain::RoleId,
) -> Result<Option<RoleRow>> {
    let row = sqlx::query(&format!(
        "SELECT {} FROM roles WHERE guild_id = $1 AND id = $2",
        RoleRow::COLUMNS
    ))
    .bind(id_param(guild))
    .bind(id_param(role))
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.as_ref().map(RoleRow::decode).transpose()?)
}

/// A channel rendered with its overwrites resolved (a synced channel shows its
/// category's).
pub(crate) async fn render_channel(
    conn: &mut AnyConnection,
    row: &ChannelRow,
) -> Result<wire::Channel> {
    let parent = match (row.permission_synced, row.parent_id) {
        (true, Some(p)) => channel_row(conn, p).await?.map(|p| p.permission_overwrites),
        _ => None,
    };
    Ok(render::channel_in(row, parent.as_deref()))
}

/// Channels rendered together (parents looked up among them).
fn render_channels(rows: &[ChannelRow]) -> Vec<wire::Channel> {
    let own: HashMap<ChannelId, &str> = rows
        .iter()
        .map(|r| (r.id, r.permission_overwrites.as_str()))
        .collect();
    rows.iter()
        .map(|r| render::channel_in(r, r.parent_id.and_then(|p| own.get(&p).copied())))
        .collect()
}

pub(crate) async fn invite_row(conn: &mut AnyConnection, code: &str) -> Result<Option<InviteRow>> {
    let row = sqlx::query(&format!(
        "SELECT {} FROM invites WHERE code = $1",
        InviteRow::COLUMNS
    ))
    .bind(code)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.as_ref().map(InviteRow::decode).transpose()?)
}

pub(crate) async fn message_row(
    conn: &mut AnyConnection,
    channel: ChannelId,
    id: MessageId,
) -> Result<Option<MessageRow>> {
    let row = sqlx::query(&format!(
        "SELECT {} FROM messages WHERE channel_id = $1 AND id = $2",
        MessageRow::COLUMNS
    ))
    .bind(id_param(channel))
    .bind(id_param(id))
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.as_ref().map(MessageRow::decode).transpose()?)
}

async fn member_count(conn: &mut AnyConnection, guild: GuildId) -> Result<u64> {
    let row = sqlx::query("SELECT COUNT(*) FROM members WHERE guild_id = $1")
        .bind(id_param(guild))
        .fetch_one(&mut *conn)
        .await?;
    Ok(u64::try_from(row.try_get::<i64, _>(0)?).unwrap_or(0))
}

async fn channel_rows(conn: &mut AnyConnection, guild: GuildId) -> Result<Vec<ChannelRow>> {
    let rows = sqlx::query(&format!(
        "SELECT {} FROM channels WHERE guild_id = $1 AND deleted_at IS NULL \
         ORDER BY position, id",
        ChannelRow::COLUMNS
    ))
    .bind(id_param(guild))
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .iter()
        .map(ChannelRow::decode)
        .collect::<Result<_, _>>()?)
}

/// The `GUILD_CREATE` payload for `user` on `conn`.
pub(crate) async fn guild_create_on(
    conn: &mut AnyConnection,
    guild_id: GuildId,
    user_id: UserId,
) -> Result<Option<wire::GuildCreate>> {
    let Some(guild) = guild_row(conn, guild_id).await? else {
        return Ok(None);
    };
    let Some(me) = member_row(conn, guild_id, user_id).await? else {
        return Ok(None);
    };
    let member_count = member_count(conn, guild_id).await?;
    let large = member_count > LARGE_THRESHOLD;
    let members = if large {
        let user = user_row(conn, user_id).await?;
        vec![render::member(&me, user.as_ref())]
    } else {
        members_with_users(conn, guild_id).await?
    };
    let channels = render_channels(&channel_rows(conn, guild_id).await?);
    let roles = role_rows(conn, guild_id).await?;
    Ok(Some(wire::GuildCreate {
        guild: render::guild_with_roles(&guild, &roles),
        unavailable: false,
        joined_at: render::ts(me.joined_at),
        large,
        member_count,
        channels,
        threads: Vec::new(),
        members,
        voice_states: Vec::new(),
        presences: Vec::new(),
        stage_instances: Vec::new(),
        guild_scheduled_events: Vec::new(),
        soundboard_sounds: Vec::new(),
    }))
}

async fn members_with_users(
    conn: &mut AnyConnection,
    guild_id: GuildId,
) -> Result<Vec<wire::Member>> {
    member_page(conn, guild_id, None, i64::MAX).await
}

/// Members with their users and roles, by user id, after `after`, at most `limit`.
async fn member_page(
    conn: &mut AnyConnection,
    guild_id: GuildId,
    after: Option<UserId>,
    limit: i64,
) -> Result<Vec<wire::Member>> {
    let rows = sqlx::query(
        "SELECT mb.guild_id, mb.user_id, mb.joined_at, mb.nick, \
         mb.communication_disabled_until, mb.mute, mb.deaf, \
         u.id AS id, u.username AS username, u.bot AS bot, u.created_at AS created_at \
         FROM members mb JOIN users u ON u.id = mb.user_id \
         WHERE mb.guild_id = $1 AND mb.user_id > $2 ORDER BY mb.user_id LIMIT $3",
    )
    .bind(id_param(guild_id))
    .bind(after.map_or(0, id_param))
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    let role_rows = sqlx::query(
        "SELECT user_id, role_id FROM member_roles WHERE guild_id = $1 AND user_id > $2 \
         ORDER BY user_id, role_id",
    )
    .bind(id_param(guild_id))
    .bind(after.map_or(0, id_param))
    .fetch_all(&mut *conn)
    .await?;
    let mut roles: HashMap<UserId, Vec<domain::RoleId>> = HashMap::new();
    for r in &role_rows {
        roles
            .entry(rows::id(r, "user_id")?)
            .or_default()
            .push(rows::id(r, "role_id")?);
    }
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        let mut m = MemberRow::decode(row)?;
        m.roles = roles.remove(&m.user_id).unwrap_or_default();
        let u = UserRow::decode(row)?;
        out.push(render::member(&m, Some(&u)));
    }
    Ok(out)
}

// ---- public queries ----

/// A user.
#[tracing::instrument(skip(db))]
pub async fn user(db: &ReadDb, id: UserId) -> Result<Option<wire::User>> {
    let mut conn = db.pool.acquire().await?;
    Ok(user_row(&mut conn, id).await?.as_ref().map(render::user))
}

/// A user by username (case-insensitive: usernames are stored lowercase).
#[tracing::instrument(skip(db))]
pub async fn user_by_name(db: &ReadDb, username: &str) -> Result<Option<wire::User>> {
    let mut conn = db.pool.acquire().await?;
    let row = sqlx::query(&format!(
        "SELECT {} FROM users WHERE username = $1 ORDER BY id LIMIT 1",
        UserRow::COLUMNS
    ))
    .bind(username.trim().to_lowercase())
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row
        .as_ref()
        .map(UserRow::decode)
        .transpose()?
        .as_ref()
        .map(render::user))
}

/// The guilds a user is a member of (`GET /users/@me/guilds`), by id.
#[tracing::instrument(skip(db))]
pub async fn user_guilds(db: &ReadDb, user_id: UserId) -> Result<Vec<wire::PartialGuild>> {
    let mut conn = db.pool.acquire().await?;
    let rows = sqlx::query(
        "SELECT g.id, g.name, g.owner_id, g.everyone_permissions, g.created_at \
         FROM members mb JOIN guilds g ON g.id = mb.guild_id \
         WHERE mb.user_id = $1 ORDER BY g.id",
    )
    .bind(id_param(user_id))
    .fetch_all(&mut *conn)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in &rows {
        let g = GuildRow::decode(row)?;
        out.push(wire::PartialGuild {
            id: g.id,
            name: g.name.clone(),
            icon: None,
            banner: None,
            owner: g.owner_id == user_id,
            permissions: render::permissions_of(&g, user_id).to_string(),
            features: Vec::new(),
        });
    }
    Ok(out)
}

/// A full guild.
#[tracing::instrument(skip(db))]
pub async fn guild(db: &ReadDb, id: GuildId) -> Result<Option<wire::Guild>> {
    let mut conn = db.pool.acquire().await?;
    let Some(g) = guild_row(&mut conn, id).await? else {
        return Ok(None);
    };
    let roles = role_rows(&mut conn, id).await?;
    Ok(Some(render::guild_with_roles(&g, &roles)))
}

/// The `GUILD_CREATE` payload a member's session receives; `None` if the guild does not
/// exist or `user_id` is not a member.
#[tracing::instrument(skip(db))]
pub async fn guild_create_payload(
    db: &ReadDb,
    guild_id: GuildId,
    user_id: UserId,
) -> Result<Option<wire::GuildCreate>> {
    let mut conn = db.pool.acquire().await?;
    guild_create_on(&mut conn, guild_id, user_id).await
}

/// A guild's channels, by position then id.
#[tracing::instrument(skip(db))]
pub async fn guild_channels(db: &ReadDb, guild_id: GuildId) -> Result<Vec<wire::Channel>> {
    let mut conn = db.pool.acquire().await?;
    Ok(render_channels(&channel_rows(&mut conn, guild_id).await?))
}

/// A channel.
#[tracing::instrument(skip(db))]
pub async fn channel(db: &ReadDb, id: ChannelId) -> Result<Option<wire::Channel>> {
    let mut conn = db.pool.acquire().await?;
    let Some(row) = channel_row(&mut conn, id)
        .await?
        .filter(|c| c.deleted_at.is_none())
    else {
        return Ok(None);
    };
    Ok(Some(render_channel(&mut conn, &row).await?))
}

/// Whether `user_id` is a member of `guild_id`.
#[tracing::instrument(skip(db))]
pub async fn is_member(db: &ReadDb, guild_id: GuildId, user_id: UserId) -> Result<bool> {
    let mut conn = db.pool.acquire().await?;
    Ok(member_row(&mut conn, guild_id, user_id).await?.is_some())
}

/// A guild member, with its user.
#[tracing::instrument(skip(db))]
pub async fn member(
    db: &ReadDb,
    guild_id: GuildId,
    user_id: UserId,
) -> Result<Option<wire::Member>> {
    let mut conn = db.pool.acquire().await?;
    let Some(m) = member_row(&mut conn, guild_id, user_id).await? else {
        return Ok(None);
    };
    let u = user_row(&mut conn, user_id).await?;
    Ok(Some(render::member(&m, u.as_ref())))
}

/// The ids of the guilds a user is a member of, ascending.
#[tracing::instrument(skip(db))]
pub async fn guild_ids_of(db: &ReadDb, user_id: UserId) -> Result<Vec<GuildId>> {
    let mut conn = db.pool.acquire().await?;
    let rows = sqlx::query("SELECT guild_id FROM members WHERE user_id = $1 ORDER BY guild_id")
        .bind(id_param(user_id))
        .fetch_all(&mut *conn)
        .await?;
    Ok(rows
        .iter()
        .map(|r| rows::id(r, "guild_id"))
        .collect::<Result<_, _>>()?)
}

const MESSAGE_SELECT: &str = "SELECT m.id, m.channel_id, m.guild_id, m.author_id, m.content, \
     m.nonce, m.tts, m.created_at, m.edited_at, m.deleted_at, m.revision, m.pinned_at, \
     m.mention_everyone, \
     u.username AS author_username, u.bot AS author_bot, u.created_at AS author_created_at \
     FROM messages m \
     LEFT JOIN users u ON u.id = m.author_id";

/// Renders messages read with [`MESSAGE_SELECT`], each with its author's member (roles,
/// mute, deafen, time-out) exactly as MESSAGE_CREATE carries it: clients such as
/// discord.py copy a message's `member` over their cached member, so a REST answer with
/// less in it would make the cache forget what the gateway told it.
async fn render_messages(conn: &mut AnyConnection, rows: &[AnyRow]) -> Result<Vec<wire::Message>> {
    let mut members: HashMap<(GuildId, UserId), Option<MemberRow>> = HashMap::new();
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let m = MessageRow::decode(row)?;
        let author = match rows::opt_text(row, "author_username")? {
            Some(username) => UserRow {
                id: m.author_id,
                username,
                bot: rows::opt_int(row, "author_bot")?.unwrap_or(0) != 0,
                created_at: rows::opt_int(row, "author_created_at")?.unwrap_or(0),
            },
            None => render::unknown_user(&m),
        };
        let member = match m.guild_id {
            Some(g) => {
                let key = (g, m.author_id);
                if let Entry::Vacant(slot) = members.entry(key) {
                    slot.insert(member_row(conn, g, m.author_id).await?);
                }
                members[&key].as_ref()
            }
            None => None,
        };
        out.push(render::message(&m, &author, member));
    }
    fill_mentions(conn, &mut out).await?;
    Ok(out)
}

async fn message_page(
    conn: &mut AnyConnection,
    channel: ChannelId,
    condition: &str,
    anchor: Option<MessageId>,
    descending: bool,
    limit: u32,
) -> Result<Vec<wire::Message>> {
    let order = if descending { "DESC" } else { "ASC" };
    let sql = match anchor {
        Some(_) => format!(
            "{MESSAGE_SELECT} WHERE m.channel_id = $1 AND m.deleted_at IS NULL AND m.id {condition} $2 \
             ORDER BY m.id {order} LIMIT $3"
        ),
        None => format!(
            "{MESSAGE_SELECT} WHERE m.channel_id = $1 AND m.deleted_at IS NULL \
             ORDER BY m.id {order} LIMIT $2"
        ),
    };
    let mut q = sqlx::query(&sql).bind(id_param(channel));
    if let Some(a) = anchor {
        q = q.bind(id_param(a));
    }
    let rows = q.bind(i64::from(limit)).fetch_all(&mut *conn).await?;
    render_messages(conn, &rows).await
}

/// A page of a channel's messages, newest first as Discord returns them. `limit` is
/// clamped to 1-100. Deleted messages are never returned.
#[tracing::instrument(skip(db))]
pub async fn messages(
    db: &ReadDb,
    channel_id: ChannelId,
    anchor: MessageAnchor,
    limit: u32,
) -> Result<Vec<wire::Message>> {
    let limit = limit.clamp(1, 100);
    let mut conn = db.pool.acquire().await?;
    let c = &mut *conn;
    Ok(match anchor {
        MessageAnchor::Latest => message_page(c, channel_id, "", None, true, limit).await?,
        MessageAnchor::Before(id) => {
            message_page(c, channel_id, "<", Some(id), true, limit).await?
        }
        MessageAnchor::After(id) => {
            let mut page = message_page(c, channel_id, ">", Some(id), false, limit).await?;
            page.reverse();
            page
        }
        MessageAnchor::Around(id) => {
            let newer_limit = limit / 2;
            let mut page = if newer_limit > 0 {
                message_page(c, channel_id, ">", Some(id), false, newer_limit).await?
            } else {
                Vec::new()
            };
            page.reverse();
            let older =
                message_page(c, channel_id, "<=", Some(id), true, limit - newer_limit).await?;
            page.extend(older);
            page
        }
    })
}

/// One message of a channel (`None` if unknown, deleted, or in another channel).
#[tracing::instrument(skip(db))]
pub async fn message(
    db: &ReadDb,
    channel_id: ChannelId,
    id: MessageId,
) -> Result<Option<wire::Message>> {
    let mut conn = db.pool.acquire().await?;
    let row = sqlx::query(&format!(
        "{MESSAGE_SELECT} WHERE m.channel_id = $1 AND m.id = $2 AND m.deleted_at IS NULL"
    ))
    .bind(id_param(channel_id))
    .bind(id_param(id))
    .fetch_optional(&mut *conn)
    .await?;
    Ok(render_messages(&mut conn, row.as_slice()).await?.pop())
}

fn now_ms() -> i64 {
    to_i64(domain::timefmt::now_ms())
}

/// An invite that can still be used (`None` if unknown, expired or used up), with the
/// approximate counts when `with_counts`.
#[tracing::instrument(skip(db))]
pub async fn invite(db: &ReadDb, code: &str, with_counts: bool) -> Result<Option<wire::Invite>> {
    invite_at(db, code, with_counts, now_ms()).await
}

/// [`invite`] as of `now_ms` (Unix ms).
#[tracing::instrument(skip(db))]
pub async fn invite_at(
    db: &ReadDb,
    code: &str,
    with_counts: bool,
    now_ms: i64,
) -> Result<Option<wire::Invite>> {
    let mut conn = db.pool.acquire().await?;
    let Some(inv) = invite_row(&mut conn, code).await? else {
        return Ok(None);
    };
    if !inv.usable(now_ms) {
        return Ok(None);
    }
    let Some(guild) = guild_row(&mut conn, inv.guild_id).await? else {
        return Ok(None);
    };
    let Some(channel) = channel_row(&mut conn, inv.channel_id).await? else {
        return Ok(None);
    };
    let inviter = user_row(&mut conn, inv.inviter_id).await?;
    let counts = if with_counts {
        Some(member_count(&mut conn, inv.guild_id).await?)
    } else {
        None
    };
    Ok(Some(wire::Invite {
        code: inv.code.clone(),
        kind: 0,
        guild: render::invite_guild(&guild),
        channel: wire::InviteChannel {
            id: channel.id,
            name: channel.name.clone(),
            kind: u8::try_from(channel.kind).unwrap_or(0),
        },
        inviter: inviter.as_ref().map(render::user),
        max_age: u32::try_from(inv.max_age).unwrap_or(0),
        max_uses: u32::try_from(inv.max_uses).unwrap_or(0),
        uses: u32::try_from(inv.uses).unwrap_or(u32::MAX),
        temporary: inv.temporary,
        created_at: render::ts(inv.created_at),
        expires_at: inv.expires_at().map(render::ts),
        approximate_member_count: counts,
        // Presence lives in the gateways' sessions, not in the read models.
        approximate_presence_count: counts.map(|_| 0),
    }))
}

// ---- moderation ----

/// A guild's roles, lowest first (`GET /guilds/{id}/roles`).
#[tracing::instrument(skip(db))]
pub async fn roles(db: &ReadDb, guild_id: GuildId) -> Result<Vec<wire::Role>> {
    let mut conn = db.pool.acquire().await?;
    Ok(role_rows(&mut conn, guild_id)
        .await?
        .iter()
        .map(render::role)
        .collect())
}

/// One role of a guild.
#[tracing::instrument(skip(db))]
pub async fn role(
    db: &ReadDb,
    guild_id: GuildId,
    role_id: domain::RoleId,
) -> Result<Option<wire::Role>> {
    let mut conn = db.pool.acquire().await?;
    Ok(role_row(&mut conn, guild_id, role_id)
        .await?
        .as_ref()
        .map(render::role))
}

/// A page of a guild's members by user id (`GET /guilds/{id}/members`): those after
/// `after`, at most `limit` (clamped to 1-1000).
#[tracing::instrument(skip(db))]
pub async fn members(
    db: &ReadDb,
    guild_id: GuildId,
    after: Option<UserId>,
    limit: u32,
) -> Result<Vec<wire::Member>> {
    let mut conn = db.pool.acquire().await?;
    member_page(&mut conn, guild_id, after, i64::from(limit.clamp(1, 1000))).await
}

const BAN_SELECT: &str = "SELECT b.user_id, b.reason, u.username AS username, u.bot AS bot, \
     u.created_at AS created_at FROM bans b LEFT JOIN users u ON u.id = b.user_id";

fn decode_ban(row: &AnyRow) -> Result<wire::Ban> {
    let user_id: UserId = rows::id(row, "user_id")?;
    let user = UserRow {
        id: user_id,
        username: rows::opt_text(row, "username")?.unwrap_or_else(|| "deleted_user".into()),
        bot: rows::opt_int(row, "bot")?.unwrap_or(0) != 0,
        created_at: rows::opt_int(row, "created_at")?.unwrap_or(0),
    };
    Ok(wire::Ban {
        reason: rows::opt_text(row, "reason")?,
        user: render::user(&user),
    })
}

/// A guild's bans by user id (`GET /guilds/{id}/bans`): `after` / `before` a user id,
/// at most `limit` (clamped to 1-1000).
#[tracing::instrument(skip(db))]
pub async fn bans(
    db: &ReadDb,
    guild_id: GuildId,
    before: Option<UserId>,
    after: Option<UserId>,
    limit: u32,
) -> Result<Vec<wire::Ban>> {
    let mut conn = db.pool.acquire().await?;
    let (cond, order, anchor) = match (before, after) {
        (Some(b), _) => ("<", "DESC", id_param(b)),
        (None, Some(a)) => (">", "ASC", id_param(a)),
        (None, None) => (">", "ASC", 0),
    };
    let rows = sqlx::query(&format!(
        "{BAN_SELECT} WHERE b.guild_id = $1 AND b.user_id {cond} $2 ORDER BY b.user_id {order} LIMIT $3"
    ))
    .bind(id_param(guild_id))
    .bind(anchor)
    .bind(i64::from(limit.clamp(1, 1000)))
    .fetch_all(&mut *conn)
    .await?;
    let mut out: Vec<wire::Ban> = rows.iter().map(decode_ban).collect::<Result<_>>()?;
    if before.is_some() {
        out.reverse();
    }
    Ok(out)
}

/// One ban.
#[tracing::instrument(skip(db))]
pub async fn ban(db: &ReadDb, guild_id: GuildId, user_id: UserId) -> Result<Option<wire::Ban>> {
    let mut conn = db.pool.acquire().await?;
    let row = sqlx::query(&format!(
        "{BAN_SELECT} WHERE b.guild_id = $1 AND b.user_id = $2"
    ))
    .bind(id_param(guild_id))
    .bind(id_param(user_id))
    .fetch_optional(&mut *conn)
    .await?;
    row.as_ref().map(decode_ban).transpose()
}

/// Filters of `GET /guilds/{id}/audit-logs`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Entries by this user.
    pub user_id: Option<UserId>,
    /// Entries of this action type.
    pub action_type: Option<u16>,
    /// Entries with a lower id (newest first).
    pub before: Option<u64>,
    /// Entries with a higher id (oldest first after it; returned newest first).
    pub after: Option<u64>,
    /// 1-100 (default 50).
    pub limit: Option<u32>,
}

/// A guild's audit log, newest first, with the users it mentions.
#[tracing::instrument(skip(db))]
pub async fn audit_log(
    db: &ReadDb,
    guild_id: GuildId,
    filter: AuditFilter,
) -> Result<wire::AuditLog> {
    let mut conn = db.pool.acquire().await?;
    let limit = i64::from(filter.limit.unwrap_or(50).clamp(1, 100));
    let (cond, order, anchor) = match (filter.before, filter.after) {
        (Some(b), _) => ("<", "DESC", to_i64(b)),
        (None, Some(a)) => (">", "ASC", to_i64(a)),
        (None, None) => ("<", "DESC", i64::MAX),
    };
    let rows = sqlx::query(&format!(
        "SELECT {} FROM audit_log WHERE guild_id = $1 AND id {cond} $2 \
         AND ($3 = 0 OR user_id = $3) AND ($4 = 0 OR action_type = $4) \
         ORDER BY id {order} LIMIT $5",
        AuditRow::COLUMNS
    ))
    .bind(id_param(guild_id))
    .bind(anchor)
    .bind(filter.user_id.map_or(0, id_param))
    .bind(i64::from(filter.action_type.unwrap_or(0)))
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    let mut entries: Vec<AuditRow> = rows
        .iter()
        .map(AuditRow::decode)
        .collect::<Result<_, _>>()?;
    if order == "ASC" {
        entries.reverse();
    }
    let mut user_ids: Vec<UserId> = Vec::new();
    for e in &entries {
        if let Some(u) = e.user_id {
            user_ids.push(u);
        }
        if matches!(e.action_type, 20..=25 | 72) {
            if let Some(t) = e.target_id.and_then(rows::checked_id) {
                user_ids.push(t);
            }
        }
    }
    user_ids.sort();
    user_ids.dedup();
    let mut users = Vec::with_capacity(user_ids.len());
    for u in user_ids {
        if let Some(row) = user_row(&mut conn, u).await? {
            users.push(render::user(&row));
        }
    }
    Ok(wire::AuditLog {
        audit_log_entries: entries.iter().map(render::audit_entry).collect(),
        users,
        integrations: Vec::new(),
        webhooks: Vec::new(),
        guild_scheduled_events: Vec::new(),
        threads: Vec::new(),
        application_commands: Vec::new(),
        auto_moderation_rules: Vec::new(),
    })
}

/// A guild's audit entries at global log `position` (what one event recorded).
pub(crate) async fn audit_entries_at(
    conn: &mut AnyConnection,
    guild_id: GuildId,
    at_ms: i64,
    position: u64,
) -> Result<Vec<wire::AuditLogEntry>> {
    let rows = sqlx::query(&format!(
        "SELECT {} FROM audit_log WHERE guild_id = $1 AND id >= $2 AND id <= $3 \
         AND position = $4 ORDER BY id",
        AuditRow::COLUMNS
    ))
    .bind(id_param(guild_id))
    .bind(crate::writer::entry_id(at_ms, position, 0))
    .bind(crate::writer::entry_id(at_ms, position, 1))
    .bind(to_i64(position))
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .iter()
        .map(|r| AuditRow::decode(r).map(|a| render::audit_entry(&a)))
        .collect::<Result<_, _>>()?)
}
