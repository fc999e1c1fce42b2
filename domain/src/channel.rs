//! The Channel aggregate (`channel-{id}`): every message event of one channel. The
//! stream's revision is the channel's message order, and message ids strictly increase
//! with it (`decide` rejects an id that is not above the newest one).

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
    },
    MessageEdited {
        message_id: MessageId,
        content: Content,
    },
    MessageDeleted {
        message_id: MessageId,
    },
}
domain_event!(ChannelEvent {
    ChannelOpened,
    MessageCreated,
    MessageEdited,
    MessageDeleted
});

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageState {
    pub author_id: UserId,
    pub deleted: bool,
}

#[derive(Debug, Clone, Default)]
pub struct ChannelState {
    pub channel_id: Option<ChannelId>,
    pub guild_id: Option<GuildId>,
    pub last_message_id: Option<MessageId>,
    pub messages: HashMap<MessageId, MessageState>,
    nonces: HashMap<(UserId, Nonce), MessageId>,
    nonce_order: VecDeque<(UserId, Nonce)>,
}

impl ChannelState {
    /// The message an author already sent with this nonce, if it is still remembered.
    pub fn message_for_nonce(&self, author: UserId, nonce: &Nonce) -> Option<MessageId> {
        self.nonces.get(&(author, nonce.clone())).copied()
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
                author_id,
                nonce,
                ..
            } => {
                self.last_message_id = Some(*message_id);
                self.messages.insert(
                    *message_id,
                    MessageState {
                        author_id: *author_id,
                        deleted: false,
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
            ChannelEvent::MessageDeleted { message_id } => {
                if let Some(m) = self.messages.get_mut(message_id) {
                    m.deleted = true;
                }
            }
        }
    }
}

#[derive(Debug, Clone)]
pub enum ChannelCommand {
    Send {
        message_id: MessageId,
        channel_id: ChannelId,
        author_id: UserId,
        content: Content,
        nonce: Option<Nonce>,
        enforce_nonce: bool,
        tts: bool,
    },
    Edit {
        message_id: MessageId,
        actor: UserId,
        content: Content,
    },
    Delete {
        message_id: MessageId,
        actor: UserId,
    },
}

/// Checks that `channel_id` is a channel of `guild` in which `user` may act.
fn require_channel(
    guild: &GuildState,
    channel_id: ChannelId,
    user: UserId,
    needed: Permissions,
) -> Result<(), DomainError> {
    let Some(channel) = guild.channels.get(&channel_id) else {
        return Err(DomainError::Unknown(Resource::Channel));
    };
    guild.require(user, needed)?;
    if !channel.kind.is_textual() {
        return Err(DomainError::WrongChannelType);
    }
    Ok(())
}

/// Decides a message command in a guild channel. For a `Send` whose nonce was already
/// used by the same author with `enforce_nonce`, it returns no events: the caller answers
/// with the existing message ([`ChannelState::message_for_nonce`]).
pub fn decide(
    state: &ChannelState,
    guild: &GuildState,
    command: ChannelCommand,
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
            require_channel(
                guild,
                channel_id,
                author_id,
                Permissions(Permissions::VIEW_CHANNEL.0 | Permissions::SEND_MESSAGES.0),
            )?;
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
            Ok(vec![ChannelEvent::MessageCreated {
                message_id,
                channel_id,
                guild_id: guild.id,
                author_id,
                content,
                nonce,
                tts,
            }])
        }
        ChannelCommand::Edit {
            message_id,
            actor,
            content,
        } => {
            guild.require(actor, Permissions::VIEW_CHANNEL)?;
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
            guild.require(actor, Permissions::VIEW_CHANNEL)?;
            let message = live_message(state, message_id)?;
            if message.author_id != actor && !guild.is_owner(actor) {
                return Err(DomainError::MissingPermissions);
            }
            Ok(vec![ChannelEvent::MessageDeleted { message_id }])
        }
    }
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
}
