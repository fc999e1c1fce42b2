//! Voice states: who is in which voice channel of a guild, with their self mute and deafen.
//!
//! One stream per guild, `voice-{guild id}` ([`stream`]): a user has at most one voice
//! state per guild, so joining, moving between rooms and leaving are each one event on one
//! stream, and a move can never leave a user in two rooms. The stream is the audit trail of
//! who joined which room when (every event carries the actor and time in its metadata, and
//! `at_ms` here).
//!
//! The rules need the guild (membership, channel kinds, permissions), so [`decide`] takes
//! the [`GuildState`] beside the [`VoiceStates`]. Server mute and deafen are member
//! attributes (`Member::mute`/`deaf`, edited on the Guild aggregate), not voice state.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::guild::{ChannelKind, GuildState};
use crate::permissions::Permissions;
use crate::{domain_event, Aggregate, ChannelId, DomainError, GuildId, Resource, UserId};

/// Members a voice channel admits unless its settings say otherwise (Discord's 0 means
/// unlimited; Chorus defaults to 20). Members with MOVE_MEMBERS join a full channel.
pub const DEFAULT_USER_LIMIT: u32 = 20;

/// The bitrate (bits/s) a voice channel announces by default.
pub const DEFAULT_BITRATE: u32 = 64_000;

/// The stream of a guild's voice states.
pub fn stream(guild: GuildId) -> String {
    format!("voice-{guild}")
}

/// One user's place in voice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoiceState {
    /// The room.
    pub channel_id: ChannelId,
    /// The gateway session that joined.
    pub session_id: String,
    /// The user muted themself.
    pub self_mute: bool,
    /// The user deafened themself.
    pub self_deaf: bool,
}

/// What happened to voice states.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum VoiceEvent {
    /// `user_id`'s voice state is now this: in `channel_id`, or (None) out of voice. Joins,
    /// moves, self mute/deafen changes and leaves are all this one event.
    VoiceStateChanged {
        user_id: UserId,
        channel_id: Option<ChannelId>,
        session_id: Option<String>,
        self_mute: bool,
        self_deaf: bool,
        /// When (Unix ms).
        at_ms: u64,
    },
}

domain_event!(VoiceEvent { VoiceStateChanged });

/// The voice states of one guild.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VoiceStates {
    /// Everyone in voice, by user.
    pub states: BTreeMap<UserId, VoiceState>,
}

impl VoiceStates {
    /// How many are in `channel`.
    pub fn count_in(&self, channel: ChannelId) -> usize {
        self.states
            .values()
            .filter(|s| s.channel_id == channel)
            .count()
    }

    /// Who is in `channel`.
    pub fn members_of(&self, channel: ChannelId) -> impl Iterator<Item = UserId> + '_ {
        self.states
            .iter()
            .filter(move |(_, s)| s.channel_id == channel)
            .map(|(u, _)| *u)
    }
}

impl Aggregate for VoiceStates {
    type Event = VoiceEvent;

    fn evolve(&mut self, event: &VoiceEvent) {
        match event {
            VoiceEvent::VoiceStateChanged {
                user_id,
                channel_id,
                session_id,
                self_mute,
                self_deaf,
                ..
            } => match channel_id {
                Some(channel_id) => {
                    self.states.insert(
                        *user_id,
                        VoiceState {
                            channel_id: *channel_id,
                            session_id: session_id.clone().unwrap_or_default(),
                            self_mute: *self_mute,
                            self_deaf: *self_deaf,
                        },
                    );
                }
                None => {
                    self.states.remove(user_id);
                }
            },
        }
    }
}

/// What is asked of voice states.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VoiceCommand {
    /// The gateway's op 4 VOICE_STATE_UPDATE from `user_id`'s session: join or move to
    /// `channel_id`, or leave (None); self mute and deafen.
    Update {
        user_id: UserId,
        session_id: String,
        channel_id: Option<ChannelId>,
        self_mute: bool,
        self_deaf: bool,
        now_ms: u64,
    },
    /// A moderator moves `user_id` to `channel_id`, or disconnects them (None).
    Move {
        actor: UserId,
        user_id: UserId,
        channel_id: Option<ChannelId>,
        now_ms: u64,
    },
    /// `user_id` left the guild or their voice connection died: out of voice.
    Drop { user_id: UserId, now_ms: u64 },
}

/// The voice channel `channel` of the guild, or why not.
fn voice_channel(guild: &GuildState, channel: ChannelId) -> Result<(), DomainError> {
    match guild.channels.get(&channel) {
        None => Err(DomainError::Unknown(Resource::Channel)),
        Some(c) if c.kind != ChannelKind::Voice => Err(DomainError::WrongChannelType),
        Some(_) => Ok(()),
    }
}

/// The user may see and connect to the channel.
fn may_connect(
    guild: &GuildState,
    user: UserId,
    channel: ChannelId,
    now_ms: u64,
) -> Result<Permissions, DomainError> {
    let perms = guild.channel_permissions(user, channel, now_ms);
    if !perms.contains(Permissions::VIEW_CHANNEL) {
        return Err(DomainError::MissingAccess);
    }
    if !perms.contains(Permissions::CONNECT) {
        return Err(DomainError::MissingPermissions);
    }
    Ok(perms)
}

fn full(voice: &VoiceStates, channel: ChannelId) -> bool {
    voice.count_in(channel) >= DEFAULT_USER_LIMIT as usize
}

/// Decide a voice command against the guild and its voice states.
pub fn decide(
    guild: &GuildState,
    voice: &VoiceStates,
    command: VoiceCommand,
) -> Result<Vec<VoiceEvent>, DomainError> {
    if !guild.exists() {
        return Err(DomainError::Unknown(Resource::Guild));
    }
    match command {
        VoiceCommand::Update {
            user_id,
            session_id,
            channel_id,
            self_mute,
            self_deaf,
            now_ms,
        } => {
            if !guild.is_member(user_id) {
                return Err(DomainError::MissingAccess);
            }
            let current = voice.states.get(&user_id);
            let Some(channel) = channel_id else {
                return Ok(match current {
                    None => vec![],
                    Some(_) => vec![VoiceEvent::VoiceStateChanged {
                        user_id,
                        channel_id: None,
                        session_id: None,
                        self_mute,
                        self_deaf,
                        at_ms: now_ms,
                    }],
                });
            };
            voice_channel(guild, channel)?;
            let perms = may_connect(guild, user_id, channel, now_ms)?;
            let already_there = current.is_some_and(|c| c.channel_id == channel);
            if !already_there && full(voice, channel) && !perms.contains(Permissions::MOVE_MEMBERS)
            {
                return Err(DomainError::invalid(
                    "channel_id",
                    "the voice channel is full",
                ));
            }
            let next = VoiceState {
                channel_id: channel,
                session_id: session_id.clone(),
                self_mute,
                self_deaf,
            };
            if current == Some(&next) {
                return Ok(vec![]);
            }
            Ok(vec![VoiceEvent::VoiceStateChanged {
                user_id,
                channel_id: Some(channel),
                session_id: Some(session_id),
                self_mute,
                self_deaf,
                at_ms: now_ms,
            }])
        }
        VoiceCommand::Move {
            actor,
            user_id,
            channel_id,
            now_ms,
        } => {
            if !guild.is_member(actor) {
                return Err(DomainError::MissingAccess);
            }
            if !guild.is_member(user_id) {
                return Err(DomainError::Unknown(Resource::Member));
            }
            let Some(current) = voice.states.get(&user_id) else {
                return Err(DomainError::invalid(
                    "channel_id",
                    "the member is not connected to voice",
                ));
            };
            let from = guild.channel_permissions(actor, current.channel_id, now_ms);
            if !from.contains(Permissions::MOVE_MEMBERS) {
                return Err(DomainError::MissingPermissions);
            }
            if let Some(to) = channel_id {
                voice_channel(guild, to)?;
                let perms = may_connect(guild, actor, to, now_ms)?;
                if !perms.contains(Permissions::MOVE_MEMBERS) {
                    return Err(DomainError::MissingPermissions);
                }
                if to == current.channel_id {
                    return Ok(vec![]);
                }
            }
            Ok(vec![VoiceEvent::VoiceStateChanged {
                user_id,
                channel_id,
                session_id: channel_id.map(|_| current.session_id.clone()),
                self_mute: current.self_mute,
                self_deaf: current.self_deaf,
                at_ms: now_ms,
            }])
        }
        VoiceCommand::Drop { user_id, now_ms } => Ok(match voice.states.get(&user_id) {
            None => vec![],
            Some(s) => vec![VoiceEvent::VoiceStateChanged {
                user_id,
                channel_id: None,
                session_id: None,
                self_mute: s.self_mute,
                self_deaf: s.self_deaf,
                at_ms: now_ms,
            }],
        }),
    }
}

#[cfg(test)]
mod tests;
