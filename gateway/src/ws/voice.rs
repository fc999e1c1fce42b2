//! Op 4 VOICE_STATE_UPDATE `{guild_id, channel_id, self_mute, self_deaf}`: join, move or
//! (channel_id null) leave a voice channel. The voice state command decides (membership,
//! CONNECT, the user limit with the MOVE_MEMBERS bypass) and appends to the guild's voice
//! stream; the publisher then dispatches VOICE_STATE_UPDATE to the guild. A session that
//! joined or moved gets VOICE_SERVER_UPDATE `{token, guild_id, endpoint}` pointing at the
//! voice node that holds the room (see `voice::placement`).
//!
//! A session whose voice state someone else moves (a moderator's member PATCH
//! `channel_id`) gets, after that VOICE_STATE_UPDATE, a VOICE_SERVER_UPDATE for the new
//! room too, as on Discord: its old voice connection was closed (4014) and it needs the
//! new room's token and endpoint to reconnect. [`OwnVoice`] remembers, per guild, the room
//! of the last VOICE_SERVER_UPDATE the session was sent, so its own op 4 move (answered
//! at once) is not answered twice, and a leave or a change within the room sends none.
//!
//! As on Discord, a refused op 4 (no permission, full channel, not a voice channel) is
//! dropped without a reply; only a payload that cannot be read closes the session (4002).

use std::sync::Arc;

use domain::{ChannelId, GuildId, UserId};
use serde_json::{json, Value};

use super::resume::Session;
use super::Dispatch;
use crate::AppState;

/// The room of the last VOICE_SERVER_UPDATE a session was sent, per guild (a session is
/// in voice in one or two guilds at most, so a short list; empty for most sessions).
#[derive(Debug, Default)]
pub struct OwnVoice(Vec<(GuildId, ChannelId)>);

impl OwnVoice {
    fn room(&self, guild: GuildId) -> Option<ChannelId> {
        self.0.iter().find(|(g, _)| *g == guild).map(|(_, c)| *c)
    }

    fn set(&mut self, guild: GuildId, channel: Option<ChannelId>) {
        self.0.retain(|(g, _)| *g != guild);
        if let Some(c) = channel {
            self.0.push((guild, c));
        }
    }
}

/// The op 4 payload could not be read.
pub(super) struct Malformed;

fn snowflake(v: &Value) -> Option<u64> {
    match v {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

/// Handles op 4 from `session`; the VOICE_SERVER_UPDATE to send to it, if any.
pub(super) async fn state_update(
    state: &AppState,
    session: &mut Session,
    d: Value,
) -> Result<Option<Arc<Dispatch>>, Malformed> {
    let (user_id, session_id) = (session.user_id, session.session_id.as_str());
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
    let channel = outcome.state.as_ref().map(|now| now.channel_id);
    let update = channel.and_then(|c| {
        server_update(
            state,
            guild,
            c,
            user_id,
            session_id,
            outcome.mute,
            outcome.deaf,
        )
    });
    session.voice.set(guild, update.as_ref().and(channel));
    Ok(update)
}

/// Called for every dispatch before it is delivered to `session`: when it is a
/// VOICE_STATE_UPDATE that put this session's own voice state in a room other than the one
/// of its last VOICE_SERVER_UPDATE (someone else moved it), the VOICE_SERVER_UPDATE for
/// the new room, to send after it. A leave forgets the room and sends nothing. The room is
/// recorded before returning, so the same move is never answered twice.
pub(super) fn after_state_update(
    state: &AppState,
    session: &mut Session,
    dispatch: &Dispatch,
) -> Option<Arc<Dispatch>> {
    // Cheap tests first: every session of the guild sees every voice state change.
    if dispatch.name != "VOICE_STATE_UPDATE" || !dispatch.data.contains(&session.session_id) {
        return None;
    }
    let d: Value = serde_json::from_str(&dispatch.data).ok()?;
    if d["session_id"].as_str() != Some(session.session_id.as_str())
        || snowflake(&d["user_id"]) != Some(session.user_id)
    {
        return None;
    }
    let guild = snowflake(&d["guild_id"]).and_then(GuildId::new_checked)?;
    let channel = snowflake(&d["channel_id"]).and_then(ChannelId::new_checked);
    if channel.is_none() || session.voice.room(guild) == channel {
        session.voice.set(guild, channel);
        return None;
    }
    let update = server_update(
        state,
        guild,
        channel?,
        session.user_id,
        &session.session_id,
        d["mute"].as_bool().unwrap_or(false),
        d["deaf"].as_bool().unwrap_or(false),
    );
    session.voice.set(guild, update.as_ref().and(channel));
    update
}

/// VOICE_SERVER_UPDATE `{token, guild_id, endpoint}` for `user_id`'s session `session_id`
/// in `channel`'s room, with the member's server mute and deafen in the token; None on a
/// node that does not route voice.
fn server_update(
    state: &AppState,
    guild: GuildId,
    channel: ChannelId,
    user_id: u64,
    session_id: &str,
    mute: bool,
    deaf: bool,
) -> Option<Arc<Dispatch>> {
    let routing = state.config.voice.as_ref()?;
    let update = routing.server_update(guild.get(), channel.get(), user_id, session_id, mute, deaf);
    let data = json!({
        "token": update.token,
        "guild_id": guild.to_string(),
        "endpoint": update.endpoint,
    });
    Dispatch::new("VOICE_SERVER_UPDATE".to_owned(), &data).map(Arc::new)
}
