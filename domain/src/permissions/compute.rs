//! Guild-level and channel-level permissions of a member, and the inputs they need.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::BuildHasher;

use super::{overwrite_permissions, Overwrite, Permissions};
use crate::guild::ChannelKind;
use crate::{GuildId, RoleId, UserId};

/// Where the caller keeps role permissions: a map, a slice of pairs, or any
/// `Fn(RoleId) -> Option<Permissions>`. `None` (a deleted role) counts as no permission.
pub trait RolePermissions {
    fn role_permissions(&self, role: RoleId) -> Option<Permissions>;
}

impl<F: Fn(RoleId) -> Option<Permissions>> RolePermissions for F {
    fn role_permissions(&self, role: RoleId) -> Option<Permissions> {
        self(role)
    }
}

impl<S: BuildHasher> RolePermissions for HashMap<RoleId, Permissions, S> {
    fn role_permissions(&self, role: RoleId) -> Option<Permissions> {
        self.get(&role).copied()
    }
}

impl RolePermissions for BTreeMap<RoleId, Permissions> {
    fn role_permissions(&self, role: RoleId) -> Option<Permissions> {
        self.get(&role).copied()
    }
}

impl RolePermissions for [(RoleId, Permissions)] {
    fn role_permissions(&self, role: RoleId) -> Option<Permissions> {
        self.iter().find(|(id, _)| *id == role).map(|(_, p)| *p)
    }
}

impl<const N: usize> RolePermissions for [(RoleId, Permissions); N] {
    fn role_permissions(&self, role: RoleId) -> Option<Permissions> {
        self.as_slice().role_permissions(role)
    }
}

/// A member as permissions see them: who they are and which roles they have (the
/// @everyone role is implied; listing it too changes nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberRoles<'a> {
    pub user_id: UserId,
    pub role_ids: &'a [RoleId],
}

impl<'a> MemberRoles<'a> {
    pub const fn new(user_id: UserId, role_ids: &'a [RoleId]) -> Self {
        Self { user_id, role_ids }
    }

    pub fn has_role(&self, role: RoleId) -> bool {
        self.role_ids.contains(&role)
    }
}

/// The kinds of channel the implicit rules tell apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChannelClass {
    /// Text, announcement, forum and media channels.
    Text,
    /// Voice and stage channels (which have a text chat too).
    Voice,
    /// Categories: only the VIEW_CHANNEL rule applies.
    Category,
    /// Threads: sending is SEND_MESSAGES_IN_THREADS; overwrites are the parent's.
    Thread,
}

impl ChannelClass {
    /// The class of a Discord channel `type`; `None` for DMs and unknown types.
    pub const fn from_discord_type(t: u64) -> Option<Self> {
        match t {
            0 | 5 | 15 | 16 => Some(Self::Text),
            2 | 13 => Some(Self::Voice),
            4 => Some(Self::Category),
            10..=12 => Some(Self::Thread),
            _ => None,
        }
    }

    /// The bit that gates sending messages in this class of channel.
    pub const fn send_permission(self) -> Permissions {
        match self {
            Self::Thread => Permissions::SEND_MESSAGES_IN_THREADS,
            _ => Permissions::SEND_MESSAGES,
        }
    }
}

impl From<ChannelKind> for ChannelClass {
    fn from(kind: ChannelKind) -> Self {
        match kind {
            ChannelKind::Text => Self::Text,
            ChannelKind::Voice => Self::Voice,
            ChannelKind::Category => Self::Category,
        }
    }
}

/// A member's guild-level permissions, as Discord documents it ("Permission Hierarchy"):
/// the owner has every permission; otherwise the @everyone role's permissions OR every
/// role the member has; ADMINISTRATOR (from any role, @everyone included) means every
/// permission. Unknown role ids are skipped.
pub fn base_permissions<R: RolePermissions + ?Sized>(
    guild_owner: UserId,
    everyone: Permissions,
    member: MemberRoles<'_>,
    roles: &R,
) -> Permissions {
    if member.user_id == guild_owner {
        return Permissions::ALL;
    }
    let mut perms = everyone;
    for &role in member.role_ids {
        if let Some(p) = roles.role_permissions(role) {
            perms.insert(p);
        }
    }
    if perms.contains(Permissions::ADMINISTRATOR) {
        Permissions::ALL
    } else {
        perms
    }
}

/// Whether a member's communication is disabled (timed out) at `now_ms`: their
/// `communication_disabled_until` (Unix ms) is still in the future.
pub const fn is_timed_out(communication_disabled_until_ms: Option<u64>, now_ms: u64) -> bool {
    match communication_disabled_until_ms {
        Some(until) => until > now_ms,
        None => false,
    }
}

/// Discord's rule for timed-out members: they keep only VIEW_CHANNEL and
/// READ_MESSAGE_HISTORY; owners and administrators (whose permissions hold
/// ADMINISTRATOR) are exempt.
pub const fn apply_timeout(perms: Permissions, timed_out: bool) -> Permissions {
    if timed_out && !perms.contains(Permissions::ADMINISTRATOR) {
        perms.intersection(Permissions::TIMED_OUT)
    } else {
        perms
    }
}

/// Discord's implicit permissions in a channel ("Implicit Permissions"):
///
/// - without VIEW_CHANNEL, nothing at all (every channel class);
/// - without the send bit (SEND_MESSAGES; SEND_MESSAGES_IN_THREADS in a thread), none of
///   [`Permissions::REQUIRES_SEND`] (MENTION_EVERYONE, SEND_TTS_MESSAGES, ATTACH_FILES,
///   EMBED_LINKS, SEND_POLLS, SEND_VOICE_MESSAGES) — text, voice and thread channels;
/// - in a voice or stage channel without CONNECT, none of
///   [`Permissions::REQUIRES_CONNECT`].
///
/// Administrators are not subject to it: their permissions are all set anyway.
pub const fn apply_implicit(perms: Permissions, channel: ChannelClass) -> Permissions {
    if !perms.contains(Permissions::VIEW_CHANNEL) {
        return Permissions::NONE;
    }
    let mut perms = perms;
    if !matches!(channel, ChannelClass::Category) && !perms.contains(channel.send_permission()) {
        perms = perms.difference(Permissions::REQUIRES_SEND);
    }
    if matches!(channel, ChannelClass::Voice) && !perms.contains(Permissions::CONNECT) {
        perms = perms.difference(Permissions::REQUIRES_CONNECT);
    }
    perms
}

/// Everything the guild-level computation needs. `roles` is any [`RolePermissions`]
/// (a map, a slice of pairs, a closure).
pub struct GuildPermissionInput<'a, R: ?Sized> {
    /// The guild, whose id is also the @everyone role's.
    pub guild_id: GuildId,
    pub owner_id: UserId,
    /// The @everyone role's permissions.
    pub everyone: Permissions,
    pub roles: &'a R,
    pub member: MemberRoles<'a>,
    /// The member's `communication_disabled_until`, Unix ms.
    pub communication_disabled_until_ms: Option<u64>,
    pub now_ms: u64,
}

impl<R: ?Sized> Clone for GuildPermissionInput<'_, R> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<R: ?Sized> Copy for GuildPermissionInput<'_, R> {}

impl<R: ?Sized> fmt::Debug for GuildPermissionInput<'_, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuildPermissionInput")
            .field("guild_id", &self.guild_id)
            .field("owner_id", &self.owner_id)
            .field("everyone", &self.everyone)
            .field("member", &self.member)
            .field(
                "communication_disabled_until_ms",
                &self.communication_disabled_until_ms,
            )
            .field("now_ms", &self.now_ms)
            .finish_non_exhaustive()
    }
}

/// Everything the channel-level computation needs: the guild-level input, the channel's
/// class and its effective overwrites (see [`effective_overwrites`](super::effective_overwrites)
/// for channels synced with their category, and threads).
pub struct ChannelPermissionInput<'a, R: ?Sized> {
    pub guild: GuildPermissionInput<'a, R>,
    pub channel: ChannelClass,
    pub overwrites: &'a [Overwrite],
}

impl<R: ?Sized> Clone for ChannelPermissionInput<'_, R> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<R: ?Sized> Copy for ChannelPermissionInput<'_, R> {}

impl<R: ?Sized> fmt::Debug for ChannelPermissionInput<'_, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChannelPermissionInput")
            .field("guild", &self.guild)
            .field("channel", &self.channel)
            .field("overwrites", &self.overwrites)
            .finish()
    }
}

/// A member's guild-level permissions (for guild actions: kick, ban, manage roles…):
/// [`base_permissions`], then [`apply_timeout`].
pub fn compute_guild_permissions<R: RolePermissions + ?Sized>(
    input: &GuildPermissionInput<'_, R>,
) -> Permissions {
    let base = base_permissions(input.owner_id, input.everyone, input.member, input.roles);
    apply_timeout(
        base,
        is_timed_out(input.communication_disabled_until_ms, input.now_ms),
    )
}

/// What a member may do in a channel; the one function commands, the permission cache
/// and gateway filtering use. In order:
///
/// 1. [`base_permissions`]: the owner, and anyone with ADMINISTRATOR, get every
///    permission and nothing below applies to them;
/// 2. [`overwrite_permissions`]: @everyone's overwrite, then the member's roles'
///    (combined), then the member's own;
/// 3. [`apply_timeout`]: a timed-out member keeps VIEW_CHANNEL and READ_MESSAGE_HISTORY;
/// 4. [`apply_implicit`]: no VIEW_CHANNEL, nothing; no send, no mentions / files /
///    embeds / TTS / polls / voice messages; in voice without CONNECT, no voice actions.
///
/// No allocation.
pub fn compute_channel_permissions<R: RolePermissions + ?Sized>(
    input: &ChannelPermissionInput<'_, R>,
) -> Permissions {
    let g = &input.guild;
    let base = base_permissions(g.owner_id, g.everyone, g.member, g.roles);
    if base.contains(Permissions::ADMINISTRATOR) {
        return Permissions::ALL;
    }
    let perms = overwrite_permissions(base, g.member, g.guild_id, input.overwrites);
    let perms = apply_timeout(
        perms,
        is_timed_out(g.communication_disabled_until_ms, g.now_ms),
    );
    apply_implicit(perms, input.channel)
}
