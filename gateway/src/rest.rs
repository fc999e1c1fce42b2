//! REST routes, Discord API v10 shaped.

use std::collections::HashMap;

use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use commands::{ChannelSpec, InviteSpec};
use domain::guild::ChannelKind;
use domain::values::{ChannelName, Topic};
use domain::{ChannelId, GuildId, MessageId, Resource};
use serde::Deserialize;
use serde_json::json;

use crate::error::{ApiError, ApiResult};
use crate::extract::{path_id, Auth, Body, Meta};
use crate::{json_body, AppState};
use projections::queries;

mod applications;
mod invites;
mod moderation;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/auth/register", post(register))
        .route("/auth/login", post(login))
        .route("/users/@me", get(me))
        .route("/users/@me/guilds", get(my_guilds))
        .route("/users/{user_id}", get(get_user))
        .route("/guilds", post(create_guild))
        .route("/guilds/{guild_id}", get(get_guild))
        .route(
            "/guilds/{guild_id}/channels",
            get(guild_channels).post(create_channel),
        )
        .route("/channels/{channel_id}", get(get_channel))
        .route("/channels/{channel_id}/invites", post(create_invite))
        .route("/channels/{channel_id}/typing", post(typing))
        .route(
            "/channels/{channel_id}/messages",
            get(list_messages).post(send_message),
        )
        .route(
            "/channels/{channel_id}/messages/{message_id}",
            get(get_message).patch(edit_message).delete(delete_message),
        )
        .route(
            "/invites/{code}",
            get(get_invite)
                .post(accept_invite)
                .delete(invites::delete_invite),
        )
        .route("/gateway", get(gateway))
        .route("/gateway/bot", get(gateway_bot))
        .merge(moderation::routes())
        .merge(applications::routes())
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
}

/// Query-string parameters, with Discord-shaped errors for malformed ones.
pub struct Params(HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map(|q| Params(q.0))
            .map_err(|e| ApiError::field("query", "BASE_TYPE_INVALID", e.body_text()))
    }
}

impl Params {
    fn id<T>(&self, key: &'static str) -> ApiResult<Option<domain::Id<T>>> {
        self.0.get(key).map(|v| path_id(v, key)).transpose()
    }

    /// `limit`: 1 to `max`, `default` when absent, Discord's error otherwise.
    fn limit(&self, default: u32, max: u32) -> ApiResult<u32> {
        match self.0.get("limit") {
            None => Ok(default),
            Some(raw) => match raw.parse::<u32>() {
                Ok(n) if (1..=max).contains(&n) => Ok(n),
                _ => Err(ApiError::field(
                    "limit",
                    "NUMBER_TYPE_MAX",
                    format!("Must be between 1 and {max}."),
                )),
            },
        }
    }

    fn flag(&self, key: &str) -> bool {
        self.0
            .get(key)
            .is_some_and(|v| matches!(v.as_str(), "true" | "True" | "1"))
    }
}

fn ok(value: &impl serde::Serialize) -> Response {
    json_body(value)
}

fn created(value: &impl serde::Serialize) -> Response {
    let mut r = json_body(value);
    *r.status_mut() = StatusCode::CREATED;
    r
}

// ---- auth -------------------------------------------------------------------------

#[derive(Deserialize)]
struct RegisterBody {
    username: String,
    password: String,
}

async fn register(
    State(s): State<AppState>,
    meta: Meta,
    Body(b): Body<RegisterBody>,
) -> ApiResult<Response> {
    let reg = s
        .commands
        .register(&b.username, &b.password, &meta.request_id)
        .await?;
    s.settle(reg.position).await?;
    Ok(created(
        &json!({ "token": reg.token, "user_id": reg.user_id }),
    ))
}

#[derive(Deserialize)]
struct LoginBody {
    #[serde(alias = "username")]
    login: String,
    password: String,
}

async fn login(
    State(s): State<AppState>,
    meta: Meta,
    Body(b): Body<LoginBody>,
) -> ApiResult<Response> {
    match s
        .commands
        .login(&b.login, &b.password, &meta.request_id)
        .await
    {
        Ok((user_id, token)) => Ok(ok(&json!({ "token": token, "user_id": user_id }))),
        Err(commands::CommandError::Unauthorized) => Err(ApiError::field(
            "login",
            "INVALID_LOGIN",
            "Login or password is invalid.",
        )),
        Err(e) => Err(e.into()),
    }
}

// ---- users ------------------------------------------------------------------------

async fn me(State(s): State<AppState>, auth: Auth) -> ApiResult<Response> {
    let user = queries::user(&s.db, auth.user_id)
        .await?
        .ok_or(ApiError::Unknown(Resource::User))?;
    Ok(ok(&crate::current_user(&user)))
}

/// `GET /users/{id}`: any user's public object (a library's `fetch_user`); Unknown User
/// (10013) when there is none.
async fn get_user(
    State(s): State<AppState>,
    _auth: Auth,
    Path(user_id): Path<String>,
) -> ApiResult<Response> {
    let user_id: domain::UserId = path_id(&user_id, "user_id")?;
    let user = queries::user(&s.db, user_id)
        .await?
        .ok_or(ApiError::Unknown(Resource::User))?;
    Ok(ok(&user))
}

async fn my_guilds(State(s): State<AppState>, auth: Auth) -> ApiResult<Response> {
    Ok(ok(&queries::user_guilds(&s.db, auth.user_id).await?))
}

// ---- guilds -----------------------------------------------------------------------

#[derive(Deserialize)]
struct CreateGuildBody {
    name: String,
}

async fn create_guild(
    State(s): State<AppState>,
    auth: Auth,
    meta: Meta,
    Body(b): Body<CreateGuildBody>,
) -> ApiResult<Response> {
    let (guild_id, position) = s
        .commands
        .create_guild(&meta.context(auth), &b.name)
        .await?;
    s.settle(position).await?;
    let guild = queries::guild(&s.db, guild_id)
        .await?
        .ok_or_else(|| ApiError::Internal("created guild not in read model".into()))?;
    Ok(created(&guild))
}

/// Checks that the user is a member of the guild, by the permission cache (so a member
/// kicked or banned a moment ago is refused at once): Unknown Guild, Missing Access.
async fn require_member(s: &AppState, guild_id: GuildId, auth: Auth) -> ApiResult<()> {
    s.commands.guild_access(auth.user_id, guild_id).await?;
    Ok(())
}

async fn get_guild(
    State(s): State<AppState>,
    auth: Auth,
    Path(guild_id): Path<String>,
) -> ApiResult<Response> {
    let guild_id: GuildId = path_id(&guild_id, "guild_id")?;
    require_member(&s, guild_id, auth).await?;
    let guild = queries::guild(&s.db, guild_id)
        .await?
        .ok_or(ApiError::Unknown(Resource::Guild))?;
    Ok(ok(&guild))
}

async fn guild_channels(
    State(s): State<AppState>,
    auth: Auth,
    Path(guild_id): Path<String>,
) -> ApiResult<Response> {
    let guild_id: GuildId = path_id(&guild_id, "guild_id")?;
    // Only the channels this member can view.
    let visible = s.commands.visible_channels(auth.user_id, guild_id).await?;
    let mut channels = queries::guild_channels(&s.db, guild_id).await?;
    channels.retain(|c| visible.contains(&c.id));
    Ok(ok(&channels))
}

#[derive(Deserialize)]
struct CreateChannelBody {
    name: String,
    #[serde(rename = "type", default)]
    kind: Option<u64>,
    #[serde(default)]
    parent_id: Option<ChannelId>,
    #[serde(default)]
    topic: Option<String>,
    #[serde(default)]
    nsfw: Option<bool>,
    #[serde(default)]
    position: Option<i32>,
}

async fn create_channel(
    State(s): State<AppState>,
    auth: Auth,
    meta: Meta,
    Path(guild_id): Path<String>,
    Body(b): Body<CreateChannelBody>,
) -> ApiResult<Response> {
    let guild_id: GuildId = path_id(&guild_id, "guild_id")?;
    let kind = match b.kind {
        None => ChannelKind::Text,
        Some(t) => ChannelKind::from_discord_type(t).ok_or_else(|| {
            ApiError::field(
                "type",
                "BASE_TYPE_CHOICES",
                format!("Value must be one of {{0, 2, 4}}, got {t}."),
            )
        })?,
    };
    let spec = ChannelSpec {
        kind,
        name: ChannelName::parse(&b.name)?,
        parent_id: b.parent_id,
        topic: b.topic.as_deref().map(Topic::parse).transpose()?,
        nsfw: b.nsfw.unwrap_or(false),
        position: b.position,
    };
    let (channel_id, position) = s
        .commands
        .create_channel(&meta.context(auth), guild_id, spec)
        .await?;
    s.settle(position).await?;
    let channel = queries::channel(&s.db, channel_id)
        .await?
        .ok_or_else(|| ApiError::Internal("created channel not in read model".into()))?;
    Ok(created(&channel))
}

// ---- channels ---------------------------------------------------------------------

/// The user's permissions in a channel they can view (VIEW_CHANNEL), judged by the
/// permission cache: Unknown Channel, or Missing Access for a channel they cannot view
/// (also for non-members of its guild).
async fn channel_access(
    s: &AppState,
    channel_id: ChannelId,
    auth: Auth,
) -> ApiResult<domain::permissions::Permissions> {
    let (_, perms) = s.commands.channel_access(auth.user_id, channel_id).await?;
    Ok(perms)
}

/// The channel, if the user may see it.
async fn visible_channel(
    s: &AppState,
    channel_id: ChannelId,
    auth: Auth,
) -> ApiResult<projections::wire::Channel> {
    channel_access(s, channel_id, auth).await?;
    queries::channel(&s.db, channel_id)
        .await?
        .ok_or(ApiError::Unknown(Resource::Channel))
}

async fn get_channel(
    State(s): State<AppState>,
    auth: Auth,
    Path(channel_id): Path<String>,
) -> ApiResult<Response> {
    let channel_id: ChannelId = path_id(&channel_id, "channel_id")?;
    Ok(ok(&visible_channel(&s, channel_id, auth).await?))
}

/// `POST /channels/{id}/typing`: TYPING_START to everyone who can view the channel
/// (GUILD_MESSAGE_TYPING intent), as a bot library's `typing()` sends it. Needs what
/// sending a message needs; never recorded. 204.
async fn typing(
    State(s): State<AppState>,
    auth: Auth,
    Path(channel_id): Path<String>,
) -> ApiResult<Response> {
    let channel_id: ChannelId = path_id(&channel_id, "channel_id")?;
    let guild_id = s.commands.typing(auth.user_id, channel_id).await?;
    let member = queries::member(&s.db, guild_id, auth.user_id).await?;
    let timestamp = domain::timefmt::now_ms() / 1000;
    let data = json!({
        "channel_id": channel_id.to_string(),
        "guild_id": guild_id.to_string(),
        "user_id": auth.user_id.to_string(),
        "timestamp": timestamp,
        "member": member,
    });
    s.hub
        .publish_ephemeral(guild_id.get(), channel_id.get(), "TYPING_START", data)
        .await
        .map_err(|e| ApiError::Unavailable(format!("the bus: {e}")))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize, Default)]
struct CreateInviteBody {
    #[serde(default)]
    max_age: Option<u32>,
    #[serde(default)]
    max_uses: Option<u32>,
    #[serde(default)]
    temporary: Option<bool>,
}

async fn create_invite(
    State(s): State<AppState>,
    auth: Auth,
    meta: Meta,
    Path(channel_id): Path<String>,
    Body(b): Body<CreateInviteBody>,
) -> ApiResult<Response> {
    let channel_id: ChannelId = path_id(&channel_id, "channel_id")?;
    let spec = InviteSpec {
        max_age: b.max_age.unwrap_or(86_400),
        max_uses: b.max_uses.unwrap_or(0),
        temporary: b.temporary.unwrap_or(false),
    };
    let (info, position) = s
        .commands
        .create_invite(&meta.context(auth), channel_id, spec)
        .await?;
    s.settle(position).await?;
    let invite = queries::invite(&s.db, &info.code, false)
        .await?
        .ok_or_else(|| ApiError::Internal("created invite not in read model".into()))?;
    Ok(ok(&invite))
}

// ---- messages ---------------------------------------------------------------------

/// A nonce: Discord accepts an integer or a string.
#[derive(Deserialize)]
#[serde(untagged)]
enum NonceValue {
    Int(i64),
    Str(String),
}

#[derive(Deserialize)]
struct SendMessageBody {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    nonce: Option<NonceValue>,
    #[serde(default)]
    enforce_nonce: Option<bool>,
    #[serde(default)]
    tts: Option<bool>,
}

async fn send_message(
    State(s): State<AppState>,
    auth: Auth,
    meta: Meta,
    Path(channel_id): Path<String>,
    Body(b): Body<SendMessageBody>,
) -> ApiResult<Response> {
    let channel_id: ChannelId = path_id(&channel_id, "channel_id")?;
    let content = b.content.ok_or_else(|| {
        ApiError::field(
            "content",
            "BASE_TYPE_REQUIRED",
            "Cannot send an empty message",
        )
    })?;
    let nonce = b.nonce.map(|n| match n {
        NonceValue::Int(i) => i.to_string(),
        NonceValue::Str(s) => s,
    });
    let sent = s
        .commands
        .send_message(
            &meta.context(auth),
            channel_id,
            &content,
            nonce.as_deref(),
            b.enforce_nonce.unwrap_or(false),
            b.tts.unwrap_or(false),
        )
        .await?;
    s.settle(sent.position).await?;
    let message = queries::message(&s.db, channel_id, sent.message_id)
        .await?
        .ok_or_else(|| ApiError::Internal("sent message not in read model".into()))?;
    Ok(ok(&message))
}

async fn list_messages(
    State(s): State<AppState>,
    auth: Auth,
    Path(channel_id): Path<String>,
    params: Params,
) -> ApiResult<Response> {
    let channel_id: ChannelId = path_id(&channel_id, "channel_id")?;
    let limit = params.limit(50, 100)?;
    let anchor = [
        ("before", params.id::<domain::id::MessageMarker>("before")?),
        ("after", params.id("after")?),
        ("around", params.id("around")?),
    ];
    let given: Vec<_> = anchor.iter().filter(|(_, v)| v.is_some()).collect();
    if given.len() > 1 {
        return Err(ApiError::field(
            "before",
            "BASE_TYPE_INVALID",
            "Only one of before, after and around may be given.",
        ));
    }
    let page = match given.first() {
        Some(("before", Some(id))) => queries::MessageAnchor::Before(*id),
        Some(("after", Some(id))) => queries::MessageAnchor::After(*id),
        Some(("around", Some(id))) => queries::MessageAnchor::Around(*id),
        _ => queries::MessageAnchor::Latest,
    };
    // As on Discord: without READ_MESSAGE_HISTORY the history is empty.
    let perms = channel_access(&s, channel_id, auth).await?;
    if !perms.contains(domain::permissions::Permissions::READ_MESSAGE_HISTORY) {
        return Ok(ok(&Vec::<serde_json::Value>::new()));
    }
    Ok(ok(&queries::messages(&s.db, channel_id, page, limit).await?))
}

async fn get_message(
    State(s): State<AppState>,
    auth: Auth,
    Path((channel_id, message_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let channel_id: ChannelId = path_id(&channel_id, "channel_id")?;
    let message_id: MessageId = path_id(&message_id, "message_id")?;
    let perms = channel_access(&s, channel_id, auth).await?;
    if !perms.contains(domain::permissions::Permissions::READ_MESSAGE_HISTORY) {
        return Err(ApiError::MissingPermissions);
    }
    let message = queries::message(&s.db, channel_id, message_id)
        .await?
        .ok_or(ApiError::Unknown(Resource::Message))?;
    Ok(ok(&message))
}

#[derive(Deserialize)]
struct EditMessageBody {
    #[serde(default)]
    content: Option<String>,
}

async fn edit_message(
    State(s): State<AppState>,
    auth: Auth,
    meta: Meta,
    Path((channel_id, message_id)): Path<(String, String)>,
    Body(b): Body<EditMessageBody>,
) -> ApiResult<Response> {
    let channel_id: ChannelId = path_id(&channel_id, "channel_id")?;
    let message_id: MessageId = path_id(&message_id, "message_id")?;
    let content = b.content.ok_or_else(|| {
        ApiError::field("content", "BASE_TYPE_REQUIRED", "This field is required")
    })?;
    let position = s
        .commands
        .edit_message(&meta.context(auth), channel_id, message_id, &content)
        .await?;
    s.settle(position).await?;
    let message = queries::message(&s.db, channel_id, message_id)
        .await?
        .ok_or(ApiError::Unknown(Resource::Message))?;
    Ok(ok(&message))
}

async fn delete_message(
    State(s): State<AppState>,
    auth: Auth,
    meta: Meta,
    Path((channel_id, message_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let channel_id: ChannelId = path_id(&channel_id, "channel_id")?;
    let message_id: MessageId = path_id(&message_id, "message_id")?;
    let position = s
        .commands
        .delete_message(&meta.context(auth), channel_id, message_id)
        .await?;
    s.settle(position).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---- invites ----------------------------------------------------------------------

async fn get_invite(
    State(s): State<AppState>,
    Path(code): Path<String>,
    params: Params,
) -> ApiResult<Response> {
    if !domain::invite::valid_code(&code) {
        return Err(ApiError::Unknown(Resource::Invite));
    }
    let invite = queries::invite(&s.db, &code, params.flag("with_counts"))
        .await?
        .ok_or(ApiError::Unknown(Resource::Invite))?;
    Ok(ok(&invite))
}

async fn accept_invite(
    State(s): State<AppState>,
    auth: Auth,
    meta: Meta,
    Path(code): Path<String>,
) -> ApiResult<Response> {
    // Rendered before the use, which may use the invite up.
    let shown = if domain::invite::valid_code(&code) {
        queries::invite(&s.db, &code, false).await?
    } else {
        None
    };
    let (guild_id, position) = s.commands.accept_invite(&meta.context(auth), &code).await?;
    s.settle(position).await?;
    match shown {
        Some(invite) => Ok(ok(&invite)),
        None => Ok(ok(&json!({ "code": code, "guild": { "id": guild_id } }))),
    }
}

// ---- gateway ----------------------------------------------------------------------

async fn gateway(State(s): State<AppState>) -> Response {
    ok(&json!({ "url": s.config.public_ws_url }))
}

async fn gateway_bot(State(s): State<AppState>, _auth: Auth) -> Response {
    ok(&json!({
        "url": s.config.public_ws_url,
        "shards": 1,
        "session_start_limit": {
            "total": 1000,
            "remaining": 1000,
            "reset_after": 86_400_000,
            "max_concurrency": 1
        }
    }))
}
