//! The Channel aggregate (`channel-{id}`): every message event of one channel. The
//! stream's revision is the channel's message order, and message ids strictly increase
//! with it (`decide` rejects an id that is not above the newest one).
//!
//! Permissions are the guild's full model in this channel
//! ([`GuildState::channel_permissions`]): roles, overwrites (with category sync),
//! timeouts. Slowmode (`rate_limit_per_user`) spaces one author's messages by the time in
//! their message ids, which are snowflakes made when the message is sent.

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::guild::GuildState;
use crate::permissions::Permissions;
use crate::values::{Content, Nonce};
use crate::{
    domain_event, Aggregate, ChannelId, DomainError, GuildId, MessageId, Resource, UserId,
};

/// How many recent nonces a channel remembers for `enforce_nonce`.
pub const NONCE_MEMORY: usize = 1024;

/// What lets a member ignore slowmode.
pub const BYPASS_SLOWMODE: Permissions = Permissions::MANAGE_MESSAGES
    .union(Permissions::MANAGE_CHANNELS)
    .union(Permissions::BYPASS_SLOWMODE);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum ChannelEvent {
    /// The channel's stream begins: recorded together with the guild's `ChannelCreated`
    /// so that a command on the channel finds its guild without a read model.
    ChannelOpened {
        channel_id: ChannelId,
        guild_id: Option<GuildId>,
    },
    MessageCreated {
        message_id: MessageId,
        channel_id: ChannelId,
        guild_id: Option<GuildId>,
        author_id: UserId,
        content: Content,
        nonce: Option<Nonce>,
        tts: bool,
        /// The content says @everyone or @here and the author may mention everyone
        /// (MENTION_EVERYONE). Absent from events stored before it existed: false.
        #[serde(default)]
        mention_everyone: bool,
    },
    MessageEdited {
        message_id: MessageId,
        content: Content,
    },
    MessageDeleted {
        message_id: MessageId,
    },
    /// Several messages deleted at once by a moderator (Discord's bulk delete), in the
    /// order they were named; each was live.
    MessagesBulkDeleted {
        message_ids: Vec<MessageId>,
    },
    /// A live message is pinned to its channel.
    MessagePinned {
        message_id: MessageId,
    },
    /// A pinned message is unpinned (deleting a pinned message unpins it without this).
    MessageUnpinned {
        message_id: MessageId,
    },
}
domain_event!(ChannelEvent {
    ChannelOpened,
    MessageCreated,
    MessageEdited,
    MessageDeleted,
    MessagesBulkDeleted,
    MessagePinned,
    MessageUnpinned
});

/// The most messages a channel may have pinned (Discord's 30003 past it).
pub const MAX_PINS: usize = 50;

/// The fewest and the most messages one bulk delete names.
pub const BULK_DELETE_MESSAGES: std::ops::RangeInclusive<usize> = 2..=100;

/// How old a message may be, by its id, and still be bulk deleted: two weeks.
pub const BULK_DELETE_MAX_AGE_MS: u64 = 14 * 24 * 60 * 60 * 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageState {
    pub author_id: UserId,
    pub deleted: bool,
    pub pinned: bool,
}

#[derive(Debug, Clone, Default)]
pub struct ChannelState {
    pub channel_id: Option<ChannelId>,
    pub guild_id: Option<GuildId>,
    pub last_message_id: Option<MessageId>,
    pub messages: HashMap<MessageId, MessageState>,
    nonces: HashMap<(UserId, Nonce), MessageId>,
    nonce_order: VecDeque<(UserId, Nonce)>,
    /// Each author's newest message, for slowmode.
    last_by_author: HashMap<UserId, MessageId>,
    /// How many live messages are pinned.
    pins: usize,
}

impl ChannelState {
    /// How many live messages are pinned.
    pub fn pins(&self) -> usize {
        self.pins
    }

    fn delete(&mut self, id: MessageId) {
        self.set_pinned(id, false);
        if let Some(m) = self.messages.get_mut(&id) {
            m.deleted = true;
        }
    }

    fn set_pinned(&mut self, id: MessageId, pinned: bool) {
        if let Some(m) = self.messages.get_mut(&id) {
            if m.pinned != pinned {
                m.pinned = pinned;
                if pinned {
                    self.pins += 1;
                } else {
                    self.pins -= 1;
                }
            }
        }
    }

    /// The message an author already sent with this nonce, if it is still remembered.
    pub fn message_for_nonce(&self, author: UserId, nonce: &Nonce) -> Option<MessageId> {
        self.nonces.get(&(author, nonce.clone())).copied()
    }

    /// An author's newest message in this channel.
    pub fn last_message_by(&self, author: UserId) -> Option<MessageId> {
        self.last_by_author.get(&author).copied()
    }

    /// The latest time this state knows of: the newest message's (a lower bound of now).
    pub fn known_now_ms(&self) -> u64 {
        self.last_message_id.map_or(0, MessageId::timestamp_ms)
    }
}

impl Aggregate for ChannelState {
    type Event = ChannelEvent;
    fn evolve(&mut self, event: &ChannelEvent) {
        match event {
            ChannelEvent::ChannelOpened {
                channel_id,
                guild_id,
            } => {
                self.channel_id = Some(*channel_id);
                self.guild_id = *guild_id;
            }
            ChannelEvent::MessageCreated {
                message_id,
                channel_id,
                guild_id,
                author_id,
                nonce,
                ..
            } => {
                self.channel_id.get_or_insert(*channel_id);
                if self.guild_id.is_none() {
                    self.guild_id = *guild_id;
                }
                self.last_message_id = Some(*message_id);
                self.last_by_author.insert(*author_id, *message_id);
                self.messages.insert(
                    *message_id,
                    MessageState {
                        author_id: *author_id,
                        deleted: false,
                        pinned: false,
                    },
                );
                if let Some(nonce) = nonce {
                    let key = (*author_id, nonce.clone());
                    if self.nonces.insert(key.clone(), *message_id).is_none() {
                        self.nonce_order.push_back(key);
                    }
                    if self.nonce_order.len() > NONCE_MEMORY {
                        if let Some(old) = self.nonce_order.pop_front() {
                            self.nonces.remove(&old);
                        }
                    }
                }
            }
            ChannelEvent::MessageEdited { .. } => {}
            ChannelEvent::MessageDeleted { message_id } => self.delete(*message_id),
            ChannelEvent::MessagesBulkDeleted { message_ids } => {
                for id in message_ids {
                    self.delete(*id);
                }
            }
            ChannelEvent::MessagePinned { message_id } => self.set_pinned(*message_id, true),
            ChannelEvent::MessageUnpinned { message_id } => self.set_pinned(*message_id, false),
        }
    }
}

#[derive(Debug, Clone)]
pub enum ChannelCommand {
    /// Sends a message (VIEW_CHANNEL and SEND_MESSAGES in the channel; slowmode unless
    /// MANAGE_MESSAGES, MANAGE_CHANNELS or BYPASS_SLOWMODE). `tts` without
    /// SEND_TTS_MESSAGES sends a plain message, as Discord does.
    Send {
        message_id: MessageId,
        channel_id: ChannelId,
        author_id: UserId,
        content: Content,
        nonce: Option<Nonce>,
        enforce_nonce: bool,
        tts: bool,
    },
    /// Edits one's own message (VIEW_CHANNEL).
    Edit {
        message_id: MessageId,
        actor: UserId,
        content: Content,
    },
    /// Deletes one's own message (VIEW_CHANNEL), or anyone's with MANAGE_MESSAGES.
    Delete {
        message_id: MessageId,
        actor: UserId,
    },
    /// Deletes 2 to 100 messages at once (VIEW_CHANNEL and MANAGE_MESSAGES), as Discord's
    /// bulk delete: no id twice and none older than two weeks by its id's time (at the
    /// time the caller gives, see [`decide_at`]); ids of messages that are not live
    /// (unknown or already deleted) are skipped, so the result may be no event.
    BulkDelete {
        message_ids: Vec<MessageId>,
        actor: UserId,
    },
    /// Pins (`pin` true) or unpins a live message (VIEW_CHANNEL and MANAGE_MESSAGES or
    /// PIN_MESSAGES); at most [`MAX_PINS`] per channel. Pinning a pinned message or
    /// unpinning an unpinned one changes nothing.
    Pin {
        message_id: MessageId,
        actor: UserId,
        pin: bool,
    },
}

/// Decides a message command in a guild channel, judging timeouts and slowmode at the
/// time the command itself tells: a `Send` at its message id's time (a snowflake made
/// now), an `Edit` or `Delete` at the newest message's time (a lower bound of now, so a
/// timeout that might be over still counts; [`decide_at`] takes the clock). For a
/// `Send` whose nonce was already used by the same author with `enforce_nonce`, it
/// returns no events: the caller answers with the existing message
/// ([`ChannelState::message_for_nonce`]).
pub fn decide(
    state: &ChannelState,
    guild: &GuildState,
    command: ChannelCommand,
) -> Result<Vec<ChannelEvent>, DomainError> {
    let now_ms = match &command {
        ChannelCommand::Send { message_id, .. } => message_id.timestamp_ms(),
        _ => state.known_now_ms(),
    };
    decide_at(state, guild, command, now_ms)
}

/// [`decide`] at `now_ms` (Unix ms): timeouts and slowmode are judged then.
pub fn decide_at(
    state: &ChannelState,
    guild: &GuildState,
    command: ChannelCommand,
    now_ms: u64,
) -> Result<Vec<ChannelEvent>, DomainError> {
    match command {
        ChannelCommand::Send {
            message_id,
            channel_id,
            author_id,
            content,
            nonce,
            enforce_nonce,
            tts,
        } => {
            let perms = guild.require_in_channel(
                author_id,
                channel_id,
                Permissions::SEND_MESSAGES,
                now_ms,
            )?;
            let rate_limit = match guild.channels.get(&channel_id) {
                Some(c) if c.kind.is_textual() => c.rate_limit_per_user,
                Some(_) => return Err(DomainError::WrongChannelType),
                None => return Err(DomainError::Unknown(Resource::Channel)),
            };
            if enforce_nonce {
                let Some(nonce) = &nonce else {
                    return Err(DomainError::invalid(
                        "nonce",
                        "A nonce is required with enforce_nonce.",
                    ));
                };
                if state.message_for_nonce(author_id, nonce).is_some() {
                    return Ok(vec![]);
                }
            }
            if state.last_message_id.is_some_and(|last| message_id <= last) {
                return Err(DomainError::invalid(
                    "id",
                    "Message ids must increase with the channel's order.",
                ));
            }
            if rate_limit > 0 && !perms.intersects(BYPASS_SLOWMODE) {
                if let Some(last) = state.last_message_by(author_id) {
                    let next_ms = last
                        .timestamp_ms()
                        .saturating_add(u64::from(rate_limit) * 1000);
                    if now_ms < next_ms {
                        let wait_s = (next_ms - now_ms).div_ceil(1000);
                        return Err(DomainError::invalid(
                            "rate_limit_per_user",
                            format!("Slowmode is on: wait {wait_s} more seconds."),
                        ));
                    }
                }
            }
            let mention_everyone = perms.contains(Permissions::MENTION_EVERYONE)
                && (content.as_str().contains("@everyone") || content.as_str().contains("@here"));
            Ok(vec![ChannelEvent::MessageCreated {
                message_id,
                channel_id,
                guild_id: guild.id,
                author_id,
                content,
                nonce,
                tts: tts && perms.contains(Permissions::SEND_TTS_MESSAGES),
                mention_everyone,
            }])
        }
        ChannelCommand::Edit {
            message_id,
            actor,
            content,
        } => {
            require_view(state, guild, actor, now_ms)?;
            let message = live_message(state, message_id)?;
            if message.author_id != actor {
                return Err(DomainError::NotAuthor);
            }
            Ok(vec![ChannelEvent::MessageEdited {
                message_id,
                content,
            }])
        }
        ChannelCommand::Delete { message_id, actor } => {
            let perms = require_view(state, guild, actor, now_ms)?;
            let message = live_message(state, message_id)?;
            if message.author_id != actor && !perms.contains(Permissions::MANAGE_MESSAGES) {
                return Err(DomainError::MissingPermissions);
            }
            Ok(vec![ChannelEvent::MessageDeleted { message_id }])
        }
        ChannelCommand::BulkDelete { message_ids, actor } => {
            let perms = require_view(state, guild, actor, now_ms)?;
            if !BULK_DELETE_MESSAGES.contains(&message_ids.len()) {
                return Err(DomainError::invalid(
                    "messages",
                    format!(
                        "Must be between {} and {} in length.",
                        BULK_DELETE_MESSAGES.start(),
                        BULK_DELETE_MESSAGES.end()
                    ),
                ));
            }
            let mut seen = std::collections::HashSet::with_capacity(message_ids.len());
            if !message_ids.iter().all(|id| seen.insert(*id)) {
                return Err(DomainError::invalid(
                    "messages",
                    "Each message may be named once.",
                ));
            }
            if !perms.contains(Permissions::MANAGE_MESSAGES) {
                return Err(DomainError::MissingPermissions);
            }
            let oldest = now_ms.saturating_sub(BULK_DELETE_MAX_AGE_MS);
            if message_ids.iter().any(|id| id.timestamp_ms() < oldest) {
                return Err(DomainError::MessagesTooOld);
            }
            let live: Vec<MessageId> = message_ids
                .into_iter()
                .filter(|id| live_message(state, *id).is_ok())
                .collect();
            if live.is_empty() {
                return Ok(vec![]);
            }
            Ok(vec![ChannelEvent::MessagesBulkDeleted {
                message_ids: live,
            }])
        }
        ChannelCommand::Pin {
            message_id,
            actor,
            pin,
        } => {
            let perms = require_view(state, guild, actor, now_ms)?;
            if !perms.intersects(Permissions::MANAGE_MESSAGES | Permissions::PIN_MESSAGES) {
                return Err(DomainError::MissingPermissions);
            }
            let message = live_message(state, message_id)?;
            if message.pinned == pin {
                return Ok(vec![]);
            }
            if !pin {
                return Ok(vec![ChannelEvent::MessageUnpinned { message_id }]);
            }
            if state.pins >= MAX_PINS {
                return Err(DomainError::MaxPins);
            }
            Ok(vec![ChannelEvent::MessagePinned { message_id }])
        }
    }
}

/// Checks that `user` sees this channel, and returns their permissions in it.
fn require_view(
    state: &ChannelState,
    guild: &GuildState,
    user: UserId,
    now_ms: u64,
) -> Result<Permissions, DomainError> {
    let channel_id = state
        .channel_id
        .ok_or(DomainError::Unknown(Resource::Channel))?;
    guild.require_in_channel(user, channel_id, Permissions::VIEW_CHANNEL, now_ms)
}

fn live_message(state: &ChannelState, id: MessageId) -> Result<MessageState, DomainError> {
    match state.messages.get(&id) {
        Some(m) if !m.deleted => Ok(*m),
        _ => Err(DomainError::Unknown(Resource::Message)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guild::{self, GuildCommand, GuildEvent};
    use crate::testing::given;
    use crate::values::GuildName;

    const OWNER: UserId = UserId::new(1);
    const MEMBER: UserId = UserId::new(2);
    const OUTSIDER: UserId = UserId::new(3);
    const GENERAL: ChannelId = ChannelId::new(101);

    fn guild() -> GuildState {
        let mut events = guild::decide(
            &GuildState::default(),
            GuildCommand::Create {
                guild_id: GuildId::new(100),
                name: GuildName::parse("Chorus").unwrap(),
                owner_id: OWNER,
                general_channel_id: GENERAL,
            },
        )
        .unwrap();
        events.push(GuildEvent::MemberJoined {
            user_id: MEMBER,
            invite_code: None,
        });
        given(&events)
    }

    fn send(id: u64, author: UserId, nonce: Option<&str>, enforce: bool) -> ChannelCommand {
        ChannelCommand::Send {
            message_id: MessageId::new(id),
            channel_id: GENERAL,
            author_id: author,
            content: Content::parse("hello").unwrap(),
            nonce: nonce.map(|n| Nonce::parse(n).unwrap()),
            enforce_nonce: enforce,
            tts: false,
        }
    }

    fn created(id: u64, author: UserId) -> ChannelEvent {
        ChannelEvent::MessageCreated {
            message_id: MessageId::new(id),
            channel_id: GENERAL,
            guild_id: Some(GuildId::new(100)),
            author_id: author,
            content: Content::parse("hello").unwrap(),
            nonce: None,
            tts: false,
            mention_everyone: false,
        }
    }

    #[test]
    fn a_member_sends_a_message() {
        let events = decide(
            &ChannelState::default(),
            &guild(),
            send(500, MEMBER, None, false),
        )
        .unwrap();
        assert_eq!(events, vec![created(500, MEMBER)]);
    }

    #[test]
    fn a_message_mentions_everyone_only_if_its_author_may() {
        let says = |g: &GuildState, author, text: &str| {
            let mut cmd = send(500, author, None, false);
            if let ChannelCommand::Send { content, .. } = &mut cmd {
                *content = Content::parse(text).unwrap();
            }
            match decide(&ChannelState::default(), g, cmd).unwrap().as_slice() {
                [ChannelEvent::MessageCreated {
                    mention_everyone, ..
                }] => *mention_everyone,
                other => panic!("{other:?}"),
            }
        };
        let g = guild();
        assert!(says(&g, MEMBER, "hi @everyone"));
        assert!(says(&g, MEMBER, "@here, look"));
        assert!(!says(&g, MEMBER, "hi everyone"));
        // Without MENTION_EVERYONE for @everyone, only the owner still does.
        let mut g = guild();
        let everyone = g.everyone_role_id().unwrap();
        let without = g
            .everyone_permissions
            .difference(Permissions::MENTION_EVERYONE);
        g.everyone_permissions = without;
        g.roles.get_mut(&everyone).unwrap().permissions = without;
        assert!(!says(&g, MEMBER, "hi @everyone"));
        assert!(says(&g, OWNER, "hi @everyone"));
    }

    #[test]
    fn outsiders_cannot_send() {
        let err = decide(
            &ChannelState::default(),
            &guild(),
            send(500, OUTSIDER, None, false),
        )
        .unwrap_err();
        assert_eq!(err, DomainError::MissingAccess);
    }

    #[test]
    fn sending_to_an_unknown_channel_is_rejected() {
        let mut cmd = send(500, MEMBER, None, false);
        if let ChannelCommand::Send { channel_id, .. } = &mut cmd {
            *channel_id = ChannelId::new(999);
        }
        let err = decide(&ChannelState::default(), &guild(), cmd).unwrap_err();
        assert_eq!(err, DomainError::Unknown(Resource::Channel));
    }

    #[test]
    fn message_ids_must_increase_with_the_revision() {
        let state = given::<ChannelState>(&[created(500, MEMBER)]);
        let err = decide(&state, &guild(), send(500, MEMBER, None, false)).unwrap_err();
        assert!(matches!(err, DomainError::Invalid { field: "id", .. }));
        assert!(decide(&state, &guild(), send(501, MEMBER, None, false)).is_ok());
    }

    #[test]
    fn an_enforced_nonce_sent_twice_creates_one_message() {
        let first = decide(
            &ChannelState::default(),
            &guild(),
            send(500, MEMBER, Some("n1"), true),
        )
        .unwrap();
        let state = given::<ChannelState>(&first);
        assert_eq!(
            decide(&state, &guild(), send(501, MEMBER, Some("n1"), true)).unwrap(),
            vec![]
        );
        assert_eq!(
            state.message_for_nonce(MEMBER, &Nonce::parse("n1").unwrap()),
            Some(MessageId::new(500))
        );
        // Another author may use the same nonce; without enforce_nonce it is only echoed.
        assert_eq!(
            decide(&state, &guild(), send(501, OWNER, Some("n1"), true))
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            decide(&state, &guild(), send(501, MEMBER, Some("n1"), false))
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn only_the_author_edits() {
        let state = given::<ChannelState>(&[created(500, MEMBER)]);
        let edit = |actor| ChannelCommand::Edit {
            message_id: MessageId::new(500),
            actor,
            content: Content::parse("new").unwrap(),
        };
        assert_eq!(
            decide(&state, &guild(), edit(OWNER)).unwrap_err(),
            DomainError::NotAuthor
        );
        assert_eq!(
            decide(&state, &guild(), edit(MEMBER)).unwrap(),
            vec![ChannelEvent::MessageEdited {
                message_id: MessageId::new(500),
                content: Content::parse("new").unwrap()
            }]
        );
    }

    #[test]
    fn the_author_or_the_owner_deletes_and_nobody_else() {
        let state = given::<ChannelState>(&[created(500, MEMBER), created(501, OWNER)]);
        let del = |id, actor| ChannelCommand::Delete {
            message_id: MessageId::new(id),
            actor,
        };
        assert!(decide(&state, &guild(), del(500, OWNER)).is_ok());
        assert!(decide(&state, &guild(), del(500, MEMBER)).is_ok());
        assert_eq!(
            decide(&state, &guild(), del(501, MEMBER)).unwrap_err(),
            DomainError::MissingPermissions
        );
    }

    /// A message id made at `days` after the Discord epoch (plus `n` to tell them apart).
    fn id_at_day(days: u64, n: u64) -> u64 {
        ((days * 24 * 60 * 60 * 1000) << 22) + n
    }

    fn bulk(ids: &[u64], actor: UserId) -> ChannelCommand {
        ChannelCommand::BulkDelete {
            message_ids: ids.iter().copied().map(MessageId::new).collect(),
            actor,
        }
    }

    #[test]
    fn a_moderator_bulk_deletes_the_live_messages_it_names() {
        let (a, b, c, gone) = (
            id_at_day(29, 1),
            id_at_day(29, 2),
            id_at_day(29, 3),
            id_at_day(29, 4),
        );
        let history = vec![
            created(a, MEMBER),
            created(b, OWNER),
            created(c, MEMBER),
            created(gone, MEMBER),
            ChannelEvent::MessageDeleted {
                message_id: MessageId::new(gone),
            },
        ];
        let state = given::<ChannelState>(&history);
        let now = crate::snowflake::DISCORD_EPOCH_MS + 30 * 24 * 60 * 60 * 1000;
        let unknown = id_at_day(29, 9);
        let events = decide_at(&state, &guild(), bulk(&[c, a, gone, unknown], OWNER), now).unwrap();
        // Named order, live ones only.
        assert_eq!(
            events,
            vec![ChannelEvent::MessagesBulkDeleted {
                message_ids: vec![MessageId::new(c), MessageId::new(a)]
            }]
        );
        let after = given::<ChannelState>(&[history, events].concat());
        for id in [a, c] {
            assert!(after.messages[&MessageId::new(id)].deleted);
        }
        assert!(!after.messages[&MessageId::new(b)].deleted);
        // Nothing live named: no event.
        assert_eq!(
            decide_at(&after, &guild(), bulk(&[a, unknown], OWNER), now).unwrap(),
            vec![]
        );
    }

    #[test]
    fn bulk_delete_takes_2_to_100_distinct_recent_ids_and_manage_messages() {
        let fresh: Vec<u64> = (1..=101).map(|n| id_at_day(29, n)).collect();
        let state = given::<ChannelState>(
            &fresh
                .iter()
                .map(|id| created(*id, MEMBER))
                .collect::<Vec<_>>(),
        );
        let now = crate::snowflake::DISCORD_EPOCH_MS + 30 * 24 * 60 * 60 * 1000;
        let invalid = |ids: &[u64]| {
            matches!(
                decide_at(&state, &guild(), bulk(ids, OWNER), now),
                Err(DomainError::Invalid {
                    field: "messages",
                    ..
                })
            )
        };
        assert!(invalid(&fresh[..1]), "one message");
        assert!(invalid(&fresh), "101 messages");
        assert!(invalid(&[fresh[0], fresh[1], fresh[0]]), "a duplicate");
        assert!(decide_at(&state, &guild(), bulk(&fresh[..100], OWNER), now).is_ok());
        // Its author alone may not: bulk delete is for moderators.
        assert_eq!(
            decide_at(&state, &guild(), bulk(&fresh[..2], MEMBER), now).unwrap_err(),
            DomainError::MissingPermissions
        );
        assert_eq!(
            decide_at(&state, &guild(), bulk(&fresh[..2], OUTSIDER), now).unwrap_err(),
            DomainError::MissingAccess
        );
        // Fifteen days old is too old, whether or not the message exists.
        let old = id_at_day(15, 1);
        assert_eq!(
            decide_at(&state, &guild(), bulk(&[fresh[0], old], OWNER), now).unwrap_err(),
            DomainError::MessagesTooOld
        );
    }

    fn pin(id: u64, actor: UserId, pin: bool) -> ChannelCommand {
        ChannelCommand::Pin {
            message_id: MessageId::new(id),
            actor,
            pin,
        }
    }

    #[test]
    fn a_moderator_pins_and_unpins_and_repeats_change_nothing() {
        let history = vec![created(500, MEMBER)];
        let state = given::<ChannelState>(&history);
        assert_eq!(
            decide(&state, &guild(), pin(500, MEMBER, true)).unwrap_err(),
            DomainError::MissingPermissions,
            "pinning is for moderators"
        );
        let pinned = decide(&state, &guild(), pin(500, OWNER, true)).unwrap();
        assert_eq!(
            pinned,
            vec![ChannelEvent::MessagePinned {
                message_id: MessageId::new(500)
            }]
        );
        let history = [history, pinned].concat();
        let state = given::<ChannelState>(&history);
        assert_eq!(state.pins(), 1);
        assert_eq!(
            decide(&state, &guild(), pin(500, OWNER, true)).unwrap(),
            vec![]
        );
        let unpinned = decide(&state, &guild(), pin(500, OWNER, false)).unwrap();
        assert_eq!(
            unpinned,
            vec![ChannelEvent::MessageUnpinned {
                message_id: MessageId::new(500)
            }]
        );
        let state = given::<ChannelState>(&[history.clone(), unpinned].concat());
        assert_eq!(state.pins(), 0);
        assert_eq!(
            decide(&state, &guild(), pin(500, OWNER, false)).unwrap(),
            vec![]
        );
        assert_eq!(
            decide(&state, &guild(), pin(501, OWNER, true)).unwrap_err(),
            DomainError::Unknown(Resource::Message)
        );
        // Deleting a pinned message unpins it.
        let deleted = given::<ChannelState>(
            &[
                history,
                vec![ChannelEvent::MessageDeleted {
                    message_id: MessageId::new(500),
                }],
            ]
            .concat(),
        );
        assert_eq!(deleted.pins(), 0);
    }

    #[test]
    fn a_channel_holds_at_most_50_pins() {
        let mut history: Vec<ChannelEvent> = (1..=51).map(|n| created(500 + n, MEMBER)).collect();
        history.extend((1..=50).map(|n| ChannelEvent::MessagePinned {
            message_id: MessageId::new(500 + n),
        }));
        let state = given::<ChannelState>(&history);
        assert_eq!(state.pins(), MAX_PINS);
        assert_eq!(
            decide(&state, &guild(), pin(551, OWNER, true)).unwrap_err(),
            DomainError::MaxPins
        );
        // Unpinning one makes room again.
        history.push(ChannelEvent::MessageUnpinned {
            message_id: MessageId::new(501),
        });
        let state = given::<ChannelState>(&history);
        assert!(decide(&state, &guild(), pin(551, OWNER, true)).is_ok());
    }

    #[test]
    fn deleted_messages_cannot_be_edited_or_deleted_again() {
        let state = given::<ChannelState>(&[
            created(500, MEMBER),
            ChannelEvent::MessageDeleted {
                message_id: MessageId::new(500),
            },
        ]);
        let err = decide(
            &state,
            &guild(),
            ChannelCommand::Delete {
                message_id: MessageId::new(500),
                actor: MEMBER,
            },
        );
        assert_eq!(err.unwrap_err(), DomainError::Unknown(Resource::Message));
        let err = decide(
            &state,
            &guild(),
            ChannelCommand::Edit {
                message_id: MessageId::new(500),
                actor: MEMBER,
                content: Content::parse("x").unwrap(),
            },
        );
        assert_eq!(err.unwrap_err(), DomainError::Unknown(Resource::Message));
    }

    // --- the full permission model ---

    use crate::permissions::Overwrite;
    use crate::role::{Role, RoleName};
    use crate::snowflake;
    use crate::RoleId;

    const NOW: u64 = 1_700_000_000_000;
    const SPEAKERS: RoleId = RoleId::new(200);

    /// A message id made at `ms`.
    fn id_at(ms: u64, n: u16) -> MessageId {
        MessageId::new(snowflake::compose(ms, 0, 0, n))
    }

    /// The guild after `events`.
    fn guild_with(events: impl IntoIterator<Item = GuildEvent>) -> GuildState {
        let mut g = guild();
        for e in events {
            g.evolve(&e);
        }
        g
    }

    /// A role with `permissions` held by MEMBER.
    fn member_role(permissions: Permissions) -> [GuildEvent; 2] {
        [
            GuildEvent::RoleCreated {
                role: Role {
                    id: SPEAKERS,
                    name: RoleName::parse("speakers").unwrap(),
                    permissions,
                    color: 0,
                    hoist: false,
                    mentionable: false,
                    position: 1,
                    managed: false,
                    bot_id: None,
                },
            },
            GuildEvent::MemberUpdated {
                user_id: MEMBER,
                nick: None,
                roles: vec![SPEAKERS],
                communication_disabled_until_ms: None,
                mute: false,
                deaf: false,
            },
        ]
    }

    fn overwrite(o: Overwrite) -> GuildEvent {
        GuildEvent::ChannelOverwriteSet {
            channel_id: GENERAL,
            overwrite: o,
        }
    }

    fn everyone() -> RoleId {
        GuildId::new(100).cast()
    }

    fn slowmode(seconds: u32) -> GuildEvent {
        GuildEvent::ChannelUpdated {
            channel_id: GENERAL,
            kind: crate::guild::ChannelKind::Text,
            name: crate::values::ChannelName::parse("general").unwrap(),
            position: 0,
            parent_id: None,
            topic: None,
            nsfw: false,
            rate_limit_per_user: seconds,
            permission_synced: false,
        }
    }

    fn send_at(ms: u64, n: u16, author: UserId) -> ChannelCommand {
        ChannelCommand::Send {
            message_id: id_at(ms, n),
            channel_id: GENERAL,
            author_id: author,
            content: Content::parse("hello").unwrap(),
            nonce: None,
            enforce_nonce: false,
            tts: false,
        }
    }

    fn created_at(ms: u64, n: u16, author: UserId) -> ChannelEvent {
        ChannelEvent::MessageCreated {
            message_id: id_at(ms, n),
            channel_id: GENERAL,
            guild_id: Some(GuildId::new(100)),
            author_id: author,
            content: Content::parse("hello").unwrap(),
            nonce: None,
            tts: false,
            mention_everyone: false,
        }
    }

    #[test]
    fn sending_needs_send_messages_in_that_channel_which_a_role_overwrite_may_give() {
        let deny_send = overwrite(Overwrite::role(
            everyone(),
            Permissions::NONE,
            Permissions::SEND_MESSAGES,
        ));
        let g = guild_with([deny_send.clone()]);
        assert_eq!(
            decide(&ChannelState::default(), &g, send(500, MEMBER, None, false)).unwrap_err(),
            DomainError::MissingPermissions
        );
        let [role, member] = member_role(Permissions::NONE);
        let g = guild_with([
            deny_send,
            role,
            member,
            overwrite(Overwrite::role(
                SPEAKERS,
                Permissions::SEND_MESSAGES,
                Permissions::NONE,
            )),
        ]);
        assert!(decide(&ChannelState::default(), &g, send(500, MEMBER, None, false)).is_ok());
    }

    #[test]
    fn who_cannot_view_the_channel_gets_missing_access() {
        let g = guild_with([overwrite(Overwrite::role(
            everyone(),
            Permissions::NONE,
            Permissions::VIEW_CHANNEL,
        ))]);
        let state = given::<ChannelState>(&[created(500, MEMBER)]);
        assert_eq!(
            decide(&state, &g, send(501, MEMBER, None, false)).unwrap_err(),
            DomainError::MissingAccess
        );
        assert_eq!(
            decide(
                &state,
                &g,
                ChannelCommand::Edit {
                    message_id: MessageId::new(500),
                    actor: MEMBER,
                    content: Content::parse("x").unwrap(),
                }
            )
            .unwrap_err(),
            DomainError::MissingAccess
        );
        assert_eq!(
            decide(
                &state,
                &g,
                ChannelCommand::Delete {
                    message_id: MessageId::new(500),
                    actor: MEMBER,
                }
            )
            .unwrap_err(),
            DomainError::MissingAccess
        );
        // The owner sees everything.
        assert!(decide(&state, &g, send(501, OWNER, None, false)).is_ok());
    }

    #[test]
    fn slowmode_spaces_an_authors_messages() {
        let g = guild_with([slowmode(10)]);
        let state = given::<ChannelState>(&[
            created_at(NOW, 1, MEMBER),
            created_at(NOW + 1_000, 1, OWNER),
        ]);
        let err = decide(&state, &g, send_at(NOW + 9_999, 1, MEMBER)).unwrap_err();
        assert!(matches!(
            err,
            DomainError::Invalid {
                field: "rate_limit_per_user",
                ..
            }
        ));
        assert!(decide(&state, &g, send_at(NOW + 10_000, 1, MEMBER)).is_ok());
        // Others are not held back by MEMBER's message.
        let [role, member] = member_role(Permissions::NONE);
        let g2 = guild_with([slowmode(10), role, member]);
        let other = given::<ChannelState>(&[created_at(NOW, 1, OWNER)]);
        assert!(decide(&other, &g2, send_at(NOW + 1_000, 1, MEMBER)).is_ok());
        // Without slowmode, nothing waits.
        assert!(decide(&state, &guild(), send_at(NOW + 2_000, 1, MEMBER)).is_ok());
    }

    #[test]
    fn manage_messages_manage_channels_or_bypass_slowmode_skip_it() {
        let state = given::<ChannelState>(&[created_at(NOW, 1, MEMBER)]);
        for bypass in [
            Permissions::MANAGE_MESSAGES,
            Permissions::MANAGE_CHANNELS,
            Permissions::BYPASS_SLOWMODE,
        ] {
            let [role, member] = member_role(bypass);
            let g = guild_with([slowmode(60), role, member]);
            assert!(
                decide(&state, &g, send_at(NOW + 1_000, 1, MEMBER)).is_ok(),
                "{bypass}"
            );
        }
        let owner_state = given::<ChannelState>(&[created_at(NOW, 1, OWNER)]);
        assert!(decide(
            &owner_state,
            &guild_with([slowmode(60)]),
            send_at(NOW + 1, 1, OWNER)
        )
        .is_ok());
    }

    #[test]
    fn a_bypass_denied_in_the_channel_bypasses_nothing() {
        let state = given::<ChannelState>(&[created_at(NOW, 1, MEMBER)]);
        let [role, member] = member_role(Permissions::BYPASS_SLOWMODE);
        let g = guild_with([
            slowmode(60),
            role,
            member,
            overwrite(Overwrite::role(
                SPEAKERS,
                Permissions::NONE,
                Permissions::BYPASS_SLOWMODE,
            )),
        ]);
        assert!(matches!(
            decide(&state, &g, send_at(NOW + 1_000, 1, MEMBER)).unwrap_err(),
            DomainError::Invalid {
                field: "rate_limit_per_user",
                ..
            }
        ));
    }

    #[test]
    fn timed_out_members_cannot_send_until_the_timeout_ends() {
        let g = guild_with([GuildEvent::MemberUpdated {
            user_id: MEMBER,
            nick: None,
            roles: vec![],
            communication_disabled_until_ms: Some(NOW + 60_000),
            mute: false,
            deaf: false,
        }]);
        assert_eq!(
            decide(&ChannelState::default(), &g, send_at(NOW, 1, MEMBER)).unwrap_err(),
            DomainError::MissingPermissions
        );
        assert!(decide(
            &ChannelState::default(),
            &g,
            send_at(NOW + 60_000, 1, MEMBER)
        )
        .is_ok());
        // They still see the channel: they may delete their own messages.
        let state = given::<ChannelState>(&[created_at(NOW - 1, 1, MEMBER)]);
        assert!(decide(
            &state,
            &g,
            ChannelCommand::Delete {
                message_id: id_at(NOW - 1, 1),
                actor: MEMBER
            }
        )
        .is_ok());
    }

    #[test]
    fn manage_messages_in_the_channel_deletes_others_messages() {
        let state = given::<ChannelState>(&[created(500, OWNER)]);
        let del = ChannelCommand::Delete {
            message_id: MessageId::new(500),
            actor: MEMBER,
        };
        let [role, member] = member_role(Permissions::MANAGE_MESSAGES);
        let g = guild_with([role.clone(), member.clone()]);
        assert!(decide(&state, &g, del.clone()).is_ok());
        let g = guild_with([
            role,
            member,
            overwrite(Overwrite::member(
                MEMBER,
                Permissions::NONE,
                Permissions::MANAGE_MESSAGES,
            )),
        ]);
        assert_eq!(
            decide(&state, &g, del).unwrap_err(),
            DomainError::MissingPermissions
        );
    }

    #[test]
    fn without_a_clock_a_timeout_counts_until_the_channel_has_moved_past_it() {
        // A moderator, timed out until NOW + 1 minute, deletes someone else's message.
        let [role, member] = member_role(Permissions::MANAGE_MESSAGES);
        let g = guild_with([
            role,
            member,
            GuildEvent::MemberUpdated {
                user_id: MEMBER,
                nick: None,
                roles: vec![SPEAKERS],
                communication_disabled_until_ms: Some(NOW + 60_000),
                mute: false,
                deaf: false,
            },
        ]);
        let del = ChannelCommand::Delete {
            message_id: id_at(NOW, 1),
            actor: MEMBER,
        };
        let state = given::<ChannelState>(&[created_at(NOW, 1, OWNER)]);
        assert_eq!(
            decide(&state, &g, del.clone()).unwrap_err(),
            DomainError::MissingPermissions
        );
        assert!(decide_at(&state, &g, del.clone(), NOW + 60_000).is_ok());
        let later = given::<ChannelState>(&[
            created_at(NOW, 1, OWNER),
            created_at(NOW + 60_000, 1, OWNER),
        ]);
        assert!(decide(&later, &g, del).is_ok());
    }

    #[test]
    fn tts_needs_send_tts_messages() {
        let mut cmd = send(500, MEMBER, None, false);
        if let ChannelCommand::Send { tts, .. } = &mut cmd {
            *tts = true;
        }
        let events = decide(&ChannelState::default(), &guild(), cmd.clone()).unwrap();
        assert!(matches!(
            &events[..],
            [ChannelEvent::MessageCreated { tts: false, .. }]
        ));
        let [role, member] = member_role(Permissions::SEND_TTS_MESSAGES);
        let events = decide(&ChannelState::default(), &guild_with([role, member]), cmd).unwrap();
        assert!(matches!(
            &events[..],
            [ChannelEvent::MessageCreated { tts: true, .. }]
        ));
    }

    #[test]
    fn a_deleted_channel_is_unknown() {
        let g = guild_with([GuildEvent::ChannelDeleted {
            channel_id: GENERAL,
        }]);
        let state = given::<ChannelState>(&[created(500, MEMBER)]);
        assert_eq!(
            decide(&state, &g, send(501, MEMBER, None, false)).unwrap_err(),
            DomainError::Unknown(Resource::Channel)
        );
        assert_eq!(
            decide(
                &state,
                &g,
                ChannelCommand::Delete {
                    message_id: MessageId::new(500),
                    actor: MEMBER
                }
            )
            .unwrap_err(),
            DomainError::Unknown(Resource::Channel)
        );
    }

    #[test]
    fn messages_cannot_be_sent_in_categories_or_voice_channels() {
        let g = guild_with([GuildEvent::ChannelCreated {
            channel_id: ChannelId::new(300),
            kind: crate::guild::ChannelKind::Voice,
            name: crate::values::ChannelName::parse("voice").unwrap(),
            position: 0,
            parent_id: None,
            topic: None,
            nsfw: false,
        }]);
        let mut cmd = send(500, MEMBER, None, false);
        if let ChannelCommand::Send { channel_id, .. } = &mut cmd {
            *channel_id = ChannelId::new(300);
        }
        assert_eq!(
            decide(&ChannelState::default(), &g, cmd).unwrap_err(),
            DomainError::WrongChannelType
        );
    }
}
