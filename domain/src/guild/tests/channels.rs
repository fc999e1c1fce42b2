//! Channels: overwrites and their evaluation, category sync, edit, delete.

use super::super::*;
use super::fixture::*;
use crate::snowflake;

// --- evaluating overwrites ---

#[test]
fn an_everyone_deny_hides_a_channel_unless_a_role_allows_it() {
    let mut s = Scenario::new();
    s.run(set_overwrite(OWNER, GENERAL, hide_from_everyone()));
    s.run(set_overwrite(
        OWNER,
        GENERAL,
        Overwrite::role(HELPERS, Permissions::VIEW_CHANNEL, Permissions::NONE),
    ));
    let state = s.state();
    assert_eq!(
        state.channel_permissions(MEMBER, GENERAL, NOW),
        Permissions::NONE
    );
    assert_eq!(
        state.channel_permissions(MODERATOR, GENERAL, NOW),
        Permissions::NONE
    );
    let helper = state.channel_permissions(HELPER_USER, GENERAL, NOW);
    assert!(helper.contains(Permissions::VIEW_CHANNEL | Permissions::SEND_MESSAGES));
    assert_eq!(
        state.channel_permissions(ADMIN_USER, GENERAL, NOW),
        Permissions::ALL
    );
    assert_eq!(
        state.channel_permissions(OWNER, GENERAL, NOW),
        Permissions::ALL
    );
    assert_eq!(
        state.channel_permissions(OUTSIDER, GENERAL, NOW),
        Permissions::NONE
    );
}

#[test]
fn a_members_own_overwrite_beats_their_roles_overwrites() {
    let mut s = Scenario::new();
    s.run(set_overwrite(
        OWNER,
        GENERAL,
        Overwrite::role(HELPERS, Permissions::SEND_TTS_MESSAGES, Permissions::NONE),
    ));
    s.run(set_overwrite(
        OWNER,
        GENERAL,
        Overwrite::member(
            HELPER_USER,
            Permissions::NONE,
            Permissions::SEND_TTS_MESSAGES,
        ),
    ));
    assert!(!s
        .state()
        .channel_permissions(HELPER_USER, GENERAL, NOW)
        .contains(Permissions::SEND_TTS_MESSAGES));
}

// --- SetOverwrite / DeleteOverwrite ---

#[test]
fn setting_an_overwrite_records_it_and_replaces_the_targets_previous_one() {
    let mut s = Scenario::new();
    let first = Overwrite::role(HELPERS, Permissions::MANAGE_MESSAGES, Permissions::NONE);
    assert_eq!(
        s.run(set_overwrite(MODERATOR, GENERAL, first)),
        vec![GuildEvent::ChannelOverwriteSet {
            channel_id: GENERAL,
            overwrite: first
        }]
    );
    let second = Overwrite::role(HELPERS, Permissions::NONE, Permissions::ADD_REACTIONS);
    s.run(set_overwrite(MODERATOR, GENERAL, second));
    assert_eq!(s.state().effective_overwrites(GENERAL), &[second]);
    assert_eq!(
        s.when(set_overwrite(MODERATOR, GENERAL, second)).unwrap(),
        vec![]
    );
}

#[test]
fn setting_overwrites_needs_manage_roles_in_that_channel() {
    let mut s = Scenario::new();
    let o = Overwrite::role(HELPERS, Permissions::SEND_MESSAGES, Permissions::NONE);
    assert_eq!(
        s.rejects(set_overwrite(MEMBER, GENERAL, o)),
        DomainError::MissingPermissions
    );
    assert_eq!(
        s.rejects(set_overwrite(OUTSIDER, GENERAL, o)),
        DomainError::MissingAccess
    );
    assert_eq!(
        s.rejects(set_overwrite(MODERATOR, ChannelId::new(999), o)),
        DomainError::Unknown(Resource::Channel)
    );
    // MANAGE_ROLES given in this channel only is enough.
    s.run(set_overwrite(
        OWNER,
        GENERAL,
        Overwrite::member(MEMBER, Permissions::MANAGE_ROLES, Permissions::NONE),
    ));
    assert!(s.when(set_overwrite(MEMBER, GENERAL, o)).is_ok());
    // And MANAGE_ROLES denied in this channel takes it away.
    s.run(set_overwrite(
        OWNER,
        GENERAL,
        Overwrite::member(MODERATOR, Permissions::NONE, Permissions::MANAGE_ROLES),
    ));
    assert_eq!(
        s.rejects(set_overwrite(MODERATOR, GENERAL, o)),
        DomainError::MissingPermissions
    );
}

#[test]
fn who_cannot_view_the_channel_gets_missing_access() {
    let mut s = Scenario::new();
    s.run(set_overwrite(OWNER, GENERAL, hide_from_everyone()));
    let o = Overwrite::role(HELPERS, Permissions::SEND_MESSAGES, Permissions::NONE);
    assert_eq!(
        s.rejects(set_overwrite(MODERATOR, GENERAL, o)),
        DomainError::MissingAccess
    );
    assert_eq!(
        s.rejects(edit_channel(
            MODERATOR,
            GENERAL,
            ChannelFields {
                nsfw: Some(true),
                ..ChannelFields::default()
            }
        )),
        DomainError::MissingAccess
    );
    assert_eq!(
        s.rejects(delete_channel(MODERATOR, GENERAL)),
        DomainError::MissingAccess
    );
}

#[test]
fn an_overwrite_allows_or_denies_only_what_the_actor_holds() {
    let s = Scenario::new();
    for o in [
        Overwrite::role(HELPERS, Permissions::MANAGE_GUILD, Permissions::NONE),
        Overwrite::role(HELPERS, Permissions::NONE, Permissions::MANAGE_GUILD),
        Overwrite::role(HELPERS, Permissions::ADMINISTRATOR, Permissions::NONE),
    ] {
        assert_eq!(
            s.rejects(set_overwrite(MODERATOR, GENERAL, o)),
            DomainError::MissingPermissions
        );
        assert!(s.when(set_overwrite(ADMIN_USER, GENERAL, o)).is_ok());
    }
}

#[test]
fn overwrites_for_unknown_roles_are_rejected() {
    let s = Scenario::new();
    assert_eq!(
        s.rejects(set_overwrite(
            OWNER,
            GENERAL,
            Overwrite::role(RoleId::new(999), Permissions::NONE, Permissions::NONE)
        )),
        DomainError::Unknown(Resource::Role)
    );
}

#[test]
fn deleting_an_overwrite_restores_the_permissions_beneath() {
    let mut s = Scenario::new();
    s.run(set_overwrite(OWNER, GENERAL, hide_from_everyone()));
    assert!(!s.view(MEMBER, GENERAL));
    let target = OverwriteTarget::Role(EVERYONE);
    assert_eq!(
        s.rejects(delete_overwrite(MEMBER, GENERAL, target)),
        DomainError::MissingAccess
    );
    assert_eq!(
        s.run(delete_overwrite(ADMIN_USER, GENERAL, target)),
        vec![GuildEvent::ChannelOverwriteDeleted {
            channel_id: GENERAL,
            target
        }]
    );
    assert!(s.view(MEMBER, GENERAL));
    assert_eq!(
        s.when(delete_overwrite(ADMIN_USER, GENERAL, target))
            .unwrap(),
        vec![]
    );
}

#[test]
fn an_overwrite_with_bits_the_actor_lacks_is_not_theirs_to_delete() {
    let mut s = Scenario::new();
    s.run(set_overwrite(
        OWNER,
        GENERAL,
        Overwrite::role(HELPERS, Permissions::MANAGE_GUILD, Permissions::NONE),
    ));
    assert_eq!(
        s.rejects(delete_overwrite(
            MODERATOR,
            GENERAL,
            OverwriteTarget::Role(HELPERS)
        )),
        DomainError::MissingPermissions
    );
    assert_eq!(
        s.rejects(delete_overwrite(
            HELPER_USER,
            GENERAL,
            OverwriteTarget::Role(HELPERS)
        )),
        DomainError::MissingPermissions
    );
}

// --- category sync ---

#[test]
fn a_channel_created_in_a_category_follows_the_categorys_overwrites() {
    let mut s = Scenario::new();
    s.run(create_channel(OWNER, CATEGORY, ChannelKind::Category, None));
    s.run(set_overwrite(OWNER, CATEGORY, hide_from_everyone()));
    s.run(create_channel(
        OWNER,
        IN_CATEGORY,
        ChannelKind::Text,
        Some(CATEGORY),
    ));
    let state = s.state();
    let child = &state.channels[&IN_CATEGORY];
    assert!(child.permission_synced);
    assert_eq!(child.overwrites, vec![hide_from_everyone()]);
    assert!(!s.view(MEMBER, IN_CATEGORY));
    assert!(!s.view(HELPER_USER, IN_CATEGORY));
    // An edit of the category applies to the synced channel at once.
    s.run(set_overwrite(
        OWNER,
        CATEGORY,
        Overwrite::role(HELPERS, Permissions::VIEW_CHANNEL, Permissions::NONE),
    ));
    assert!(s.view(HELPER_USER, IN_CATEGORY));
    assert!(!s.view(MEMBER, IN_CATEGORY));
    assert!(s.state().channels[&IN_CATEGORY].permission_synced);
}

#[test]
fn a_channels_own_overwrite_ends_the_sync_starting_from_the_categorys() {
    let mut s = Scenario::new().with_category();
    s.run(set_overwrite(OWNER, CATEGORY, hide_from_everyone()));
    let helpers_view = Overwrite::role(HELPERS, Permissions::VIEW_CHANNEL, Permissions::NONE);
    s.run(set_overwrite(OWNER, CATEGORY, helpers_view));
    let member_view = Overwrite::member(MEMBER, Permissions::VIEW_CHANNEL, Permissions::NONE);
    s.run(set_overwrite(OWNER, IN_CATEGORY, member_view));
    let state = s.state();
    let child = &state.channels[&IN_CATEGORY];
    assert!(!child.permission_synced);
    assert_eq!(
        child.overwrites,
        vec![hide_from_everyone(), helpers_view, member_view]
    );
    assert!(s.view(MEMBER, IN_CATEGORY));
    // The category's edits no longer reach it.
    s.run(delete_overwrite(
        OWNER,
        CATEGORY,
        OverwriteTarget::Role(HELPERS),
    ));
    assert!(!s.view(HELPER_USER, CATEGORY));
    assert!(s.view(HELPER_USER, IN_CATEGORY));
}

#[test]
fn deleting_an_overwrite_of_a_synced_channel_ends_the_sync_too() {
    let mut s = Scenario::new().with_category();
    s.run(set_overwrite(OWNER, CATEGORY, hide_from_everyone()));
    s.run(delete_overwrite(
        OWNER,
        IN_CATEGORY,
        OverwriteTarget::Role(EVERYONE),
    ));
    let state = s.state();
    assert!(!state.channels[&IN_CATEGORY].permission_synced);
    assert!(state.effective_overwrites(IN_CATEGORY).is_empty());
    assert!(s.view(MEMBER, IN_CATEGORY));
    assert!(!s.view(MEMBER, CATEGORY));
}

// --- EditChannel ---

#[test]
fn editing_a_channel_records_its_whole_new_state() {
    let mut s = Scenario::new();
    let events = s.run(edit_channel(
        MODERATOR,
        GENERAL,
        ChannelFields {
            name: Some(ChannelName::parse("chat").unwrap()),
            topic: Some(Some(Topic::parse("say hi").unwrap())),
            nsfw: Some(true),
            position: Some(3),
            rate_limit_per_user: Some(10),
            ..ChannelFields::default()
        },
    ));
    assert_eq!(
        events,
        vec![GuildEvent::ChannelUpdated {
            channel_id: GENERAL,
            kind: ChannelKind::Text,
            name: ChannelName::parse("chat").unwrap(),
            position: 3,
            parent_id: None,
            topic: Some(Topic::parse("say hi").unwrap()),
            nsfw: true,
            rate_limit_per_user: 10,
            permission_synced: false,
        }]
    );
    let state = s.state();
    let c = &state.channels[&GENERAL];
    assert_eq!(c.name.as_str(), "chat");
    assert_eq!(c.rate_limit_per_user, 10);
    assert_eq!(c.topic.as_ref().map(Topic::as_str), Some("say hi"));
    assert!(c.nsfw);
    assert_eq!(
        s.when(edit_channel(
            MODERATOR,
            GENERAL,
            ChannelFields {
                nsfw: Some(true),
                ..ChannelFields::default()
            }
        ))
        .unwrap(),
        vec![]
    );
}

#[test]
fn editing_channels_needs_manage_channels_in_that_channel() {
    let mut s = Scenario::new();
    let nsfw = || ChannelFields {
        nsfw: Some(true),
        ..ChannelFields::default()
    };
    assert_eq!(
        s.rejects(edit_channel(MEMBER, GENERAL, nsfw())),
        DomainError::MissingPermissions
    );
    assert_eq!(
        s.rejects(edit_channel(OUTSIDER, GENERAL, nsfw())),
        DomainError::MissingAccess
    );
    s.run(set_overwrite(
        OWNER,
        GENERAL,
        Overwrite::member(MODERATOR, Permissions::NONE, Permissions::MANAGE_CHANNELS),
    ));
    assert_eq!(
        s.rejects(edit_channel(MODERATOR, GENERAL, nsfw())),
        DomainError::MissingPermissions
    );
    s.run(set_overwrite(
        OWNER,
        GENERAL,
        Overwrite::member(MEMBER, Permissions::MANAGE_CHANNELS, Permissions::NONE),
    ));
    assert!(s.when(edit_channel(MEMBER, GENERAL, nsfw())).is_ok());
}

#[test]
fn channel_edits_are_checked() {
    let s = Scenario::new().with_category();
    let invalid = |f: ChannelFields, channel| match s.rejects(edit_channel(OWNER, channel, f)) {
        DomainError::Invalid { field, .. } => field,
        other => panic!("{other:?}"),
    };
    let slow = |r| ChannelFields {
        rate_limit_per_user: Some(r),
        ..ChannelFields::default()
    };
    assert!(s.when(edit_channel(OWNER, GENERAL, slow(21_600))).is_ok());
    assert_eq!(invalid(slow(21_601), GENERAL), "rate_limit_per_user");
    assert_eq!(invalid(slow(5), CATEGORY), "rate_limit_per_user");
    let parent = |p| ChannelFields {
        parent_id: Some(Some(p)),
        ..ChannelFields::default()
    };
    assert_eq!(invalid(parent(GENERAL), IN_CATEGORY), "parent_id");
    assert_eq!(invalid(parent(CATEGORY), CATEGORY), "parent_id");
    assert_eq!(invalid(parent(ChannelId::new(999)), GENERAL), "parent_id");
    let position = ChannelFields {
        position: Some(-1),
        ..ChannelFields::default()
    };
    assert_eq!(invalid(position, GENERAL), "position");
    let topic = ChannelFields {
        topic: Some(Some(Topic::parse("t").unwrap())),
        ..ChannelFields::default()
    };
    assert_eq!(invalid(topic, CATEGORY), "topic");
    assert_eq!(
        s.rejects(edit_channel(
            OWNER,
            ChannelId::new(999),
            ChannelFields::default()
        )),
        DomainError::Unknown(Resource::Channel)
    );
}

#[test]
fn a_synced_channel_moved_out_of_its_category_keeps_the_overwrites_it_had() {
    let mut s = Scenario::new().with_category();
    s.run(set_overwrite(OWNER, CATEGORY, hide_from_everyone()));
    let events = s.run(edit_channel(
        OWNER,
        IN_CATEGORY,
        ChannelFields {
            parent_id: Some(None),
            ..ChannelFields::default()
        },
    ));
    assert!(matches!(
        &events[..],
        [GuildEvent::ChannelUpdated {
            parent_id: None,
            permission_synced: false,
            ..
        }]
    ));
    let state = s.state();
    assert_eq!(
        state.channels[&IN_CATEGORY].overwrites,
        vec![hide_from_everyone()]
    );
    assert!(!s.view(MEMBER, IN_CATEGORY));
}

#[test]
fn lock_permissions_syncs_a_channel_with_its_new_category() {
    let mut s = Scenario::new().with_category();
    s.run(set_overwrite(OWNER, CATEGORY, hide_from_everyone()));
    let mut moved = s.state();
    // Moved without lock_permissions: its own (empty) overwrites still apply.
    let into = |lock| ChannelFields {
        parent_id: Some(Some(CATEGORY)),
        lock_permissions: lock,
        ..ChannelFields::default()
    };
    for e in decide(&moved, edit_channel(OWNER, GENERAL, into(false))).unwrap() {
        moved.evolve(&e);
    }
    assert!(!moved.channels[&GENERAL].permission_synced);
    assert!(moved
        .channel_permissions(MEMBER, GENERAL, NOW)
        .contains(Permissions::VIEW_CHANNEL));
    // With it, the category's apply.
    let events = s.run(edit_channel(OWNER, GENERAL, into(true)));
    assert!(matches!(
        &events[..],
        [GuildEvent::ChannelUpdated {
            permission_synced: true,
            ..
        }]
    ));
    assert!(!s.view(MEMBER, GENERAL));
}

// --- DeleteChannel ---

#[test]
fn deleting_a_category_leaves_its_channels_without_a_parent() {
    let mut s = Scenario::new().with_category();
    s.run(set_overwrite(OWNER, CATEGORY, hide_from_everyone()));
    assert_eq!(
        s.run(delete_channel(ADMIN_USER, CATEGORY)),
        vec![GuildEvent::ChannelDeleted {
            channel_id: CATEGORY
        }]
    );
    let state = s.state();
    assert!(!state.channels.contains_key(&CATEGORY));
    let child = &state.channels[&IN_CATEGORY];
    assert_eq!(child.parent_id, None);
    assert!(!child.permission_synced);
    assert_eq!(child.overwrites, vec![hide_from_everyone()]);
}

#[test]
fn deleting_a_channel_needs_manage_channels() {
    let s = Scenario::new();
    assert_eq!(
        s.rejects(delete_channel(MEMBER, GENERAL)),
        DomainError::MissingPermissions
    );
    assert_eq!(
        s.rejects(delete_channel(MODERATOR, ChannelId::new(999))),
        DomainError::Unknown(Resource::Channel)
    );
    assert!(s.when(delete_channel(MODERATOR, GENERAL)).is_ok());
}

// --- CreateChannel ---

#[test]
fn a_timed_out_moderator_cannot_create_channels_while_the_timeout_lasts() {
    let mut s = Scenario::new();
    s.run(timeout(OWNER, MODERATOR, Some(NOW + HOUR)));
    // A channel id is a snowflake made now: the time to judge the timeout at.
    let id_at = |ms| ChannelId::new(snowflake::compose(ms, 0, 0, 1));
    assert_eq!(
        s.rejects(create_channel(
            MODERATOR,
            id_at(NOW),
            ChannelKind::Text,
            None
        )),
        DomainError::MissingPermissions
    );
    assert!(s
        .when(create_channel(
            MODERATOR,
            id_at(NOW + HOUR),
            ChannelKind::Text,
            None
        ))
        .is_ok());
}

#[test]
fn roles_with_manage_channels_create_channels() {
    let s = Scenario::new();
    assert!(s
        .when(create_channel(
            MODERATOR,
            ChannelId::new(400),
            ChannelKind::Voice,
            None
        ))
        .is_ok());
    assert_eq!(
        s.rejects(create_channel(
            HELPER_USER,
            ChannelId::new(400),
            ChannelKind::Voice,
            None
        )),
        DomainError::MissingPermissions
    );
}
