//! Members: nicknames, roles, timeouts, voice, kicks, bans, leaving.

use super::super::*;
use super::fixture::*;
use crate::member::{RemovalReason, MAX_TIMEOUT_MS};

fn member_of(s: &Scenario, user: UserId) -> Member {
    s.state().member(user).cloned().expect("a member")
}

// --- nicknames ---

#[test]
fn members_rename_themselves_with_change_nickname() {
    let mut s = Scenario::new();
    let events = s.run(nick(MEMBER, MEMBER, Some("Ada")));
    assert_eq!(
        events,
        vec![GuildEvent::MemberUpdated {
            user_id: MEMBER,
            nick: Some(Nickname::parse("Ada").unwrap()),
            roles: vec![],
            communication_disabled_until_ms: None,
            mute: false,
            deaf: false,
        }]
    );
    s.run(nick(MEMBER, MEMBER, None));
    assert_eq!(member_of(&s, MEMBER).nick, None);
}

#[test]
fn without_change_nickname_only_manage_nicknames_renames_oneself() {
    let mut s = Scenario::new();
    s.run(edit_role_permissions(
        OWNER,
        EVERYONE,
        Permissions::DEFAULT_EVERYONE.without(Permissions::CHANGE_NICKNAME),
    ));
    assert_eq!(
        s.rejects(nick(MEMBER, MEMBER, Some("Ada"))),
        DomainError::MissingPermissions
    );
    assert!(s.when(nick(MODERATOR, MODERATOR, Some("Mo"))).is_ok());
}

#[test]
fn renaming_others_needs_manage_nicknames_and_a_higher_role() {
    let s = Scenario::new();
    assert_eq!(
        s.rejects(nick(MEMBER, HELPER_USER, Some("x"))),
        DomainError::MissingPermissions
    );
    assert!(s.when(nick(MODERATOR, MEMBER, Some("x"))).is_ok());
    assert!(s.when(nick(MODERATOR, HELPER_USER, Some("x"))).is_ok());
    assert_eq!(
        s.rejects(nick(MODERATOR, ADMIN_USER, Some("x"))),
        DomainError::MissingPermissions
    );
    assert_eq!(
        s.rejects(nick(ADMIN_USER, OWNER, Some("x"))),
        DomainError::MissingPermissions
    );
    assert!(s.when(nick(OWNER, ADMIN_USER, Some("x"))).is_ok());
}

// --- roles ---

#[test]
fn a_roles_edit_checks_every_added_and_removed_role() {
    let s = Scenario::new();
    let events = s.when(set_roles(MODERATOR, MEMBER, &[HELPERS])).unwrap();
    assert!(matches!(
        &events[..],
        [GuildEvent::MemberUpdated { roles, .. }] if *roles == vec![HELPERS]
    ));
    // ADMINS stays as it is: only HELPERS is added, and MODERATOR may add it.
    assert!(s
        .when(set_roles(MODERATOR, ADMIN_USER, &[ADMINS, HELPERS]))
        .is_ok());
    assert_eq!(
        s.rejects(set_roles(MODERATOR, ADMIN_USER, &[])),
        DomainError::MissingPermissions
    );
    assert_eq!(
        s.rejects(set_roles(MODERATOR, MEMBER, &[MODS])),
        DomainError::MissingPermissions
    );
    assert_eq!(
        s.rejects(set_roles(MEMBER, MEMBER, &[HELPERS])),
        DomainError::MissingPermissions
    );
    assert_eq!(
        s.rejects(set_roles(MODERATOR, MEMBER, &[RoleId::new(999)])),
        DomainError::Unknown(Resource::Role)
    );
    assert!(matches!(
        s.rejects(set_roles(MODERATOR, MEMBER, &[EVERYONE])),
        DomainError::Invalid { field: "roles", .. }
    ));
    // The same roles, repeated or not, change nothing and need nothing.
    assert_eq!(
        s.when(set_roles(MEMBER, HELPER_USER, &[HELPERS, HELPERS]))
            .unwrap(),
        vec![]
    );
}

#[test]
fn a_roles_edit_keeps_managed_roles_as_they_are() {
    let s = Scenario::new().given([
        managed_role(),
        GuildEvent::MemberUpdated {
            user_id: MEMBER,
            nick: None,
            roles: vec![BOT_ROLE],
            communication_disabled_until_ms: None,
            mute: false,
            deaf: false,
        },
    ]);
    assert!(matches!(
        s.rejects(set_roles(OWNER, MEMBER, &[HELPERS])),
        DomainError::Invalid { field: "roles", .. }
    ));
    assert!(s
        .when(set_roles(OWNER, MEMBER, &[BOT_ROLE, HELPERS]))
        .is_ok());
    assert!(matches!(
        s.rejects(set_roles(OWNER, HELPER_USER, &[HELPERS, BOT_ROLE])),
        DomainError::Invalid { field: "roles", .. }
    ));
}

// --- timeouts ---

#[test]
fn a_timed_out_member_keeps_only_view_and_history_until_it_ends() {
    let mut s = Scenario::new();
    s.run(timeout(MODERATOR, MEMBER, Some(NOW + HOUR)));
    let state = s.state();
    assert_eq!(
        member_of(&s, MEMBER).communication_disabled_until_ms,
        Some(NOW + HOUR)
    );
    assert_eq!(
        state.guild_permissions(MEMBER, NOW),
        Permissions::VIEW_CHANNEL | Permissions::READ_MESSAGE_HISTORY
    );
    assert_eq!(
        state.channel_permissions(MEMBER, GENERAL, NOW),
        Permissions::VIEW_CHANNEL | Permissions::READ_MESSAGE_HISTORY
    );
    assert_eq!(
        state.guild_permissions(MEMBER, NOW + HOUR),
        Permissions::DEFAULT_EVERYONE
    );
    s.run(timeout(MODERATOR, MEMBER, None));
    assert_eq!(member_of(&s, MEMBER).communication_disabled_until_ms, None);
}

#[test]
fn timeouts_need_moderate_members_and_a_higher_role() {
    let s = Scenario::new();
    let until = Some(NOW + HOUR);
    assert_eq!(
        s.rejects(timeout(MEMBER, HELPER_USER, until)),
        DomainError::MissingPermissions
    );
    assert_eq!(
        s.rejects(timeout(HELPER_USER, MEMBER, until)),
        DomainError::MissingPermissions
    );
    assert_eq!(
        s.rejects(timeout(MODERATOR, MODERATOR, until)),
        DomainError::MissingPermissions
    );
    assert_eq!(
        s.rejects(timeout(MODERATOR, ADMIN_USER, until)),
        DomainError::MissingPermissions
    );
    assert!(s.when(timeout(MODERATOR, HELPER_USER, until)).is_ok());
}

#[test]
fn a_timeout_ends_at_most_28_days_ahead() {
    let s = Scenario::new();
    assert!(s
        .when(timeout(MODERATOR, MEMBER, Some(NOW + MAX_TIMEOUT_MS)))
        .is_ok());
    assert!(matches!(
        s.rejects(timeout(MODERATOR, MEMBER, Some(NOW + MAX_TIMEOUT_MS + 1))),
        DomainError::Invalid {
            field: "communication_disabled_until",
            ..
        }
    ));
}

#[test]
fn the_owner_and_administrators_cannot_be_timed_out() {
    let s = Scenario::new();
    assert_eq!(
        s.rejects(timeout(OWNER, ADMIN_USER, Some(NOW + HOUR))),
        DomainError::MissingPermissions
    );
    assert_eq!(
        s.rejects(timeout(OWNER, OWNER, Some(NOW + HOUR))),
        DomainError::MissingPermissions
    );
    assert_eq!(
        s.rejects(timeout(ADMIN_USER, OWNER, Some(NOW + HOUR))),
        DomainError::MissingPermissions
    );
}

#[test]
fn the_owner_times_out_anyone_else() {
    let s = Scenario::new();
    assert!(s.when(timeout(OWNER, MODERATOR, Some(NOW + HOUR))).is_ok());
}

#[test]
fn a_timed_out_moderator_cannot_moderate_until_the_timeout_ends() {
    let mut s = Scenario::new();
    s.run(timeout(OWNER, MODERATOR, Some(NOW + HOUR)));
    assert_eq!(
        s.rejects(kick_at(MODERATOR, MEMBER, NOW)),
        DomainError::MissingPermissions
    );
    assert!(s.when(kick_at(MODERATOR, MEMBER, NOW + HOUR)).is_ok());
    // Nor may they rename themselves meanwhile.
    assert_eq!(
        s.rejects(nick(MODERATOR, MODERATOR, Some("Mo"))),
        DomainError::MissingPermissions
    );
}

// --- voice ---

#[test]
fn mute_and_deafen_need_their_permissions() {
    let s = Scenario::new();
    let mute = |actor, user_id| {
        edit_member(
            actor,
            user_id,
            MemberFields {
                mute: Some(true),
                ..MemberFields::default()
            },
        )
    };
    let deaf = |actor, user_id| {
        edit_member(
            actor,
            user_id,
            MemberFields {
                deaf: Some(true),
                ..MemberFields::default()
            },
        )
    };
    assert_eq!(
        s.rejects(mute(MEMBER, HELPER_USER)),
        DomainError::MissingPermissions
    );
    assert_eq!(
        s.rejects(deaf(MEMBER, HELPER_USER)),
        DomainError::MissingPermissions
    );
    assert!(matches!(
        &s.when(mute(MODERATOR, ADMIN_USER)).unwrap()[..],
        [GuildEvent::MemberUpdated {
            mute: true,
            deaf: false,
            ..
        }]
    ));
    assert!(matches!(
        &s.when(deaf(MODERATOR, ADMIN_USER)).unwrap()[..],
        [GuildEvent::MemberUpdated {
            mute: false,
            deaf: true,
            ..
        }]
    ));
}

#[test]
fn a_member_edit_checks_each_field_and_records_one_event() {
    let s = Scenario::new();
    let both = MemberFields {
        nick: Some(Some(Nickname::parse("Quiet").unwrap())),
        mute: Some(true),
        ..MemberFields::default()
    };
    let events = s.when(edit_member(MODERATOR, MEMBER, both)).unwrap();
    assert_eq!(
        events,
        vec![GuildEvent::MemberUpdated {
            user_id: MEMBER,
            nick: Some(Nickname::parse("Quiet").unwrap()),
            roles: vec![],
            communication_disabled_until_ms: None,
            mute: true,
            deaf: false,
        }]
    );
    // A member may rename themselves but not mute themselves: the whole edit fails.
    let both = MemberFields {
        nick: Some(Some(Nickname::parse("Me").unwrap())),
        mute: Some(true),
        ..MemberFields::default()
    };
    assert_eq!(
        s.rejects(edit_member(MEMBER, MEMBER, both)),
        DomainError::MissingPermissions
    );
}

#[test]
fn a_member_edit_that_changes_nothing_records_nothing_and_needs_nothing() {
    let s = Scenario::new();
    let same = MemberFields {
        nick: Some(None),
        timeout: Some(None),
        mute: Some(false),
        deaf: Some(false),
        roles: Some(vec![]),
    };
    assert_eq!(s.when(edit_member(MEMBER, MEMBER, same)).unwrap(), vec![]);
}

#[test]
fn editing_a_non_member_is_unknown_member_and_outsiders_edit_nobody() {
    let s = Scenario::new();
    assert_eq!(
        s.rejects(nick(MODERATOR, OUTSIDER, Some("x"))),
        DomainError::Unknown(Resource::Member)
    );
    assert_eq!(
        s.rejects(nick(OUTSIDER, MEMBER, Some("x"))),
        DomainError::MissingAccess
    );
}

// --- kicks ---

#[test]
fn a_moderator_kicks_a_member_below_them_who_may_join_again() {
    let mut s = Scenario::new();
    let events = s.run(kick(MODERATOR, HELPER_USER));
    assert_eq!(
        events,
        vec![GuildEvent::MemberRemoved {
            user_id: HELPER_USER,
            reason: RemovalReason::Kick
        }]
    );
    assert!(!s.state().is_member(HELPER_USER));
    s.run(join(HELPER_USER));
    // They come back without their roles.
    assert!(member_of(&s, HELPER_USER).roles.is_empty());
}

#[test]
fn kicking_needs_kick_members_and_a_higher_role() {
    let s = Scenario::new();
    assert_eq!(
        s.rejects(kick(MEMBER, HELPER_USER)),
        DomainError::MissingPermissions
    );
    assert_eq!(
        s.rejects(kick(HELPER_USER, MEMBER)),
        DomainError::MissingPermissions
    );
    assert_eq!(
        s.rejects(kick(MODERATOR, ADMIN_USER)),
        DomainError::MissingPermissions
    );
    assert_eq!(
        s.rejects(kick(MODERATOR, MODERATOR)),
        DomainError::MissingPermissions
    );
    assert_eq!(
        s.rejects(kick(MODERATOR, OUTSIDER)),
        DomainError::Unknown(Resource::Member)
    );
    assert_eq!(
        s.rejects(kick(OUTSIDER, MEMBER)),
        DomainError::MissingAccess
    );
}

#[test]
fn the_owner_cannot_be_kicked_or_banned_even_by_an_administrator() {
    let s = Scenario::new();
    assert_eq!(
        s.rejects(kick(ADMIN_USER, OWNER)),
        DomainError::MissingPermissions
    );
    assert_eq!(
        s.rejects(kick(OWNER, OWNER)),
        DomainError::MissingPermissions
    );
    assert_eq!(
        s.rejects(ban(ADMIN_USER, OWNER, 0)),
        DomainError::MissingPermissions
    );
}

#[test]
fn the_owner_kicks_and_bans_administrators() {
    let s = Scenario::new();
    assert!(s.when(kick(OWNER, ADMIN_USER)).is_ok());
    assert!(s.when(ban(OWNER, ADMIN_USER, 0)).is_ok());
}

// --- bans ---

#[test]
fn a_ban_removes_the_member_and_blocks_joining() {
    let mut s = Scenario::new();
    let events = s.run(ban(MODERATOR, MEMBER, 3600));
    assert_eq!(
        events,
        vec![
            GuildEvent::MemberBanned {
                user_id: MEMBER,
                delete_message_seconds: 3600
            },
            GuildEvent::MemberRemoved {
                user_id: MEMBER,
                reason: RemovalReason::Ban
            },
        ]
    );
    let state = s.state();
    assert!(!state.is_member(MEMBER));
    assert!(state.is_banned(MEMBER));
    assert_eq!(s.rejects(join(MEMBER)), DomainError::Banned);
}

#[test]
fn users_who_are_not_members_can_be_banned_once() {
    let mut s = Scenario::new();
    assert_eq!(
        s.run(ban(MODERATOR, OUTSIDER, 0)),
        vec![GuildEvent::MemberBanned {
            user_id: OUTSIDER,
            delete_message_seconds: 0
        }]
    );
    assert_eq!(s.when(ban(MODERATOR, OUTSIDER, 0)).unwrap(), vec![]);
    assert_eq!(s.rejects(join(OUTSIDER)), DomainError::Banned);
}

#[test]
fn banning_needs_ban_members_and_a_higher_role_over_members() {
    let s = Scenario::new();
    assert_eq!(
        s.rejects(ban(MEMBER, HELPER_USER, 0)),
        DomainError::MissingPermissions
    );
    assert_eq!(
        s.rejects(ban(MEMBER, OUTSIDER, 0)),
        DomainError::MissingPermissions
    );
    assert_eq!(
        s.rejects(ban(MODERATOR, ADMIN_USER, 0)),
        DomainError::MissingPermissions
    );
    assert_eq!(
        s.rejects(ban(MODERATOR, MODERATOR, 0)),
        DomainError::MissingPermissions
    );
}

#[test]
fn a_ban_deletes_at_most_seven_days_of_messages() {
    let s = Scenario::new();
    assert!(s.when(ban(MODERATOR, MEMBER, 604_800)).is_ok());
    assert!(matches!(
        s.rejects(ban(MODERATOR, MEMBER, 604_801)),
        DomainError::Invalid {
            field: "delete_message_seconds",
            ..
        }
    ));
}

#[test]
fn unbanning_lets_the_user_join_again() {
    let mut s = Scenario::new();
    s.run(ban(MODERATOR, MEMBER, 0));
    assert_eq!(
        s.rejects(unban(HELPER_USER, MEMBER)),
        DomainError::MissingPermissions
    );
    assert_eq!(
        s.run(unban(MODERATOR, MEMBER)),
        vec![GuildEvent::MemberUnbanned { user_id: MEMBER }]
    );
    assert!(!s.state().is_banned(MEMBER));
    assert!(s.when(join(MEMBER)).is_ok());
}

#[test]
fn unbanning_someone_not_banned_is_unknown() {
    let s = Scenario::new();
    assert_eq!(
        s.rejects(unban(MODERATOR, OUTSIDER)),
        DomainError::Unknown(Resource::Member)
    );
}

// --- leaving ---

#[test]
fn members_leave_but_the_owner_cannot() {
    let mut s = Scenario::new();
    assert_eq!(
        s.run(GuildCommand::Leave { user_id: MEMBER }),
        vec![GuildEvent::MemberRemoved {
            user_id: MEMBER,
            reason: RemovalReason::Leave
        }]
    );
    assert_eq!(
        s.rejects(GuildCommand::Leave { user_id: MEMBER }),
        DomainError::Unknown(Resource::Guild)
    );
    assert!(matches!(
        s.rejects(GuildCommand::Leave { user_id: OWNER }),
        DomainError::Invalid { .. }
    ));
}
