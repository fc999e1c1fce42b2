//! Discord API v10 object shapes, as the REST API returns them and the gateway dispatches
//! them.
//!
//! Rules (see the design's discord-compat notes): ids are decimal strings, timestamps are
//! `2024-01-01T12:34:56.789000+00:00`, arrays are always present, optional objects are
//! omitted rather than `null`, and nullable scalars that Discord sends as `null` stay
//! `null`. The shapes are pinned by snapshot tests in `tests/`.

use domain::{ChannelId, GuildId, MessageId, RoleId, UserId};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub id: UserId,
    pub username: String,
    /// Always `"0"` (Discord's pomelo usernames).
    pub discriminator: String,
    pub global_name: Option<String>,
    pub avatar: Option<String>,
    pub bot: bool,
    pub public_flags: u64,
    pub flags: u64,
}

/// A guild member. `user` is omitted inside a message (Discord's `message.member`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<User>,
    pub nick: Option<String>,
    pub avatar: Option<String>,
    pub roles: Vec<RoleId>,
    pub joined_at: String,
    pub premium_since: Option<String>,
    pub deaf: bool,
    pub mute: bool,
    pub flags: u64,
    pub pending: bool,
    pub communication_disabled_until: Option<String>,
}

/// `GUILD_MEMBER_ADD`: a member with its guild id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuildMemberAdd {
    #[serde(flatten)]
    pub member: Member,
    pub guild_id: GuildId,
}

/// A role's colours.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoleColors {
    pub primary_color: u32,
    pub secondary_color: Option<u32>,
    pub tertiary_color: Option<u32>,
}

/// A role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Role {
    pub id: RoleId,
    pub name: String,
    pub color: u32,
    pub colors: RoleColors,
    pub hoist: bool,
    pub icon: Option<String>,
    pub unicode_emoji: Option<String>,
    pub position: i32,
    /// Permission bits as a decimal string.
    pub permissions: String,
    pub managed: bool,
    pub mentionable: bool,
    pub flags: u64,
    /// Present only when the role has a tag (Discord omits it otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<RoleTags>,
}

/// What a role is for, when it is not an ordinary role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoleTags {
    /// The bot whose managed role this is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bot_id: Option<UserId>,
}

/// A permission overwrite of a channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Overwrite {
    pub id: String,
    /// 0 role, 1 member.
    #[serde(rename = "type")]
    pub kind: u8,
    pub allow: String,
    pub deny: String,
}

/// The fields only voice channels have.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VoiceFields {
    pub bitrate: u32,
    pub user_limit: u32,
    pub rtc_region: Option<String>,
}

/// A guild channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Channel {
    pub id: ChannelId,
    #[serde(rename = "type")]
    pub kind: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guild_id: Option<GuildId>,
    pub name: String,
    pub position: i32,
    pub permission_overwrites: Vec<Overwrite>,
    pub parent_id: Option<ChannelId>,
    pub topic: Option<String>,
    pub nsfw: bool,
    pub last_message_id: Option<MessageId>,
    pub rate_limit_per_user: u32,
    /// Present on voice channels only.
    #[serde(flatten)]
    pub voice: Option<VoiceFields>,
}

/// A message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub id: MessageId,
    pub channel_id: ChannelId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guild_id: Option<GuildId>,
    pub author: User,
    /// The author's guild member (without `user`); omitted outside guilds or when the
    /// author is no longer a member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<Member>,
    pub content: String,
    pub timestamp: String,
    pub edited_timestamp: Option<String>,
    pub tts: bool,
    pub mention_everyone: bool,
    pub mentions: Vec<User>,
    pub mention_roles: Vec<RoleId>,
    pub attachments: Vec<Value>,
    pub embeds: Vec<Value>,
    pub reactions: Vec<Value>,
    pub pinned: bool,
    #[serde(rename = "type")]
    pub kind: u8,
    pub flags: u64,
    pub components: Vec<Value>,
    /// Echoed when the message was sent with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
}

/// `MESSAGE_DELETE`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageDelete {
    pub id: MessageId,
    pub channel_id: ChannelId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guild_id: Option<GuildId>,
}

/// MESSAGE_DELETE_BULK.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageDeleteBulk {
    pub ids: Vec<MessageId>,
    pub channel_id: ChannelId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guild_id: Option<GuildId>,
}

/// A full guild.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Guild {
    pub id: GuildId,
    pub name: String,
    pub icon: Option<String>,
    pub splash: Option<String>,
    pub discovery_splash: Option<String>,
    pub banner: Option<String>,
    pub description: Option<String>,
    pub owner_id: UserId,
    pub afk_channel_id: Option<ChannelId>,
    pub afk_timeout: u32,
    pub widget_enabled: bool,
    pub widget_channel_id: Option<ChannelId>,
    pub verification_level: u8,
    pub default_message_notifications: u8,
    pub explicit_content_filter: u8,
    pub roles: Vec<Role>,
    pub emojis: Vec<Value>,
    pub stickers: Vec<Value>,
    pub features: Vec<String>,
    pub mfa_level: u8,
    pub application_id: Option<String>,
    pub system_channel_id: Option<ChannelId>,
    pub system_channel_flags: u64,
    pub rules_channel_id: Option<ChannelId>,
    pub public_updates_channel_id: Option<ChannelId>,
    pub safety_alerts_channel_id: Option<ChannelId>,
    pub max_presences: Option<u64>,
    pub max_members: u64,
    pub max_video_channel_users: u32,
    pub vanity_url_code: Option<String>,
    pub premium_tier: u8,
    pub premium_subscription_count: u64,
    pub preferred_locale: String,
    pub nsfw_level: u8,
    pub premium_progress_bar_enabled: bool,
}

/// The `GUILD_CREATE` dispatch a member's session receives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuildCreate {
    #[serde(flatten)]
    pub guild: Guild,
    pub unavailable: bool,
    pub joined_at: String,
    pub large: bool,
    pub member_count: u64,
    pub channels: Vec<Channel>,
    pub threads: Vec<Value>,
    pub members: Vec<Member>,
    pub voice_states: Vec<Value>,
    pub presences: Vec<Value>,
    pub stage_instances: Vec<Value>,
    pub guild_scheduled_events: Vec<Value>,
    pub soundboard_sounds: Vec<Value>,
}

/// A guild as listed by `GET /users/@me/guilds`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartialGuild {
    pub id: GuildId,
    pub name: String,
    pub icon: Option<String>,
    pub banner: Option<String>,
    pub owner: bool,
    /// The user's guild-level permissions, a decimal string.
    pub permissions: String,
    pub features: Vec<String>,
}

/// The guild inside an invite.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InviteGuild {
    pub id: GuildId,
    pub name: String,
    pub icon: Option<String>,
    pub splash: Option<String>,
    pub banner: Option<String>,
    pub description: Option<String>,
    pub features: Vec<String>,
    pub verification_level: u8,
    pub vanity_url_code: Option<String>,
    pub nsfw_level: u8,
    pub premium_subscription_count: u64,
}

/// The channel inside an invite.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InviteChannel {
    pub id: ChannelId,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: u8,
}

/// An invite (`GET /invites/{code}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Invite {
    pub code: String,
    /// 0: a guild invite.
    #[serde(rename = "type")]
    pub kind: u8,
    pub guild: InviteGuild,
    pub channel: InviteChannel,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inviter: Option<User>,
    pub max_age: u32,
    pub max_uses: u32,
    pub uses: u32,
    pub temporary: bool,
    pub created_at: String,
    /// `null` when it never expires.
    pub expires_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approximate_member_count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approximate_presence_count: Option<u64>,
}

/// `INVITE_CREATE`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InviteCreate {
    pub code: String,
    pub guild_id: GuildId,
    pub channel_id: ChannelId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inviter: Option<User>,
    pub max_age: u32,
    pub max_uses: u32,
    pub uses: u32,
    pub temporary: bool,
    pub created_at: String,
    pub expires_at: Option<String>,
}

/// `GUILD_ROLE_CREATE` and `GUILD_ROLE_UPDATE`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuildRole {
    pub guild_id: GuildId,
    pub role: Role,
}

/// `INVITE_DELETE`: the revoked invite's channel, guild and code.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InviteDelete {
    pub channel_id: ChannelId,
    pub guild_id: GuildId,
    pub code: String,
}

/// `GUILD_DELETE` to a user removed from a guild (kicked, banned or left): only the id,
/// without `unavailable`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuildDelete {
    pub id: GuildId,
}

/// `GUILD_ROLE_DELETE`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuildRoleDelete {
    pub guild_id: GuildId,
    pub role_id: RoleId,
}

/// `GUILD_MEMBER_UPDATE`: the member (with `user`) and its guild id.
pub type GuildMemberUpdate = GuildMemberAdd;

/// `GUILD_MEMBER_REMOVE`, `GUILD_BAN_ADD` and `GUILD_BAN_REMOVE`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuildUser {
    pub guild_id: GuildId,
    pub user: User,
}

/// A ban (`GET /guilds/{id}/bans`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ban {
    pub reason: Option<String>,
    pub user: User,
}

/// An audit log entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditLogEntry {
    pub id: String,
    pub user_id: Option<UserId>,
    /// The user, role, channel, ... acted on, as a string id.
    pub target_id: Option<String>,
    pub action_type: u16,
    pub changes: Vec<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `GUILD_AUDIT_LOG_ENTRY_CREATE`: an entry and its guild id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GuildAuditLogEntryCreate {
    #[serde(flatten)]
    pub entry: AuditLogEntry,
    pub guild_id: GuildId,
}

/// `GET /guilds/{id}/audit-logs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditLog {
    pub audit_log_entries: Vec<AuditLogEntry>,
    pub users: Vec<User>,
    pub integrations: Vec<Value>,
    pub webhooks: Vec<Value>,
    pub guild_scheduled_events: Vec<Value>,
    pub threads: Vec<Value>,
    pub application_commands: Vec<Value>,
    pub auto_moderation_rules: Vec<Value>,
}
