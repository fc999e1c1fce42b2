//! Table-driven tests of the permission model against Discord's documented behaviour.

use super::*;
use crate::{GuildId, RoleId, UserId};

type P = Permissions;

const GUILD: GuildId = GuildId::new(1);
const EVERYONE: RoleId = RoleId::new(1);
const OWNER: UserId = UserId::new(100);
const ALICE: UserId = UserId::new(200);
const BOB: UserId = UserId::new(300);
const MOD: RoleId = RoleId::new(10);
const HELPER: RoleId = RoleId::new(11);
const MUTED: RoleId = RoleId::new(12);
const ADMIN: RoleId = RoleId::new(13);
const NOW: u64 = 1_700_000_000_000;

const ROLES: [(RoleId, Permissions); 4] = [
    (MOD, P::KICK_MEMBERS.union(P::MANAGE_MESSAGES)),
    (HELPER, P::NONE),
    (MUTED, P::NONE),
    (ADMIN, P::ADMINISTRATOR),
];

const TEXT_BASICS: P = P::VIEW_CHANNEL
    .union(P::SEND_MESSAGES)
    .union(P::READ_MESSAGE_HISTORY)
    .union(P::ADD_REACTIONS);

fn eval(
    everyone: P,
    user: UserId,
    roles: &[RoleId],
    overwrites: &[Overwrite],
    channel: ChannelClass,
    timed_out_until: Option<u64>,
) -> P {
    compute_channel_permissions(&ChannelPermissionInput {
        guild: GuildPermissionInput {
            guild_id: GUILD,
            owner_id: OWNER,
            everyone,
            roles: &ROLES,
            member: MemberRoles::new(user, roles),
            communication_disabled_until_ms: timed_out_until,
            now_ms: NOW,
        },
        channel,
        overwrites,
    })
}

enum Expect {
    Exactly(P),
    HasAndLacks(P, P),
}

struct Case {
    name: &'static str,
    everyone: P,
    user: UserId,
    roles: &'static [RoleId],
    overwrites: &'static [Overwrite],
    channel: ChannelClass,
    timed_out: bool,
    expect: Expect,
}

const fn case(name: &'static str, overwrites: &'static [Overwrite], expect: Expect) -> Case {
    Case {
        name,
        everyone: P::DEFAULT_EVERYONE,
        user: ALICE,
        roles: &[MOD, HELPER],
        overwrites,
        channel: ChannelClass::Text,
        timed_out: false,
        expect,
    }
}

const SEND: P = P::SEND_MESSAGES;
const VIEW: P = P::VIEW_CHANNEL;

const CASES: &[Case] = &[
    case(
        "given @everyone is denied VIEW_CHANNEL, when a role of the member allows it, then the member can view",
        &[
            Overwrite::everyone(GUILD, P::NONE, VIEW),
            Overwrite::role(HELPER, VIEW, P::NONE),
        ],
        Expect::HasAndLacks(VIEW, P::NONE),
    ),
    case(
        "given @everyone is denied VIEW_CHANNEL, when no role allows it, then the member has nothing",
        &[Overwrite::everyone(GUILD, P::NONE, VIEW)],
        Expect::Exactly(P::NONE),
    ),
    case(
        "given a role allows SEND_MESSAGES, when the member's own overwrite denies it, then the member cannot send",
        &[
            Overwrite::role(MOD, SEND, P::NONE),
            Overwrite::member(ALICE, P::NONE, SEND),
        ],
        Expect::HasAndLacks(VIEW, SEND),
    ),
    case(
        "given a role denies SEND_MESSAGES, when the member's own overwrite allows it, then the member can send",
        &[
            Overwrite::role(MOD, P::NONE, SEND),
            Overwrite::member(ALICE, SEND, P::NONE),
        ],
        Expect::HasAndLacks(SEND, P::NONE),
    ),
    case(
        "given one role denies SEND_MESSAGES, when another role of the member allows it, then the allow wins",
        &[
            Overwrite::role(MOD, P::NONE, SEND),
            Overwrite::role(HELPER, SEND, P::NONE),
        ],
        Expect::HasAndLacks(SEND, P::NONE),
    ),
    case(
        "given the roles' allow comes first in the list, when another role denies, then the allow still wins",
        &[
            Overwrite::role(HELPER, SEND, P::NONE),
            Overwrite::role(MOD, P::NONE, SEND),
        ],
        Expect::HasAndLacks(SEND, P::NONE),
    ),
    case(
        "given @everyone is allowed SEND_MESSAGES, when a role of the member denies it, then the role's deny wins",
        &[
            Overwrite::everyone(GUILD, SEND, P::NONE),
            Overwrite::role(MOD, P::NONE, SEND),
        ],
        Expect::HasAndLacks(VIEW, SEND),
    ),
    case(
        "given one overwrite both allows and denies a bit, when it applies, then allow wins (deny is applied first)",
        &[Overwrite::member(ALICE, P::MANAGE_CHANNELS, P::MANAGE_CHANNELS)],
        Expect::HasAndLacks(P::MANAGE_CHANNELS, P::NONE),
    ),
    case(
        "given an overwrite for a role the member does not have, then it does not apply",
        &[Overwrite::role(MUTED, P::NONE, SEND.union(VIEW))],
        Expect::HasAndLacks(TEXT_BASICS, P::NONE),
    ),
    case(
        "given an overwrite for another member, then it does not apply",
        &[Overwrite::member(BOB, P::NONE, VIEW)],
        Expect::HasAndLacks(TEXT_BASICS, P::NONE),
    ),
    case(
        "given a role overwrite allows a guild permission, then the member has it in this channel only",
        &[Overwrite::role(MOD, P::MANAGE_CHANNELS, P::NONE)],
        Expect::HasAndLacks(P::MANAGE_CHANNELS.union(P::KICK_MEMBERS), P::NONE),
    ),
    case(
        "given an overwrite allows ADMINISTRATOR, then it grants that bit and nothing else",
        &[Overwrite::member(ALICE, P::ADMINISTRATOR, P::NONE)],
        Expect::HasAndLacks(TEXT_BASICS, P::ADMINISTRATOR.union(P::BAN_MEMBERS)),
    ),
    case(
        "given SEND_MESSAGES is denied, then mentions, TTS, files, embeds, polls and voice messages go too",
        &[Overwrite::everyone(GUILD, P::SEND_TTS_MESSAGES, SEND)],
        Expect::HasAndLacks(
            VIEW.union(P::READ_MESSAGE_HISTORY).union(P::ADD_REACTIONS),
            P::REQUIRES_SEND.union(SEND),
        ),
    ),
    case(
        "given CONNECT is denied in a text channel, then only CONNECT goes",
        &[Overwrite::everyone(GUILD, P::NONE, P::CONNECT)],
        Expect::HasAndLacks(TEXT_BASICS.union(P::SPEAK), P::CONNECT),
    ),
    Case {
        channel: ChannelClass::Voice,
        ..case(
            "given CONNECT is denied in a voice channel, then speaking, streaming and every voice action go",
            &[Overwrite::everyone(
                GUILD,
                P::MUTE_MEMBERS.union(P::PRIORITY_SPEAKER),
                P::CONNECT,
            )],
            Expect::HasAndLacks(TEXT_BASICS, P::REQUIRES_CONNECT.union(P::CONNECT)),
        )
    },
    Case {
        channel: ChannelClass::Voice,
        ..case(
            "given CONNECT is allowed in a voice channel, then voice actions stay",
            &[Overwrite::everyone(GUILD, P::PRIORITY_SPEAKER, P::NONE)],
            Expect::HasAndLacks(
                P::CONNECT
                    .union(P::SPEAK)
                    .union(P::STREAM)
                    .union(P::PRIORITY_SPEAKER),
                P::NONE,
            ),
        )
    },
    Case {
        channel: ChannelClass::Voice,
        ..case(
            "given SEND_MESSAGES is denied in a voice channel, then its text chat loses attachments but voice stays",
            &[Overwrite::everyone(GUILD, P::NONE, SEND)],
            Expect::HasAndLacks(P::SPEAK.union(P::CONNECT), P::ATTACH_FILES),
        )
    },
    Case {
        channel: ChannelClass::Thread,
        ..case(
            "given a thread where SEND_MESSAGES is denied, then SEND_MESSAGES_IN_THREADS still allows files",
            &[Overwrite::everyone(GUILD, P::NONE, SEND)],
            Expect::HasAndLacks(
                P::SEND_MESSAGES_IN_THREADS.union(P::ATTACH_FILES),
                SEND,
            ),
        )
    },
    Case {
        channel: ChannelClass::Thread,
        ..case(
            "given a thread where SEND_MESSAGES_IN_THREADS is denied, then files and embeds go",
            &[Overwrite::everyone(GUILD, P::NONE, P::SEND_MESSAGES_IN_THREADS)],
            Expect::HasAndLacks(VIEW.union(SEND), P::ATTACH_FILES.union(P::EMBED_LINKS)),
        )
    },
    Case {
        channel: ChannelClass::Category,
        ..case(
            "given a category where SEND_MESSAGES is denied, then only VIEW_CHANNEL matters",
            &[Overwrite::everyone(GUILD, P::NONE, SEND)],
            Expect::HasAndLacks(VIEW.union(P::ATTACH_FILES), SEND),
        )
    },
    Case {
        channel: ChannelClass::Category,
        ..case(
            "given a category where VIEW_CHANNEL is denied, then nothing",
            &[Overwrite::everyone(GUILD, P::NONE, VIEW)],
            Expect::Exactly(P::NONE),
        )
    },
    Case {
        roles: &[MOD, EVERYONE],
        ..case(
            "given the member lists @everyone among their roles, then @everyone's overwrite still counts once, before roles",
            &[
                Overwrite::everyone(GUILD, SEND, P::NONE),
                Overwrite::role(MOD, P::NONE, SEND),
            ],
            Expect::HasAndLacks(VIEW, SEND),
        )
    },
    Case {
        roles: &[MOD, ADMIN],
        ..case(
            "given an administrator, when overwrites deny everything, then they still have every permission",
            &[
                Overwrite::everyone(GUILD, P::NONE, P::ALL),
                Overwrite::role(MOD, P::NONE, P::ALL),
                Overwrite::member(ALICE, P::NONE, P::ALL),
            ],
            Expect::Exactly(P::ALL),
        )
    },
    Case {
        everyone: P::DEFAULT_EVERYONE.union(P::ADMINISTRATOR),
        roles: &[],
        ..case(
            "given @everyone has ADMINISTRATOR, then every member has every permission",
            &[Overwrite::everyone(GUILD, P::NONE, VIEW)],
            Expect::Exactly(P::ALL),
        )
    },
    Case {
        everyone: P::NONE,
        user: OWNER,
        roles: &[],
        timed_out: true,
        ..case(
            "given the owner, when @everyone has nothing, they are denied everything and timed out, then they still have every permission",
            &[
                Overwrite::everyone(GUILD, P::NONE, P::ALL),
                Overwrite::member(OWNER, P::NONE, P::ALL),
            ],
            Expect::Exactly(P::ALL),
        )
    },
    Case {
        everyone: P::NONE,
        roles: &[],
        ..case(
            "given @everyone has nothing and no overwrite allows anything, then the member has nothing",
            &[],
            Expect::Exactly(P::NONE),
        )
    },
    Case {
        timed_out: true,
        ..case(
            "given a timed-out moderator, then only VIEW_CHANNEL and READ_MESSAGE_HISTORY remain",
            &[Overwrite::member(ALICE, P::MANAGE_CHANNELS, P::NONE)],
            Expect::Exactly(P::TIMED_OUT),
        )
    },
    Case {
        timed_out: true,
        ..case(
            "given a timed-out member who cannot read history, then only VIEW_CHANNEL remains",
            &[Overwrite::everyone(GUILD, P::NONE, P::READ_MESSAGE_HISTORY)],
            Expect::Exactly(VIEW),
        )
    },
    Case {
        timed_out: true,
        ..case(
            "given a timed-out member who cannot view the channel, then nothing remains",
            &[Overwrite::everyone(GUILD, P::NONE, VIEW)],
            Expect::Exactly(P::NONE),
        )
    },
    Case {
        timed_out: true,
        roles: &[ADMIN],
        ..case(
            "given a timed-out administrator, then the timeout changes nothing",
            &[],
            Expect::Exactly(P::ALL),
        )
    },
];

#[test]
fn channel_permissions_follow_discords_documented_evaluation() {
    for c in CASES {
        let until = c.timed_out.then_some(NOW + 60_000);
        let got = eval(c.everyone, c.user, c.roles, c.overwrites, c.channel, until);
        match c.expect {
            Expect::Exactly(want) => assert_eq!(got, want, "{}", c.name),
            Expect::HasAndLacks(has, lacks) => {
                assert!(got.contains(has), "{}: {got} lacks {}", c.name, has - got);
                assert!(
                    !got.intersects(lacks),
                    "{}: {got} has {}",
                    c.name,
                    got & lacks
                );
            }
        }
    }
}

#[test]
fn given_a_timeout_that_ends_now_then_the_member_is_no_longer_timed_out() {
    let at = |until| {
        eval(
            P::DEFAULT_EVERYONE,
            ALICE,
            &[],
            &[],
            ChannelClass::Text,
            until,
        )
    };
    assert_eq!(at(Some(NOW + 1)), P::TIMED_OUT);
    assert_eq!(at(Some(NOW)), P::DEFAULT_EVERYONE);
    assert_eq!(at(Some(NOW - 1)), P::DEFAULT_EVERYONE);
    assert_eq!(at(None), P::DEFAULT_EVERYONE);
}

#[test]
fn given_a_timed_out_member_then_guild_permissions_shrink_too_but_not_the_owners() {
    let guild = |user, roles: &'static [RoleId]| {
        compute_guild_permissions(&GuildPermissionInput {
            guild_id: GUILD,
            owner_id: OWNER,
            everyone: P::DEFAULT_EVERYONE,
            roles: &ROLES,
            member: MemberRoles::new(user, roles),
            communication_disabled_until_ms: Some(NOW + 1),
            now_ms: NOW,
        })
    };
    assert_eq!(guild(ALICE, &[MOD]), P::TIMED_OUT);
    assert_eq!(guild(ALICE, &[ADMIN]), P::ALL);
    assert_eq!(guild(OWNER, &[]), P::ALL);
}

#[test]
fn given_a_channel_synced_with_its_category_then_the_category_overwrites_apply() {
    let category = [Overwrite::everyone(GUILD, P::NONE, VIEW)];
    let own = [Overwrite::everyone(GUILD, VIEW, P::NONE)];
    let view = |ows: &[Overwrite]| {
        eval(
            P::DEFAULT_EVERYONE,
            ALICE,
            &[],
            ows,
            ChannelClass::Text,
            None,
        )
        .contains(VIEW)
    };

    let synced = effective_overwrites(&own, Some(&category), true);
    assert_eq!(synced, &category);
    assert!(!view(synced));

    let unsynced = effective_overwrites(&own, Some(&category), false);
    assert_eq!(unsynced, &own);
    assert!(view(unsynced));

    let no_category = effective_overwrites(&own, None, true);
    assert_eq!(no_category, &own);
}

#[test]
fn given_two_overwrite_lists_then_they_are_synced_when_they_hold_the_same_overwrites() {
    let a = Overwrite::everyone(GUILD, P::NONE, VIEW);
    let b = Overwrite::role(MOD, VIEW, P::NONE);
    let c = Overwrite::member(ALICE, SEND, P::NONE);
    assert!(is_synced(&[], &[]));
    assert!(is_synced(&[a, b, c], &[c, a, b]));
    assert!(!is_synced(&[a, b], &[a, b, c]));
    assert!(!is_synced(&[a, a, b], &[a, b, b]));
    assert!(!is_synced(
        &[a],
        &[Overwrite::everyone(GUILD, P::NONE, SEND)]
    ));
}

#[test]
fn base_permissions_are_everyone_or_every_role_with_owner_and_admin_getting_all() {
    let base = |user, roles: &[RoleId]| {
        base_permissions(
            OWNER,
            P::VIEW_CHANNEL,
            MemberRoles::new(user, roles),
            &ROLES,
        )
    };
    assert_eq!(base(ALICE, &[]), VIEW);
    assert_eq!(
        base(ALICE, &[MOD, HELPER]),
        VIEW | P::KICK_MEMBERS | P::MANAGE_MESSAGES
    );
    assert_eq!(
        base(ALICE, &[RoleId::new(999)]),
        VIEW,
        "unknown roles count for nothing"
    );
    assert_eq!(base(ALICE, &[ADMIN]), P::ALL);
    assert_eq!(base(OWNER, &[]), P::ALL);

    // Any lookup works: maps and closures.
    let map: std::collections::HashMap<RoleId, P> = ROLES.into_iter().collect();
    let member = MemberRoles::new(ALICE, &[MOD]);
    let by_map = base_permissions(OWNER, VIEW, member, &map);
    let by_fn = base_permissions(OWNER, VIEW, member, &|r: RoleId| {
        (r == MOD).then_some(P::KICK_MEMBERS | P::MANAGE_MESSAGES)
    });
    assert_eq!(by_map, by_fn);
}

#[test]
fn channel_classes_come_from_discord_types_and_chorus_kinds() {
    use crate::guild::ChannelKind;
    let table = [
        (0, Some(ChannelClass::Text)),
        (1, None),
        (2, Some(ChannelClass::Voice)),
        (3, None),
        (4, Some(ChannelClass::Category)),
        (5, Some(ChannelClass::Text)),
        (10, Some(ChannelClass::Thread)),
        (11, Some(ChannelClass::Thread)),
        (12, Some(ChannelClass::Thread)),
        (13, Some(ChannelClass::Voice)),
        (15, Some(ChannelClass::Text)),
        (16, Some(ChannelClass::Text)),
        (99, None),
    ];
    for (t, want) in table {
        assert_eq!(ChannelClass::from_discord_type(t), want, "type {t}");
    }
    for kind in [ChannelKind::Text, ChannelKind::Voice, ChannelKind::Category] {
        assert_eq!(
            Some(ChannelClass::from(kind)),
            ChannelClass::from_discord_type(u64::from(kind.discord_type()))
        );
    }
}

// --- flags ---------------------------------------------------------------------------

const BITS: &[(&str, Permissions, u32)] = &[
    ("CREATE_INSTANT_INVITE", P::CREATE_INSTANT_INVITE, 0),
    ("KICK_MEMBERS", P::KICK_MEMBERS, 1),
    ("BAN_MEMBERS", P::BAN_MEMBERS, 2),
    ("ADMINISTRATOR", P::ADMINISTRATOR, 3),
    ("MANAGE_CHANNELS", P::MANAGE_CHANNELS, 4),
    ("MANAGE_GUILD", P::MANAGE_GUILD, 5),
    ("ADD_REACTIONS", P::ADD_REACTIONS, 6),
    ("VIEW_AUDIT_LOG", P::VIEW_AUDIT_LOG, 7),
    ("PRIORITY_SPEAKER", P::PRIORITY_SPEAKER, 8),
    ("STREAM", P::STREAM, 9),
    ("VIEW_CHANNEL", P::VIEW_CHANNEL, 10),
    ("SEND_MESSAGES", P::SEND_MESSAGES, 11),
    ("SEND_TTS_MESSAGES", P::SEND_TTS_MESSAGES, 12),
    ("MANAGE_MESSAGES", P::MANAGE_MESSAGES, 13),
    ("EMBED_LINKS", P::EMBED_LINKS, 14),
    ("ATTACH_FILES", P::ATTACH_FILES, 15),
    ("READ_MESSAGE_HISTORY", P::READ_MESSAGE_HISTORY, 16),
    ("MENTION_EVERYONE", P::MENTION_EVERYONE, 17),
    ("USE_EXTERNAL_EMOJIS", P::USE_EXTERNAL_EMOJIS, 18),
    ("VIEW_GUILD_INSIGHTS", P::VIEW_GUILD_INSIGHTS, 19),
    ("CONNECT", P::CONNECT, 20),
    ("SPEAK", P::SPEAK, 21),
    ("MUTE_MEMBERS", P::MUTE_MEMBERS, 22),
    ("DEAFEN_MEMBERS", P::DEAFEN_MEMBERS, 23),
    ("MOVE_MEMBERS", P::MOVE_MEMBERS, 24),
    ("USE_VAD", P::USE_VAD, 25),
    ("CHANGE_NICKNAME", P::CHANGE_NICKNAME, 26),
    ("MANAGE_NICKNAMES", P::MANAGE_NICKNAMES, 27),
    ("MANAGE_ROLES", P::MANAGE_ROLES, 28),
    ("MANAGE_WEBHOOKS", P::MANAGE_WEBHOOKS, 29),
    ("MANAGE_GUILD_EXPRESSIONS", P::MANAGE_GUILD_EXPRESSIONS, 30),
    ("USE_APPLICATION_COMMANDS", P::USE_APPLICATION_COMMANDS, 31),
    ("REQUEST_TO_SPEAK", P::REQUEST_TO_SPEAK, 32),
    ("MANAGE_EVENTS", P::MANAGE_EVENTS, 33),
    ("MANAGE_THREADS", P::MANAGE_THREADS, 34),
    ("CREATE_PUBLIC_THREADS", P::CREATE_PUBLIC_THREADS, 35),
    ("CREATE_PRIVATE_THREADS", P::CREATE_PRIVATE_THREADS, 36),
    ("USE_EXTERNAL_STICKERS", P::USE_EXTERNAL_STICKERS, 37),
    ("SEND_MESSAGES_IN_THREADS", P::SEND_MESSAGES_IN_THREADS, 38),
    ("USE_EMBEDDED_ACTIVITIES", P::USE_EMBEDDED_ACTIVITIES, 39),
    ("MODERATE_MEMBERS", P::MODERATE_MEMBERS, 40),
    (
        "VIEW_CREATOR_MONETIZATION_ANALYTICS",
        P::VIEW_CREATOR_MONETIZATION_ANALYTICS,
        41,
    ),
    ("USE_SOUNDBOARD", P::USE_SOUNDBOARD, 42),
    ("CREATE_GUILD_EXPRESSIONS", P::CREATE_GUILD_EXPRESSIONS, 43),
    ("CREATE_EVENTS", P::CREATE_EVENTS, 44),
    ("USE_EXTERNAL_SOUNDS", P::USE_EXTERNAL_SOUNDS, 45),
    ("SEND_VOICE_MESSAGES", P::SEND_VOICE_MESSAGES, 46),
    ("SET_VOICE_CHANNEL_STATUS", P::SET_VOICE_CHANNEL_STATUS, 48),
    ("SEND_POLLS", P::SEND_POLLS, 49),
    ("USE_EXTERNAL_APPS", P::USE_EXTERNAL_APPS, 50),
    ("PIN_MESSAGES", P::PIN_MESSAGES, 51),
    ("BYPASS_SLOWMODE", P::BYPASS_SLOWMODE, 52),
];

#[test]
fn every_flag_sits_at_discords_bit_position_with_its_name() {
    for &(name, flag, bit) in BITS {
        assert_eq!(flag.bits(), 1 << bit, "{name}");
        assert_eq!(flag.name(), Some(name));
        assert_eq!(P::from_name(name), Some(flag));
        assert_eq!(flag.to_string(), name);
    }
    let all: P = BITS.iter().map(|&(_, flag, _)| flag).collect();
    assert_eq!(P::ALL, all);
    assert_eq!(P::ALL.bits(), 0x001F_7FFF_FFFF_FFFF);
    assert_eq!(P::ALL.iter().count(), BITS.len());
}

#[test]
fn default_everyone_is_what_discord_gives_a_new_guild() {
    // Discord's value for a new guild's @everyone, without the retired bit 47.
    assert_eq!(
        P::DEFAULT_EVERYONE.bits(),
        2_248_473_465_835_073 & !(1 << 47)
    );
    assert_eq!(P::DEFAULT_EVERYONE.bits(), 2_107_735_977_479_745);
    assert!(P::DEFAULT_EVERYONE.contains(VIEW | SEND | P::READ_MESSAGE_HISTORY));
    assert!(!P::DEFAULT_EVERYONE.intersects(
        P::ADMINISTRATOR
            | P::SEND_TTS_MESSAGES
            | P::MANAGE_MESSAGES
            | P::KICK_MEMBERS
            | P::MODERATE_MEMBERS
            | P::MANAGE_ROLES
    ));
}

#[test]
fn bit_operations_behave_like_sets() {
    let vs = VIEW | SEND;
    assert_eq!(vs & SEND, SEND);
    assert_eq!(vs ^ SEND, VIEW);
    assert_eq!(vs - SEND, VIEW);
    assert_eq!(vs & !SEND, VIEW);
    assert_eq!((!P::NONE).bits(), u64::MAX);
    assert_eq!(P::NONE.complement(), P::ALL);
    assert_eq!(vs.complement() | vs, P::ALL);
    assert!(vs.contains(VIEW) && vs.contains(vs) && !vs.contains(vs | P::SPEAK));
    assert!(vs.contains(P::NONE));
    assert!(vs.intersects(SEND | P::SPEAK) && !vs.intersects(P::SPEAK));

    let mut p = P::empty();
    assert!(p.is_empty());
    p.insert(VIEW);
    p |= SEND;
    assert_eq!(p, vs);
    p.remove(SEND);
    assert_eq!(p, VIEW);
    p.toggle(VIEW | SEND);
    assert_eq!(p, SEND);
    p.set(VIEW, true);
    p.set(SEND, false);
    assert_eq!(p, VIEW);
    p -= VIEW;
    p ^= SEND;
    p &= SEND | VIEW;
    assert_eq!(p, SEND);
    assert!(P::all().is_all() && !vs.is_all());
    assert_eq!(vs.with(P::SPEAK).without(SEND), VIEW | P::SPEAK);
}

#[test]
fn unnamed_bits_are_kept_and_shown_in_hex() {
    let odd = Permissions(VIEW.bits() | 1 << 47 | 1 << 60);
    assert_eq!(odd.unknown_bits(), 1 << 47 | 1 << 60);
    assert_eq!(P::from_bits(odd.bits()), None);
    assert_eq!(P::from_bits(VIEW.bits()), Some(VIEW));
    assert_eq!(P::from_bits_truncate(odd.bits()), VIEW);
    assert_eq!(P::from_bits_retain(odd.bits()), odd);
    assert_eq!(odd.to_string(), "VIEW_CHANNEL | 0x1000800000000000");
    assert_eq!(P::from_names(&odd.to_string()), Ok(odd));
    let json = serde_json::to_string(&odd).unwrap();
    assert_eq!(serde_json::from_str::<P>(&json).unwrap(), odd);
}

#[test]
fn debug_and_display_show_names() {
    assert_eq!(format!("{}", VIEW | SEND), "VIEW_CHANNEL | SEND_MESSAGES");
    assert_eq!(
        format!("{:?}", VIEW | SEND),
        "Permissions(VIEW_CHANNEL | SEND_MESSAGES)"
    );
    assert_eq!(P::NONE.to_string(), "NONE");
    assert_eq!(format!("{:?}", P::NONE), "Permissions(NONE)");
    assert_eq!(P::from_names("NONE"), Ok(P::NONE));
    assert_eq!(
        P::from_names(" VIEW_CHANNEL|SEND_MESSAGES "),
        Ok(VIEW | SEND)
    );
    assert_eq!(
        P::from_names("VIEW_CHANNEL | READ_MESSAGES"),
        Err(ParsePermissionsError::UnknownName("READ_MESSAGES".into()))
    );
    assert_eq!(P::from_names(""), Err(ParsePermissionsError::Empty));
    assert!(P::from_names("0x").is_err());
    assert!(P::from_names("0xzz").is_err());
}

#[test]
fn the_wire_form_is_a_decimal_string_and_garbage_is_refused_clearly() {
    assert_eq!("2112".parse::<P>(), Ok(P::ADD_REACTIONS | SEND));
    assert_eq!("0".parse::<P>(), Ok(P::NONE));
    assert_eq!(
        "18446744073709551615".parse::<P>(),
        Ok(Permissions(u64::MAX))
    );
    let table = [
        ("", ParsePermissionsError::Empty),
        ("abc", ParsePermissionsError::NotDecimal("abc".into())),
        ("-1", ParsePermissionsError::NotDecimal("-1".into())),
        ("+5", ParsePermissionsError::NotDecimal("+5".into())),
        (" 5", ParsePermissionsError::NotDecimal(" 5".into())),
        ("1.0", ParsePermissionsError::NotDecimal("1.0".into())),
        ("0x10", ParsePermissionsError::NotDecimal("0x10".into())),
        (
            "18446744073709551616",
            ParsePermissionsError::TooLarge("18446744073709551616".into()),
        ),
    ];
    for (input, want) in table {
        assert_eq!(input.parse::<P>(), Err(want), "{input:?}");
    }
    let long = "x".repeat(10_000);
    let err = long.parse::<P>().unwrap_err().to_string();
    assert!(err.len() < 120, "errors quote a short excerpt: {err}");
    assert_eq!(
        "abc".parse::<P>().unwrap_err().to_string(),
        "permissions must be a decimal string of digits only, got \"abc\""
    );
}

#[test]
fn serde_writes_a_decimal_string_and_reads_strings_or_integers() {
    let p = P::DEFAULT_EVERYONE;
    assert_eq!(serde_json::to_string(&p).unwrap(), "\"2107735977479745\"");
    assert_eq!(
        serde_json::from_str::<P>("\"2112\"").unwrap(),
        Permissions(2112)
    );
    assert_eq!(
        serde_json::from_str::<P>("2112").unwrap(),
        Permissions(2112)
    );
    for bad in ["\"abc\"", "-1", "1.5", "null", "[]", "\"\"", "\"-5\""] {
        assert!(serde_json::from_str::<P>(bad).is_err(), "{bad}");
    }
    let err = serde_json::from_str::<P>("\"abc\"")
        .unwrap_err()
        .to_string();
    assert!(err.contains("decimal"), "{err}");
}

#[test]
fn overwrites_use_discords_wire_shape() {
    let ow = Overwrite::role(MOD, VIEW, SEND);
    let json = serde_json::to_value(ow).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"id": "10", "type": 0, "allow": "1024", "deny": "2048"})
    );
    assert_eq!(serde_json::from_value::<Overwrite>(json).unwrap(), ow);

    let member: Overwrite =
        serde_json::from_str(r#"{"id": "200", "type": 1, "allow": "1024"}"#).unwrap();
    assert_eq!(member, Overwrite::member(ALICE, VIEW, P::NONE));
    assert!(serde_json::from_str::<Overwrite>(r#"{"id": "1", "type": 2}"#).is_err());
    assert!(serde_json::from_str::<Overwrite>(r#"{"id": "0", "type": 0}"#).is_err());
    assert!(serde_json::from_str::<Overwrite>(r#"{"type": 0}"#).is_err());
    assert_eq!(ow.target.discord_type(), 0);
    assert_eq!(OverwriteTarget::Member(ALICE).discord_type(), 1);
    assert_eq!(
        OverwriteTarget::from_discord(1, 200),
        Some(OverwriteTarget::Member(ALICE))
    );
    assert_eq!(OverwriteTarget::from_discord(0, 0), None);
}

// --- hierarchy -----------------------------------------------------------------------

const POSITIONS: [(RoleId, i32); 4] = [(MOD, 5), (HELPER, 2), (MUTED, 2), (ADMIN, 9)];

fn top(roles: &[RoleId]) -> RoleRank {
    highest_role(roles, GUILD, &POSITIONS)
}

#[test]
fn the_highest_role_is_the_highest_position_with_the_older_role_winning_ties() {
    assert_eq!(top(&[]), RoleRank::everyone(GUILD));
    assert_eq!(highest_role_position(&[], GUILD, &POSITIONS), 0);
    assert_eq!(top(&[HELPER, MOD]).id, MOD);
    assert_eq!(
        highest_role_position(&[HELPER, MOD, ADMIN], GUILD, &POSITIONS),
        9
    );
    assert_eq!(top(&[RoleId::new(999)]), RoleRank::everyone(GUILD));
    // HELPER (id 11) and MUTED (id 12) share position 2: the older one ranks higher.
    assert_eq!(top(&[MUTED, HELPER]).id, HELPER);
    assert!(top(&[HELPER]) > top(&[MUTED]));
}

#[test]
fn role_management_follows_the_hierarchy() {
    // (actor, actor's roles, target role, may manage?)
    let table: &[(UserId, &[RoleId], RoleId, bool)] = &[
        (OWNER, &[], ADMIN, true),
        (ALICE, &[ADMIN], MOD, true),
        (ALICE, &[MOD], HELPER, true),
        (ALICE, &[MOD], MOD, false),
        (ALICE, &[MOD], ADMIN, false),
        (ALICE, &[HELPER], MUTED, true),
        (ALICE, &[MUTED], HELPER, false),
        (ALICE, &[], HELPER, false),
    ];
    for &(actor, roles, target, want) in table {
        let target_rank = top(&[target]);
        assert_eq!(
            can_manage_role(OWNER, actor, top(roles), target_rank),
            want,
            "{actor:?} with {roles:?} managing {target:?}"
        );
    }
}

#[test]
fn member_management_follows_the_hierarchy_and_nobody_touches_the_owner() {
    // (actor, actor's roles, target, target's roles, may act?)
    type Row = (UserId, &'static [RoleId], UserId, &'static [RoleId], bool);
    let table: &[Row] = &[
        (OWNER, &[], ALICE, &[ADMIN], true),
        (ALICE, &[ADMIN], BOB, &[MOD], true),
        (ALICE, &[MOD], BOB, &[MOD], false),
        (ALICE, &[MOD], BOB, &[ADMIN], false),
        (ALICE, &[MOD], BOB, &[], true),
        (ALICE, &[], BOB, &[], false),
        (ALICE, &[ADMIN], OWNER, &[], false),
        (ALICE, &[ADMIN], ALICE, &[ADMIN], false),
    ];
    for &(actor, actor_roles, target, target_roles, want) in table {
        assert_eq!(
            can_manage_member(OWNER, actor, top(actor_roles), target, top(target_roles)),
            want,
            "{actor:?} {actor_roles:?} acting on {target:?} {target_roles:?}"
        );
    }
}

#[test]
fn nobody_grants_permissions_they_lack_but_administrators_grant_anything() {
    let table = [
        (VIEW | SEND, SEND, true),
        (VIEW | SEND, VIEW | SEND, true),
        (VIEW | SEND, P::NONE, true),
        (VIEW | SEND, SEND | P::MANAGE_ROLES, false),
        (P::MANAGE_ROLES, P::BAN_MEMBERS, false),
        (P::ADMINISTRATOR, P::BAN_MEMBERS | P::MANAGE_GUILD, true),
        (P::ADMINISTRATOR, Permissions(u64::MAX), true),
        (P::ALL, P::ALL, true),
    ];
    for (actor, requested, want) in table {
        assert_eq!(
            can_grant(actor, requested),
            want,
            "{actor} granting {requested}"
        );
    }
}
