//! The Guild aggregate (`guild-{id}`): settings, members and the channel list.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::permissions::Permissions;
use crate::values::{ChannelName, GuildName, Topic};
use crate::{domain_event, Aggregate, ChannelId, DomainError, GuildId, Resource, UserId};

/// Channel kinds, with Discord's numeric types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    Text,
    Voice,
    Category,
}

impl ChannelKind {
    /// Discord's channel `type` number.
    pub fn discord_type(self) -> u8 {
        match self {
            ChannelKind::Text => 0,
            ChannelKind::Voice => 2,
            ChannelKind::Category => 4,
        }
    }

    /// The kind for a Discord channel `type` number this build supports.
    pub fn from_discord_type(t: u64) -> Option<Self> {
        match t {
            0 => Some(ChannelKind::Text),
            2 => Some(ChannelKind::Voice),
            4 => Some(ChannelKind::Category),
            _ => None,
        }
    }

    /// Whether messages can be sent in channels of this kind.
    pub fn is_textual(self) -> bool {
        matches!(self, ChannelKind::Text)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum GuildEvent {
    GuildCreated {
        guild_id: GuildId,
        name: GuildName,
        owner_id: UserId,
        everyone_permissions: Permissions,
    },
    ChannelCreated {
        channel_id: ChannelId,
        kind: ChannelKind,
        name: ChannelName,
        position: i32,
        parent_id: Option<ChannelId>,
        topic: Option<Topic>,
        nsfw: bool,
    },
    MemberJoined {
        user_id: UserId,
        invite_code: Option<String>,
    },
}
domain_event!(GuildEvent {
    GuildCreated,
    ChannelCreated,
    MemberJoined
});

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuildChannel {
    pub kind: ChannelKind,
    pub name: ChannelName,
    pub position: i32,
    pub parent_id: Option<ChannelId>,
}

#[derive(Debug, Clone, Default)]
pub struct GuildState {
    pub id: Option<GuildId>,
    pub name: Option<GuildName>,
    pub owner_id: Option<UserId>,
    pub everyone_permissions: Permissions,
    pub members: HashMap<UserId, ()>,
    pub channels: BTreeMap<ChannelId, GuildChannel>,
}

impl GuildState {
    pub fn exists(&self) -> bool {
        self.id.is_some()
    }

    pub fn is_member(&self, user: UserId) -> bool {
        self.members.contains_key(&user)
    }

    pub fn is_owner(&self, user: UserId) -> bool {
        self.owner_id == Some(user)
    }

    /// The guild-level permissions of a member (owner: all; others: @everyone's).
    pub fn base_permissions(&self, user: UserId) -> Option<Permissions> {
        if self.is_owner(user) {
            Some(Permissions::ALL)
        } else if self.is_member(user) {
            Some(self.everyone_permissions)
        } else {
            None
        }
    }

    /// Checks that `user` is a member holding `needed`.
    pub fn require(&self, user: UserId, needed: Permissions) -> Result<(), DomainError> {
        if !self.exists() {
            return Err(DomainError::Unknown(Resource::Guild));
        }
        match self.base_permissions(user) {
            None => Err(DomainError::MissingAccess),
            Some(p) if p.contains(needed) => Ok(()),
            Some(_) => Err(DomainError::MissingPermissions),
        }
    }
}

impl Aggregate for GuildState {
    type Event = GuildEvent;
    fn evolve(&mut self, event: &GuildEvent) {
        match event {
            GuildEvent::GuildCreated {
                guild_id,
                name,
                owner_id,
                everyone_permissions,
            } => {
                self.id = Some(*guild_id);
                self.name = Some(name.clone());
                self.owner_id = Some(*owner_id);
                self.everyone_permissions = *everyone_permissions;
            }
            GuildEvent::ChannelCreated {
                channel_id,
                kind,
                name,
                position,
                parent_id,
                ..
            } => {
                self.channels.insert(
                    *channel_id,
                    GuildChannel {
                        kind: *kind,
                        name: name.clone(),
                        position: *position,
                        parent_id: *parent_id,
                    },
                );
            }
            GuildEvent::MemberJoined { user_id, .. } => {
                self.members.insert(*user_id, ());
            }
        }
    }
}

#[derive(Debug, Clone)]
pub enum GuildCommand {
    /// Creates a guild owned by `owner_id`, with the owner as its first member and a
    /// `general` text channel.
    Create {
        guild_id: GuildId,
        name: GuildName,
        owner_id: UserId,
        general_channel_id: ChannelId,
    },
    CreateChannel {
        actor: UserId,
        channel_id: ChannelId,
        kind: ChannelKind,
        name: ChannelName,
        parent_id: Option<ChannelId>,
        topic: Option<Topic>,
        nsfw: bool,
        position: Option<i32>,
    },
    Join {
        user_id: UserId,
        invite_code: Option<String>,
    },
}

pub fn decide(state: &GuildState, command: GuildCommand) -> Result<Vec<GuildEvent>, DomainError> {
    match command {
        GuildCommand::Create {
            guild_id,
            name,
            owner_id,
            general_channel_id,
        } => {
            if state.exists() {
                return Err(DomainError::AlreadyExists(Resource::Guild));
            }
            Ok(vec![
                GuildEvent::GuildCreated {
                    guild_id,
                    name,
                    owner_id,
                    everyone_permissions: Permissions::DEFAULT_EVERYONE,
                },
                GuildEvent::MemberJoined {
                    user_id: owner_id,
                    invite_code: None,
                },
                GuildEvent::ChannelCreated {
                    channel_id: general_channel_id,
                    kind: ChannelKind::Text,
                    name: ChannelName::parse("general")?,
                    position: 0,
                    parent_id: None,
                    topic: None,
                    nsfw: false,
                },
            ])
        }
        GuildCommand::CreateChannel {
            actor,
            channel_id,
            kind,
            name,
            parent_id,
            topic,
            nsfw,
            position,
        } => {
            state.require(actor, Permissions::MANAGE_CHANNELS)?;
            if state.channels.contains_key(&channel_id) {
                return Err(DomainError::AlreadyExists(Resource::Channel));
            }
            if let Some(parent) = parent_id {
                if kind == ChannelKind::Category {
                    return Err(DomainError::invalid(
                        "parent_id",
                        "A category cannot have a parent.",
                    ));
                }
                match state.channels.get(&parent) {
                    Some(c) if c.kind == ChannelKind::Category => {}
                    _ => {
                        return Err(DomainError::invalid(
                            "parent_id",
                            "Not a category channel of this guild.",
                        ))
                    }
                }
            }
            if topic.is_some() && kind != ChannelKind::Text {
                return Err(DomainError::invalid(
                    "topic",
                    "Only text channels have a topic.",
                ));
            }
            let position = position.unwrap_or_else(|| {
                state.channels.values().filter(|c| c.kind == kind).count() as i32
            });
            if position < 0 {
                return Err(DomainError::invalid("position", "Must be 0 or more."));
            }
            Ok(vec![GuildEvent::ChannelCreated {
                channel_id,
                kind,
                name,
                position,
                parent_id,
                topic,
                nsfw,
            }])
        }
        GuildCommand::Join {
            user_id,
            invite_code,
        } => {
            if !state.exists() {
                return Err(DomainError::Unknown(Resource::Guild));
            }
            if state.is_member(user_id) {
                return Ok(vec![]);
            }
            Ok(vec![GuildEvent::MemberJoined {
                user_id,
                invite_code,
            }])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::given;

    const OWNER: UserId = UserId::new(1);
    const OTHER: UserId = UserId::new(2);
    const GUILD: GuildId = GuildId::new(100);
    const GENERAL: ChannelId = ChannelId::new(101);

    fn created() -> Vec<GuildEvent> {
        decide(
            &GuildState::default(),
            GuildCommand::Create {
                guild_id: GUILD,
                name: GuildName::parse("Chorus").unwrap(),
                owner_id: OWNER,
                general_channel_id: GENERAL,
            },
        )
        .unwrap()
    }

    fn create_channel(
        actor: UserId,
        id: u64,
        kind: ChannelKind,
        parent: Option<u64>,
    ) -> GuildCommand {
        GuildCommand::CreateChannel {
            actor,
            channel_id: ChannelId::new(id),
            kind,
            name: ChannelName::parse("chan").unwrap(),
            parent_id: parent.map(ChannelId::new),
            topic: None,
            nsfw: false,
            position: None,
        }
    }

    #[test]
    fn creating_a_guild_makes_the_owner_a_member_and_a_general_channel() {
        let events = created();
        assert!(
            matches!(events[0], GuildEvent::GuildCreated { owner_id, .. } if owner_id == OWNER)
        );
        assert_eq!(
            events[1],
            GuildEvent::MemberJoined {
                user_id: OWNER,
                invite_code: None
            }
        );
        assert!(
            matches!(events[2], GuildEvent::ChannelCreated { channel_id, kind: ChannelKind::Text, position: 0, .. } if channel_id == GENERAL)
        );
        let state = given::<GuildState>(&events);
        assert!(state.is_member(OWNER));
        assert!(state.channels.contains_key(&GENERAL));
    }

    #[test]
    fn a_guild_cannot_be_created_twice() {
        let state = given::<GuildState>(&created());
        let err = decide(
            &state,
            GuildCommand::Create {
                guild_id: GUILD,
                name: GuildName::parse("Again").unwrap(),
                owner_id: OWNER,
                general_channel_id: ChannelId::new(5),
            },
        );
        assert_eq!(
            err.unwrap_err(),
            DomainError::AlreadyExists(Resource::Guild)
        );
    }

    #[test]
    fn the_owner_creates_categories_and_channels_inside_them() {
        let mut history = created();
        let cat = decide(
            &given(&history),
            create_channel(OWNER, 200, ChannelKind::Category, None),
        )
        .unwrap();
        history.extend(cat);
        let text = decide(
            &given(&history),
            create_channel(OWNER, 201, ChannelKind::Text, Some(200)),
        )
        .unwrap();
        assert!(matches!(
            &text[0],
            GuildEvent::ChannelCreated { parent_id: Some(p), position: 1, .. } if *p == ChannelId::new(200)
        ));
    }

    #[test]
    fn a_parent_must_be_a_category_of_this_guild() {
        let state = given::<GuildState>(&created());
        let err = decide(
            &state,
            create_channel(OWNER, 201, ChannelKind::Text, Some(GENERAL.get())),
        )
        .unwrap_err();
        assert!(matches!(
            err,
            DomainError::Invalid {
                field: "parent_id",
                ..
            }
        ));
        let err = decide(
            &state,
            create_channel(OWNER, 201, ChannelKind::Text, Some(999)),
        )
        .unwrap_err();
        assert!(matches!(
            err,
            DomainError::Invalid {
                field: "parent_id",
                ..
            }
        ));
    }

    #[test]
    fn members_without_manage_channels_and_outsiders_cannot_create_channels() {
        let mut history = created();
        let err = decide(
            &given(&history),
            create_channel(OTHER, 300, ChannelKind::Text, None),
        )
        .unwrap_err();
        assert_eq!(err, DomainError::MissingAccess);
        history.push(GuildEvent::MemberJoined {
            user_id: OTHER,
            invite_code: Some("abc".into()),
        });
        let err = decide(
            &given(&history),
            create_channel(OTHER, 300, ChannelKind::Text, None),
        )
        .unwrap_err();
        assert_eq!(err, DomainError::MissingPermissions);
    }

    #[test]
    fn joining_adds_a_member_once() {
        let state = given::<GuildState>(&created());
        let events = decide(
            &state,
            GuildCommand::Join {
                user_id: OTHER,
                invite_code: Some("abc".into()),
            },
        )
        .unwrap();
        assert_eq!(
            events,
            vec![GuildEvent::MemberJoined {
                user_id: OTHER,
                invite_code: Some("abc".into())
            }]
        );
        let mut history = created();
        history.extend(events);
        assert_eq!(
            decide(
                &given(&history),
                GuildCommand::Join {
                    user_id: OTHER,
                    invite_code: None
                }
            )
            .unwrap(),
            vec![]
        );
    }

    #[test]
    fn joining_an_unknown_guild_is_rejected() {
        let err = decide(
            &GuildState::default(),
            GuildCommand::Join {
                user_id: OTHER,
                invite_code: None,
            },
        );
        assert_eq!(err.unwrap_err(), DomainError::Unknown(Resource::Guild));
    }
}
