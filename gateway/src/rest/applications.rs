//! Applications and bots: create an application, give it a bot and a token, reset the
//! token, add the bot to a guild (OAuth2 `scope=bot`), and the application a bot logs in
//! as (`GET /oauth2/applications/@me`, which discord.py requires).
//!
//! Only an application's owner sees or changes it; anyone else is told it does not exist
//! (404 Unknown Application, 10002). The application itself is read from its stream
//! through `commands` (there is no applications read model yet); users come from the
//! read models.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use domain::application::ApplicationState;
use domain::id::ApplicationId;
use domain::permissions::Permissions;
use domain::{GuildId, Resource, UserId};
use projections::queries;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{ok, Params};
use crate::error::{ApiError, ApiResult};
use crate::extract::{path_id, Auth, Body, Meta};
use crate::AppState;

/// The application routes (merged into [`super::routes`]).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/applications", post(create_application))
        .route("/applications/@me", get(current_application))
        .route("/applications/{application_id}", get(get_application))
        .route("/applications/{application_id}/bot", post(create_bot))
        .route(
            "/applications/{application_id}/bot/reset",
            post(reset_token),
        )
        .route("/oauth2/applications/@me", get(current_application))
        .route("/oauth2/authorize", post(authorize))
}

fn created(value: &impl serde::Serialize) -> Response {
    let mut r = ok(value);
    *r.status_mut() = StatusCode::CREATED;
    r
}

/// The user object of `id` from the read models (`null` if it is not there yet).
async fn user_json(s: &AppState, id: UserId) -> ApiResult<Value> {
    Ok(match queries::user(&s.db, id).await? {
        Some(u) => serde_json::to_value(u).map_err(|e| ApiError::Internal(e.to_string()))?,
        None => Value::Null,
    })
}

/// Discord's application object, with the fields discord.py, discord.js, twilight and
/// serenity read (`owner` a user, `bot` the bot user once it exists).
async fn application_json(s: &AppState, app: &ApplicationState) -> ApiResult<Value> {
    let id = app.id.ok_or(ApiError::Unknown(Resource::Application))?;
    let owner = match app.owner_id {
        Some(o) => user_json(s, o).await?,
        None => Value::Null,
    };
    let mut v = json!({
        "id": id,
        "name": app.name.as_ref().map(|n| n.as_str()).unwrap_or_default(),
        "icon": null,
        "description": app.description,
        "summary": "",
        "type": null,
        "bot_public": app.bot_public,
        "bot_require_code_grant": false,
        "verify_key": app.verify_key,
        "flags": 0,
        "owner": owner,
        "team": null,
        "hooks": true,
        "rpc_origins": [],
        "redirect_uris": [],
        "interactions_endpoint_url": null,
        "tags": [],
        "approximate_guild_count": app.guilds.len(),
    });
    if let Some(bot_id) = app.bot_id {
        let bot = user_json(s, bot_id).await?;
        if !bot.is_null() {
            v["bot"] = bot;
        }
    }
    Ok(v)
}

/// The application `raw` names, if `auth` owns it (otherwise Unknown Application).
async fn owned(
    s: &AppState,
    auth: Auth,
    raw: &str,
) -> ApiResult<(ApplicationId, ApplicationState)> {
    let id: ApplicationId = path_id(raw, "application_id")?;
    match s.commands.application(id).await? {
        Some(app) if app.owner_id == Some(auth.user_id) => Ok((id, app)),
        _ => Err(ApiError::Unknown(Resource::Application)),
    }
}

#[derive(Deserialize)]
struct CreateApplicationBody {
    name: String,
    #[serde(default)]
    description: Option<String>,
}

async fn create_application(
    State(s): State<AppState>,
    auth: Auth,
    meta: Meta,
    Body(b): Body<CreateApplicationBody>,
) -> ApiResult<Response> {
    let (id, position) = s
        .commands
        .create_application(&meta.context(auth), &b.name, b.description.as_deref())
        .await?;
    s.settle(position).await?;
    let app = s
        .commands
        .application(id)
        .await?
        .ok_or_else(|| ApiError::Internal("created application not found".into()))?;
    Ok(created(&application_json(&s, &app).await?))
}

async fn get_application(
    State(s): State<AppState>,
    auth: Auth,
    Path(application_id): Path<String>,
) -> ApiResult<Response> {
    let (_, app) = owned(&s, auth, &application_id).await?;
    Ok(ok(&application_json(&s, &app).await?))
}

/// The application of the bot that asks (a bot's application has its id); for a human,
/// Unknown Application.
async fn current_application(State(s): State<AppState>, auth: Auth) -> ApiResult<Response> {
    let app = s
        .commands
        .application(ApplicationId::new(auth.user_id.get()))
        .await?
        .filter(|a| a.bot_id == Some(auth.user_id))
        .ok_or(ApiError::Unknown(Resource::Application))?;
    Ok(ok(&application_json(&s, &app).await?))
}

async fn create_bot(
    State(s): State<AppState>,
    auth: Auth,
    meta: Meta,
    Path(application_id): Path<String>,
) -> ApiResult<Response> {
    let (id, _) = owned(&s, auth, &application_id).await?;
    let bot = s.commands.create_bot(&meta.context(auth), id).await?;
    s.settle(bot.position).await?;
    Ok(created(&json!({
        "token": bot.token,
        "user": user_json(&s, bot.bot_id).await?,
    })))
}

async fn reset_token(
    State(s): State<AppState>,
    auth: Auth,
    meta: Meta,
    Path(application_id): Path<String>,
) -> ApiResult<Response> {
    let (id, _) = owned(&s, auth, &application_id).await?;
    let bot = s.commands.reset_bot_token(&meta.context(auth), id).await?;
    s.settle(bot.position).await?;
    Ok(ok(&json!({ "token": bot.token })))
}

#[derive(Deserialize)]
struct AuthorizeBody {
    guild_id: Option<GuildId>,
    #[serde(default)]
    permissions: Option<PermissionsValue>,
    #[serde(default)]
    authorize: Option<bool>,
}

/// Permissions as a decimal string or a number.
#[derive(Deserialize)]
#[serde(untagged)]
enum PermissionsValue {
    Text(String),
    Number(u64),
}

fn parse_permissions(raw: &str) -> ApiResult<Permissions> {
    raw.parse::<Permissions>().map_err(|_| {
        ApiError::field(
            "permissions",
            "BASE_TYPE_INVALID",
            "Must be a permission integer.",
        )
    })
}

/// `POST /oauth2/authorize?client_id=..&scope=bot&permissions=..` with
/// `{guild_id, permissions, authorize: true}`: adds the bot to the guild.
async fn authorize(
    State(s): State<AppState>,
    auth: Auth,
    meta: Meta,
    params: Params,
    Body(b): Body<AuthorizeBody>,
) -> ApiResult<Response> {
    let client_id: ApplicationId = params.id("client_id")?.ok_or_else(|| {
        ApiError::field("client_id", "BASE_TYPE_REQUIRED", "This field is required")
    })?;
    let scopes = params
        .0
        .get("scope")
        .map(String::as_str)
        .unwrap_or_default();
    if !scopes.split([' ', '+']).any(|sc| sc == "bot") {
        return Err(ApiError::field(
            "scope",
            "BASE_TYPE_INVALID",
            "Only the bot scope is supported.",
        ));
    }
    if b.authorize != Some(true) {
        return Err(ApiError::field(
            "authorize",
            "BASE_TYPE_INVALID",
            "Must be true to add the bot.",
        ));
    }
    let guild_id = b.guild_id.ok_or_else(|| {
        ApiError::field("guild_id", "BASE_TYPE_REQUIRED", "This field is required")
    })?;
    let permissions = match (&b.permissions, params.0.get("permissions")) {
        (Some(PermissionsValue::Number(n)), _) => parse_permissions(&n.to_string())?,
        (Some(PermissionsValue::Text(t)), _) => parse_permissions(t)?,
        (None, Some(q)) => parse_permissions(q)?,
        (None, None) => Permissions::NONE,
    };
    let (_, position) = s
        .commands
        .authorize_bot(&meta.context(auth), client_id, guild_id, permissions)
        .await?;
    s.settle(position).await?;
    Ok(ok(
        &json!({ "location": "https://discord.com/oauth2/authorized" }),
    ))
}
