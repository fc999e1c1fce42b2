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

fn create_channel(actor: UserId, id: u64, kind: ChannelKind, parent: Option<u64>) -> GuildCommand {
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
    assert!(matches!(events[0], GuildEvent::GuildCreated { owner_id, .. } if owner_id == OWNER));
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

#[test]
fn a_banned_user_cannot_join() {
    let mut history = created();
    history.push(GuildEvent::MemberBanned {
        user_id: OTHER,
        delete_message_seconds: 0,
    });
    let err = decide(
        &given(&history),
        GuildCommand::Join {
            user_id: OTHER,
            invite_code: Some("abc".into()),
        },
    );
    assert_eq!(err.unwrap_err(), DomainError::Banned);
}

#[test]
fn a_new_guild_has_an_everyone_role_at_position_zero() {
    let state = given::<GuildState>(&created());
    let everyone = state.role(GUILD.cast()).expect("@everyone");
    assert_eq!(everyone.position, 0);
    assert_eq!(everyone.name.as_str(), "@everyone");
    assert_eq!(everyone.permissions, Permissions::DEFAULT_EVERYONE);
    assert_eq!(state.everyone_role_id(), Some(GUILD.cast()));
}

#[test]
fn every_new_event_reads_back_as_it_was_written() {
    use crate::event::DomainEvent;
    use crate::member::RemovalReason;
    let role = Role {
        id: RoleId::new(7),
        name: RoleName::parse("Mods").unwrap(),
        permissions: Permissions::KICK_MEMBERS,
        color: 0x00ff00,
        hoist: true,
        mentionable: false,
        position: 3,
        managed: false,
        bot_id: None,
    };
    let events = vec![
        GuildEvent::RoleCreated { role: role.clone() },
        GuildEvent::RoleUpdated { role },
        GuildEvent::RoleDeleted {
            role_id: RoleId::new(7),
        },
        GuildEvent::RolesReordered {
            positions: vec![RolePosition {
                role_id: RoleId::new(7),
                position: 2,
            }],
        },
        GuildEvent::MemberUpdated {
            user_id: OTHER,
            nick: Some(Nickname::parse("Ada").unwrap()),
            roles: vec![RoleId::new(7)],
            communication_disabled_until_ms: Some(5),
            mute: true,
            deaf: false,
        },
        GuildEvent::MemberRemoved {
            user_id: OTHER,
            reason: RemovalReason::Kick,
        },
        GuildEvent::MemberBanned {
            user_id: OTHER,
            delete_message_seconds: 60,
        },
        GuildEvent::MemberUnbanned { user_id: OTHER },
        GuildEvent::ChannelUpdated {
            channel_id: GENERAL,
            kind: ChannelKind::Text,
            name: ChannelName::parse("chat").unwrap(),
            position: 2,
            parent_id: Some(ChannelId::new(9)),
            topic: Some(Topic::parse("hi").unwrap()),
            nsfw: true,
            rate_limit_per_user: 30,
            permission_synced: true,
        },
        GuildEvent::ChannelDeleted {
            channel_id: GENERAL,
        },
        GuildEvent::ChannelOverwriteSet {
            channel_id: GENERAL,
            overwrite: Overwrite::member(OTHER, Permissions::VIEW_CHANNEL, Permissions::NONE),
        },
        GuildEvent::ChannelOverwriteDeleted {
            channel_id: GENERAL,
            target: OverwriteTarget::Member(OTHER),
        },
    ];
    for e in events {
        let data = e.to_data();
        let back = GuildEvent::from_stored(e.event_type(), e.version(), data).unwrap();
        assert_eq!(back, e);
    }
    let deleted = GuildEvent::ChannelOverwriteDeleted {
        channel_id: GENERAL,
        target: OverwriteTarget::Role(RoleId::new(7)),
    };
    assert_eq!(
        deleted.to_data(),
        serde_json::json!({"channel_id": "101", "target": {"id": "7", "type": 0}})
    );
}

mod channels;
mod fixture;
mod members;
mod roles;

#[test]
fn the_owner_renames_the_guild_and_members_without_manage_guild_cannot() {
    let mut history = created();
    history.extend(
        decide(
            &given(&history),
            GuildCommand::Join {
                user_id: OTHER,
                invite_code: None,
            },
        )
        .unwrap(),
    );
    let rename = |actor| GuildCommand::Rename {
        actor,
        name: GuildName::parse("Renamed").unwrap(),
        now_ms: 0,
    };
    let renamed = decide(&given(&history), rename(OWNER)).unwrap();
    assert_eq!(
        renamed,
        vec![GuildEvent::GuildRenamed {
            name: GuildName::parse("Renamed").unwrap()
        }]
    );
    assert_eq!(
        decide(&given(&history), rename(OTHER)).unwrap_err(),
        DomainError::MissingPermissions
    );
    assert_eq!(
        decide(&given(&history), rename(UserId::new(9))).unwrap_err(),
        DomainError::MissingAccess
    );
    history.extend(renamed);
    let state: GuildState = given(&history);
    assert_eq!(state.name.as_ref().map(GuildName::as_str), Some("Renamed"));
    assert_eq!(decide(&state, rename(OWNER)).unwrap(), vec![], "same name");
}
