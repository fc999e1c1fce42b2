//! The role hierarchy: who may manage which role or member, and who may grant what.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;

use super::Permissions;
use crate::{GuildId, RoleId, UserId};

/// Where the caller keeps role positions: a map, a slice of pairs, or any
/// `Fn(RoleId) -> Option<i32>`. `None` (a deleted role) is skipped.
pub trait RolePositions {
    fn role_position(&self, role: RoleId) -> Option<i32>;
}

impl<F: Fn(RoleId) -> Option<i32>> RolePositions for F {
    fn role_position(&self, role: RoleId) -> Option<i32> {
        self(role)
    }
}

impl<S: BuildHasher> RolePositions for HashMap<RoleId, i32, S> {
    fn role_position(&self, role: RoleId) -> Option<i32> {
        self.get(&role).copied()
    }
}

impl RolePositions for BTreeMap<RoleId, i32> {
    fn role_position(&self, role: RoleId) -> Option<i32> {
        self.get(&role).copied()
    }
}

impl RolePositions for [(RoleId, i32)] {
    fn role_position(&self, role: RoleId) -> Option<i32> {
        self.iter().find(|(id, _)| *id == role).map(|(_, p)| *p)
    }
}

impl<const N: usize> RolePositions for [(RoleId, i32); N] {
    fn role_position(&self, role: RoleId) -> Option<i32> {
        self.as_slice().role_position(role)
    }
}

/// A role's place in the hierarchy. Ordered as Discord orders roles: a higher position
/// ranks higher; at the same position the older role (lower id) ranks higher. Two ranks
/// are equal only for the same role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RoleRank {
    pub position: i32,
    pub id: RoleId,
}

impl RoleRank {
    /// The @everyone role, at the bottom (position 0).
    pub const fn everyone(guild_id: GuildId) -> Self {
        Self {
            position: 0,
            id: guild_id.cast(),
        }
    }
}

impl Ord for RoleRank {
    fn cmp(&self, other: &Self) -> Ordering {
        self.position
            .cmp(&other.position)
            .then_with(|| other.id.cmp(&self.id))
    }
}

impl PartialOrd for RoleRank {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A member's highest role; @everyone when they have none (or only unknown ones).
pub fn highest_role<P: RolePositions + ?Sized>(
    role_ids: &[RoleId],
    guild_id: GuildId,
    positions: &P,
) -> RoleRank {
    role_ids
        .iter()
        .filter_map(|&id| {
            positions
                .role_position(id)
                .map(|position| RoleRank { position, id })
        })
        .fold(RoleRank::everyone(guild_id), Ord::max)
}

/// The position of a member's highest role (0, @everyone's, when they have none).
pub fn highest_role_position<P: RolePositions + ?Sized>(
    role_ids: &[RoleId],
    guild_id: GuildId,
    positions: &P,
) -> i32 {
    highest_role(role_ids, guild_id, positions).position
}

/// Whether `actor` may manage (edit, delete, assign, remove) the role `target` as far as
/// the hierarchy goes: the owner may manage every role; anyone else only roles strictly
/// below their highest role. Holding the needed permission (MANAGE_ROLES) is checked
/// separately; ADMINISTRATOR does not lift the hierarchy.
pub fn can_manage_role(
    guild_owner: UserId,
    actor: UserId,
    actor_highest: RoleRank,
    target: RoleRank,
) -> bool {
    actor == guild_owner || actor_highest > target
}

/// Whether `actor` may act on the member `target` (kick, ban, time out, change their
/// nickname or roles) as far as the hierarchy goes: the owner may act on anyone; nobody
/// else may act on the owner; otherwise the actor's highest role must rank strictly
/// above the target's (so never on oneself, nor on a peer with the same highest role).
/// Holding the needed permission is checked separately; ADMINISTRATOR does not lift the
/// hierarchy.
pub fn can_manage_member(
    guild_owner: UserId,
    actor: UserId,
    actor_highest: RoleRank,
    target: UserId,
    target_highest: RoleRank,
) -> bool {
    if actor == guild_owner {
        return true;
    }
    target != guild_owner && actor_highest > target_highest
}

/// Whether someone holding `actor` (their guild-level permissions) may grant
/// `requested` (to a role or in an overwrite): nobody grants a permission they lack;
/// ADMINISTRATOR (the owner's permissions include it) may grant anything. For a role
/// edit pass the bits being added (`new - old`); for a channel overwrite, every bit it
/// sets either way (`allow | deny`), as Discord asks of overwrite edits.
pub const fn can_grant(actor: Permissions, requested: Permissions) -> bool {
    actor.contains(Permissions::ADMINISTRATOR) || actor.contains(requested)
}
