//! `DELETE /invites/{code}`: revoking an invite (MANAGE_CHANNELS on its channel or
//! MANAGE_GUILD). Answers the invite as it was; unknown codes are 404 10006.

use axum::extract::{Path, State};
use axum::response::Response;
use domain::Resource;
use projections::queries;

use super::ok;
use crate::error::{ApiError, ApiResult};
use crate::extract::{Auth, Meta};
use crate::AppState;

/// Revokes an invite and returns it (rendered before the revocation, which drops it
/// from the read model).
pub(super) async fn delete_invite(
    State(s): State<AppState>,
    auth: Auth,
    meta: Meta,
    Path(code): Path<String>,
) -> ApiResult<Response> {
    if !domain::invite::valid_code(&code) {
        return Err(ApiError::Unknown(Resource::Invite));
    }
    let shown = queries::invite(&s.db, &code, false).await?;
    let (_, position) = s.commands.delete_invite(&meta.context(auth), &code).await?;
    s.settle(position).await?;
    let invite = shown.ok_or(ApiError::Unknown(Resource::Invite))?;
    Ok(ok(&invite))
}
