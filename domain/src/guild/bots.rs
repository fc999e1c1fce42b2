//! Bots joining a guild through OAuth2 authorization: the bot becomes a member with a
//! managed role named after its application that carries the granted permissions.

use super::{require_grant, GuildEvent, GuildState};
use crate::member::Member;
use crate::permissions::Permissions;
use crate::role::{Role, RoleName, RolePosition, MAX_ROLES};
use crate::{DomainError, Resource, RoleId, UserId};

/// Adds a bot to the guild (`GuildCommand::AddBot`): `actor` needs MANAGE_GUILD and must
/// hold every permission granted (unless administrator). The bot joins, gets a new
/// managed role at position 1 (the others move up) named after its application, and is
/// given that role. A bot that is already a member changes nothing.
#[derive(Debug, Clone)]
pub struct AddBot {
    pub actor: UserId,
    pub bot_id: UserId,
    /// The id of the bot's managed role (a fresh snowflake).
    pub role_id: RoleId,
    /// The application's name.
    pub role_name: RoleName,
    pub permissions: Permissions,
    pub now_ms: u64,
}

pub(super) fn add(state: &GuildState, cmd: AddBot) -> Result<Vec<GuildEvent>, DomainError> {
    let perms = state.require_at(cmd.actor, Permissions::MANAGE_GUILD, cmd.now_ms)?;
    require_grant(perms, cmd.permissions)?;
    if state.is_banned(cmd.bot_id) {
        return Err(DomainError::Banned);
    }
    if state.is_member(cmd.bot_id) {
        return Ok(vec![]);
    }
    if state.roles.contains_key(&cmd.role_id) || state.is_everyone(cmd.role_id) {
        return Err(DomainError::AlreadyExists(Resource::Role));
    }
    let others: Vec<&Role> = state
        .roles
        .values()
        .filter(|r| !state.is_everyone(r.id))
        .collect();
    if others.len() >= MAX_ROLES {
        return Err(DomainError::invalid(
            "roles",
            format!("Maximum number of guild roles reached ({MAX_ROLES})."),
        ));
    }
    let mut events = vec![GuildEvent::MemberJoined {
        user_id: cmd.bot_id,
        invite_code: None,
    }];
    let bumped: Vec<RolePosition> = others
        .iter()
        .filter(|r| r.position >= 1)
        .map(|r| RolePosition {
            role_id: r.id,
            position: r.position + 1,
        })
        .collect();
    if !bumped.is_empty() {
        events.push(GuildEvent::RolesReordered { positions: bumped });
    }
    events.push(GuildEvent::RoleCreated {
        role: Role {
            id: cmd.role_id,
            name: cmd.role_name,
            permissions: cmd.permissions,
            color: 0,
            hoist: false,
            mentionable: false,
            position: 1,
            managed: true,
            bot_id: Some(cmd.bot_id),
        },
    });
    events.push(GuildState::member_updated(
        cmd.bot_id,
        Member {
            roles: vec![cmd.role_id],
            ..Member::default()
        },
    ));
    Ok(events)
}

/// The deletions of the managed roles that go when `user_id` leaves the guild (kicked,
/// banned or by themselves), as Discord deletes a bot's role with the bot: the roles
/// whose `bot_id` is the user, and managed roles without one (from events stored before
/// `bot_id` existed) that the user alone holds, since only [`AddBot`] makes managed
/// roles and gives each to its bot. Empty for anyone but a bot.
pub(super) fn roles_leaving_with(state: &GuildState, user_id: UserId) -> Vec<GuildEvent> {
    let held = |role: RoleId| {
        state
            .members
            .iter()
            .filter(|(_, m)| m.has_role(role))
            .map(|(id, _)| *id)
            .collect::<Vec<_>>()
    };
    state
        .roles
        .values()
        .filter(|r| match r.bot_id {
            Some(bot) => bot == user_id,
            None => r.managed && held(r.id) == [user_id],
        })
        .map(|r| GuildEvent::RoleDeleted { role_id: r.id })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::{decide, GuildCommand};
    use super::*;
    use crate::member::RemovalReason;
    use crate::testing::given;
    use crate::values::GuildName;
    use crate::{ChannelId, DomainError, GuildId};

    const GUILD: GuildId = GuildId::new(100);
    const OWNER: UserId = UserId::new(1);
    const MANAGER: UserId = UserId::new(2);
    const MEMBER: UserId = UserId::new(3);
    const OUTSIDER: UserId = UserId::new(4);
    const BOT: UserId = UserId::new(500);
    const MANAGERS: RoleId = RoleId::new(200);
    const BOT_ROLE: RoleId = RoleId::new(600);
    const NOW: u64 = 1_700_000_000_000;
    const MANAGER_PERMS: Permissions = Permissions::MANAGE_GUILD
        .union(Permissions::SEND_MESSAGES)
        .union(Permissions::MANAGE_ROLES);

    /// A guild where `MANAGER` has a role with [`MANAGER_PERMS`] and `MEMBER` has none.
    fn guild() -> Vec<GuildEvent> {
        let mut history = decide(
            &GuildState::default(),
            GuildCommand::Create {
                guild_id: GUILD,
                name: GuildName::parse("Chorus").unwrap(),
                owner_id: OWNER,
                general_channel_id: ChannelId::new(101),
            },
        )
        .unwrap();
        for user_id in [MANAGER, MEMBER] {
            history.push(GuildEvent::MemberJoined {
                user_id,
                invite_code: None,
            });
        }
        history.push(GuildEvent::RoleCreated {
            role: Role {
                id: MANAGERS,
                name: RoleName::parse("Managers").unwrap(),
                permissions: MANAGER_PERMS,
                color: 0,
                hoist: false,
                mentionable: false,
                position: 1,
                managed: false,
                bot_id: None,
            },
        });
        history.push(GuildState::member_updated(
            MANAGER,
            Member {
                roles: vec![MANAGERS],
                ..Member::default()
            },
        ));
        history
    }

    fn add_bot(actor: UserId, permissions: Permissions) -> GuildCommand {
        GuildCommand::AddBot(AddBot {
            actor,
            bot_id: BOT,
            role_id: BOT_ROLE,
            role_name: RoleName::parse("Helper").unwrap(),
            permissions,
            now_ms: NOW,
        })
    }

    #[test]
    fn a_manager_adds_a_bot_with_a_managed_role_carrying_the_permissions() {
        let history = guild();
        let events = decide(
            &given(&history),
            add_bot(MANAGER, Permissions::SEND_MESSAGES),
        )
        .unwrap();
        let role = Role {
            id: BOT_ROLE,
            name: RoleName::parse("Helper").unwrap(),
            permissions: Permissions::SEND_MESSAGES,
            color: 0,
            hoist: false,
            mentionable: false,
            position: 1,
            managed: true,
            bot_id: Some(BOT),
        };
        assert_eq!(
            events,
            vec![
                GuildEvent::MemberJoined {
                    user_id: BOT,
                    invite_code: None,
                },
                GuildEvent::RolesReordered {
                    positions: vec![RolePosition {
                        role_id: MANAGERS,
                        position: 2,
                    }],
                },
                GuildEvent::RoleCreated { role },
                GuildState::member_updated(
                    BOT,
                    Member {
                        roles: vec![BOT_ROLE],
                        ..Member::default()
                    }
                ),
            ]
        );
        let state: GuildState = given(&[history, events].concat());
        assert!(state.member(BOT).unwrap().has_role(BOT_ROLE));
        assert!(state.role(BOT_ROLE).unwrap().managed);
        assert!(state
            .guild_permissions(BOT, NOW)
            .contains(Permissions::SEND_MESSAGES));
        // Its role is managed: nobody assigns or removes it by hand.
        let err = decide(
            &state,
            GuildCommand::RemoveMemberRole {
                actor: OWNER,
                user_id: BOT,
                role_id: BOT_ROLE,
                now_ms: NOW,
            },
        )
        .unwrap_err();
        assert!(matches!(err, DomainError::Invalid { field: "roles", .. }));
        // Authorizing it again changes nothing.
        assert_eq!(
            decide(&state, add_bot(OWNER, Permissions::SEND_MESSAGES)).unwrap(),
            vec![]
        );
    }

    #[test]
    fn the_owner_and_administrators_grant_anything() {
        let events = decide(&given(&guild()), add_bot(OWNER, Permissions::ALL)).unwrap();
        assert!(events.iter().any(|e| matches!(
            e,
            GuildEvent::RoleCreated { role } if role.permissions == Permissions::ALL
        )));
    }

    #[test]
    fn adding_a_bot_needs_manage_guild_and_only_grants_what_the_actor_holds() {
        let state: GuildState = given(&guild());
        assert_eq!(
            decide(&state, add_bot(MEMBER, Permissions::NONE)).unwrap_err(),
            DomainError::MissingPermissions
        );
        assert_eq!(
            decide(&state, add_bot(OUTSIDER, Permissions::NONE)).unwrap_err(),
            DomainError::MissingAccess
        );
        assert_eq!(
            decide(
                &state,
                add_bot(
                    MANAGER,
                    Permissions::SEND_MESSAGES | Permissions::BAN_MEMBERS
                )
            )
            .unwrap_err(),
            DomainError::MissingPermissions
        );
        assert_eq!(
            decide(&GuildState::default(), add_bot(OWNER, Permissions::NONE)).unwrap_err(),
            DomainError::Unknown(Resource::Guild)
        );
    }

    #[test]
    fn a_banned_bot_is_not_added() {
        let mut history = guild();
        history.push(GuildEvent::MemberBanned {
            user_id: BOT,
            delete_message_seconds: 0,
        });
        assert_eq!(
            decide(&given(&history), add_bot(OWNER, Permissions::NONE)).unwrap_err(),
            DomainError::Banned
        );
    }
    /// The guild with the bot added by the owner.
    fn with_bot() -> Vec<GuildEvent> {
        let mut history = guild();
        let added = decide(&given(&history), add_bot(OWNER, Permissions::SEND_MESSAGES)).unwrap();
        history.extend(added);
        history
    }

    fn removal(user_id: UserId, reason: RemovalReason) -> GuildEvent {
        GuildEvent::MemberRemoved { user_id, reason }
    }

    #[test]
    fn a_bot_role_names_its_bot_and_goes_with_it_when_kicked_banned_or_leaving() {
        let state: GuildState = given(&with_bot());
        assert_eq!(state.role(BOT_ROLE).unwrap().bot_id, Some(BOT));
        let role_gone = GuildEvent::RoleDeleted { role_id: BOT_ROLE };

        let kicked = decide(
            &state,
            GuildCommand::KickMember {
                actor: OWNER,
                user_id: BOT,
                now_ms: NOW,
            },
        )
        .unwrap();
        assert_eq!(
            kicked,
            vec![removal(BOT, RemovalReason::Kick), role_gone.clone()]
        );
        let after: GuildState = given(&[with_bot(), kicked].concat());
        assert!(after.role(BOT_ROLE).is_none());

        let banned = decide(
            &state,
            GuildCommand::BanMember {
                actor: OWNER,
                user_id: BOT,
                delete_message_seconds: 0,
                now_ms: NOW,
            },
        )
        .unwrap();
        assert_eq!(
            banned,
            vec![
                GuildEvent::MemberBanned {
                    user_id: BOT,
                    delete_message_seconds: 0,
                },
                removal(BOT, RemovalReason::Ban),
                role_gone.clone(),
            ]
        );

        let left = decide(&state, GuildCommand::Leave { user_id: BOT }).unwrap();
        assert_eq!(left, vec![removal(BOT, RemovalReason::Leave), role_gone]);

        // Added again, the bot gets a new role (the old id is free again).
        let history = [with_bot(), left].concat();
        let again = decide(&given(&history), add_bot(OWNER, Permissions::NONE)).unwrap();
        assert!(again.iter().any(|e| matches!(
            e,
            GuildEvent::RoleCreated { role } if role.bot_id == Some(BOT) && role.managed
        )));
    }

    #[test]
    fn other_members_leaving_take_no_role_with_them() {
        let state: GuildState = given(&with_bot());
        // MANAGER holds the unmanaged MANAGERS role alone; it stays.
        assert_eq!(
            decide(&state, GuildCommand::Leave { user_id: MANAGER }).unwrap(),
            vec![removal(MANAGER, RemovalReason::Leave)]
        );
        assert_eq!(
            decide(
                &state,
                GuildCommand::KickMember {
                    actor: OWNER,
                    user_id: MEMBER,
                    now_ms: NOW,
                },
            )
            .unwrap(),
            vec![removal(MEMBER, RemovalReason::Kick)]
        );
    }

    /// A bot role stored before roles named their bot: managed, no `bot_id`.
    fn legacy_bot_role() -> Vec<GuildEvent> {
        with_bot()
            .into_iter()
            .map(|e| match e {
                GuildEvent::RoleCreated { mut role } if role.id == BOT_ROLE => {
                    role.bot_id = None;
                    GuildEvent::RoleCreated { role }
                }
                e => e,
            })
            .collect()
    }

    #[test]
    fn a_bot_role_stored_without_its_bot_goes_with_the_one_member_holding_it() {
        let history = legacy_bot_role();
        let state: GuildState = given(&history);
        assert_eq!(state.role(BOT_ROLE).unwrap().bot_id, None);
        assert_eq!(
            decide(&state, GuildCommand::Leave { user_id: BOT }).unwrap(),
            vec![
                removal(BOT, RemovalReason::Leave),
                GuildEvent::RoleDeleted { role_id: BOT_ROLE }
            ]
        );
        // A managed role held by more than the departing member is not a bot's own.
        let mut shared = history;
        shared.push(GuildState::member_updated(
            MEMBER,
            Member {
                roles: vec![BOT_ROLE],
                ..Member::default()
            },
        ));
        assert_eq!(
            decide(&given(&shared), GuildCommand::Leave { user_id: BOT }).unwrap(),
            vec![removal(BOT, RemovalReason::Leave)]
        );
    }
}
