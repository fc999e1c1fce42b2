//! The Guild aggregate (`guild-{id}`): settings, roles, members, bans, the channel list
//! and the channels' permission overwrites.
//!
//! Every permission check goes through Discord's full model
//! ([`crate::permissions`]): roles, the @everyone role, channel overwrites (a channel
//! created in a category is synced with it until it gets an overwrite of its own),
//! timeouts and the role hierarchy. [`GuildState::guild_permissions`] and
//! [`GuildState::channel_permissions`] are what a member may do; commands that need the
//! time to judge timeouts carry `now_ms`.

mod bots;
mod channels;
mod members;
mod roles;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

pub use bots::AddBot;

use crate::member::{Member, Nickname, RemovalReason};
use crate::permissions::{
    self, can_grant, compute_channel_permissions, compute_guild_permissions, ChannelClass,
    ChannelPermissionInput, GuildPermissionInput, MemberRoles, Overwrite, OverwriteTarget,
    Permissions, RoleRank,
};
use crate::role::{Role, RoleName, RolePosition};
use crate::values::{ChannelName, GuildName, Topic};
use crate::{domain_event, Aggregate, ChannelId, DomainError, GuildId, Resource, RoleId, UserId};

/// Channel kinds, with Discord's numeric types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    Text,
    Voice,
    Category,
}

impl ChannelKind {
    /// Discord's channel `type` number.
    pub fn discord_type(self) -> u8 {
        match self {
            ChannelKind::Text => 0,
            ChannelKind::Voice => 2,
            ChannelKind::Category => 4,
        }
    }

    /// The kind for a Discord channel `type` number this build supports.
    pub fn from_discord_type(t: u64) -> Option<Self> {
        match t {
            0 => Some(ChannelKind::Text),
            2 => Some(ChannelKind::Voice),
            4 => Some(ChannelKind::Category),
            _ => None,
        }
    }

    /// Whether messages can be sent in channels of this kind.
    pub fn is_textual(self) -> bool {
        matches!(self, ChannelKind::Text)
    }
}

/// The longest slowmode: 6 hours, in seconds.
pub const MAX_RATE_LIMIT_PER_USER: u32 = 21_600;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum GuildEvent {
    /// The guild begins, with its @everyone role (id = guild id, position 0).
    GuildCreated {
        guild_id: GuildId,
        name: GuildName,
        owner_id: UserId,
        everyone_permissions: Permissions,
    },
    /// A channel is created. In a category it starts synced with the category's
    /// overwrites (`GuildChannel::permission_synced`).
    ChannelCreated {
        channel_id: ChannelId,
        kind: ChannelKind,
        name: ChannelName,
        position: i32,
        parent_id: Option<ChannelId>,
        topic: Option<Topic>,
        nsfw: bool,
    },
    /// A user becomes a member (with no roles, no nickname, no timeout).
    MemberJoined {
        user_id: UserId,
        invite_code: Option<String>,
    },
    /// A role is created (at position 1; a `RolesReordered` before it moves the others
    /// up).
    RoleCreated {
        role: Role,
    },
    /// A role's whole new state after an edit. For @everyone (id = guild id) this also
    /// sets the guild's `everyone_permissions`.
    RoleUpdated {
        role: Role,
    },
    /// A role is deleted: every member loses it and every channel its overwrite.
    RoleDeleted {
        role_id: RoleId,
    },
    /// Roles move: each listed role's new position; unlisted roles stay where they are.
    RolesReordered {
        positions: Vec<RolePosition>,
    },
    /// A member's whole new state after an edit (nickname, roles, timeout, voice).
    MemberUpdated {
        user_id: UserId,
        nick: Option<Nickname>,
        roles: Vec<RoleId>,
        communication_disabled_until_ms: Option<u64>,
        mute: bool,
        deaf: bool,
    },
    /// A member leaves, is kicked or is banned (after `MemberBanned`).
    MemberRemoved {
        user_id: UserId,
        reason: RemovalReason,
    },
    /// A user (member or not) is banned; a member is also removed (`MemberRemoved`
    /// follows). Deleting their recent messages (`delete_message_seconds`) is the
    /// channels' business.
    MemberBanned {
        user_id: UserId,
        delete_message_seconds: u32,
    },
    MemberUnbanned {
        user_id: UserId,
    },
    /// A channel's whole new state after an edit (its overwrites aside). A channel that
    /// stops being synced keeps the overwrites it had (its category's, copied); one that
    /// becomes synced takes its category's.
    ChannelUpdated {
        channel_id: ChannelId,
        kind: ChannelKind,
        name: ChannelName,
        position: i32,
        parent_id: Option<ChannelId>,
        topic: Option<Topic>,
        nsfw: bool,
        rate_limit_per_user: u32,
        permission_synced: bool,
    },
    /// A channel is deleted. The channels of a deleted category lose their parent and
    /// keep the overwrites that applied to them.
    ChannelDeleted {
        channel_id: ChannelId,
    },
    /// A channel's overwrite for one role or member is set (added or replaced). A synced
    /// channel first copies its category's overwrites and is synced no more.
    ChannelOverwriteSet {
        channel_id: ChannelId,
        overwrite: Overwrite,
    },
    /// A channel's overwrite for one role or member is removed (unsyncing it likewise).
    ChannelOverwriteDeleted {
        channel_id: ChannelId,
        #[serde(with = "target_wire")]
        target: OverwriteTarget,
    },
    /// The guild's name changes (MANAGE_GUILD).
    GuildRenamed {
        name: GuildName,
    },
}
domain_event!(GuildEvent {
    GuildCreated,
    ChannelCreated,
    MemberJoined,
    RoleCreated,
    RoleUpdated,
    RoleDeleted,
    RolesReordered,
    MemberUpdated,
    MemberRemoved,
    MemberBanned,
    MemberUnbanned,
    ChannelUpdated,
    ChannelDeleted,
    ChannelOverwriteSet,
    ChannelOverwriteDeleted,
    GuildRenamed,
});

/// An overwrite target on the wire as Discord writes it: `{"id": "…", "type": 0|1}`.
mod target_wire {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::permissions::OverwriteTarget;
    use crate::RoleId;

    #[derive(Serialize, Deserialize)]
    struct Wire {
        id: RoleId,
        #[serde(rename = "type")]
        kind: u64,
    }

    pub fn serialize<S: Serializer>(t: &OverwriteTarget, s: S) -> Result<S::Ok, S::Error> {
        Wire {
            id: RoleId::new(t.id()),
            kind: u64::from(t.discord_type()),
        }
        .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<OverwriteTarget, D::Error> {
        let w = Wire::deserialize(d)?;
        OverwriteTarget::from_discord(w.kind, w.id.get()).ok_or_else(|| {
            serde::de::Error::custom("overwrite type must be 0 (role) or 1 (member)")
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuildChannel {
    pub kind: ChannelKind,
    pub name: ChannelName,
    pub position: i32,
    pub parent_id: Option<ChannelId>,
    pub topic: Option<Topic>,
    pub nsfw: bool,
    /// Slowmode: seconds a member waits between messages (0: off).
    pub rate_limit_per_user: u32,
    /// The channel's own overwrites. While `permission_synced`, its category's apply
    /// instead (see [`GuildState::effective_overwrites`]).
    pub overwrites: Vec<Overwrite>,
    /// Synced with the category: the category's overwrites apply, and follow its edits.
    pub permission_synced: bool,
}

#[derive(Debug, Clone, Default)]
pub struct GuildState {
    pub id: Option<GuildId>,
    pub name: Option<GuildName>,
    pub owner_id: Option<UserId>,
    /// The @everyone role's permissions (also `roles[guild id].permissions`).
    pub everyone_permissions: Permissions,
    pub members: HashMap<UserId, Member>,
    pub channels: BTreeMap<ChannelId, GuildChannel>,
    /// Every role, @everyone (id = guild id) included.
    pub roles: BTreeMap<RoleId, Role>,
    pub bans: HashSet<UserId>,
}

impl GuildState {
    pub fn exists(&self) -> bool {
        self.id.is_some()
    }

    pub fn is_member(&self, user: UserId) -> bool {
        self.members.contains_key(&user)
    }

    pub fn is_owner(&self, user: UserId) -> bool {
        self.owner_id == Some(user)
    }

    pub fn is_banned(&self, user: UserId) -> bool {
        self.bans.contains(&user)
    }

    pub fn member(&self, user: UserId) -> Option<&Member> {
        self.members.get(&user)
    }

    pub fn role(&self, role: RoleId) -> Option<&Role> {
        self.roles.get(&role)
    }

    /// The @everyone role's id (the guild's).
    pub fn everyone_role_id(&self) -> Option<RoleId> {
        self.id.map(GuildId::cast)
    }

    pub fn is_everyone(&self, role: RoleId) -> bool {
        self.everyone_role_id() == Some(role)
    }

    /// The roles, lowest first (as [`RoleRank`] orders them).
    pub fn roles_by_rank(&self) -> Vec<&Role> {
        let mut roles: Vec<&Role> = self.roles.values().collect();
        roles.sort_by_key(|r| r.rank());
        roles
    }

    /// A member's highest role (@everyone without roles); `None` for non-members.
    pub fn highest_role(&self, user: UserId) -> Option<RoleRank> {
        let guild_id = self.id?;
        let member = self.members.get(&user)?;
        let positions = |id: RoleId| self.roles.get(&id).map(|r| r.position);
        Some(permissions::highest_role(
            &member.roles,
            guild_id,
            &positions,
        ))
    }

    /// Whether `actor` may manage (edit, delete, move, assign) `role` as far as the
    /// hierarchy goes: the owner always; others only below their highest role.
    pub fn can_manage_role(&self, actor: UserId, role: RoleId) -> bool {
        match (
            self.owner_id,
            self.highest_role(actor),
            self.roles.get(&role),
        ) {
            (Some(owner), Some(highest), Some(role)) => {
                permissions::can_manage_role(owner, actor, highest, role.rank())
            }
            _ => false,
        }
    }

    /// Whether `actor` may act on the member `target` (kick, ban, time out, rename) as
    /// far as the hierarchy goes.
    pub fn can_manage_member(&self, actor: UserId, target: UserId) -> bool {
        match (
            self.owner_id,
            self.highest_role(actor),
            self.highest_role(target),
        ) {
            (Some(owner), Some(a), Some(t)) => {
                permissions::can_manage_member(owner, actor, a, target, t)
            }
            _ => false,
        }
    }

    /// A member's guild-level permissions at `now_ms` (owner: all; otherwise @everyone
    /// and their roles, ADMINISTRATOR meaning all; a timed-out member keeps only
    /// VIEW_CHANNEL and READ_MESSAGE_HISTORY). None for non-members.
    pub fn guild_permissions(&self, user: UserId, now_ms: u64) -> Permissions {
        let (Some(guild_id), Some(owner_id), Some(member)) =
            (self.id, self.owner_id, self.members.get(&user))
        else {
            return Permissions::NONE;
        };
        let roles = |id: RoleId| self.roles.get(&id).map(|r| r.permissions);
        compute_guild_permissions(&GuildPermissionInput {
            guild_id,
            owner_id,
            everyone: self.everyone_permissions,
            roles: &roles,
            member: MemberRoles::new(user, &member.roles),
            communication_disabled_until_ms: member.communication_disabled_until_ms,
            now_ms,
        })
    }

    /// What a member may do in a channel at `now_ms`: guild permissions, then the
    /// channel's effective overwrites, timeouts and Discord's implicit rules. None for
    /// non-members and unknown channels.
    pub fn channel_permissions(
        &self,
        user: UserId,
        channel_id: ChannelId,
        now_ms: u64,
    ) -> Permissions {
        let (Some(guild_id), Some(owner_id), Some(member), Some(channel)) = (
            self.id,
            self.owner_id,
            self.members.get(&user),
            self.channels.get(&channel_id),
        ) else {
            return Permissions::NONE;
        };
        let roles = |id: RoleId| self.roles.get(&id).map(|r| r.permissions);
        compute_channel_permissions(&ChannelPermissionInput {
            guild: GuildPermissionInput {
                guild_id,
                owner_id,
                everyone: self.everyone_permissions,
                roles: &roles,
                member: MemberRoles::new(user, &member.roles),
                communication_disabled_until_ms: member.communication_disabled_until_ms,
                now_ms,
            },
            channel: ChannelClass::from(channel.kind),
            overwrites: self.effective_overwrites(channel_id),
        })
    }

    /// The overwrites that govern a channel: its category's while synced, its own
    /// otherwise (empty for an unknown channel).
    pub fn effective_overwrites(&self, channel_id: ChannelId) -> &[Overwrite] {
        let Some(channel) = self.channels.get(&channel_id) else {
            return &[];
        };
        let parent = channel
            .parent_id
            .and_then(|p| self.channels.get(&p))
            .map(|p| p.overwrites.as_slice());
        permissions::effective_overwrites(&channel.overwrites, parent, channel.permission_synced)
    }

    /// The guild-level permissions of a member from their roles, timeouts aside (owner:
    /// all); `None` for non-members. Commands use [`Self::guild_permissions`], which
    /// judges timeouts at a given time.
    pub fn base_permissions(&self, user: UserId) -> Option<Permissions> {
        let (Some(owner_id), Some(member)) = (self.owner_id, self.members.get(&user)) else {
            return None;
        };
        let roles = |id: RoleId| self.roles.get(&id).map(|r| r.permissions);
        Some(permissions::base_permissions(
            owner_id,
            self.everyone_permissions,
            MemberRoles::new(user, &member.roles),
            &roles,
        ))
    }

    /// Checks that `user` is a member holding `needed` (roles considered, timeouts
    /// aside; see [`Self::require_at`]).
    pub fn require(&self, user: UserId, needed: Permissions) -> Result<(), DomainError> {
        if !self.exists() {
            return Err(DomainError::Unknown(Resource::Guild));
        }
        match self.base_permissions(user) {
            None => Err(DomainError::MissingAccess),
            Some(p) if p.contains(needed) => Ok(()),
            Some(_) => Err(DomainError::MissingPermissions),
        }
    }

    /// Checks that `user` is a member holding `needed` at guild level at `now_ms`, and
    /// returns their guild permissions. Unknown Guild, Missing Access (not a member),
    /// Missing Permissions.
    pub fn require_at(
        &self,
        user: UserId,
        needed: Permissions,
        now_ms: u64,
    ) -> Result<Permissions, DomainError> {
        if !self.exists() {
            return Err(DomainError::Unknown(Resource::Guild));
        }
        if !self.is_member(user) {
            return Err(DomainError::MissingAccess);
        }
        let perms = self.guild_permissions(user, now_ms);
        if perms.contains(needed) {
            Ok(perms)
        } else {
            Err(DomainError::MissingPermissions)
        }
    }

    /// Checks that `user` sees `channel_id` and holds `needed` in it at `now_ms`, and
    /// returns their permissions there. Unknown Guild / Channel, Missing Access (not a
    /// member, or cannot view the channel), Missing Permissions.
    pub fn require_in_channel(
        &self,
        user: UserId,
        channel_id: ChannelId,
        needed: Permissions,
        now_ms: u64,
    ) -> Result<Permissions, DomainError> {
        if !self.exists() {
            return Err(DomainError::Unknown(Resource::Guild));
        }
        if !self.channels.contains_key(&channel_id) {
            return Err(DomainError::Unknown(Resource::Channel));
        }
        if !self.is_member(user) {
            return Err(DomainError::MissingAccess);
        }
        let perms = self.channel_permissions(user, channel_id, now_ms);
        if !perms.contains(Permissions::VIEW_CHANNEL) {
            return Err(DomainError::MissingAccess);
        }
        if perms.contains(needed) {
            Ok(perms)
        } else {
            Err(DomainError::MissingPermissions)
        }
    }

    /// Checks that `user` may show that they are typing in `channel_id` at `now_ms`: what
    /// sending a message there takes (SEND_MESSAGES in a text channel they can view).
    pub fn require_typing(
        &self,
        user: UserId,
        channel_id: ChannelId,
        now_ms: u64,
    ) -> Result<(), DomainError> {
        self.require_in_channel(user, channel_id, Permissions::SEND_MESSAGES, now_ms)?;
        match self.channels.get(&channel_id) {
            Some(c) if c.kind.is_textual() => Ok(()),
            Some(_) => Err(DomainError::WrongChannelType),
            None => Err(DomainError::Unknown(Resource::Channel)),
        }
    }

    /// The `MemberUpdated` event recording `member` as the new state of `user_id`.
    fn member_updated(user_id: UserId, member: Member) -> GuildEvent {
        GuildEvent::MemberUpdated {
            user_id,
            nick: member.nick,
            roles: member.roles,
            communication_disabled_until_ms: member.communication_disabled_until_ms,
            mute: member.mute,
            deaf: member.deaf,
        }
    }

    /// A channel's overwrites with one set or removed, as the channel's own list.
    fn edit_overwrites(&mut self, channel_id: ChannelId, edit: impl FnOnce(&mut Vec<Overwrite>)) {
        let mut list = self.effective_overwrites(channel_id).to_vec();
        edit(&mut list);
        if let Some(c) = self.channels.get_mut(&channel_id) {
            c.overwrites = list;
            c.permission_synced = false;
        }
    }
}

impl Aggregate for GuildState {
    type Event = GuildEvent;
    fn evolve(&mut self, event: &GuildEvent) {
        match event {
            GuildEvent::GuildCreated {
                guild_id,
                name,
                owner_id,
                everyone_permissions,
            } => {
                self.id = Some(*guild_id);
                self.name = Some(name.clone());
                self.owner_id = Some(*owner_id);
                self.everyone_permissions = *everyone_permissions;
                let everyone = Role::everyone(*guild_id, *everyone_permissions);
                self.roles.insert(everyone.id, everyone);
            }
            GuildEvent::ChannelCreated {
                channel_id,
                kind,
                name,
                position,
                parent_id,
                topic,
                nsfw,
            } => {
                let parent = parent_id.and_then(|p| self.channels.get(&p));
                let (overwrites, permission_synced) = match parent {
                    Some(parent) => (parent.overwrites.clone(), true),
                    None => (Vec::new(), false),
                };
                self.channels.insert(
                    *channel_id,
                    GuildChannel {
                        kind: *kind,
                        name: name.clone(),
                        position: *position,
                        parent_id: *parent_id,
                        topic: topic.clone(),
                        nsfw: *nsfw,
                        rate_limit_per_user: 0,
                        overwrites,
                        permission_synced,
                    },
                );
            }
            GuildEvent::MemberJoined { user_id, .. } => {
                self.members.entry(*user_id).or_default();
            }
            GuildEvent::RoleCreated { role } | GuildEvent::RoleUpdated { role } => {
                if self.is_everyone(role.id) {
                    self.everyone_permissions = role.permissions;
                }
                self.roles.insert(role.id, role.clone());
            }
            GuildEvent::RoleDeleted { role_id } => {
                self.roles.remove(role_id);
                for member in self.members.values_mut() {
                    member.roles.retain(|r| r != role_id);
                }
                for channel in self.channels.values_mut() {
                    channel
                        .overwrites
                        .retain(|o| o.target != OverwriteTarget::Role(*role_id));
                }
            }
            GuildEvent::RolesReordered { positions } => {
                for p in positions {
                    if let Some(role) = self.roles.get_mut(&p.role_id) {
                        role.position = p.position;
                    }
                }
            }
            GuildEvent::MemberUpdated {
                user_id,
                nick,
                roles,
                communication_disabled_until_ms,
                mute,
                deaf,
            } => {
                if let Some(member) = self.members.get_mut(user_id) {
                    *member = Member {
                        roles: roles.clone(),
                        nick: nick.clone(),
                        communication_disabled_until_ms: *communication_disabled_until_ms,
                        mute: *mute,
                        deaf: *deaf,
                    };
                }
            }
            GuildEvent::MemberRemoved { user_id, .. } => {
                self.members.remove(user_id);
            }
            GuildEvent::MemberBanned { user_id, .. } => {
                self.bans.insert(*user_id);
            }
            GuildEvent::MemberUnbanned { user_id } => {
                self.bans.remove(user_id);
            }
            GuildEvent::GuildRenamed { name } => {
                self.name = Some(name.clone());
            }
            GuildEvent::ChannelUpdated {
                channel_id,
                kind: _,
                name,
                position,
                parent_id,
                topic,
                nsfw,
                rate_limit_per_user,
                permission_synced,
            } => {
                let overwrites = if *permission_synced {
                    parent_id
                        .and_then(|p| self.channels.get(&p))
                        .map(|p| p.overwrites.clone())
                        .unwrap_or_default()
                } else {
                    self.effective_overwrites(*channel_id).to_vec()
                };
                if let Some(c) = self.channels.get_mut(channel_id) {
                    c.name = name.clone();
                    c.position = *position;
                    c.parent_id = *parent_id;
                    c.topic = topic.clone();
                    c.nsfw = *nsfw;
                    c.rate_limit_per_user = *rate_limit_per_user;
                    c.overwrites = overwrites;
                    c.permission_synced = *permission_synced && parent_id.is_some();
                }
            }
            GuildEvent::ChannelDeleted { channel_id } => {
                if let Some(removed) = self.channels.remove(channel_id) {
                    for child in self.channels.values_mut() {
                        if child.parent_id == Some(*channel_id) {
                            if child.permission_synced {
                                child.overwrites = removed.overwrites.clone();
                            }
                            child.parent_id = None;
                            child.permission_synced = false;
                        }
                    }
                }
            }
            GuildEvent::ChannelOverwriteSet {
                channel_id,
                overwrite,
            } => {
                self.edit_overwrites(*channel_id, |list| {
                    match list.iter_mut().find(|o| o.target == overwrite.target) {
                        Some(existing) => *existing = *overwrite,
                        None => list.push(*overwrite),
                    }
                });
            }
            GuildEvent::ChannelOverwriteDeleted { channel_id, target } => {
                self.edit_overwrites(*channel_id, |list| list.retain(|o| o.target != *target));
            }
        }
    }
}

#[derive(Debug, Clone)]
pub enum GuildCommand {
    /// Creates a guild owned by `owner_id`, with the owner as its first member and a
    /// `general` text channel.
    Create {
        guild_id: GuildId,
        name: GuildName,
        owner_id: UserId,
        general_channel_id: ChannelId,
    },
    /// Creates a channel (MANAGE_CHANNELS). Timeouts are judged at the time in the
    /// channel id (a fresh snowflake).
    CreateChannel {
        actor: UserId,
        channel_id: ChannelId,
        kind: ChannelKind,
        name: ChannelName,
        parent_id: Option<ChannelId>,
        topic: Option<Topic>,
        nsfw: bool,
        position: Option<i32>,
    },
    /// Joins the guild (not when banned).
    Join {
        user_id: UserId,
        invite_code: Option<String>,
    },
    /// Leaves the guild (not the owner).
    Leave { user_id: UserId },
    /// Creates a role at the bottom, just above @everyone (MANAGE_ROLES; only
    /// permissions the actor holds).
    CreateRole {
        actor: UserId,
        role_id: RoleId,
        name: RoleName,
        permissions: Permissions,
        color: u32,
        hoist: bool,
        mentionable: bool,
        now_ms: u64,
    },
    /// Edits a role below the actor's highest (MANAGE_ROLES; only added permissions the
    /// actor holds). `None` leaves a field as it is.
    EditRole {
        actor: UserId,
        role_id: RoleId,
        name: Option<RoleName>,
        permissions: Option<Permissions>,
        color: Option<u32>,
        hoist: Option<bool>,
        mentionable: Option<bool>,
        now_ms: u64,
    },
    /// Deletes a role below the actor's highest (MANAGE_ROLES); never @everyone.
    DeleteRole {
        actor: UserId,
        role_id: RoleId,
        now_ms: u64,
    },
    /// Moves roles (MANAGE_ROLES): only roles below the actor's highest, and only to
    /// positions below it (1 and above; @everyone stays at 0).
    ReorderRoles {
        actor: UserId,
        positions: Vec<(RoleId, i32)>,
        now_ms: u64,
    },
    /// Gives a member a role below the actor's highest (MANAGE_ROLES; not a managed
    /// role).
    AddMemberRole {
        actor: UserId,
        user_id: UserId,
        role_id: RoleId,
        now_ms: u64,
    },
    /// Takes a role below the actor's highest from a member (MANAGE_ROLES; not a
    /// managed role).
    RemoveMemberRole {
        actor: UserId,
        user_id: UserId,
        role_id: RoleId,
        now_ms: u64,
    },
    /// Edits a member; each given field is checked as Discord does: `nick` (own:
    /// CHANGE_NICKNAME; others': MANAGE_NICKNAMES and a higher role; `Some(None)`
    /// clears), `roles` (the whole new list; MANAGE_ROLES and each added or removed role
    /// below the actor's highest), `communication_disabled_until_ms` (MODERATE_MEMBERS
    /// and a higher role; at most 28 days after `now_ms`; never the owner or an
    /// administrator; `Some(None)` lifts it), `mute` (MUTE_MEMBERS), `deaf`
    /// (DEAFEN_MEMBERS). Fields equal to the current ones need no permission.
    EditMember {
        actor: UserId,
        user_id: UserId,
        nick: Option<Option<Nickname>>,
        roles: Option<Vec<RoleId>>,
        communication_disabled_until_ms: Option<Option<u64>>,
        mute: Option<bool>,
        deaf: Option<bool>,
        now_ms: u64,
    },
    /// Kicks a member below the actor (KICK_MEMBERS); never the owner.
    KickMember {
        actor: UserId,
        user_id: UserId,
        now_ms: u64,
    },
    /// Bans a user, member or not (BAN_MEMBERS; a member must rank below the actor);
    /// never the owner. `delete_message_seconds`: 0 to 604800.
    BanMember {
        actor: UserId,
        user_id: UserId,
        delete_message_seconds: u32,
        now_ms: u64,
    },
    /// Lifts a ban (BAN_MEMBERS).
    UnbanMember {
        actor: UserId,
        user_id: UserId,
        now_ms: u64,
    },
    /// Sets a channel's overwrite for a role or member (MANAGE_ROLES in that channel;
    /// only bits the actor holds there, either way, unless administrator).
    SetOverwrite {
        actor: UserId,
        channel_id: ChannelId,
        overwrite: Overwrite,
        now_ms: u64,
    },
    /// Removes a channel's overwrite (MANAGE_ROLES in that channel; only an overwrite
    /// whose bits the actor holds there, unless administrator).
    DeleteOverwrite {
        actor: UserId,
        channel_id: ChannelId,
        target: OverwriteTarget,
        now_ms: u64,
    },
    /// Edits a channel (MANAGE_CHANNELS in that channel). `None` leaves a field as it is;
    /// `lock_permissions` syncs the channel with its (new) category.
    EditChannel {
        actor: UserId,
        channel_id: ChannelId,
        name: Option<ChannelName>,
        topic: Option<Option<Topic>>,
        nsfw: Option<bool>,
        position: Option<i32>,
        parent_id: Option<Option<ChannelId>>,
        rate_limit_per_user: Option<u32>,
        lock_permissions: bool,
        now_ms: u64,
    },
    /// Adds a bot with its managed role (see [`AddBot`]).
    AddBot(AddBot),
    /// Deletes a channel (MANAGE_CHANNELS in that channel).
    DeleteChannel {
        actor: UserId,
        channel_id: ChannelId,
        now_ms: u64,
    },
    /// Renames the guild (MANAGE_GUILD); the same name changes nothing.
    Rename {
        actor: UserId,
        name: GuildName,
        now_ms: u64,
    },
}

pub fn decide(state: &GuildState, command: GuildCommand) -> Result<Vec<GuildEvent>, DomainError> {
    match command {
        GuildCommand::Create {
            guild_id,
            name,
            owner_id,
            general_channel_id,
        } => {
            if state.exists() {
                return Err(DomainError::AlreadyExists(Resource::Guild));
            }
            Ok(vec![
                GuildEvent::GuildCreated {
                    guild_id,
                    name,
                    owner_id,
                    everyone_permissions: Permissions::DEFAULT_EVERYONE,
                },
                GuildEvent::MemberJoined {
                    user_id: owner_id,
                    invite_code: None,
                },
                GuildEvent::ChannelCreated {
                    channel_id: general_channel_id,
                    kind: ChannelKind::Text,
                    name: ChannelName::parse("general")?,
                    position: 0,
                    parent_id: None,
                    topic: None,
                    nsfw: false,
                },
            ])
        }
        GuildCommand::CreateChannel {
            actor,
            channel_id,
            kind,
            name,
            parent_id,
            topic,
            nsfw,
            position,
        } => {
            state.require_at(
                actor,
                Permissions::MANAGE_CHANNELS,
                channel_id.timestamp_ms(),
            )?;
            if state.channels.contains_key(&channel_id) {
                return Err(DomainError::AlreadyExists(Resource::Channel));
            }
            if let Some(parent) = parent_id {
                channels::check_parent(state, kind, parent)?;
            }
            if topic.is_some() && kind != ChannelKind::Text {
                return Err(DomainError::invalid(
                    "topic",
                    "Only text channels have a topic.",
                ));
            }
            let position = position.unwrap_or_else(|| {
                state.channels.values().filter(|c| c.kind == kind).count() as i32
            });
            if position < 0 {
                return Err(DomainError::invalid("position", "Must be 0 or more."));
            }
            Ok(vec![GuildEvent::ChannelCreated {
                channel_id,
                kind,
                name,
                position,
                parent_id,
                topic,
                nsfw,
            }])
        }
        GuildCommand::Join {
            user_id,
            invite_code,
        } => {
            if !state.exists() {
                return Err(DomainError::Unknown(Resource::Guild));
            }
            if state.is_banned(user_id) {
                return Err(DomainError::Banned);
            }
            if state.is_member(user_id) {
                return Ok(vec![]);
            }
            Ok(vec![GuildEvent::MemberJoined {
                user_id,
                invite_code,
            }])
        }
        GuildCommand::Leave { user_id } => members::leave(state, user_id),
        GuildCommand::CreateRole {
            actor,
            role_id,
            name,
            permissions,
            color,
            hoist,
            mentionable,
            now_ms,
        } => roles::create(
            state,
            actor,
            Role {
                id: role_id,
                name,
                permissions,
                color,
                hoist,
                mentionable,
                position: 1,
                managed: false,
                bot_id: None,
            },
            now_ms,
        ),
        GuildCommand::EditRole {
            actor,
            role_id,
            name,
            permissions,
            color,
            hoist,
            mentionable,
            now_ms,
        } => roles::edit(
            state,
            actor,
            role_id,
            roles::RoleEdit {
                name,
                permissions,
                color,
                hoist,
                mentionable,
            },
            now_ms,
        ),
        GuildCommand::DeleteRole {
            actor,
            role_id,
            now_ms,
        } => roles::delete(state, actor, role_id, now_ms),
        GuildCommand::ReorderRoles {
            actor,
            positions,
            now_ms,
        } => roles::reorder(state, actor, &positions, now_ms),
        GuildCommand::AddMemberRole {
            actor,
            user_id,
            role_id,
            now_ms,
        } => roles::assign(state, actor, user_id, role_id, true, now_ms),
        GuildCommand::RemoveMemberRole {
            actor,
            user_id,
            role_id,
            now_ms,
        } => roles::assign(state, actor, user_id, role_id, false, now_ms),
        GuildCommand::EditMember {
            actor,
            user_id,
            nick,
            roles,
            communication_disabled_until_ms,
            mute,
            deaf,
            now_ms,
        } => members::edit(
            state,
            actor,
            user_id,
            members::MemberEdit {
                nick,
                roles,
                communication_disabled_until_ms,
                mute,
                deaf,
            },
            now_ms,
        ),
        GuildCommand::KickMember {
            actor,
            user_id,
            now_ms,
        } => members::kick(state, actor, user_id, now_ms),
        GuildCommand::BanMember {
            actor,
            user_id,
            delete_message_seconds,
            now_ms,
        } => members::ban(state, actor, user_id, delete_message_seconds, now_ms),
        GuildCommand::UnbanMember {
            actor,
            user_id,
            now_ms,
        } => members::unban(state, actor, user_id, now_ms),
        GuildCommand::SetOverwrite {
            actor,
            channel_id,
            overwrite,
            now_ms,
        } => channels::set_overwrite(state, actor, channel_id, overwrite, now_ms),
        GuildCommand::DeleteOverwrite {
            actor,
            channel_id,
            target,
            now_ms,
        } => channels::delete_overwrite(state, actor, channel_id, target, now_ms),
        GuildCommand::EditChannel {
            actor,
            channel_id,
            name,
            topic,
            nsfw,
            position,
            parent_id,
            rate_limit_per_user,
            lock_permissions,
            now_ms,
        } => channels::edit(
            state,
            actor,
            channel_id,
            channels::ChannelEdit {
                name,
                topic,
                nsfw,
                position,
                parent_id,
                rate_limit_per_user,
                lock_permissions,
            },
            now_ms,
        ),
        GuildCommand::DeleteChannel {
            actor,
            channel_id,
            now_ms,
        } => channels::delete(state, actor, channel_id, now_ms),
        GuildCommand::AddBot(cmd) => bots::add(state, cmd),
        GuildCommand::Rename {
            actor,
            name,
            now_ms,
        } => {
            state.require_at(actor, Permissions::MANAGE_GUILD, now_ms)?;
            if state.name.as_ref() == Some(&name) {
                return Ok(vec![]);
            }
            Ok(vec![GuildEvent::GuildRenamed { name }])
        }
    }
}

/// Whether `actor_perms` may grant `bits` (ADMINISTRATOR may grant anything).
fn require_grant(actor_perms: Permissions, bits: Permissions) -> Result<(), DomainError> {
    if can_grant(actor_perms, bits) {
        Ok(())
    } else {
        Err(DomainError::MissingPermissions)
    }
}
