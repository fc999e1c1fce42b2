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

/// What a session knows of its own voice state, per guild (a session is in voice in one or
/// two guilds at most, so a short list; empty for most sessions): the room of the last
/// VOICE_SERVER_UPDATE it was sent, and the log position of the newest voice state of its
/// own it has acted on. The position orders its own op 4 against moves by others: a
/// moderator's move dispatched after the session's own later op 4 was answered is old
/// news and must not send it back to the room it just left.
#[derive(Debug, Default)]
pub struct OwnVoice(Vec<Known>);

#[derive(Debug, Clone, Copy)]
struct Known {
    guild: GuildId,
    room: Option<ChannelId>,
    position: u64,
}

impl OwnVoice {
    fn known(&mut self, guild: GuildId) -> &mut Known {
        let at = match self.0.iter().position(|k| k.guild == guild) {
            Some(at) => at,
            None => {
                self.0.push(Known {
                    guild,
                    room: None,
                    position: 0,
                });
                self.0.len() - 1
            }
        };
        &mut self.0[at]
    }

    /// The session's own op 4 was answered: `room` is the room of the VOICE_SERVER_UPDATE
    /// it was sent (None: none was), `position` the log position of the voice state the
    /// op 4 wrote (None when it changed nothing).
    fn answered(&mut self, guild: GuildId, room: Option<ChannelId>, position: Option<u64>) {
        let known = self.known(guild);
        known.room = room;
        if let Some(p) = position {
            known.position = known.position.max(p);
        }
    }

    /// A VOICE_STATE_UPDATE of the session's own voice state, from the event at log
    /// position `position`, puts it in `channel`. True when that is a move into a room the
    /// session was sent no VOICE_SERVER_UPDATE for, so it needs one. False for a leave,
    /// for its current room, and for a state older than one it already acted on.
    fn moved(&mut self, guild: GuildId, channel: Option<ChannelId>, position: Option<u64>) -> bool {
        let known = self.known(guild);
        if let Some(p) = position {
            if p <= known.position {
                return false;
            }
            known.position = p;
        }
        if channel.is_none() || known.room == channel {
            known.room = channel;
            return false;
        }
        true
    }

    /// Records the room of a VOICE_SERVER_UPDATE sent after [`OwnVoice::moved`] (None: the
    /// node routes no voice, so none was).
    fn sent(&mut self, guild: GuildId, room: Option<ChannelId>) {
        self.known(guild).room = room;
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
    let wrote = (!outcome.events.is_empty()).then_some(outcome.position);
    session
        .voice
        .answered(guild, update.as_ref().and(channel), wrote);
    Ok(update)
}

/// Called for every dispatch before it is delivered to `session`: when it is a
/// VOICE_STATE_UPDATE that put this session's own voice state in a room other than the one
/// of its last VOICE_SERVER_UPDATE (someone else moved it), the VOICE_SERVER_UPDATE for
/// the new room, to send after it. A leave forgets the room and sends nothing, and so
/// does a state older than the session's own op 4 answered since (see [`OwnVoice`]). The
/// room is recorded before returning, so the same move is never answered twice.
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
    if !session.voice.moved(guild, channel, dispatch.position) {
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
    session.voice.sent(guild, update.as_ref().and(channel));
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

#[cfg(test)]
mod tests {
    use super::*;

    const GUILD: GuildId = GuildId::new(1);
    const LOUNGE: ChannelId = ChannelId::new(10);
    const DEN: ChannelId = ChannelId::new(11);
    const ATTIC: ChannelId = ChannelId::new(12);

    /// A session that joined the lounge with its own op 4 (the state at position 5).
    fn in_lounge() -> OwnVoice {
        let mut own = OwnVoice::default();
        own.answered(GUILD, Some(LOUNGE), Some(5));
        assert!(!own.moved(GUILD, Some(LOUNGE), Some(5)), "its own join");
        own
    }

    #[test]
    fn a_move_by_someone_else_asks_for_one_server_update() {
        let mut own = in_lounge();
        assert!(own.moved(GUILD, Some(DEN), Some(8)));
        own.sent(GUILD, Some(DEN));
        // The same state again (a duplicate, or a change of mute within the room): none.
        assert!(!own.moved(GUILD, Some(DEN), Some(8)));
        assert!(!own.moved(GUILD, Some(DEN), Some(9)));
        // A disconnect: none, and the next move into any room asks again.
        assert!(!own.moved(GUILD, None, Some(10)));
        assert!(own.moved(GUILD, Some(DEN), Some(11)));
    }

    #[test]
    fn a_move_older_than_the_sessions_own_op4_is_not_answered() {
        // A moderator moves the session to the den (position 8); before that dispatch
        // arrives, the session's own op 4 to the attic is appended (9) and answered.
        let mut own = in_lounge();
        own.answered(GUILD, Some(ATTIC), Some(9));
        // The den move arrives: old news, no VOICE_SERVER_UPDATE back to the den.
        assert!(!own.moved(GUILD, Some(DEN), Some(8)));
        // The op 4's own state: already answered.
        assert!(!own.moved(GUILD, Some(ATTIC), Some(9)));
        // A later move by someone else still is.
        assert!(own.moved(GUILD, Some(LOUNGE), Some(12)));
    }

    #[test]
    fn a_move_older_than_the_sessions_own_leave_is_not_answered() {
        let mut own = in_lounge();
        own.answered(GUILD, None, Some(9));
        assert!(!own.moved(GUILD, Some(DEN), Some(8)));
        assert!(!own.moved(GUILD, None, Some(9)));
    }

    #[test]
    fn an_op4_that_changed_nothing_does_not_hide_later_moves() {
        let mut own = in_lounge();
        // Op 4 to the room it is in: answered, but nothing was appended.
        own.answered(GUILD, Some(LOUNGE), None);
        assert!(own.moved(GUILD, Some(DEN), Some(6)));
    }

    #[test]
    fn guilds_are_apart() {
        let mut own = in_lounge();
        let other = GuildId::new(2);
        own.answered(other, Some(ATTIC), Some(20));
        assert!(
            own.moved(GUILD, Some(DEN), Some(8)),
            "position 20 is another guild's"
        );
    }
}
