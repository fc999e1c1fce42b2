//! Properties of the permission model over random guilds, members and overwrites.

use proptest::collection::vec;
use proptest::prelude::*;

use super::*;
use crate::{GuildId, RoleId, UserId};

const GUILD: GuildId = GuildId::new(1);
const OWNER: UserId = UserId::new(100);
const MEMBER: UserId = UserId::new(200);
const OTHER: UserId = UserId::new(300);
/// Ordinary roles are 2..=7; role 8 is an administrator role.
const ADMIN_ROLE: RoleId = RoleId::new(8);
const NOW: u64 = 1_700_000_000_000;

/// A sparse mask (each bit set with probability 1/4), never ADMINISTRATOR.
fn plain_perms() -> impl Strategy<Value = Permissions> {
    (any::<u64>(), any::<u64>())
        .prop_map(|(a, b)| Permissions(a & b).without(Permissions::ADMINISTRATOR))
}

fn any_perms() -> impl Strategy<Value = Permissions> {
    any::<u64>().prop_map(Permissions)
}

fn target() -> impl Strategy<Value = OverwriteTarget> {
    prop_oneof![
        Just(OverwriteTarget::Role(GUILD.cast())),
        (2u64..=8).prop_map(|id| OverwriteTarget::Role(RoleId::new(id))),
        Just(OverwriteTarget::Member(MEMBER)),
        Just(OverwriteTarget::Member(OTHER)),
    ]
}

fn overwrite() -> impl Strategy<Value = Overwrite> {
    (target(), any_perms(), any_perms()).prop_map(|(target, allow, deny)| Overwrite {
        target,
        allow,
        deny,
    })
}

fn channel() -> impl Strategy<Value = ChannelClass> {
    prop_oneof![
        Just(ChannelClass::Text),
        Just(ChannelClass::Voice),
        Just(ChannelClass::Category),
        Just(ChannelClass::Thread),
    ]
}

#[derive(Debug, Clone)]
struct World {
    everyone: Permissions,
    roles: Vec<(RoleId, Permissions)>,
    member_roles: Vec<RoleId>,
    overwrites: Vec<Overwrite>,
    channel: ChannelClass,
    timed_out_until: Option<u64>,
}

/// A guild with roles 2..=7 (plain) and 8 (administrator), a member holding a random
/// subset of the plain roles, and random overwrites.
fn world() -> impl Strategy<Value = World> {
    (
        plain_perms(),
        vec(plain_perms(), 6),
        vec(2u64..=7, 0..4),
        vec(overwrite(), 0..8),
        channel(),
        prop::option::of(NOW - 5_000..NOW + 5_000),
    )
        .prop_map(
            |(everyone, role_perms, member_roles, overwrites, channel, timed_out_until)| {
                let mut roles: Vec<_> = (2u64..=7).map(RoleId::new).zip(role_perms).collect();
                roles.push((ADMIN_ROLE, Permissions::ADMINISTRATOR));
                World {
                    everyone,
                    roles,
                    member_roles: member_roles.into_iter().map(RoleId::new).collect(),
                    overwrites,
                    channel,
                    timed_out_until,
                }
            },
        )
}

impl World {
    fn eval_as(&self, user: UserId, overwrites: &[Overwrite]) -> Permissions {
        compute_channel_permissions(&ChannelPermissionInput {
            guild: GuildPermissionInput {
                guild_id: GUILD,
                owner_id: OWNER,
                everyone: self.everyone,
                roles: self.roles.as_slice(),
                member: MemberRoles::new(user, &self.member_roles),
                communication_disabled_until_ms: self.timed_out_until,
                now_ms: NOW,
            },
            channel: self.channel,
            overwrites,
        })
    }

    fn eval(&self) -> Permissions {
        self.eval_as(MEMBER, &self.overwrites)
    }

    fn with_overwrite(&self, o: Overwrite) -> Vec<Overwrite> {
        let mut all = self.overwrites.clone();
        all.push(o);
        all
    }

    fn timed_out(&self) -> bool {
        is_timed_out(self.timed_out_until, NOW)
    }
}

/// Discord's documented pseudocode, transliterated: `overwrites.get(id)` finds the one
/// overwrite for an id (lists here hold at most one per target).
fn reference(w: &World) -> Permissions {
    const ADMINISTRATOR: u64 = Permissions::ADMINISTRATOR.0;
    let get = |t: OverwriteTarget| w.overwrites.iter().find(|o| o.target == t);

    // compute_base_permissions
    let mut permissions = w.everyone.0;
    for role in &w.member_roles {
        permissions |= w.roles.iter().find(|(id, _)| id == role).unwrap().1 .0;
    }
    if permissions & ADMINISTRATOR == ADMINISTRATOR {
        return Permissions::ALL;
    }
    // compute_overwrites
    if let Some(o) = get(OverwriteTarget::Role(GUILD.cast())) {
        permissions &= !o.deny.0;
        permissions |= o.allow.0;
    }
    let (mut allow, mut deny) = (0, 0);
    for &role in &w.member_roles {
        if let Some(o) = get(OverwriteTarget::Role(role)) {
            allow |= o.allow.0;
            deny |= o.deny.0;
        }
    }
    permissions &= !deny;
    permissions |= allow;
    if let Some(o) = get(OverwriteTarget::Member(MEMBER)) {
        permissions &= !o.deny.0;
        permissions |= o.allow.0;
    }
    permissions &= !ADMINISTRATOR;
    // timeouts, then implicit permissions
    if w.timed_out() {
        permissions &= Permissions::TIMED_OUT.0;
    }
    let p = Permissions(permissions);
    if !p.contains(Permissions::VIEW_CHANNEL) {
        return Permissions::NONE;
    }
    let mut p = p;
    if w.channel != ChannelClass::Category && !p.contains(w.channel.send_permission()) {
        p -= Permissions::REQUIRES_SEND;
    }
    if w.channel == ChannelClass::Voice && !p.contains(Permissions::CONNECT) {
        p -= Permissions::REQUIRES_CONNECT;
    }
    p
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    // (a)
    #[test]
    fn the_owner_always_has_every_permission(w in world()) {
        prop_assert_eq!(w.eval_as(OWNER, &w.overwrites), Permissions::ALL);
    }

    // (a)
    #[test]
    fn an_administrator_always_has_every_permission(mut w in world(), on_everyone in any::<bool>()) {
        if on_everyone {
            w.everyone |= Permissions::ADMINISTRATOR;
        } else {
            w.member_roles.push(ADMIN_ROLE);
        }
        prop_assert_eq!(w.eval(), Permissions::ALL);
    }

    // (b)
    #[test]
    fn a_member_allow_overwrite_never_removes_a_permission(w in world(), allow in any_perms()) {
        let before = w.eval();
        let after = w.eval_as(MEMBER, &w.with_overwrite(Overwrite::member(MEMBER, allow, Permissions::NONE)));
        prop_assert!(after.contains(before), "lost {}", before - after);
    }

    // (b)
    #[test]
    fn a_member_deny_overwrite_never_adds_a_permission(w in world(), deny in any_perms()) {
        let before = w.eval();
        let after = w.eval_as(MEMBER, &w.with_overwrite(Overwrite::member(MEMBER, Permissions::NONE, deny)));
        prop_assert!(before.contains(after), "gained {}", after - before);
    }

    // (c)
    #[test]
    fn without_view_channel_there_is_no_permission_at_all(w in world()) {
        let p = w.eval();
        prop_assert!(p.contains(Permissions::VIEW_CHANNEL) || p.is_empty(), "{}", p);
    }

    // (d)
    #[test]
    fn a_timed_out_member_keeps_at_most_view_and_read_history(mut w in world(), left in 1u64..40_000_000) {
        w.timed_out_until = Some(NOW + left);
        prop_assert!(w.timed_out());
        let p = w.eval();
        prop_assert!(Permissions::TIMED_OUT.contains(p), "{}", p);
    }

    // (e)
    #[test]
    fn the_order_of_the_overwrites_does_not_matter(
        (w, shuffled) in world().prop_flat_map(|w| {
            let ows = w.overwrites.clone();
            (Just(w), Just(ows).prop_shuffle())
        })
    ) {
        prop_assert_eq!(w.eval(), w.eval_as(MEMBER, &shuffled));
    }

    // (f)
    #[test]
    fn any_mask_round_trips_through_serde_as_a_decimal_string(n in any::<u64>()) {
        let p = Permissions(n);
        let json = serde_json::to_string(&p).unwrap();
        prop_assert_eq!(&json, &format!("\"{n}\""));
        prop_assert_eq!(serde_json::from_str::<Permissions>(&json).unwrap(), p);
        prop_assert_eq!(serde_json::from_str::<Permissions>(&n.to_string()).unwrap(), p);
        prop_assert_eq!(n.to_string().parse::<Permissions>(), Ok(p));
        prop_assert_eq!(Permissions::from_names(&p.to_string()), Ok(p));
    }

    #[test]
    fn evaluation_matches_discords_pseudocode(mut w in world()) {
        let mut seen = Vec::new();
        w.overwrites.retain(|o| {
            let fresh = !seen.contains(&o.target);
            seen.push(o.target);
            fresh
        });
        prop_assert_eq!(w.eval(), reference(&w));
    }

    #[test]
    fn implicit_rules_only_remove_and_are_idempotent(p in any_perms(), c in channel()) {
        let once = apply_implicit(p, c);
        prop_assert!(p.contains(once));
        prop_assert_eq!(apply_implicit(once, c), once);
    }

    #[test]
    fn two_members_never_manage_each_other_unless_one_owns_the_guild(
        a in (-3i32..10, 2u64..20), b in (-3i32..10, 2u64..20),
    ) {
        let a = RoleRank { position: a.0, id: RoleId::new(a.1) };
        let b = RoleRank { position: b.0, id: RoleId::new(b.1) };
        prop_assert!(!(can_manage_member(OWNER, MEMBER, a, OTHER, b)
            && can_manage_member(OWNER, OTHER, b, MEMBER, a)));
        prop_assert!(!can_manage_member(OWNER, MEMBER, a, OWNER, b));
        prop_assert!(!can_manage_role(OWNER, MEMBER, a, a));
    }

    #[test]
    fn whoever_holds_a_permission_may_grant_it_and_nobody_else(actor in any_perms(), requested in any_perms()) {
        prop_assert!(can_grant(actor, actor));
        prop_assert!(can_grant(actor, actor & requested));
        prop_assert_eq!(
            can_grant(actor, requested),
            actor.contains(Permissions::ADMINISTRATOR) || actor.contains(requested)
        );
    }
}
