//! Op 4 VOICE_STATE_UPDATE `{guild_id, channel_id, self_mute, self_deaf}`: join, move or
//! (channel_id null) leave a voice channel. The voice state command decides (membership,
//! CONNECT, the user limit with the MOVE_MEMBERS bypass) and appends to the guild's voice
//! stream; the publisher then dispatches VOICE_STATE_UPDATE to the guild. A session that
//! joined or moved gets VOICE_SERVER_UPDATE `{token, guild_id, endpoint}` pointing at the
//! voice node that holds the room (see `voice::placement`).
//!
//! As on Discord, a refused op 4 (no permission, full channel, not a voice channel) is
//! dropped without a reply; only a payload that cannot be read closes the session (4002).

use std::sync::Arc;

use domain::{ChannelId, GuildId, UserId};
use serde_json::{json, Value};

use super::Dispatch;
use crate::AppState;

/// The op 4 payload could not be read.
pub(super) struct Malformed;

fn snowflake(v: &Value) -> Option<u64> {
    match v {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

/// Handles op 4 from `user_id`'s session `session_id`; the VOICE_SERVER_UPDATE to send to
/// this session, if any.
pub(super) async fn state_update(
    state: &AppState,
    user_id: u64,
    session_id: &str,
    d: Value,
) -> Result<Option<Arc<Dispatch>>, Malformed> {
    let guild = snowflake(&d["guild_id"])
        .and_then(GuildId::new_checked)
        .ok_or(Malformed)?;
    let channel = match &d["channel_id"] {
        Value::Null => None,
        v => Some(
            snowflake(v)
                .and_then(ChannelId::new_checked)
                .ok_or(Malformed)?,
        ),
    };
    let flag = |name: &str| match &d[name] {
        Value::Null => Ok(false),
        Value::Bool(b) => Ok(*b),
        _ => Err(Malformed),
    };
    let (self_mute, self_deaf) = (flag("self_mute")?, flag("self_deaf")?);
    let Some(user) = UserId::new_checked(user_id) else {
        return Ok(None);
    };
    let ctx = commands::Context::user(user, format!("op4-{session_id}"));
    let outcome = match state
        .commands
        .update_voice_state(&ctx, guild, session_id, channel, self_mute, self_deaf)
        .await
    {
        Ok(o) => o,
        Err(e) => {
            tracing::debug!(error = %e, guild = guild.get(), user = user_id, "voice state update refused");
            return Ok(None);
        }
    };
    let (Some(routing), Some(now)) = (&state.config.voice, &outcome.state) else {
        return Ok(None);
    };
    let update = routing.server_update(
        guild.get(),
        now.channel_id.get(),
        user_id,
        session_id,
        outcome.mute,
        outcome.deaf,
    );
    let data = json!({
        "token": update.token,
        "guild_id": guild.to_string(),
        "endpoint": update.endpoint,
    });
    Ok(Dispatch::new("VOICE_SERVER_UPDATE".to_owned(), &data).map(Arc::new))
}
