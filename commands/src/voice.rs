//! Voice state commands: the gateway's op 4 VOICE_STATE_UPDATE (join, move, leave, self
//! mute/deafen), a moderator's move or disconnect (member PATCH `channel_id`), and dropping
//! a user whose voice connection died. Each appends one `VoiceStateChanged` to the guild's
//! `voice-{guild id}` stream, decided on the guild's current state (membership, channel
//! kinds, CONNECT, MOVE_MEMBERS) and its current voice states.
//!
//! The voice stream is read from the log on every command (it is not cached): voice
//! commands are rare next to messages, and the guild's lock is held while deciding so that
//! permission changes and voice decisions are ordered.

use domain::timefmt::now_ms;
use domain::voice::{self, VoiceCommand, VoiceEvent, VoiceState, VoiceStates};
use domain::{streams, ChannelId, GuildId, UserId};
use rand::Rng;
use store::{ExpectedRevision, Position};

use crate::cache::Loaded;
use crate::{encode, CommandError, Commands, Context, MAX_ATTEMPTS};

/// What a voice command did.
#[derive(Debug, Clone)]
pub struct VoiceOutcome {
    /// The events appended (empty when nothing changed).
    pub events: Vec<VoiceEvent>,
    /// The log position after the append (or the head when nothing was appended).
    pub position: Position,
    /// The user's voice state now (None: not in voice).
    pub state: Option<VoiceState>,
    /// The member's server mute and deafen.
    pub mute: bool,
    /// See `mute`.
    pub deaf: bool,
}

impl Commands {
    /// Op 4 from `ctx.actor`'s gateway session `session_id`.
    pub async fn update_voice_state(
        &self,
        ctx: &Context,
        guild_id: GuildId,
        session_id: &str,
        channel_id: Option<ChannelId>,
        self_mute: bool,
        self_deaf: bool,
    ) -> Result<VoiceOutcome, CommandError> {
        let user_id = ctx.actor;
        self.on_voice(ctx, guild_id, user_id, |now_ms| VoiceCommand::Update {
            user_id,
            session_id: session_id.to_owned(),
            channel_id,
            self_mute,
            self_deaf,
            now_ms,
        })
        .await
    }

    /// `ctx.actor` moves `user_id` to `channel_id`, or disconnects them (None).
    pub async fn move_voice_member(
        &self,
        ctx: &Context,
        guild_id: GuildId,
        user_id: UserId,
        channel_id: Option<ChannelId>,
    ) -> Result<VoiceOutcome, CommandError> {
        let actor = ctx.actor;
        self.on_voice(ctx, guild_id, user_id, |now_ms| VoiceCommand::Move {
            actor,
            user_id,
            channel_id,
            now_ms,
        })
        .await
    }

    /// `user_id` is out of voice (their voice connection died or timed out).
    pub async fn drop_voice_state(
        &self,
        ctx: &Context,
        guild_id: GuildId,
        user_id: UserId,
    ) -> Result<VoiceOutcome, CommandError> {
        self.on_voice(ctx, guild_id, user_id, |now_ms| VoiceCommand::Drop {
            user_id,
            now_ms,
        })
        .await
    }

    /// A guild's current voice states, from the log.
    pub async fn voice_states(&self, guild_id: GuildId) -> Result<VoiceStates, CommandError> {
        let mut loaded = Loaded::<VoiceStates>::default();
        loaded
            .catch_up(self.store.as_ref(), &voice::stream(guild_id))
            .await?;
        Ok(loaded.state)
    }

    async fn on_voice(
        &self,
        ctx: &Context,
        guild_id: GuildId,
        subject: UserId,
        command: impl Fn(u64) -> VoiceCommand,
    ) -> Result<VoiceOutcome, CommandError> {
        let guild_stream = streams::guild(guild_id);
        let voice_stream = voice::stream(guild_id);
        let meta = ctx.metadata();
        let mut loaded = Loaded::<VoiceStates>::default();
        for attempt in 0..MAX_ATTEMPTS {
            let entry = self.guilds.entry(&guild_stream);
            let mut guild = entry.lock().await;
            guild.catch_up(self.store.as_ref(), &guild_stream).await?;
            loaded.catch_up(self.store.as_ref(), &voice_stream).await?;
            let events = voice::decide(&guild.state, &loaded.state, command(now_ms()))?;
            let (mute, deaf) = guild
                .state
                .members
                .get(&subject)
                .map_or((false, false), |m| (m.mute, m.deaf));
            drop(guild);
            if events.is_empty() {
                return Ok(VoiceOutcome {
                    events,
                    position: self.store.head().await?,
                    state: loaded.state.states.get(&subject).cloned(),
                    mute,
                    deaf,
                });
            }
            let expected = if loaded.revision == 0 {
                ExpectedRevision::NoStream
            } else {
                ExpectedRevision::Exact(loaded.revision)
            };
            match self
                .store
                .append(&voice_stream, expected, encode(&events, &meta))
                .await
            {
                Ok(result) => {
                    loaded.apply(&events, result.revision);
                    return Ok(VoiceOutcome {
                        events,
                        position: result.position,
                        state: loaded.state.states.get(&subject).cloned(),
                        mute,
                        deaf,
                    });
                }
                Err(e) if e.is_conflict() => {
                    let cap_ms = (1u64 << attempt.min(6)).min(50);
                    let ms = rand::thread_rng().gen_range(0..=cap_ms);
                    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(CommandError::Contention(voice_stream))
    }
}
