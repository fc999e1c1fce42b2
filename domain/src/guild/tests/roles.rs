//! Roles: create, edit, delete, reorder, give and take.

use super::super::*;
use super::fixture::*;

fn order(s: &Scenario) -> Vec<RoleId> {
    s.state().roles_by_rank().iter().map(|r| r.id).collect()
}

// --- CreateRole ---

#[test]
fn a_new_role_goes_to_the_bottom_just_above_everyone() {
    let mut s = Scenario::new();
    let events = s.run(create_role(OWNER, NEW_ROLE, Permissions::KICK_MEMBERS));
    assert_eq!(
        events[0],
        GuildEvent::RolesReordered {
            positions: vec![
                RolePosition {
                    role_id: ADMINS,
                    position: 4
                },
                RolePosition {
                    role_id: MODS,
                    position: 3
                },
                RolePosition {
                    role_id: HELPERS,
                    position: 2
                },
            ]
        }
    );
    assert!(matches!(
        &events[1],
        GuildEvent::RoleCreated { role }
            if role.id == NEW_ROLE && role.position == 1 && !role.managed
                && role.permissions == Permissions::KICK_MEMBERS
    ));
    assert_eq!(order(&s), vec![EVERYONE, NEW_ROLE, HELPERS, MODS, ADMINS]);
}

#[test]
fn the_first_role_of_a_guild_moves_no_other() {
    let s = Scenario::bare();
    let events = s
        .when(create_role(OWNER, NEW_ROLE, Permissions::NONE))
        .unwrap();
    assert_eq!(events.len(), 1);
    assert!(matches!(&events[0], GuildEvent::RoleCreated { role } if role.position == 1));
}

#[test]
fn creating_a_role_needs_manage_roles() {
    let s = Scenario::new();
    assert_eq!(
        s.rejects(create_role(MEMBER, NEW_ROLE, Permissions::NONE)),
        DomainError::MissingPermissions
    );
    assert_eq!(
        s.rejects(create_role(HELPER_USER, NEW_ROLE, Permissions::NONE)),
        DomainError::MissingPermissions
    );
    assert_eq!(
        s.rejects(create_role(OUTSIDER, NEW_ROLE, Permissions::NONE)),
        DomainError::MissingAccess
    );
    assert!(s
        .when(create_role(MODERATOR, NEW_ROLE, Permissions::NONE))
        .is_ok());
}

#[test]
fn a_new_role_holds_only_permissions_its_creator_holds() {
    let s = Scenario::new();
    assert_eq!(
        s.rejects(create_role(MODERATOR, NEW_ROLE, Permissions::ADMINISTRATOR)),
        DomainError::MissingPermissions
    );
    assert_eq!(
        s.rejects(create_role(MODERATOR, NEW_ROLE, Permissions::MANAGE_GUILD)),
        DomainError::MissingPermissions
    );
    assert!(s
        .when(create_role(
            MODERATOR,
            NEW_ROLE,
            Permissions::KICK_MEMBERS | Permissions::VIEW_CHANNEL
        ))
        .is_ok());
    // An administrator grants anything.
    assert!(s
        .when(create_role(ADMIN_USER, NEW_ROLE, Permissions::MANAGE_GUILD))
        .is_ok());
}

#[test]
fn role_ids_and_colours_are_checked() {
    let s = Scenario::new();
    assert_eq!(
        s.rejects(create_role(OWNER, MODS, Permissions::NONE)),
        DomainError::AlreadyExists(Resource::Role)
    );
    assert_eq!(
        s.rejects(create_role(OWNER, EVERYONE, Permissions::NONE)),
        DomainError::AlreadyExists(Resource::Role)
    );
    let mut cmd = create_role(OWNER, NEW_ROLE, Permissions::NONE);
    if let GuildCommand::CreateRole { color, .. } = &mut cmd {
        *color = 0x100_0000;
    }
    assert!(matches!(
        s.rejects(cmd),
        DomainError::Invalid { field: "color", .. }
    ));
}

#[test]
fn a_guild_holds_at_most_250_roles() {
    let s = Scenario::new().given((0..247).map(|i| GuildEvent::RoleCreated {
        role: Role {
            id: RoleId::new(1000 + i),
            name: RoleName::parse("filler").unwrap(),
            permissions: Permissions::NONE,
            color: 0,
            hoist: false,
            mentionable: false,
            position: 1,
            managed: false,
            bot_id: None,
        },
    }));
    assert!(matches!(
        s.rejects(create_role(OWNER, NEW_ROLE, Permissions::NONE)),
        DomainError::Invalid { field: "roles", .. }
    ));
}

// --- EditRole ---

#[test]
fn a_moderator_edits_a_role_below_their_own() {
    let mut s = Scenario::new();
    let events = s.run(GuildCommand::EditRole {
        actor: MODERATOR,
        role_id: HELPERS,
        name: Some(RoleName::parse("Helpers").unwrap()),
        permissions: Some(Permissions::KICK_MEMBERS),
        color: Some(0x3498db),
        hoist: Some(true),
        mentionable: Some(true),
        now_ms: NOW,
    });
    assert_eq!(
        events,
        vec![GuildEvent::RoleUpdated {
            role: Role {
                id: HELPERS,
                name: RoleName::parse("Helpers").unwrap(),
                permissions: Permissions::KICK_MEMBERS,
                color: 0x3498db,
                hoist: true,
                mentionable: true,
                position: 1,
                managed: false,
                bot_id: None,
            }
        }]
    );
    assert!(s
        .state()
        .guild_permissions(HELPER_USER, NOW)
        .contains(Permissions::KICK_MEMBERS));
}

#[test]
fn roles_at_or_above_ones_highest_cannot_be_edited() {
    let s = Scenario::new();
    assert_eq!(
        s.rejects(edit_role_permissions(MODERATOR, MODS, Permissions::NONE)),
        DomainError::MissingPermissions
    );
    assert_eq!(
        s.rejects(edit_role_permissions(MODERATOR, ADMINS, Permissions::NONE)),
        DomainError::MissingPermissions
    );
    // ADMINISTRATOR does not lift the hierarchy.
    assert_eq!(
        s.rejects(edit_role_permissions(ADMIN_USER, ADMINS, Permissions::NONE)),
        DomainError::MissingPermissions
    );
}

#[test]
fn the_owner_edits_any_role() {
    let s = Scenario::new();
    assert!(s
        .when(edit_role_permissions(OWNER, ADMINS, Permissions::NONE))
        .is_ok());
}

#[test]
fn an_edit_adds_only_permissions_the_editor_holds() {
    let mut s = Scenario::new();
    assert_eq!(
        s.rejects(edit_role_permissions(
            MODERATOR,
            HELPERS,
            Permissions::MANAGE_GUILD
        )),
        DomainError::MissingPermissions
    );
    s.run(edit_role_permissions(
        OWNER,
        HELPERS,
        Permissions::MANAGE_GUILD | Permissions::KICK_MEMBERS,
    ));
    // Keeping a permission one lacks, or removing one, grants nothing.
    assert!(s
        .when(edit_role_permissions(
            MODERATOR,
            HELPERS,
            Permissions::MANAGE_GUILD
        ))
        .is_ok());
}

#[test]
fn everyones_permissions_are_editable_and_apply_to_every_member() {
    let mut s = Scenario::new();
    let without_send = Permissions::DEFAULT_EVERYONE.without(Permissions::SEND_MESSAGES);
    s.run(edit_role_permissions(MODERATOR, EVERYONE, without_send));
    let state = s.state();
    assert_eq!(state.everyone_permissions, without_send);
    assert!(!state
        .channel_permissions(MEMBER, GENERAL, NOW)
        .contains(Permissions::SEND_MESSAGES));
    let mut rename = edit_role(MODERATOR, EVERYONE);
    if let GuildCommand::EditRole { name, .. } = &mut rename {
        *name = Some(RoleName::parse("everybody").unwrap());
    }
    assert!(matches!(
        s.rejects(rename),
        DomainError::Invalid { field: "name", .. }
    ));
}

#[test]
fn an_edit_that_changes_nothing_records_nothing() {
    let s = Scenario::new();
    assert_eq!(s.when(edit_role(MODERATOR, HELPERS)).unwrap(), vec![]);
    assert_eq!(
        s.when(edit_role_permissions(MODERATOR, HELPERS, Permissions::NONE))
            .unwrap(),
        vec![]
    );
}

#[test]
fn editing_roles_needs_manage_roles_and_a_known_role() {
    let s = Scenario::new();
    assert_eq!(
        s.rejects(edit_role(MEMBER, HELPERS)),
        DomainError::MissingPermissions
    );
    assert_eq!(
        s.rejects(edit_role(MODERATOR, RoleId::new(999))),
        DomainError::Unknown(Resource::Role)
    );
}

// --- DeleteRole ---

#[test]
fn deleting_a_role_takes_it_from_members_and_channel_overwrites() {
    let mut s = Scenario::new();
    s.run(set_overwrite(
        OWNER,
        GENERAL,
        Overwrite::role(HELPERS, Permissions::SEND_TTS_MESSAGES, Permissions::NONE),
    ));
    let events = s.run(delete_role(MODERATOR, HELPERS));
    assert_eq!(events, vec![GuildEvent::RoleDeleted { role_id: HELPERS }]);
    let state = s.state();
    assert!(state.role(HELPERS).is_none());
    assert!(state.member(HELPER_USER).unwrap().roles.is_empty());
    assert!(state.effective_overwrites(GENERAL).is_empty());
}

#[test]
fn everyone_and_roles_at_or_above_the_actor_cannot_be_deleted() {
    let s = Scenario::new();
    assert!(matches!(
        s.rejects(delete_role(OWNER, EVERYONE)),
        DomainError::Invalid {
            field: "role_id",
            ..
        }
    ));
    assert_eq!(
        s.rejects(delete_role(MODERATOR, MODS)),
        DomainError::MissingPermissions
    );
    assert_eq!(
        s.rejects(delete_role(MODERATOR, ADMINS)),
        DomainError::MissingPermissions
    );
    assert!(s.when(delete_role(OWNER, ADMINS)).is_ok());
}

#[test]
fn managed_roles_are_not_deleted_by_hand() {
    let s = Scenario::new().given([managed_role()]);
    assert!(matches!(
        s.rejects(delete_role(OWNER, BOT_ROLE)),
        DomainError::Invalid {
            field: "role_id",
            ..
        }
    ));
}

#[test]
fn deleting_roles_needs_manage_roles_and_a_known_role() {
    let s = Scenario::new();
    assert_eq!(
        s.rejects(delete_role(MEMBER, HELPERS)),
        DomainError::MissingPermissions
    );
    assert_eq!(
        s.rejects(delete_role(MODERATOR, RoleId::new(999))),
        DomainError::Unknown(Resource::Role)
    );
}

// --- ReorderRoles ---

#[test]
fn a_moderator_reorders_roles_below_their_own() {
    let mut s = Scenario::new();
    s.run(create_role(OWNER, NEW_ROLE, Permissions::NONE));
    assert_eq!(order(&s), vec![EVERYONE, NEW_ROLE, HELPERS, MODS, ADMINS]);
    let events = s.run(reorder(MODERATOR, &[(NEW_ROLE, 2), (HELPERS, 1)]));
    assert_eq!(
        events,
        vec![GuildEvent::RolesReordered {
            positions: vec![
                RolePosition {
                    role_id: NEW_ROLE,
                    position: 2
                },
                RolePosition {
                    role_id: HELPERS,
                    position: 1
                },
            ]
        }]
    );
    assert_eq!(order(&s), vec![EVERYONE, HELPERS, NEW_ROLE, MODS, ADMINS]);
}

#[test]
fn roles_cannot_move_to_or_above_the_actors_highest() {
    let s = Scenario::new();
    // MODS is at 2.
    assert_eq!(
        s.rejects(reorder(MODERATOR, &[(HELPERS, 2)])),
        DomainError::MissingPermissions
    );
    assert_eq!(
        s.rejects(reorder(MODERATOR, &[(HELPERS, 5)])),
        DomainError::MissingPermissions
    );
    assert_eq!(
        s.rejects(reorder(MODERATOR, &[(MODS, 1)])),
        DomainError::MissingPermissions
    );
    assert_eq!(
        s.rejects(reorder(MODERATOR, &[(ADMINS, 1)])),
        DomainError::MissingPermissions
    );
}

#[test]
fn everyone_stays_at_position_zero() {
    let s = Scenario::new();
    assert!(matches!(
        s.rejects(reorder(OWNER, &[(EVERYONE, 1)])),
        DomainError::Invalid {
            field: "positions",
            ..
        }
    ));
    assert_eq!(s.when(reorder(OWNER, &[(EVERYONE, 0)])).unwrap(), vec![]);
    assert!(matches!(
        s.rejects(reorder(OWNER, &[(HELPERS, 0)])),
        DomainError::Invalid {
            field: "positions",
            ..
        }
    ));
    assert!(matches!(
        s.rejects(reorder(OWNER, &[(HELPERS, 2), (HELPERS, 3)])),
        DomainError::Invalid {
            field: "positions",
            ..
        }
    ));
    assert_eq!(
        s.rejects(reorder(OWNER, &[(RoleId::new(999), 1)])),
        DomainError::Unknown(Resource::Role)
    );
}

#[test]
fn the_owner_reorders_any_role() {
    let mut s = Scenario::new();
    s.run(reorder(OWNER, &[(ADMINS, 1), (HELPERS, 3)]));
    assert_eq!(order(&s), vec![EVERYONE, ADMINS, MODS, HELPERS]);
    // Now HELPER_USER outranks MODERATOR.
    assert_eq!(
        s.rejects(kick(MODERATOR, HELPER_USER)),
        DomainError::MissingPermissions
    );
}

#[test]
fn reordering_needs_manage_roles() {
    let s = Scenario::new();
    assert_eq!(
        s.rejects(reorder(MEMBER, &[(HELPERS, 1)])),
        DomainError::MissingPermissions
    );
    assert_eq!(s.when(reorder(MODERATOR, &[(HELPERS, 1)])).unwrap(), vec![]);
}

// --- AddMemberRole / RemoveMemberRole ---

#[test]
fn a_moderator_gives_and_takes_roles_below_their_own() {
    let mut s = Scenario::new();
    let events = s.run(add_role(MODERATOR, MEMBER, HELPERS));
    assert_eq!(
        events,
        vec![GuildEvent::MemberUpdated {
            user_id: MEMBER,
            nick: None,
            roles: vec![HELPERS],
            communication_disabled_until_ms: None,
            mute: false,
            deaf: false,
        }]
    );
    assert!(s.state().member(MEMBER).unwrap().has_role(HELPERS));
    s.run(remove_role(MODERATOR, MEMBER, HELPERS));
    assert!(s.state().member(MEMBER).unwrap().roles.is_empty());
}

#[test]
fn roles_at_or_above_the_actors_highest_cannot_be_given_or_taken() {
    let s = Scenario::new();
    assert_eq!(
        s.rejects(add_role(MODERATOR, MEMBER, MODS)),
        DomainError::MissingPermissions
    );
    assert_eq!(
        s.rejects(add_role(MODERATOR, MEMBER, ADMINS)),
        DomainError::MissingPermissions
    );
    assert_eq!(
        s.rejects(remove_role(MODERATOR, ADMIN_USER, ADMINS)),
        DomainError::MissingPermissions
    );
    assert_eq!(
        s.rejects(add_role(ADMIN_USER, MEMBER, ADMINS)),
        DomainError::MissingPermissions
    );
}

#[test]
fn the_owner_gives_any_role() {
    let s = Scenario::new();
    assert!(s.when(add_role(OWNER, MEMBER, ADMINS)).is_ok());
}

#[test]
fn managed_roles_are_not_given_or_taken_by_hand() {
    let s = Scenario::new().given([managed_role()]);
    assert!(matches!(
        s.rejects(add_role(OWNER, MEMBER, BOT_ROLE)),
        DomainError::Invalid { field: "roles", .. }
    ));
    let s = s.given([GuildEvent::MemberUpdated {
        user_id: MEMBER,
        nick: None,
        roles: vec![BOT_ROLE],
        communication_disabled_until_ms: None,
        mute: false,
        deaf: false,
    }]);
    assert!(matches!(
        s.rejects(remove_role(OWNER, MEMBER, BOT_ROLE)),
        DomainError::Invalid { field: "roles", .. }
    ));
}

#[test]
fn giving_roles_needs_manage_roles_a_member_and_a_role() {
    let s = Scenario::new();
    assert_eq!(
        s.rejects(add_role(MEMBER, MEMBER, HELPERS)),
        DomainError::MissingPermissions
    );
    assert_eq!(
        s.rejects(add_role(OUTSIDER, MEMBER, HELPERS)),
        DomainError::MissingAccess
    );
    assert_eq!(
        s.rejects(add_role(MODERATOR, OUTSIDER, HELPERS)),
        DomainError::Unknown(Resource::Member)
    );
    assert_eq!(
        s.rejects(add_role(MODERATOR, MEMBER, RoleId::new(999))),
        DomainError::Unknown(Resource::Role)
    );
    assert!(matches!(
        s.rejects(add_role(MODERATOR, MEMBER, EVERYONE)),
        DomainError::Invalid {
            field: "role_id",
            ..
        }
    ));
}

#[test]
fn giving_a_role_already_held_or_taking_one_not_held_records_nothing() {
    let s = Scenario::new();
    assert_eq!(
        s.when(add_role(MODERATOR, HELPER_USER, HELPERS)).unwrap(),
        vec![]
    );
    assert_eq!(
        s.when(remove_role(MODERATOR, MEMBER, HELPERS)).unwrap(),
        vec![]
    );
}
