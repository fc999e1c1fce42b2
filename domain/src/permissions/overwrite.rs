//! Channel permission overwrites and how they combine with guild-level permissions.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{MemberRoles, Permissions};
use crate::{GuildId, RoleId, UserId};

/// Whom an overwrite is for: a role (the @everyone role's id is the guild's) or a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OverwriteTarget {
    Role(RoleId),
    Member(UserId),
}

impl OverwriteTarget {
    /// Discord's overwrite `type`: 0 role, 1 member.
    pub const fn discord_type(self) -> u8 {
        match self {
            OverwriteTarget::Role(_) => 0,
            OverwriteTarget::Member(_) => 1,
        }
    }

    /// The raw id of the role or member.
    pub const fn id(self) -> u64 {
        match self {
            OverwriteTarget::Role(id) => id.get(),
            OverwriteTarget::Member(id) => id.get(),
        }
    }

    /// The target for Discord's overwrite `type` and id; `None` for an unknown type or 0.
    pub const fn from_discord(kind: u64, id: u64) -> Option<Self> {
        match (kind, crate::Id::new_checked(id)) {
            (0, Some(id)) => Some(OverwriteTarget::Role(id)),
            (1, Some(id)) => Some(OverwriteTarget::Member(id.cast())),
            _ => None,
        }
    }
}

/// A channel's permission overwrite: bits explicitly allowed and denied for one role or
/// member. On the wire Discord's shape: `{"id": "…", "type": 0|1, "allow": "…",
/// "deny": "…"}` (a missing `allow` / `deny` reads as none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Overwrite {
    pub target: OverwriteTarget,
    pub allow: Permissions,
    pub deny: Permissions,
}

impl Overwrite {
    pub const fn role(id: RoleId, allow: Permissions, deny: Permissions) -> Self {
        Self {
            target: OverwriteTarget::Role(id),
            allow,
            deny,
        }
    }

    pub const fn member(id: UserId, allow: Permissions, deny: Permissions) -> Self {
        Self {
            target: OverwriteTarget::Member(id),
            allow,
            deny,
        }
    }

    /// The overwrite for @everyone (the role whose id is the guild's).
    pub const fn everyone(guild_id: GuildId, allow: Permissions, deny: Permissions) -> Self {
        Self::role(guild_id.cast(), allow, deny)
    }

    /// `perms` with this overwrite applied: deny first, then allow.
    pub const fn apply(self, perms: Permissions) -> Permissions {
        perms.difference(self.deny).union(self.allow)
    }
}

/// A member's permissions in a channel from their guild-level (`base`) permissions and
/// the channel's overwrites, as Discord documents it ("Permission Overwrites"):
///
/// 1. base has ADMINISTRATOR (owners' base does): every permission, overwrites ignored;
/// 2. the @everyone overwrite (role id == guild id): deny, then allow;
/// 3. the overwrites of every role the member has, combined: all their denies, then all
///    their allows, so among roles an allow wins over a deny of the same bit, and the
///    order of the list does not matter;
/// 4. the member's own overwrite: deny, then allow.
///
/// Overwrites for roles the member lacks or for other members are ignored. Should the
/// list hold several entries for the same target, they are combined like step 3 (Discord
/// never stores duplicates; combining keeps the result order-independent). Overwrites
/// never grant ADMINISTRATOR: it is a guild-level permission (step 1). Read-only over
/// `overwrites`, O(overwrites × roles), no allocation.
pub fn overwrite_permissions(
    base: Permissions,
    member: MemberRoles<'_>,
    guild_id: GuildId,
    overwrites: &[Overwrite],
) -> Permissions {
    if base.contains(Permissions::ADMINISTRATOR) {
        return Permissions::ALL;
    }
    let everyone: RoleId = guild_id.cast();
    let mut everyone_ow = (Permissions::NONE, Permissions::NONE);
    let mut roles_ow = (Permissions::NONE, Permissions::NONE);
    let mut member_ow = (Permissions::NONE, Permissions::NONE);
    for o in overwrites {
        let slot = match o.target {
            OverwriteTarget::Role(id) if id == everyone => &mut everyone_ow,
            OverwriteTarget::Role(id) if member.has_role(id) => &mut roles_ow,
            OverwriteTarget::Member(id) if id == member.user_id => &mut member_ow,
            _ => continue,
        };
        slot.0.insert(o.allow);
        slot.1.insert(o.deny);
    }
    let mut perms = base;
    for (allow, deny) in [everyone_ow, roles_ow, member_ow] {
        perms = perms.difference(deny).union(allow);
    }
    perms.difference(Permissions::ADMINISTRATOR)
}

/// The overwrites that govern a channel: its category's when it is synced with it,
/// its own otherwise.
///
/// On Discord a channel "synced" with its category has the same overwrites as the
/// category, and editing the category's overwrites edits every synced child too. Chorus
/// keeps one list (the category's) and a `synced` flag per child instead, so a category
/// edit is one event and never fans out; this function resolves which list applies.
/// `parent` is the category's overwrites (`None` without a category: the channel's own
/// apply). Threads have no overwrites of their own: pass their parent channel's (resolved
/// the same way).
pub fn effective_overwrites<'a>(
    channel: &'a [Overwrite],
    parent: Option<&'a [Overwrite]>,
    synced: bool,
) -> &'a [Overwrite] {
    match parent {
        Some(parent) if synced => parent,
        _ => channel,
    }
}

/// Whether two overwrite lists are the same set (order aside): what Discord shows as a
/// channel being "synced" with its category. No allocation, O(n²) for n overwrites.
pub fn is_synced(channel: &[Overwrite], parent: &[Overwrite]) -> bool {
    fn count(list: &[Overwrite], o: &Overwrite) -> usize {
        list.iter().filter(|x| *x == o).count()
    }
    channel.len() == parent.len()
        && channel
            .iter()
            .all(|o| count(channel, o) == count(parent, o))
}

/// Discord's wire shape of an overwrite.
#[derive(Serialize, Deserialize)]
struct Wire {
    id: RoleId,
    #[serde(rename = "type")]
    kind: u64,
    #[serde(default)]
    allow: Permissions,
    #[serde(default)]
    deny: Permissions,
}

impl Serialize for Overwrite {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let id = match self.target {
            OverwriteTarget::Role(id) => id,
            OverwriteTarget::Member(id) => id.cast(),
        };
        Wire {
            id,
            kind: u64::from(self.target.discord_type()),
            allow: self.allow,
            deny: self.deny,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Overwrite {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = Wire::deserialize(d)?;
        let target = OverwriteTarget::from_discord(w.kind, w.id.get()).ok_or_else(|| {
            serde::de::Error::custom("overwrite type must be 0 (role) or 1 (member)")
        })?;
        Ok(Overwrite {
            target,
            allow: w.allow,
            deny: w.deny,
        })
    }
}
