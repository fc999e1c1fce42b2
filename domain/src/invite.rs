//! The Invite aggregate (`invite-{code}`): an invite link and its uses.

use serde::{Deserialize, Serialize};

use crate::guild::GuildState;
use crate::permissions::Permissions;
use crate::{domain_event, Aggregate, ChannelId, DomainError, GuildId, Resource, UserId};

/// Longest invite lifetime Discord allows (7 days), in seconds.
pub const MAX_AGE_LIMIT: u32 = 604_800;
/// Most uses an invite may be limited to.
pub const MAX_USES_LIMIT: u32 = 100;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum InviteEvent {
    InviteCreated {
        code: String,
        guild_id: GuildId,
        channel_id: ChannelId,
        inviter_id: UserId,
        /// Seconds until it expires; 0 never.
        max_age: u32,
        /// Uses allowed; 0 unlimited.
        max_uses: u32,
        temporary: bool,
        created_at_ms: u64,
    },
    InviteUsed {
        user_id: UserId,
    },
    /// Revoked (`DELETE /invites/{code}`): it can no longer be used or shown. Carries
    /// where it led, so that `INVITE_DELETE` can be rendered once the read model has
    /// dropped the invite.
    InviteDeleted {
        guild_id: GuildId,
        channel_id: ChannelId,
        deleted_by: UserId,
    },
}
domain_event!(InviteEvent {
    InviteCreated,
    InviteUsed,
    InviteDeleted
});

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InviteInfo {
    pub code: String,
    pub guild_id: GuildId,
    pub channel_id: ChannelId,
    pub inviter_id: UserId,
    pub max_age: u32,
    pub max_uses: u32,
    pub temporary: bool,
    pub created_at_ms: u64,
}

impl InviteInfo {
    /// When it expires, in Unix milliseconds (`None`: never).
    pub fn expires_at_ms(&self) -> Option<u64> {
        (self.max_age > 0).then(|| self.created_at_ms + u64::from(self.max_age) * 1000)
    }
}

#[derive(Debug, Clone, Default)]
pub struct InviteState {
    pub info: Option<InviteInfo>,
    pub uses: u32,
    /// Revoked: it behaves as an unknown invite.
    pub deleted: bool,
}

impl InviteState {
    /// The invite, if it exists and can still be used at `now_ms`.
    pub fn usable(&self, now_ms: u64) -> Option<&InviteInfo> {
        if self.deleted {
            return None;
        }
        let info = self.info.as_ref()?;
        if info.expires_at_ms().is_some_and(|t| now_ms >= t) {
            return None;
        }
        if info.max_uses > 0 && self.uses >= info.max_uses {
            return None;
        }
        Some(info)
    }
}

impl Aggregate for InviteState {
    type Event = InviteEvent;
    fn evolve(&mut self, event: &InviteEvent) {
        match event {
            InviteEvent::InviteCreated {
                code,
                guild_id,
                channel_id,
                inviter_id,
                max_age,
                max_uses,
                temporary,
                created_at_ms,
            } => {
                self.info = Some(InviteInfo {
                    code: code.clone(),
                    guild_id: *guild_id,
                    channel_id: *channel_id,
                    inviter_id: *inviter_id,
                    max_age: *max_age,
                    max_uses: *max_uses,
                    temporary: *temporary,
                    created_at_ms: *created_at_ms,
                });
            }
            InviteEvent::InviteUsed { .. } => self.uses += 1,
            InviteEvent::InviteDeleted { .. } => self.deleted = true,
        }
    }
}

#[derive(Debug, Clone)]
pub enum InviteCommand {
    Create {
        code: String,
        channel_id: ChannelId,
        inviter_id: UserId,
        max_age: u32,
        max_uses: u32,
        temporary: bool,
        now_ms: u64,
    },
    Use {
        user_id: UserId,
        now_ms: u64,
    },
    /// Revoke it: MANAGE_CHANNELS in its channel or MANAGE_GUILD.
    Delete {
        user_id: UserId,
        now_ms: u64,
    },
}

/// Whether a string can be an invite code (2-32 ASCII letters and digits).
pub fn valid_code(code: &str) -> bool {
    (2..=32).contains(&code.len()) && code.bytes().all(|b| b.is_ascii_alphanumeric())
}

pub fn decide(
    state: &InviteState,
    guild: &GuildState,
    command: InviteCommand,
) -> Result<Vec<InviteEvent>, DomainError> {
    match command {
        InviteCommand::Create {
            code,
            channel_id,
            inviter_id,
            max_age,
            max_uses,
            temporary,
            now_ms,
        } => {
            if state.info.is_some() {
                return Err(DomainError::AlreadyExists(Resource::Invite));
            }
            if !valid_code(&code) {
                return Err(DomainError::invalid("code", "Invalid invite code."));
            }
            if !guild.channels.contains_key(&channel_id) {
                return Err(DomainError::Unknown(Resource::Channel));
            }
            guild.require(inviter_id, Permissions::CREATE_INSTANT_INVITE)?;
            if max_age > MAX_AGE_LIMIT {
                return Err(DomainError::invalid(
                    "max_age",
                    format!("Must be between 0 and {MAX_AGE_LIMIT}."),
                ));
            }
            if max_uses > MAX_USES_LIMIT {
                return Err(DomainError::invalid(
                    "max_uses",
                    format!("Must be between 0 and {MAX_USES_LIMIT}."),
                ));
            }
            Ok(vec![InviteEvent::InviteCreated {
                code,
                guild_id: guild.id.ok_or(DomainError::Unknown(Resource::Guild))?,
                channel_id,
                inviter_id,
                max_age,
                max_uses,
                temporary,
                created_at_ms: now_ms,
            }])
        }
        InviteCommand::Use { user_id, now_ms } => {
            if state.usable(now_ms).is_none() {
                return Err(if state.info.is_none() || state.deleted {
                    DomainError::Unknown(Resource::Invite)
                } else {
                    DomainError::InviteInvalid
                });
            }
            Ok(vec![InviteEvent::InviteUsed { user_id }])
        }
        InviteCommand::Delete { user_id, now_ms } => {
            let info = match &state.info {
                Some(info) if !state.deleted => info,
                _ => return Err(DomainError::Unknown(Resource::Invite)),
            };
            if !guild.exists() {
                return Err(DomainError::Unknown(Resource::Invite));
            }
            if !guild.is_member(user_id) {
                return Err(DomainError::MissingAccess);
            }
            let in_channel = guild.channels.contains_key(&info.channel_id)
                && guild
                    .channel_permissions(user_id, info.channel_id, now_ms)
                    .contains(Permissions::MANAGE_CHANNELS);
            if !in_channel
                && !guild
                    .guild_permissions(user_id, now_ms)
                    .contains(Permissions::MANAGE_GUILD)
            {
                return Err(DomainError::MissingPermissions);
            }
            Ok(vec![InviteEvent::InviteDeleted {
                guild_id: info.guild_id,
                channel_id: info.channel_id,
                deleted_by: user_id,
            }])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guild::{self, GuildCommand};
    use crate::testing::given;
    use crate::values::GuildName;

    const OWNER: UserId = UserId::new(1);
    const JOINER: UserId = UserId::new(2);
    const GENERAL: ChannelId = ChannelId::new(101);
    const NOW: u64 = 1_700_000_000_000;

    fn guild() -> GuildState {
        given(
            &guild::decide(
                &GuildState::default(),
                GuildCommand::Create {
                    guild_id: GuildId::new(100),
                    name: GuildName::parse("Chorus").unwrap(),
                    owner_id: OWNER,
                    general_channel_id: GENERAL,
                },
            )
            .unwrap(),
        )
    }

    fn create(max_age: u32, max_uses: u32) -> InviteCommand {
        InviteCommand::Create {
            code: "abc123".into(),
            channel_id: GENERAL,
            inviter_id: OWNER,
            max_age,
            max_uses,
            temporary: false,
            now_ms: NOW,
        }
    }

    #[test]
    fn a_member_creates_an_invite() {
        let events = decide(&InviteState::default(), &guild(), create(3600, 0)).unwrap();
        assert!(
            matches!(&events[0], InviteEvent::InviteCreated { code, max_age: 3600, .. } if code == "abc123")
        );
    }

    #[test]
    fn outsiders_cannot_create_invites() {
        let mut cmd = create(0, 0);
        if let InviteCommand::Create { inviter_id, .. } = &mut cmd {
            *inviter_id = JOINER;
        }
        assert_eq!(
            decide(&InviteState::default(), &guild(), cmd).unwrap_err(),
            DomainError::MissingAccess
        );
    }

    #[test]
    fn limits_are_checked() {
        assert!(decide(
            &InviteState::default(),
            &guild(),
            create(MAX_AGE_LIMIT + 1, 0)
        )
        .is_err());
        assert!(decide(
            &InviteState::default(),
            &guild(),
            create(0, MAX_USES_LIMIT + 1)
        )
        .is_err());
    }

    #[test]
    fn an_invite_expires_after_max_age() {
        let state = given::<InviteState>(
            &decide(&InviteState::default(), &guild(), create(60, 0)).unwrap(),
        );
        assert!(decide(
            &state,
            &guild(),
            InviteCommand::Use {
                user_id: JOINER,
                now_ms: NOW + 59_000
            }
        )
        .is_ok());
        assert_eq!(
            decide(
                &state,
                &guild(),
                InviteCommand::Use {
                    user_id: JOINER,
                    now_ms: NOW + 60_000
                }
            )
            .unwrap_err(),
            DomainError::InviteInvalid
        );
    }

    #[test]
    fn an_invite_is_used_up_after_max_uses() {
        let mut history = decide(&InviteState::default(), &guild(), create(0, 1)).unwrap();
        history.extend(
            decide(
                &given(&history),
                &guild(),
                InviteCommand::Use {
                    user_id: JOINER,
                    now_ms: NOW,
                },
            )
            .unwrap(),
        );
        let err = decide(
            &given(&history),
            &guild(),
            InviteCommand::Use {
                user_id: UserId::new(9),
                now_ms: NOW,
            },
        );
        assert_eq!(err.unwrap_err(), DomainError::InviteInvalid);
    }

    #[test]
    fn the_owner_revokes_an_invite_and_it_cannot_be_used() {
        let history = decide(&InviteState::default(), &guild(), create(0, 0)).unwrap();
        let revoke = InviteCommand::Delete {
            user_id: OWNER,
            now_ms: NOW,
        };
        let deleted = decide(&given(&history), &guild(), revoke.clone()).unwrap();
        assert_eq!(
            deleted,
            vec![InviteEvent::InviteDeleted {
                guild_id: GuildId::new(100),
                channel_id: GENERAL,
                deleted_by: OWNER,
            }]
        );
        let mut history = history;
        history.extend(deleted);
        let use_it = InviteCommand::Use {
            user_id: JOINER,
            now_ms: NOW,
        };
        assert_eq!(
            decide(&given(&history), &guild(), use_it).unwrap_err(),
            DomainError::Unknown(Resource::Invite)
        );
        assert_eq!(
            decide(&given(&history), &guild(), revoke).unwrap_err(),
            DomainError::Unknown(Resource::Invite)
        );
    }

    #[test]
    fn a_member_without_manage_permissions_cannot_revoke() {
        let history = decide(&InviteState::default(), &guild(), create(0, 0)).unwrap();
        let mut g = guild();
        for e in guild::decide(
            &g,
            GuildCommand::Join {
                user_id: JOINER,
                invite_code: None,
            },
        )
        .unwrap()
        {
            g.evolve(&e);
        }
        let revoke = |user_id| InviteCommand::Delete {
            user_id,
            now_ms: NOW,
        };
        assert_eq!(
            decide(&given(&history), &g, revoke(JOINER)).unwrap_err(),
            DomainError::MissingPermissions
        );
        assert_eq!(
            decide(&given(&history), &g, revoke(UserId::new(9))).unwrap_err(),
            DomainError::MissingAccess
        );
        assert_eq!(
            decide(&InviteState::default(), &g, revoke(OWNER)).unwrap_err(),
            DomainError::Unknown(Resource::Invite)
        );
    }

    #[test]
    fn an_unknown_invite_cannot_be_used() {
        let err = decide(
            &InviteState::default(),
            &guild(),
            InviteCommand::Use {
                user_id: JOINER,
                now_ms: NOW,
            },
        );
        assert_eq!(err.unwrap_err(), DomainError::Unknown(Resource::Invite));
    }
}
