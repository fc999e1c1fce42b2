//! Given (guild and voice events) / when (a voice command) / then (events or an error).

use super::*;
use crate::guild::{self, GuildCommand, GuildEvent};
use crate::id::RoleId;
use crate::role::RoleName;
use crate::testing::given;
use crate::values::{ChannelName, GuildName};

const OWNER: UserId = UserId::new(1);
const ALICE: UserId = UserId::new(2);
const BOB: UserId = UserId::new(3);
const GUILD: GuildId = GuildId::new(100);
const TEXT: ChannelId = ChannelId::new(101);
const LOUNGE: ChannelId = ChannelId::new(102);
const STAGE: ChannelId = ChannelId::new(103);
const MODS: RoleId = RoleId::new(104);
const NOW: u64 = 1_700_000_000_000;

/// Apply guild commands in order, as the aggregate would.
fn guild_after(commands: Vec<GuildCommand>) -> GuildState {
    let mut events: Vec<GuildEvent> = Vec::new();
    for c in commands {
        let state: GuildState = given(&events);
        events.extend(guild::decide(&state, c).expect("guild setup"));
    }
    given(&events)
}

fn channel(id: ChannelId, kind: ChannelKind) -> GuildCommand {
    GuildCommand::CreateChannel {
        actor: OWNER,
        channel_id: id,
        kind,
        name: ChannelName::parse("room").unwrap(),
        parent_id: None,
        topic: None,
        nsfw: false,
        position: None,
    }
}

fn join(user: UserId) -> GuildCommand {
    GuildCommand::Join {
        user_id: user,
        invite_code: None,
    }
}

/// A guild with a text channel, two voice channels, and Alice and Bob as members.
fn setup() -> Vec<GuildCommand> {
    vec![
        GuildCommand::Create {
            guild_id: GUILD,
            name: GuildName::parse("Chorus").unwrap(),
            owner_id: OWNER,
            general_channel_id: TEXT,
        },
        channel(LOUNGE, ChannelKind::Voice),
        channel(STAGE, ChannelKind::Voice),
        join(ALICE),
        join(BOB),
    ]
}

fn guild() -> GuildState {
    guild_after(setup())
}

/// Alice is a moderator (MOVE_MEMBERS).
fn guild_with_mod_alice() -> GuildState {
    let mut c = setup();
    c.push(GuildCommand::CreateRole {
        actor: OWNER,
        role_id: MODS,
        name: RoleName::parse("mods").unwrap(),
        permissions: Permissions::MOVE_MEMBERS.union(Permissions::MUTE_MEMBERS),
        color: 0,
        hoist: false,
        mentionable: false,
        now_ms: NOW,
    });
    c.push(GuildCommand::AddMemberRole {
        actor: OWNER,
        user_id: ALICE,
        role_id: MODS,
        now_ms: NOW,
    });
    guild_after(c)
}

fn update(user: UserId, channel: Option<ChannelId>) -> VoiceCommand {
    VoiceCommand::Update {
        user_id: user,
        session_id: format!("session-{user}"),
        channel_id: channel,
        self_mute: false,
        self_deaf: false,
        now_ms: NOW,
    }
}

fn changed(user: UserId, channel: Option<ChannelId>) -> VoiceEvent {
    VoiceEvent::VoiceStateChanged {
        user_id: user,
        channel_id: channel,
        session_id: channel.map(|_| format!("session-{user}")),
        self_mute: false,
        self_deaf: false,
        at_ms: NOW,
    }
}

/// Voice states after `events`.
fn voice(events: &[VoiceEvent]) -> VoiceStates {
    given(events)
}

#[test]
fn a_member_joins_a_voice_channel_moves_and_leaves() {
    let g = guild();
    let joined = decide(&g, &voice(&[]), update(ALICE, Some(LOUNGE))).unwrap();
    assert_eq!(joined, vec![changed(ALICE, Some(LOUNGE))]);
    let moved = decide(&g, &voice(&joined), update(ALICE, Some(STAGE))).unwrap();
    assert_eq!(moved, vec![changed(ALICE, Some(STAGE))]);
    let after = voice(&[joined.clone(), moved.clone()].concat());
    assert_eq!(after.count_in(LOUNGE), 0);
    assert_eq!(after.members_of(STAGE).collect::<Vec<_>>(), vec![ALICE]);
    let left = decide(&g, &after, update(ALICE, None)).unwrap();
    assert_eq!(left, vec![changed(ALICE, None)]);
    assert!(voice(&[joined, moved, left].concat()).states.is_empty());
}

#[test]
fn repeating_the_same_state_or_leaving_when_not_in_voice_records_nothing() {
    let g = guild();
    let joined = decide(&g, &voice(&[]), update(ALICE, Some(LOUNGE))).unwrap();
    assert_eq!(
        decide(&g, &voice(&joined), update(ALICE, Some(LOUNGE))).unwrap(),
        vec![]
    );
    assert_eq!(decide(&g, &voice(&[]), update(BOB, None)).unwrap(), vec![]);
}

#[test]
fn self_mute_and_deafen_are_recorded_in_the_voice_state() {
    let g = guild();
    let joined = decide(&g, &voice(&[]), update(ALICE, Some(LOUNGE))).unwrap();
    let mut muted = update(ALICE, Some(LOUNGE));
    if let VoiceCommand::Update {
        self_mute,
        self_deaf,
        ..
    } = &mut muted
    {
        *self_mute = true;
        *self_deaf = true;
    }
    let events = decide(&g, &voice(&joined), muted).unwrap();
    let state = voice(&[joined, events].concat());
    let s = &state.states[&ALICE];
    assert!(s.self_mute && s.self_deaf);
}

#[test]
fn joining_needs_a_voice_channel_of_the_guild_and_membership() {
    let g = guild();
    let v = voice(&[]);
    assert_eq!(
        decide(&g, &v, update(ALICE, Some(TEXT))),
        Err(DomainError::WrongChannelType)
    );
    assert_eq!(
        decide(&g, &v, update(ALICE, Some(ChannelId::new(999)))),
        Err(DomainError::Unknown(Resource::Channel))
    );
    assert_eq!(
        decide(&g, &v, update(UserId::new(77), Some(LOUNGE))),
        Err(DomainError::MissingAccess)
    );
    assert_eq!(
        decide(&GuildState::default(), &v, update(ALICE, Some(LOUNGE))),
        Err(DomainError::Unknown(Resource::Guild))
    );
}

#[test]
fn joining_needs_connect() {
    let mut c = setup();
    // @everyone loses CONNECT.
    c.push(GuildCommand::EditRole {
        actor: OWNER,
        role_id: RoleId::new(GUILD.get()),
        name: None,
        permissions: Some(Permissions::VIEW_CHANNEL),
        color: None,
        hoist: None,
        mentionable: None,
        now_ms: NOW,
    });
    let g = guild_after(c);
    assert_eq!(
        decide(&g, &voice(&[]), update(ALICE, Some(LOUNGE))),
        Err(DomainError::MissingPermissions)
    );
    // The owner has every permission.
    assert!(decide(&g, &voice(&[]), update(OWNER, Some(LOUNGE))).is_ok());
}

#[test]
fn a_full_channel_refuses_members_but_not_those_with_move_members() {
    let mut c = setup();
    let crowd: Vec<UserId> = (1000..1000 + u64::from(DEFAULT_USER_LIMIT))
        .map(UserId::new)
        .collect();
    c.extend(crowd.iter().map(|u| join(*u)));
    c.push(GuildCommand::CreateRole {
        actor: OWNER,
        role_id: MODS,
        name: RoleName::parse("mods").unwrap(),
        permissions: Permissions::MOVE_MEMBERS,
        color: 0,
        hoist: false,
        mentionable: false,
        now_ms: NOW,
    });
    c.push(GuildCommand::AddMemberRole {
        actor: OWNER,
        user_id: ALICE,
        role_id: MODS,
        now_ms: NOW,
    });
    let g = guild_after(c);
    let full: Vec<VoiceEvent> = crowd.iter().map(|u| changed(*u, Some(LOUNGE))).collect();
    let v = voice(&full);
    assert_eq!(v.count_in(LOUNGE), DEFAULT_USER_LIMIT as usize);
    assert!(matches!(
        decide(&g, &v, update(BOB, Some(LOUNGE))),
        Err(DomainError::Invalid {
            field: "channel_id",
            ..
        })
    ));
    assert_eq!(
        decide(&g, &v, update(ALICE, Some(LOUNGE))).unwrap(),
        vec![changed(ALICE, Some(LOUNGE))]
    );
    // Someone already inside may still change their own state.
    let mut inside = update(crowd[0], Some(LOUNGE));
    if let VoiceCommand::Update { self_mute, .. } = &mut inside {
        *self_mute = true;
    }
    assert_eq!(decide(&g, &v, inside).unwrap().len(), 1);
}

#[test]
fn a_moderator_moves_and_disconnects_a_member_keeping_their_session() {
    let g = guild_with_mod_alice();
    let joined = decide(&g, &voice(&[]), update(BOB, Some(LOUNGE))).unwrap();
    let v = voice(&joined);
    let moved = decide(
        &g,
        &v,
        VoiceCommand::Move {
            actor: ALICE,
            user_id: BOB,
            channel_id: Some(STAGE),
            now_ms: NOW,
        },
    )
    .unwrap();
    assert_eq!(moved, vec![changed(BOB, Some(STAGE))]);
    let disconnected = decide(
        &g,
        &voice(&[joined.clone(), moved.clone()].concat()),
        VoiceCommand::Move {
            actor: ALICE,
            user_id: BOB,
            channel_id: None,
            now_ms: NOW,
        },
    )
    .unwrap();
    assert_eq!(disconnected, vec![changed(BOB, None)]);
}

#[test]
fn moving_needs_move_members_and_a_connected_target() {
    let g = guild_with_mod_alice();
    let joined = decide(&g, &voice(&[]), update(ALICE, Some(LOUNGE))).unwrap();
    let mv = |actor, user| VoiceCommand::Move {
        actor,
        user_id: user,
        channel_id: Some(STAGE),
        now_ms: NOW,
    };
    // Bob is no moderator.
    assert_eq!(
        decide(&g, &voice(&joined), mv(BOB, ALICE)),
        Err(DomainError::MissingPermissions)
    );
    // Bob is not in voice.
    assert!(matches!(
        decide(&g, &voice(&joined), mv(ALICE, BOB)),
        Err(DomainError::Invalid {
            field: "channel_id",
            ..
        })
    ));
}

#[test]
fn dropping_a_user_takes_them_out_of_voice() {
    let g = guild();
    let joined = decide(&g, &voice(&[]), update(ALICE, Some(LOUNGE))).unwrap();
    let dropped = decide(
        &g,
        &voice(&joined),
        VoiceCommand::Drop {
            user_id: ALICE,
            now_ms: NOW,
        },
    )
    .unwrap();
    assert_eq!(dropped, vec![changed(ALICE, None)]);
    assert_eq!(
        decide(
            &g,
            &voice(&[]),
            VoiceCommand::Drop {
                user_id: ALICE,
                now_ms: NOW
            }
        )
        .unwrap(),
        vec![]
    );
}

#[test]
fn voice_events_round_trip_through_the_log_encoding() {
    use crate::event::DomainEvent;
    let e = changed(ALICE, Some(LOUNGE));
    let back = VoiceEvent::from_stored(e.event_type(), e.version(), e.to_data()).unwrap();
    assert_eq!(back, e);
    assert_eq!(e.event_type(), "VoiceStateChanged");
    assert_eq!(stream(GUILD), "voice-100");
}
