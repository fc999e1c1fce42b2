//! Rows to Discord shapes: the one rendering used by REST queries and the publisher.

use domain::timefmt::discord_ms;

use crate::db::to_u64;
use crate::rows::{
    AuditRow, ChannelRow, GuildRow, InviteRow, MemberRow, MessageRow, RoleRow, UserRow,
};
use crate::wire;

/// Discord's default member limit.
const MAX_MEMBERS: u64 = 500_000;
/// Discord's voice channel defaults.
const VOICE_BITRATE: u32 = 64_000;
/// Discord's channel type numbers.
const VOICE_TYPE: i64 = 2;

/// A time in Unix ms as a Discord timestamp.
pub(crate) fn ts(ms: i64) -> String {
    discord_ms(to_u64(ms.max(0)))
}

pub(crate) fn user(row: &UserRow) -> wire::User {
    wire::User {
        id: row.id,
        username: row.username.clone(),
        discriminator: "0".to_owned(),
        global_name: None,
        avatar: None,
        bot: row.bot,
        public_flags: 0,
        flags: 0,
    }
}

/// A member; `with_user` adds the `user` object (omitted inside messages).
pub(crate) fn member(row: &MemberRow, with_user: Option<&UserRow>) -> wire::Member {
    wire::Member {
        user: with_user.map(user),
        nick: row.nick.clone(),
        avatar: None,
        roles: row.roles.clone(),
        joined_at: ts(row.joined_at),
        premium_since: None,
        deaf: row.deaf,
        mute: row.mute,
        flags: 0,
        pending: false,
        // As Discord: the end of the last timeout given, even once it is over (clients
        // compare it with the time).
        communication_disabled_until: row.communication_disabled_until.map(ts),
    }
}

/// A channel's overwrites as Discord shows them: its category's while synced with it
/// (`parent` is the category's own list, JSON), its own otherwise.
fn overwrites(row: &ChannelRow, parent: Option<&str>) -> Vec<wire::Overwrite> {
    let raw = match parent {
        Some(p) if row.permission_synced => p,
        _ => row.permission_overwrites.as_str(),
    };
    let list: Vec<domain::permissions::Overwrite> = serde_json::from_str(raw).unwrap_or_default();
    list.iter()
        .map(|o| wire::Overwrite {
            id: o.target.id().to_string(),
            kind: o.target.discord_type(),
            allow: o.allow.bits().to_string(),
            deny: o.deny.bits().to_string(),
        })
        .collect()
}

/// A channel whose category's own overwrites are `parent` (JSON), if it has one.
pub(crate) fn channel_in(row: &ChannelRow, parent: Option<&str>) -> wire::Channel {
    wire::Channel {
        permission_overwrites: overwrites(row, parent),
        ..channel(row)
    }
}

/// A channel's fields, without resolving a synced channel's overwrites (see
/// [`channel_in`]).
pub(crate) fn channel(row: &ChannelRow) -> wire::Channel {
    wire::Channel {
        id: row.id,
        kind: u8::try_from(row.kind).unwrap_or(0),
        guild_id: row.guild_id,
        name: row.name.clone(),
        position: i32::try_from(row.position).unwrap_or(i32::MAX),
        permission_overwrites: overwrites(row, None),
        parent_id: row.parent_id,
        topic: row.topic.clone(),
        nsfw: row.nsfw,
        last_message_id: row.last_message_id,
        rate_limit_per_user: u32::try_from(row.rate_limit_per_user).unwrap_or(0),
        voice: (row.kind == VOICE_TYPE).then_some(wire::VoiceFields {
            bitrate: VOICE_BITRATE,
            user_limit: domain::voice::DEFAULT_USER_LIMIT,
            rtc_region: None,
        }),
    }
}

/// A message with its author and (in a guild) the author's member.
pub(crate) fn message(
    row: &MessageRow,
    author: &UserRow,
    member: Option<&MemberRow>,
) -> wire::Message {
    wire::Message {
        id: row.id,
        channel_id: row.channel_id,
        guild_id: row.guild_id,
        author: user(author),
        member: member.map(|m| self::member(m, None)),
        content: row.content.clone(),
        timestamp: ts(row.created_at),
        edited_timestamp: row.edited_at.map(ts),
        tts: row.tts,
        mention_everyone: row.mention_everyone,
        mentions: Vec::new(),
        mention_roles: Vec::new(),
        attachments: Vec::new(),
        embeds: Vec::new(),
        reactions: Vec::new(),
        pinned: row.pinned_at.is_some(),
        kind: 0,
        flags: 0,
        components: Vec::new(),
        nonce: row.nonce.clone(),
    }
}

/// The author of a message whose user row is missing (never expected; rendered rather
/// than failing the whole page).
pub(crate) fn unknown_user(row: &MessageRow) -> UserRow {
    UserRow {
        id: row.author_id,
        username: "deleted_user".to_owned(),
        bot: false,
        created_at: 0,
    }
}

pub(crate) fn everyone_role(row: &GuildRow) -> wire::Role {
    wire::Role {
        id: row.id.cast(),
        name: "@everyone".to_owned(),
        color: 0,
        colors: wire::RoleColors {
            primary_color: 0,
            secondary_color: None,
            tertiary_color: None,
        },
        hoist: false,
        icon: None,
        unicode_emoji: None,
        position: 0,
        permissions: row.everyone_permissions.to_string(),
        managed: false,
        mentionable: false,
        flags: 0,
        tags: None,
    }
}

pub(crate) fn role(row: &RoleRow) -> wire::Role {
    let color = u32::try_from(row.color).unwrap_or(0);
    wire::Role {
        id: row.id,
        name: row.name.clone(),
        color,
        colors: wire::RoleColors {
            primary_color: color,
            secondary_color: None,
            tertiary_color: None,
        },
        hoist: row.hoist,
        icon: None,
        unicode_emoji: None,
        position: i32::try_from(row.position).unwrap_or(0),
        permissions: row.permissions.to_string(),
        managed: row.managed,
        mentionable: row.mentionable,
        flags: 0,
        tags: row.bot_id.map(|bot_id| wire::RoleTags {
            bot_id: Some(bot_id),
        }),
    }
}

pub(crate) fn audit_entry(row: &AuditRow) -> wire::AuditLogEntry {
    wire::AuditLogEntry {
        id: row.id.to_string(),
        user_id: row.user_id,
        target_id: row.target_id.map(|t| to_u64(t).to_string()),
        action_type: u16::try_from(row.action_type).unwrap_or(0),
        changes: serde_json::from_str(&row.changes).unwrap_or_default(),
        options: row
            .options
            .as_deref()
            .and_then(|o| serde_json::from_str(o).ok()),
        reason: row.reason.clone(),
    }
}

/// A guild with its roles (from the roles table; @everyone from the guild row when the
/// list lacks it).
pub(crate) fn guild_with_roles(row: &GuildRow, roles: &[RoleRow]) -> wire::Guild {
    let mut g = guild(row);
    if !roles.is_empty() {
        g.roles = roles.iter().map(role).collect();
    }
    g
}

pub(crate) fn guild(row: &GuildRow) -> wire::Guild {
    wire::Guild {
        id: row.id,
        name: row.name.clone(),
        icon: None,
        splash: None,
        discovery_splash: None,
        banner: None,
        description: None,
        owner_id: row.owner_id,
        afk_channel_id: None,
        afk_timeout: 300,
        widget_enabled: false,
        widget_channel_id: None,
        verification_level: 0,
        default_message_notifications: 0,
        explicit_content_filter: 0,
        roles: vec![everyone_role(row)],
        emojis: Vec::new(),
        stickers: Vec::new(),
        features: Vec::new(),
        mfa_level: 0,
        application_id: None,
        system_channel_id: None,
        system_channel_flags: 0,
        rules_channel_id: None,
        public_updates_channel_id: None,
        safety_alerts_channel_id: None,
        max_presences: None,
        max_members: MAX_MEMBERS,
        max_video_channel_users: 25,
        vanity_url_code: None,
        premium_tier: 0,
        premium_subscription_count: 0,
        preferred_locale: "en-US".to_owned(),
        nsfw_level: 0,
        premium_progress_bar_enabled: false,
    }
}

/// A user's guild-level permissions: every bit for the owner, @everyone's otherwise (the
/// domain's `GuildState::base_permissions`).
pub(crate) fn permissions_of(guild: &GuildRow, user: domain::UserId) -> u64 {
    if guild.owner_id == user {
        domain::permissions::Permissions::ALL.bits()
    } else {
        guild.everyone_permissions
    }
}

pub(crate) fn invite_guild(row: &GuildRow) -> wire::InviteGuild {
    wire::InviteGuild {
        id: row.id,
        name: row.name.clone(),
        icon: None,
        splash: None,
        banner: None,
        description: None,
        features: Vec::new(),
        verification_level: 0,
        vanity_url_code: None,
        nsfw_level: 0,
        premium_subscription_count: 0,
    }
}

pub(crate) fn invite_create(row: &InviteRow, inviter: Option<&UserRow>) -> wire::InviteCreate {
    wire::InviteCreate {
        code: row.code.clone(),
        guild_id: row.guild_id,
        channel_id: row.channel_id,
        inviter: inviter.map(user),
        max_age: u32::try_from(row.max_age).unwrap_or(0),
        max_uses: u32::try_from(row.max_uses).unwrap_or(0),
        uses: u32::try_from(row.uses).unwrap_or(u32::MAX),
        temporary: row.temporary,
        created_at: ts(row.created_at),
        expires_at: row.expires_at().map(ts),
    }
}

/// The most users, and the most roles, one message's mentions list.
pub(crate) const MAX_MENTIONS: usize = 100;

/// The user and role ids a message's content mentions, as Discord writes them (`<@id>`,
/// `<@!id>`, `<@&id>`): each once, in the order they first appear, at most
/// [`MAX_MENTIONS`] of each. Whether they exist is for the caller to check.
pub(crate) fn mentioned_ids(content: &str) -> (Vec<u64>, Vec<u64>) {
    let (mut users, mut roles) = (Vec::new(), Vec::new());
    let mut rest = content;
    while let Some(at) = rest.find("<@") {
        rest = &rest[at + 2..];
        let (is_role, body) = match rest.as_bytes().first() {
            Some(b'&') => (true, &rest[1..]),
            Some(b'!') => (false, &rest[1..]),
            _ => (false, rest),
        };
        let digits = body.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || body.as_bytes().get(digits) != Some(&b'>') {
            continue;
        }
        let Ok(id) = body[..digits].parse::<u64>() else {
            continue;
        };
        let list = if is_role { &mut roles } else { &mut users };
        if id != 0 && list.len() < MAX_MENTIONS && !list.contains(&id) {
            list.push(id);
        }
    }
    (users, roles)
}

#[cfg(test)]
mod mention_tests {
    use super::mentioned_ids;

    #[test]
    fn user_and_role_mentions_are_found_once_each_in_order() {
        let (users, roles) =
            mentioned_ids("hi <@12> and <@!34>, <@&56> <@12> <@&56> <@!12> <@&78>");
        assert_eq!(users, [12, 34]);
        assert_eq!(roles, [56, 78]);
    }

    #[test]
    fn what_only_looks_like_a_mention_is_not_one() {
        for text in [
            "<@>",
            "<@12",
            "<@ 12>",
            "<@x12>",
            "<@&>",
            "<@!!12>",
            "<@0>",
            "@everyone",
            "<12>",
            "<@99999999999999999999999>",
            "<@12a>",
        ] {
            assert_eq!(mentioned_ids(text), (vec![], vec![]), "{text}");
        }
        // A broken one does not hide the next.
        assert_eq!(mentioned_ids("<@<@7>").0, [7]);
    }

    #[test]
    fn at_most_100_of_each() {
        let text: String = (1..=150).map(|n| format!("<@{n}><@&{n}>")).collect();
        let (users, roles) = mentioned_ids(&text);
        assert_eq!((users.len(), roles.len()), (100, 100));
        assert_eq!(users[99], 100);
    }
}
