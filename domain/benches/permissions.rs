//! Cost of a permission check, and of the command-side decision on the send path.
//!
//! A realistic busy guild: 50 roles, a member holding 5 of them, a channel in a synced
//! category whose overwrites name 10 roles and the member. Measured:
//! - `channel_permissions`: one full evaluation (base from @everyone and roles,
//!   overwrites in Discord's order, implicit rules, timeout check);
//! - `decide_at(Send)`: what a send costs on the command side once state is loaded
//!   (the permission check, slowmode, content and nonce rules, the event).
//!
//! `cargo bench -p domain --bench permissions`. Prints the median of 7 runs.

use std::hint::black_box;
use std::time::Instant;

use domain::channel::{self, ChannelCommand, ChannelEvent, ChannelState};
use domain::guild::{self, ChannelKind, GuildCommand, GuildState};
use domain::permissions::{Overwrite, OverwriteTarget, Permissions};
use domain::role::RoleName;
use domain::values::{ChannelName, Content, GuildName};
use domain::{Aggregate, ChannelId, GuildId, MessageId, RoleId, UserId};

const OWNER: UserId = UserId::new(1);
const MEMBER: UserId = UserId::new(2);
const GUILD: GuildId = GuildId::new(1_000);
const CATEGORY: ChannelId = ChannelId::new(2_000);
const CHANNEL: ChannelId = ChannelId::new(2_001);
const NOW: u64 = 1_800_000_000_000;

fn apply(state: &mut GuildState, command: GuildCommand) {
    for e in guild::decide(state, command).expect("setup command") {
        state.evolve(&e);
    }
}

fn busy_guild() -> GuildState {
    let mut g = GuildState::default();
    apply(
        &mut g,
        GuildCommand::Create {
            guild_id: GUILD,
            name: GuildName::parse("bench").unwrap(),
            owner_id: OWNER,
            general_channel_id: ChannelId::new(1_999),
        },
    );
    apply(
        &mut g,
        GuildCommand::Join {
            user_id: MEMBER,
            invite_code: None,
        },
    );
    for (id, parent) in [(CATEGORY, None), (CHANNEL, Some(CATEGORY))] {
        apply(
            &mut g,
            GuildCommand::CreateChannel {
                actor: OWNER,
                channel_id: id,
                kind: if parent.is_none() {
                    ChannelKind::Category
                } else {
                    ChannelKind::Text
                },
                name: ChannelName::parse("chan").unwrap(),
                parent_id: parent,
                topic: None,
                nsfw: false,
                position: None,
            },
        );
    }
    for i in 0..50u64 {
        let role_id = RoleId::new(3_000 + i);
        apply(
            &mut g,
            GuildCommand::CreateRole {
                actor: OWNER,
                role_id,
                name: RoleName::parse(&format!("role {i}")).unwrap(),
                permissions: Permissions::from_bits_truncate(1 << (i % 40)),
                color: 0,
                hoist: false,
                mentionable: false,
                now_ms: NOW,
            },
        );
        if i % 10 == 0 {
            apply(
                &mut g,
                GuildCommand::AddMemberRole {
                    actor: OWNER,
                    user_id: MEMBER,
                    role_id,
                    now_ms: NOW,
                },
            );
        }
        if i % 5 == 0 {
            let overwrite = Overwrite {
                target: OverwriteTarget::Role(role_id),
                allow: Permissions::from_bits_truncate(1 << (i % 30)),
                deny: Permissions::from_bits_truncate(1 << ((i + 7) % 30)),
            };
            apply(
                &mut g,
                GuildCommand::SetOverwrite {
                    actor: OWNER,
                    channel_id: CATEGORY,
                    overwrite,
                    now_ms: NOW,
                },
            );
        }
    }
    let overwrite = Overwrite {
        target: OverwriteTarget::Member(MEMBER),
        allow: Permissions::SEND_MESSAGES | Permissions::VIEW_CHANNEL,
        deny: Permissions::NONE,
    };
    apply(
        &mut g,
        GuildCommand::SetOverwrite {
            actor: OWNER,
            channel_id: CATEGORY,
            overwrite,
            now_ms: NOW,
        },
    );
    g
}

/// Nanoseconds per call of `f`, the median of 7 runs of `iterations` calls.
fn median_ns(iterations: u32, mut f: impl FnMut(u32)) -> f64 {
    let mut runs: Vec<f64> = (0..7)
        .map(|_| {
            let start = Instant::now();
            for i in 0..iterations {
                f(i);
            }
            start.elapsed().as_nanos() as f64 / f64::from(iterations)
        })
        .collect();
    runs.sort_by(f64::total_cmp);
    runs[3]
}

fn main() {
    let g = busy_guild();
    let perms = g.channel_permissions(MEMBER, CHANNEL, NOW);
    assert!(
        perms.contains(Permissions::SEND_MESSAGES),
        "the member may send: {perms:?}"
    );
    assert_eq!(
        g.effective_overwrites(CHANNEL).len(),
        11,
        "synced with the category"
    );

    let check = median_ns(1_000_000, |_| {
        black_box(g.channel_permissions(black_box(MEMBER), black_box(CHANNEL), black_box(NOW)));
    });
    println!("channel_permissions (50 roles, 5 held, 11 overwrites): {check:.0} ns per check");

    let mut state = ChannelState::default();
    state.evolve(&ChannelEvent::ChannelOpened {
        channel_id: CHANNEL,
        guild_id: Some(GUILD),
    });
    let content = Content::parse("hello, bench").unwrap();
    let send = median_ns(200_000, |i| {
        let command = ChannelCommand::Send {
            message_id: MessageId::new((NOW - 1_420_070_400_000) << 22 | u64::from(i)),
            channel_id: CHANNEL,
            author_id: MEMBER,
            content: content.clone(),
            nonce: None,
            enforce_nonce: false,
            tts: false,
        };
        black_box(channel::decide_at(&state, &g, command, NOW).expect("send allowed"));
    });
    println!("decide_at(Send) incl. the permission check: {send:.0} ns per send");
}
