//! Moderation routes: roles, members (edit, kick, leave), bans, channel permission
//! overwrites, channel edits and deletion, and the audit log.
//!
//! Permissions are the domain's (the commands decide), so a route checks nothing twice;
//! reads check membership (and BAN_MEMBERS / VIEW_AUDIT_LOG) through the permission
//! cache. As everywhere on these routes, a non-member is told the guild or channel does
//! not exist (404 Unknown Guild / Unknown Channel), a member lacking a permission or
//! outranked in the role hierarchy gets 403 Missing Permissions (50013). Writes answer
//! after the read models include them (`settle`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, put};
use axum::Router;
use commands::{ChannelEdit, CommandError, MemberEdit, RoleEdit, RoleSpec};
use domain::permissions::{Overwrite, OverwriteTarget, Permissions};
use domain::{ChannelId, DomainError, GuildId, MessageId, Resource, RoleId, UserId};
use projections::queries;
use serde::{Deserialize, Deserializer};
use serde_json::json;

use super::{ok, Params};
use crate::error::{ApiError, ApiResult};
use crate::extract::{path_id, Auth, Body, Meta};
use crate::AppState;

/// The moderation routes (merged into [`super::routes`]).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/guilds/{guild_id}", patch(edit_guild))
        .route(
            "/guilds/{guild_id}/roles",
            get(list_roles).post(create_role).patch(reorder_roles),
        )
        .route(
            "/guilds/{guild_id}/roles/{role_id}",
            get(get_role).patch(edit_role).delete(delete_role),
        )
        .route("/guilds/{guild_id}/members", get(list_members))
        .route(
            "/guilds/{guild_id}/members/{user_id}",
            get(get_member).patch(edit_member).delete(kick_member),
        )
        .route(
            "/guilds/{guild_id}/members/{user_id}/roles/{role_id}",
            put(add_member_role).delete(remove_member_role),
        )
        .route(
            "/users/@me/guilds/{guild_id}",
            axum::routing::delete(leave_guild),
        )
        .route("/guilds/{guild_id}/bans", get(list_bans))
        .route(
            "/guilds/{guild_id}/bans/{user_id}",
            get(get_ban).put(ban).delete(unban),
        )
        .route(
            "/channels/{channel_id}/permissions/{overwrite_id}",
            put(set_overwrite).delete(delete_overwrite),
        )
        .route(
            "/channels/{channel_id}",
            patch(edit_channel).delete(delete_channel),
        )
        .route("/guilds/{guild_id}/audit-logs", get(audit_log))
        .route(
            "/channels/{channel_id}/messages/bulk-delete",
            axum::routing::post(bulk_delete),
        )
        // Discord's pin routes since 2025, which current libraries call, and the older
        // ones, which earlier releases call.
        .route("/channels/{channel_id}/messages/pins", get(pins_page))
        .route(
            "/channels/{channel_id}/messages/pins/{message_id}",
            put(pin).delete(unpin),
        )
        .route("/channels/{channel_id}/pins", get(list_pins))
        .route(
            "/channels/{channel_id}/pins/{message_id}",
            put(pin).delete(unpin),
        )
}

fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

// ---- access ----------------------------------------------------------------------

/// A non-member is told the resource does not exist.
fn hide(e: CommandError, resource: Resource) -> ApiError {
    match e {
        CommandError::Domain(DomainError::MissingAccess) => ApiError::Unknown(resource),
        other => other.into(),
    }
}

/// A command on a guild: non-members see Unknown Guild.
fn in_guild<T>(r: Result<T, CommandError>) -> ApiResult<T> {
    r.map_err(|e| hide(e, Resource::Guild))
}

/// The member's guild permissions; Unknown Guild for non-members.
async fn member_perms(s: &AppState, guild_id: GuildId, auth: Auth) -> ApiResult<Permissions> {
    in_guild(s.commands.guild_access(auth.user_id, guild_id).await)
}

/// Requires `needed` at guild level (403 Missing Permissions otherwise).
async fn require(
    s: &AppState,
    guild_id: GuildId,
    auth: Auth,
    needed: Permissions,
) -> ApiResult<()> {
    let perms = member_perms(s, guild_id, auth).await?;
    if perms.contains(needed) {
        Ok(())
    } else {
        Err(ApiError::MissingPermissions)
    }
}

/// The guild of a channel the user may see: Unknown Channel for an unknown channel or a
/// non-member; Missing Access for a member who cannot view it.
async fn channel_guild(s: &AppState, channel_id: ChannelId, auth: Auth) -> ApiResult<GuildId> {
    match s.commands.channel_access(auth.user_id, channel_id).await {
        Ok((guild_id, _)) => Ok(guild_id),
        Err(CommandError::Domain(DomainError::MissingAccess)) => {
            // A member who cannot view the channel is told so; others learn nothing.
            Err(ApiError::Unknown(Resource::Channel))
        }
        Err(e) => Err(e.into()),
    }
}

/// A command on a channel: non-members see Unknown Channel.
fn in_channel<T>(r: Result<T, CommandError>) -> ApiResult<T> {
    r.map_err(|e| hide(e, Resource::Channel))
}

fn guild_path(raw: &str) -> ApiResult<GuildId> {
    path_id(raw, "guild_id")
}

/// `@me` or a user id.
fn user_path(raw: &str, auth: Auth) -> ApiResult<UserId> {
    if raw == "@me" {
        Ok(auth.user_id)
    } else {
        path_id(raw, "user_id")
    }
}

// ---- bodies ----------------------------------------------------------------------

/// `null` becomes `Some(None)`, a value `Some(Some(v))`, an absent field `None` (with
/// `#[serde(default)]`).
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// A permission bitmask: a decimal string (Discord's form) or an integer.
#[derive(Debug, Clone, Copy)]
struct Bits(Permissions);

impl<'de> Deserialize<'de> for Bits {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Str(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(Bits(Permissions::from_bits_retain(n))),
            Raw::Str(s) => s
                .trim()
                .parse::<u64>()
                .map(|n| Bits(Permissions::from_bits_retain(n)))
                .map_err(|_| serde::de::Error::custom("Value is not a valid permission bitmask.")),
        }
    }
}

/// A snowflake given as a string or an integer.
#[derive(Debug, Clone, Copy)]
struct Snowflake(u64);

impl<'de> Deserialize<'de> for Snowflake {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Str(String),
        }
        let n = match Raw::deserialize(d)? {
            Raw::Int(n) => Some(n),
            Raw::Str(s) => s.parse::<u64>().ok(),
        };
        n.filter(|n| *n > 0)
            .map(Snowflake)
            .ok_or_else(|| serde::de::Error::custom("Value is not snowflake."))
    }
}

#[derive(Deserialize)]
struct BulkDeleteBody {
    messages: Vec<Snowflake>,
}

/// `POST /channels/{id}/messages/bulk-delete` `{messages: [ids]}`: 2 to 100 messages at
/// once (MANAGE_MESSAGES; none older than two weeks, 50034; no id twice). Ids of messages
/// that do not exist or are already gone are skipped. One MESSAGE_DELETE_BULK. 204.
async fn bulk_delete(
    State(s): State<AppState>,
    auth: Auth,
    meta: Meta,
    Path(channel_id): Path<String>,
    Body(b): Body<BulkDeleteBody>,
) -> ApiResult<Response> {
    let channel_id: ChannelId = path_id(&channel_id, "channel_id")?;
    let ids: Vec<MessageId> = b
        .messages
        .into_iter()
        .map(|Snowflake(n)| MessageId::new(n))
        .collect();
    let position = s
        .commands
        .bulk_delete_messages(&meta.context(auth), channel_id, ids)
        .await?;
    s.settle(position).await?;
    Ok(no_content())
}

/// Whether `user` may read the channel's pins: Unknown Channel / Missing Access as for any
/// channel read; false without READ_MESSAGE_HISTORY (Discord then shows no pins).
async fn may_read_pins(s: &AppState, auth: Auth, channel_id: ChannelId) -> ApiResult<bool> {
    let (_, perms) = s.commands.channel_access(auth.user_id, channel_id).await?;
    Ok(perms.contains(Permissions::READ_MESSAGE_HISTORY))
}

/// `GET /channels/{id}/messages/pins?before&limit`: a page of pinned messages, the most
/// recently pinned first: `{items: [{pinned_at, message}], has_more}`; `before` is an
/// ISO 8601 time (a pin time from the previous page), `limit` 1-50 (50).
async fn pins_page(
    State(s): State<AppState>,
    auth: Auth,
    Path(channel_id): Path<String>,
    params: Params,
) -> ApiResult<Response> {
    let channel_id: ChannelId = path_id(&channel_id, "channel_id")?;
    let limit = params.limit(50, 50)?;
    let before = match params.0.get("before") {
        Some(raw) => Some(i64::try_from(parse_time("before", raw)?).unwrap_or(i64::MAX)),
        None => None,
    };
    if !may_read_pins(&s, auth, channel_id).await? {
        return Ok(ok(&json!({ "items": [], "has_more": false })));
    }
    let (items, has_more) = queries::pins(&s.db, channel_id, before, limit).await?;
    let items: Vec<serde_json::Value> = items
        .into_iter()
        .map(|(at, message)| {
            json!({
                "pinned_at": domain::timefmt::discord_ms(u64::try_from(at).unwrap_or(0)),
                "message": message,
            })
        })
        .collect();
    Ok(ok(&json!({ "items": items, "has_more": has_more })))
}

/// `GET /channels/{id}/pins` (the older route): the pinned messages, the most recently
/// pinned first, as an array.
async fn list_pins(
    State(s): State<AppState>,
    auth: Auth,
    Path(channel_id): Path<String>,
) -> ApiResult<Response> {
    let channel_id: ChannelId = path_id(&channel_id, "channel_id")?;
    if !may_read_pins(&s, auth, channel_id).await? {
        return Ok(ok(&Vec::<serde_json::Value>::new()));
    }
    let (items, _) =
        queries::pins(&s.db, channel_id, None, domain::channel::MAX_PINS as u32).await?;
    Ok(ok(&items.into_iter().map(|(_, m)| m).collect::<Vec<_>>()))
}

async fn set_pin(
    s: AppState,
    auth: Auth,
    meta: Meta,
    (channel_id, message_id): (String, String),
    pin: bool,
) -> ApiResult<Response> {
    let channel_id: ChannelId = path_id(&channel_id, "channel_id")?;
    let message_id: MessageId = path_id(&message_id, "message_id")?;
    let position = s
        .commands
        .pin_message(&meta.context(auth), channel_id, message_id, pin)
        .await?;
    s.settle(position).await?;
    Ok(no_content())
}

/// `PUT /channels/{id}/pins/{message}`: pins a message (MANAGE_MESSAGES or PIN_MESSAGES;
/// at most 50 per channel, 30003). CHANNEL_PINS_UPDATE. 204.
async fn pin(
    State(s): State<AppState>,
    auth: Auth,
    meta: Meta,
    Path(ids): Path<(String, String)>,
) -> ApiResult<Response> {
    set_pin(s, auth, meta, ids, true).await
}

/// `DELETE /channels/{id}/pins/{message}`: unpins it. CHANNEL_PINS_UPDATE. 204.
async fn unpin(
    State(s): State<AppState>,
    auth: Auth,
    meta: Meta,
    Path(ids): Path<(String, String)>,
) -> ApiResult<Response> {
    set_pin(s, auth, meta, ids, false).await
}

/// A bad field of a body, as Discord reports it.
fn bad(field: &str, message: &str) -> ApiError {
    ApiError::field(field, "BASE_TYPE_INVALID", message)
}

// ---- guild -----------------------------------------------------------------------

#[derive(Deserialize)]
struct EditGuildBody {
    #[serde(default)]
    name: Option<String>,
}

/// `PATCH /guilds/{id}`: the domain has no guild edit yet; a body that changes nothing
/// returns the guild (MANAGE_GUILD), anything else is refused with 400.
async fn edit_guild(
    State(s): State<AppState>,
    auth: Auth,
    meta: Meta,
    Path(guild_id): Path<String>,
    Body(b): Body<EditGuildBody>,
) -> ApiResult<Response> {
    let guild_id = guild_path(&guild_id)?;
    require(&s, guild_id, auth, Permissions::MANAGE_GUILD).await?;
    let guild = queries::guild(&s.db, guild_id)
        .await?
        .ok_or(ApiError::Unknown(Resource::Guild))?;
    match b.name {
        Some(name) if name != guild.name => {
            let name = domain::values::GuildName::parse(&name).map_err(ApiError::from)?;
            let position = s
                .commands
                .rename_guild(&meta.context(auth), guild_id, name)
                .await?;
            s.settle(position).await?;
            let guild = queries::guild(&s.db, guild_id)
                .await?
                .ok_or(ApiError::Unknown(Resource::Guild))?;
            Ok(ok(&guild))
        }
        _ => Ok(ok(&guild)),
    }
}

// ---- roles -----------------------------------------------------------------------

async fn list_roles(
    State(s): State<AppState>,
    auth: Auth,
    Path(guild_id): Path<String>,
) -> ApiResult<Response> {
    let guild_id = guild_path(&guild_id)?;
    member_perms(&s, guild_id, auth).await?;
    Ok(ok(&queries::roles(&s.db, guild_id).await?))
}

async fn get_role(
    State(s): State<AppState>,
    auth: Auth,
    Path((guild_id, role_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let guild_id = guild_path(&guild_id)?;
    let role_id: RoleId = path_id(&role_id, "role_id")?;
    member_perms(&s, guild_id, auth).await?;
    let role = queries::role(&s.db, guild_id, role_id)
        .await?
        .ok_or(ApiError::Unknown(Resource::Role))?;
    Ok(ok(&role))
}

#[derive(Deserialize, Default)]
struct RoleBody {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    permissions: Option<Bits>,
    #[serde(default)]
    color: Option<u32>,
    #[serde(default)]
    hoist: Option<bool>,
    #[serde(default)]
    mentionable: Option<bool>,
}

async fn create_role(
    State(s): State<AppState>,
    auth: Auth,
    meta: Meta,
    Path(guild_id): Path<String>,
    Body(b): Body<RoleBody>,
) -> ApiResult<Response> {
    let guild_id = guild_path(&guild_id)?;
    let spec = RoleSpec {
        name: b.name,
        permissions: b.permissions.map(|p| p.0),
        color: b.color,
        hoist: b.hoist,
        mentionable: b.mentionable,
    };
    let (role_id, position) = in_guild(
        s.commands
            .create_role(&meta.context(auth), guild_id, spec)
            .await,
    )?;
    s.settle(position).await?;
    let role = queries::role(&s.db, guild_id, role_id)
        .await?
        .ok_or_else(|| ApiError::Internal("created role not in read model".into()))?;
    Ok(ok(&role))
}

async fn edit_role(
    State(s): State<AppState>,
    auth: Auth,
    meta: Meta,
    Path((guild_id, role_id)): Path<(String, String)>,
    Body(b): Body<RoleBody>,
) -> ApiResult<Response> {
    let guild_id = guild_path(&guild_id)?;
    let role_id: RoleId = path_id(&role_id, "role_id")?;
    let edit = RoleEdit {
        name: b.name,
        permissions: b.permissions.map(|p| p.0),
        color: b.color,
        hoist: b.hoist,
        mentionable: b.mentionable,
    };
    let position = in_guild(
        s.commands
            .edit_role(&meta.context(auth), guild_id, role_id, edit)
            .await,
    )?;
    s.settle(position).await?;
    let role = queries::role(&s.db, guild_id, role_id)
        .await?
        .ok_or(ApiError::Unknown(Resource::Role))?;
    Ok(ok(&role))
}

async fn delete_role(
    State(s): State<AppState>,
    auth: Auth,
    meta: Meta,
    Path((guild_id, role_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let guild_id = guild_path(&guild_id)?;
    let role_id: RoleId = path_id(&role_id, "role_id")?;
    let position = in_guild(
        s.commands
            .delete_role(&meta.context(auth), guild_id, role_id)
            .await,
    )?;
    s.settle(position).await?;
    Ok(no_content())
}

#[derive(Deserialize)]
struct RolePositionBody {
    id: Snowflake,
    #[serde(default)]
    position: Option<i32>,
}

/// `PATCH /guilds/{id}/roles`: a JSON array `[{id, position}]`.
async fn reorder_roles(
    State(s): State<AppState>,
    auth: Auth,
    meta: Meta,
    Path(guild_id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let guild_id = guild_path(&guild_id)?;
    let value: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| ApiError::InvalidJson(e.to_string()))?;
    let Some(items) = value.as_array() else {
        return Err(ApiError::field(
            "",
            "LIST_TYPE_CONVERT",
            "Only iterables may be used in a ListType",
        ));
    };
    let mut positions = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let p: RolePositionBody = serde_json::from_value(item.clone())
            .map_err(|e| ApiError::field(format!("{i}.id"), "BASE_TYPE_INVALID", e.to_string()))?;
        let Some(position) = p.position else { continue };
        let role_id = RoleId::new_checked(p.id.0)
            .ok_or_else(|| bad(&format!("{i}.id"), "Value is not snowflake."))?;
        positions.push((role_id, position));
    }
    let position = in_guild(
        s.commands
            .reorder_roles(&meta.context(auth), guild_id, positions)
            .await,
    )?;
    s.settle(position).await?;
    Ok(ok(&queries::roles(&s.db, guild_id).await?))
}

// ---- members ---------------------------------------------------------------------

async fn list_members(
    State(s): State<AppState>,
    auth: Auth,
    Path(guild_id): Path<String>,
    params: Params,
) -> ApiResult<Response> {
    let guild_id = guild_path(&guild_id)?;
    let limit = params.limit(1, 1000)?;
    let after: Option<UserId> = params.id("after")?;
    member_perms(&s, guild_id, auth).await?;
    Ok(ok(&queries::members(&s.db, guild_id, after, limit).await?))
}

async fn get_member(
    State(s): State<AppState>,
    auth: Auth,
    Path((guild_id, user_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let guild_id = guild_path(&guild_id)?;
    let user_id = user_path(&user_id, auth)?;
    member_perms(&s, guild_id, auth).await?;
    let member = queries::member(&s.db, guild_id, user_id)
        .await?
        .ok_or(ApiError::Unknown(Resource::Member))?;
    Ok(ok(&member))
}

#[derive(Deserialize)]
struct EditMemberBody {
    #[serde(default, deserialize_with = "nullable")]
    nick: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    roles: Option<Option<Vec<Snowflake>>>,
    #[serde(default, deserialize_with = "nullable")]
    communication_disabled_until: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    mute: Option<Option<bool>>,
    #[serde(default, deserialize_with = "nullable")]
    deaf: Option<Option<bool>>,
    /// Moves the member to another voice channel, or (null) disconnects them from voice
    /// (MOVE_MEMBERS; see `commands::Commands::move_voice_member`).
    #[serde(default, deserialize_with = "nullable")]
    channel_id: Option<Option<Snowflake>>,
}

/// An ISO 8601 time as Unix ms.
fn parse_time(field: &str, raw: &str) -> ApiResult<u64> {
    let t =
        time::OffsetDateTime::parse(raw, &time::format_description::well_known::Iso8601::DEFAULT)
            .map_err(|_| {
            ApiError::field(
                field,
                "DATE_TYPE_PARSE",
                format!(
                    "Could not parse {}. Should be ISO8601.",
                    raw.chars().take(64).collect::<String>()
                ),
            )
        })?;
    u64::try_from(t.unix_timestamp_nanos() / 1_000_000)
        .map_err(|_| bad(field, "The time must be after 1970."))
}

async fn edit_member(
    State(s): State<AppState>,
    auth: Auth,
    meta: Meta,
    Path((guild_id, user_id)): Path<(String, String)>,
    Body(b): Body<EditMemberBody>,
) -> ApiResult<Response> {
    let guild_id = guild_path(&guild_id)?;
    let user_id = user_path(&user_id, auth)?;
    let roles = match b.roles {
        None => None,
        Some(list) => {
            let mut out = Vec::new();
            for (i, r) in list.unwrap_or_default().into_iter().enumerate() {
                out.push(
                    RoleId::new_checked(r.0)
                        .ok_or_else(|| bad(&format!("roles.{i}"), "Value is not snowflake."))?,
                );
            }
            Some(out)
        }
    };
    let until = match b.communication_disabled_until {
        None => None,
        Some(None) => Some(None),
        Some(Some(raw)) => Some(Some(parse_time("communication_disabled_until", &raw)?)),
    };
    let edit = MemberEdit {
        nick: b.nick,
        roles,
        communication_disabled_until_ms: until,
        mute: b.mute.map(|m| m.unwrap_or(false)),
        deaf: b.deaf.map(|d| d.unwrap_or(false)),
    };
    let position = in_guild(
        s.commands
            .edit_member(&meta.context(auth), guild_id, user_id, edit)
            .await,
    )?;
    let position = match b.channel_id {
        None => position,
        Some(channel) => {
            let channel = match channel {
                None => None,
                Some(c) => Some(
                    ChannelId::new_checked(c.0)
                        .ok_or_else(|| bad("channel_id", "Value is not snowflake."))?,
                ),
            };
            let ctx = meta.context(auth);
            let moved = s
                .commands
                .move_voice_member(&ctx, guild_id, user_id, channel)
                .await;
            in_guild(moved)?.position.max(position)
        }
    };
    s.settle(position).await?;
    let member = queries::member(&s.db, guild_id, user_id)
        .await?
        .ok_or(ApiError::Unknown(Resource::Member))?;
    Ok(ok(&member))
}

async fn kick_member(
    State(s): State<AppState>,
    auth: Auth,
    meta: Meta,
    Path((guild_id, user_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let guild_id = guild_path(&guild_id)?;
    let user_id = user_path(&user_id, auth)?;
    let position = in_guild(
        s.commands
            .kick_member(&meta.context(auth), guild_id, user_id)
            .await,
    )?;
    s.settle(position).await?;
    Ok(no_content())
}

async fn set_member_role(
    s: AppState,
    auth: Auth,
    meta: Meta,
    (guild_id, user_id, role_id): (String, String, String),
    add: bool,
) -> ApiResult<Response> {
    let guild_id = guild_path(&guild_id)?;
    let user_id = user_path(&user_id, auth)?;
    let role_id: RoleId = path_id(&role_id, "role_id")?;
    let position = in_guild(
        s.commands
            .set_member_role(&meta.context(auth), guild_id, user_id, role_id, add)
            .await,
    )?;
    s.settle(position).await?;
    Ok(no_content())
}

async fn add_member_role(
    State(s): State<AppState>,
    auth: Auth,
    meta: Meta,
    Path(p): Path<(String, String, String)>,
) -> ApiResult<Response> {
    set_member_role(s, auth, meta, p, true).await
}

async fn remove_member_role(
    State(s): State<AppState>,
    auth: Auth,
    meta: Meta,
    Path(p): Path<(String, String, String)>,
) -> ApiResult<Response> {
    set_member_role(s, auth, meta, p, false).await
}

async fn leave_guild(
    State(s): State<AppState>,
    auth: Auth,
    meta: Meta,
    Path(guild_id): Path<String>,
) -> ApiResult<Response> {
    let guild_id = guild_path(&guild_id)?;
    let position = s
        .commands
        .leave_guild(&meta.context(auth), guild_id)
        .await?;
    s.settle(position).await?;
    Ok(no_content())
}

// ---- bans ------------------------------------------------------------------------

async fn list_bans(
    State(s): State<AppState>,
    auth: Auth,
    Path(guild_id): Path<String>,
    params: Params,
) -> ApiResult<Response> {
    let guild_id = guild_path(&guild_id)?;
    let limit = params.limit(1000, 1000)?;
    let before: Option<UserId> = params.id("before")?;
    let after: Option<UserId> = params.id("after")?;
    require(&s, guild_id, auth, Permissions::BAN_MEMBERS).await?;
    Ok(ok(
        &queries::bans(&s.db, guild_id, before, after, limit).await?
    ))
}

async fn get_ban(
    State(s): State<AppState>,
    auth: Auth,
    Path((guild_id, user_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let guild_id = guild_path(&guild_id)?;
    let user_id: UserId = path_id(&user_id, "user_id")?;
    require(&s, guild_id, auth, Permissions::BAN_MEMBERS).await?;
    let ban = queries::ban(&s.db, guild_id, user_id)
        .await?
        .ok_or(ApiError::UnknownBan)?;
    Ok(ok(&ban))
}

#[derive(Deserialize, Default)]
struct BanBody {
    #[serde(default)]
    delete_message_seconds: Option<u32>,
    /// Deprecated by Discord, still accepted: days (0-7).
    #[serde(default)]
    delete_message_days: Option<u32>,
}

async fn ban(
    State(s): State<AppState>,
    auth: Auth,
    meta: Meta,
    Path((guild_id, user_id)): Path<(String, String)>,
    Body(b): Body<BanBody>,
) -> ApiResult<Response> {
    let guild_id = guild_path(&guild_id)?;
    let user_id: UserId = path_id(&user_id, "user_id")?;
    let seconds = match (b.delete_message_seconds, b.delete_message_days) {
        (Some(s), _) => s,
        (None, Some(d)) if d <= 7 => d * 86_400,
        (None, Some(_)) => {
            return Err(ApiError::field(
                "delete_message_days",
                "NUMBER_TYPE_MAX",
                "Must be between 0 and 7.",
            ))
        }
        (None, None) => 0,
    };
    if seconds > domain::member::MAX_DELETE_MESSAGE_SECONDS {
        return Err(ApiError::field(
            "delete_message_seconds",
            "NUMBER_TYPE_MAX",
            "Must be between 0 and 604800.",
        ));
    }
    let banned = in_guild(
        s.commands
            .ban_member(&meta.context(auth), guild_id, user_id, seconds)
            .await,
    )?;
    s.settle(banned.position).await?;
    Ok(no_content())
}

async fn unban(
    State(s): State<AppState>,
    auth: Auth,
    meta: Meta,
    Path((guild_id, user_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let guild_id = guild_path(&guild_id)?;
    let user_id: UserId = path_id(&user_id, "user_id")?;
    let position = match s
        .commands
        .unban_member(&meta.context(auth), guild_id, user_id)
        .await
    {
        Ok(p) => p,
        // The domain reports a missing ban as an unknown member.
        Err(CommandError::Domain(DomainError::Unknown(Resource::Member))) => {
            return Err(ApiError::UnknownBan)
        }
        Err(e) => return Err(hide(e, Resource::Guild)),
    };
    s.settle(position).await?;
    Ok(no_content())
}

// ---- channels --------------------------------------------------------------------

#[derive(Deserialize)]
struct OverwriteBody {
    #[serde(default)]
    allow: Option<Bits>,
    #[serde(default)]
    deny: Option<Bits>,
    #[serde(rename = "type")]
    kind: u64,
}

async fn set_overwrite(
    State(s): State<AppState>,
    auth: Auth,
    meta: Meta,
    Path((channel_id, overwrite_id)): Path<(String, String)>,
    Body(b): Body<OverwriteBody>,
) -> ApiResult<Response> {
    let channel_id: ChannelId = path_id(&channel_id, "channel_id")?;
    let target_id: RoleId = path_id(&overwrite_id, "overwrite_id")?;
    let target = OverwriteTarget::from_discord(b.kind, target_id.get()).ok_or_else(|| {
        ApiError::field("type", "BASE_TYPE_CHOICES", "Value must be one of {0, 1}.")
    })?;
    let overwrite = Overwrite {
        target,
        allow: b.allow.map_or(Permissions::NONE, |p| p.0),
        deny: b.deny.map_or(Permissions::NONE, |p| p.0),
    };
    channel_guild(&s, channel_id, auth).await?;
    let (_, position) = in_channel(
        s.commands
            .set_overwrite(&meta.context(auth), channel_id, overwrite)
            .await,
    )?;
    s.settle(position).await?;
    Ok(no_content())
}

async fn delete_overwrite(
    State(s): State<AppState>,
    auth: Auth,
    meta: Meta,
    Path((channel_id, overwrite_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let channel_id: ChannelId = path_id(&channel_id, "channel_id")?;
    let target_id: RoleId = path_id(&overwrite_id, "overwrite_id")?;
    let guild_id = channel_guild(&s, channel_id, auth).await?;
    // The path does not say whether the id is a role's or a member's: a role of the
    // guild (the guild's own id is @everyone's) is a role.
    let is_role = target_id.get() == guild_id.get()
        || queries::role(&s.db, guild_id, target_id).await?.is_some();
    let target = if is_role {
        OverwriteTarget::Role(target_id)
    } else {
        OverwriteTarget::Member(target_id.cast())
    };
    let (_, position) = in_channel(
        s.commands
            .delete_overwrite(&meta.context(auth), channel_id, target)
            .await,
    )?;
    s.settle(position).await?;
    Ok(no_content())
}

#[derive(Deserialize)]
struct EditChannelBody {
    #[serde(default)]
    name: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    topic: Option<Option<String>>,
    #[serde(default)]
    nsfw: Option<bool>,
    #[serde(default, deserialize_with = "nullable")]
    position: Option<Option<i32>>,
    #[serde(default, deserialize_with = "nullable")]
    parent_id: Option<Option<Snowflake>>,
    #[serde(default, deserialize_with = "nullable")]
    rate_limit_per_user: Option<Option<u32>>,
    #[serde(default)]
    permission_overwrites: Option<Vec<OverwriteEntry>>,
    /// Sync the channel's overwrites with its (new) category.
    #[serde(default)]
    lock_permissions: Option<bool>,
    /// An alias of `lock_permissions`.
    #[serde(default)]
    sync: Option<bool>,
}

#[derive(Deserialize)]
struct OverwriteEntry {
    id: Snowflake,
    #[serde(rename = "type")]
    kind: u64,
    #[serde(default)]
    allow: Option<Bits>,
    #[serde(default)]
    deny: Option<Bits>,
}

async fn edit_channel(
    State(s): State<AppState>,
    auth: Auth,
    meta: Meta,
    Path(channel_id): Path<String>,
    Body(b): Body<EditChannelBody>,
) -> ApiResult<Response> {
    let channel_id: ChannelId = path_id(&channel_id, "channel_id")?;
    if let Some(Some(r)) = b.rate_limit_per_user {
        if r > domain::guild::MAX_RATE_LIMIT_PER_USER {
            return Err(ApiError::field(
                "rate_limit_per_user",
                "NUMBER_TYPE_MAX",
                "Must be between 0 and 21600.",
            ));
        }
    }
    let overwrites_given = b.permission_overwrites.is_some();
    let mut wanted = Vec::new();
    for (i, o) in b
        .permission_overwrites
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let target = OverwriteTarget::from_discord(o.kind, o.id.0).ok_or_else(|| {
            ApiError::field(
                format!("permission_overwrites.{i}.type"),
                "BASE_TYPE_CHOICES",
                "Value must be one of {0, 1}.",
            )
        })?;
        wanted.push(Overwrite {
            target,
            allow: o.allow.map_or(Permissions::NONE, |p| p.0),
            deny: o.deny.map_or(Permissions::NONE, |p| p.0),
        });
    }
    let parent_id = match b.parent_id {
        None => None,
        Some(None) => Some(None),
        Some(Some(p)) => {
            Some(Some(ChannelId::new_checked(p.0).ok_or_else(|| {
                bad("parent_id", "Value is not snowflake.")
            })?))
        }
    };
    let edit = ChannelEdit {
        name: b.name,
        topic: b.topic,
        nsfw: b.nsfw,
        position: b.position.flatten(),
        parent_id,
        rate_limit_per_user: b.rate_limit_per_user.map(|r| r.unwrap_or(0)),
        lock_permissions: b.lock_permissions.or(b.sync).unwrap_or(false),
    };
    channel_guild(&s, channel_id, auth).await?;
    let ctx = meta.context(auth);
    let (_, mut position) = in_channel(s.commands.edit_channel(&ctx, channel_id, edit).await)?;
    // The overwrites listed replace the channel's: set each, remove the others.
    if overwrites_given {
        s.settle(position).await?;
        let current = queries::channel(&s.db, channel_id)
            .await?
            .map(|c| c.permission_overwrites)
            .unwrap_or_default();
        for o in &wanted {
            let (_, p) = in_channel(s.commands.set_overwrite(&ctx, channel_id, *o).await)?;
            position = position.max(p);
        }
        for old in current {
            let Ok(id) = old.id.parse::<u64>() else {
                continue;
            };
            let Some(target) = OverwriteTarget::from_discord(u64::from(old.kind), id) else {
                continue;
            };
            if !wanted.iter().any(|o| o.target == target) {
                let (_, p) =
                    in_channel(s.commands.delete_overwrite(&ctx, channel_id, target).await)?;
                position = position.max(p);
            }
        }
    }
    s.settle(position).await?;
    let channel = queries::channel(&s.db, channel_id)
        .await?
        .ok_or(ApiError::Unknown(Resource::Channel))?;
    Ok(ok(&channel))
}

async fn delete_channel(
    State(s): State<AppState>,
    auth: Auth,
    meta: Meta,
    Path(channel_id): Path<String>,
) -> ApiResult<Response> {
    let channel_id: ChannelId = path_id(&channel_id, "channel_id")?;
    channel_guild(&s, channel_id, auth).await?;
    let before = queries::channel(&s.db, channel_id).await?;
    let (_, position) = in_channel(
        s.commands
            .delete_channel(&meta.context(auth), channel_id)
            .await,
    )?;
    s.settle(position).await?;
    let channel = before.ok_or(ApiError::Unknown(Resource::Channel))?;
    Ok(ok(&channel))
}

// ---- audit log -------------------------------------------------------------------

async fn audit_log(
    State(s): State<AppState>,
    auth: Auth,
    Path(guild_id): Path<String>,
    params: Params,
) -> ApiResult<Response> {
    let guild_id = guild_path(&guild_id)?;
    let limit = params.limit(50, 100)?;
    let action_type = match params.0.get("action_type") {
        None => None,
        Some(raw) => Some(raw.parse::<u16>().map_err(|_| {
            ApiError::field(
                "action_type",
                "NUMBER_TYPE_COERCE",
                format!(
                    "Value \"{}\" is not int.",
                    raw.chars().take(32).collect::<String>()
                ),
            )
        })?),
    };
    let user_id: Option<UserId> = params.id("user_id")?;
    let before: Option<domain::Id<()>> = params.id("before")?;
    let after: Option<domain::Id<()>> = params.id("after")?;
    require(&s, guild_id, auth, Permissions::VIEW_AUDIT_LOG).await?;
    let filter = queries::AuditFilter {
        user_id,
        action_type,
        before: before.map(|b| b.get()),
        after: after.map(|a| a.get()),
        limit: Some(limit),
    };
    Ok(ok(&queries::audit_log(&s.db, guild_id, filter).await?))
}
