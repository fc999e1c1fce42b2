//! A moderated guild to test against, and command builders.
//!
//! Members and their highest roles, top down:
//! - `OWNER` (owns the guild, no roles);
//! - `ADMIN_USER`: `ADMINS` (position 3, ADMINISTRATOR);
//! - `MODERATOR`: `MODS` (position 2, [`MOD_PERMS`]);
//! - `HELPER_USER`: `HELPERS` (position 1, no permissions of its own);
//! - `MEMBER`: no roles (@everyone: Discord's defaults).
//!
//! `OUTSIDER` is not a member. The guild has one text channel, `GENERAL`.

use super::super::*;
use crate::testing::given;

pub const NOW: u64 = 1_700_000_000_000;
pub const HOUR: u64 = 3_600_000;

pub const GUILD: GuildId = GuildId::new(100);
pub const GENERAL: ChannelId = ChannelId::new(101);
pub const EVERYONE: RoleId = RoleId::new(100);

pub const OWNER: UserId = UserId::new(1);
pub const ADMIN_USER: UserId = UserId::new(2);
pub const MODERATOR: UserId = UserId::new(3);
pub const HELPER_USER: UserId = UserId::new(4);
pub const MEMBER: UserId = UserId::new(5);
pub const OUTSIDER: UserId = UserId::new(9);

pub const ADMINS: RoleId = RoleId::new(200);
pub const MODS: RoleId = RoleId::new(201);
pub const HELPERS: RoleId = RoleId::new(202);
pub const NEW_ROLE: RoleId = RoleId::new(203);
pub const BOT_ROLE: RoleId = RoleId::new(204);

pub const CATEGORY: ChannelId = ChannelId::new(300);
pub const IN_CATEGORY: ChannelId = ChannelId::new(301);

pub const MOD_PERMS: Permissions = Permissions::MANAGE_ROLES
    .union(Permissions::KICK_MEMBERS)
    .union(Permissions::BAN_MEMBERS)
    .union(Permissions::MODERATE_MEMBERS)
    .union(Permissions::MANAGE_NICKNAMES)
    .union(Permissions::MANAGE_CHANNELS)
    .union(Permissions::MUTE_MEMBERS)
    .union(Permissions::DEAFEN_MEMBERS)
    .union(Permissions::MANAGE_MESSAGES);

/// A guild's history, extended command by command.
pub struct Scenario {
    pub history: Vec<GuildEvent>,
}

impl Scenario {
    /// A guild with only its owner and `GENERAL`.
    pub fn bare() -> Self {
        let history = decide(
            &GuildState::default(),
            GuildCommand::Create {
                guild_id: GUILD,
                name: GuildName::parse("Chorus").unwrap(),
                owner_id: OWNER,
                general_channel_id: GENERAL,
            },
        )
        .unwrap();
        Scenario { history }
    }

    /// The moderated guild described above.
    pub fn new() -> Self {
        let mut s = Self::bare();
        for user_id in [ADMIN_USER, MODERATOR, HELPER_USER, MEMBER] {
            s.history.push(GuildEvent::MemberJoined {
                user_id,
                invite_code: None,
            });
        }
        // Each new role goes to the bottom: create them top down.
        s.run(create_role(OWNER, ADMINS, Permissions::ADMINISTRATOR));
        s.run(create_role(OWNER, MODS, MOD_PERMS));
        s.run(create_role(OWNER, HELPERS, Permissions::NONE));
        s.run(add_role(OWNER, ADMIN_USER, ADMINS));
        s.run(add_role(OWNER, MODERATOR, MODS));
        s.run(add_role(OWNER, HELPER_USER, HELPERS));
        s
    }

    /// Adds a category `CATEGORY` and a text channel `IN_CATEGORY` inside it.
    pub fn with_category(mut self) -> Self {
        self.run(create_channel(OWNER, CATEGORY, ChannelKind::Category, None));
        self.run(create_channel(
            OWNER,
            IN_CATEGORY,
            ChannelKind::Text,
            Some(CATEGORY),
        ));
        self
    }

    /// Adds events as they are (facts no command makes, such as a managed role).
    pub fn given(mut self, events: impl IntoIterator<Item = GuildEvent>) -> Self {
        self.history.extend(events);
        self
    }

    pub fn state(&self) -> GuildState {
        given(&self.history)
    }

    /// What the guild decides about `command`.
    pub fn when(&self, command: GuildCommand) -> Result<Vec<GuildEvent>, DomainError> {
        decide(&self.state(), command)
    }

    /// Decides `command`, which must succeed, and records its events.
    #[track_caller]
    pub fn run(&mut self, command: GuildCommand) -> Vec<GuildEvent> {
        let events = match self.when(command.clone()) {
            Ok(events) => events,
            Err(e) => panic!("{command:?} failed: {e:?}"),
        };
        self.history.extend(events.clone());
        events
    }

    /// The error `command` is rejected with.
    #[track_caller]
    pub fn rejects(&self, command: GuildCommand) -> DomainError {
        match self.when(command.clone()) {
            Ok(events) => panic!("{command:?} was accepted: {events:?}"),
            Err(e) => e,
        }
    }

    pub fn view(&self, user: UserId, channel: ChannelId) -> bool {
        self.state()
            .channel_permissions(user, channel, NOW)
            .contains(Permissions::VIEW_CHANNEL)
    }
}

/// A managed role (an integration's) at position 1, given as a fact.
pub fn managed_role() -> GuildEvent {
    GuildEvent::RoleCreated {
        role: Role {
            id: BOT_ROLE,
            name: RoleName::parse("Bot").unwrap(),
            permissions: Permissions::NONE,
            color: 0,
            hoist: false,
            mentionable: false,
            position: 1,
            managed: true,
            bot_id: None,
        },
    }
}

pub fn create_role(actor: UserId, role_id: RoleId, permissions: Permissions) -> GuildCommand {
    GuildCommand::CreateRole {
        actor,
        role_id,
        name: RoleName::parse("role").unwrap(),
        permissions,
        color: 0,
        hoist: false,
        mentionable: false,
        now_ms: NOW,
    }
}

pub fn edit_role(actor: UserId, role_id: RoleId) -> GuildCommand {
    GuildCommand::EditRole {
        actor,
        role_id,
        name: None,
        permissions: None,
        color: None,
        hoist: None,
        mentionable: None,
        now_ms: NOW,
    }
}

pub fn edit_role_permissions(
    actor: UserId,
    role_id: RoleId,
    permissions: Permissions,
) -> GuildCommand {
    GuildCommand::EditRole {
        actor,
        role_id,
        name: None,
        permissions: Some(permissions),
        color: None,
        hoist: None,
        mentionable: None,
        now_ms: NOW,
    }
}

pub fn delete_role(actor: UserId, role_id: RoleId) -> GuildCommand {
    GuildCommand::DeleteRole {
        actor,
        role_id,
        now_ms: NOW,
    }
}

pub fn reorder(actor: UserId, positions: &[(RoleId, i32)]) -> GuildCommand {
    GuildCommand::ReorderRoles {
        actor,
        positions: positions.to_vec(),
        now_ms: NOW,
    }
}

pub fn add_role(actor: UserId, user_id: UserId, role_id: RoleId) -> GuildCommand {
    GuildCommand::AddMemberRole {
        actor,
        user_id,
        role_id,
        now_ms: NOW,
    }
}

pub fn remove_role(actor: UserId, user_id: UserId, role_id: RoleId) -> GuildCommand {
    GuildCommand::RemoveMemberRole {
        actor,
        user_id,
        role_id,
        now_ms: NOW,
    }
}

/// The fields of an `EditMember`, all unchanged by default.
#[derive(Default)]
pub struct MemberFields {
    pub nick: Option<Option<Nickname>>,
    pub roles: Option<Vec<RoleId>>,
    pub timeout: Option<Option<u64>>,
    pub mute: Option<bool>,
    pub deaf: Option<bool>,
}

pub fn edit_member(actor: UserId, user_id: UserId, f: MemberFields) -> GuildCommand {
    edit_member_at(actor, user_id, f, NOW)
}

pub fn edit_member_at(
    actor: UserId,
    user_id: UserId,
    f: MemberFields,
    now_ms: u64,
) -> GuildCommand {
    GuildCommand::EditMember {
        actor,
        user_id,
        nick: f.nick,
        roles: f.roles,
        communication_disabled_until_ms: f.timeout,
        mute: f.mute,
        deaf: f.deaf,
        now_ms,
    }
}

pub fn nick(actor: UserId, user_id: UserId, nick: Option<&str>) -> GuildCommand {
    edit_member(
        actor,
        user_id,
        MemberFields {
            nick: Some(nick.map(|n| Nickname::parse(n).unwrap())),
            ..MemberFields::default()
        },
    )
}

pub fn set_roles(actor: UserId, user_id: UserId, roles: &[RoleId]) -> GuildCommand {
    edit_member(
        actor,
        user_id,
        MemberFields {
            roles: Some(roles.to_vec()),
            ..MemberFields::default()
        },
    )
}

pub fn timeout(actor: UserId, user_id: UserId, until: Option<u64>) -> GuildCommand {
    edit_member(
        actor,
        user_id,
        MemberFields {
            timeout: Some(until),
            ..MemberFields::default()
        },
    )
}

pub fn kick(actor: UserId, user_id: UserId) -> GuildCommand {
    kick_at(actor, user_id, NOW)
}

pub fn kick_at(actor: UserId, user_id: UserId, now_ms: u64) -> GuildCommand {
    GuildCommand::KickMember {
        actor,
        user_id,
        now_ms,
    }
}

pub fn ban(actor: UserId, user_id: UserId, delete_message_seconds: u32) -> GuildCommand {
    GuildCommand::BanMember {
        actor,
        user_id,
        delete_message_seconds,
        now_ms: NOW,
    }
}

pub fn unban(actor: UserId, user_id: UserId) -> GuildCommand {
    GuildCommand::UnbanMember {
        actor,
        user_id,
        now_ms: NOW,
    }
}

pub fn join(user_id: UserId) -> GuildCommand {
    GuildCommand::Join {
        user_id,
        invite_code: None,
    }
}

pub fn create_channel(
    actor: UserId,
    channel_id: ChannelId,
    kind: ChannelKind,
    parent_id: Option<ChannelId>,
) -> GuildCommand {
    GuildCommand::CreateChannel {
        actor,
        channel_id,
        kind,
        name: ChannelName::parse("chan").unwrap(),
        parent_id,
        topic: None,
        nsfw: false,
        position: None,
    }
}

pub fn set_overwrite(actor: UserId, channel_id: ChannelId, overwrite: Overwrite) -> GuildCommand {
    GuildCommand::SetOverwrite {
        actor,
        channel_id,
        overwrite,
        now_ms: NOW,
    }
}

pub fn delete_overwrite(
    actor: UserId,
    channel_id: ChannelId,
    target: OverwriteTarget,
) -> GuildCommand {
    GuildCommand::DeleteOverwrite {
        actor,
        channel_id,
        target,
        now_ms: NOW,
    }
}

/// `@everyone` may not view.
pub fn hide_from_everyone() -> Overwrite {
    Overwrite::everyone(GUILD, Permissions::NONE, Permissions::VIEW_CHANNEL)
}

/// The fields of an `EditChannel`, all unchanged by default.
#[derive(Default)]
pub struct ChannelFields {
    pub name: Option<ChannelName>,
    pub topic: Option<Option<Topic>>,
    pub nsfw: Option<bool>,
    pub position: Option<i32>,
    pub parent_id: Option<Option<ChannelId>>,
    pub rate_limit_per_user: Option<u32>,
    pub lock_permissions: bool,
}

pub fn edit_channel(actor: UserId, channel_id: ChannelId, f: ChannelFields) -> GuildCommand {
    GuildCommand::EditChannel {
        actor,
        channel_id,
        name: f.name,
        topic: f.topic,
        nsfw: f.nsfw,
        position: f.position,
        parent_id: f.parent_id,
        rate_limit_per_user: f.rate_limit_per_user,
        lock_permissions: f.lock_permissions,
        now_ms: NOW,
    }
}

pub fn delete_channel(actor: UserId, channel_id: ChannelId) -> GuildCommand {
    GuildCommand::DeleteChannel {
        actor,
        channel_id,
        now_ms: NOW,
    }
}

#[test]
fn the_fixture_ranks_roles_as_described() {
    let state = Scenario::new().state();
    let order: Vec<(RoleId, i32)> = state
        .roles_by_rank()
        .iter()
        .map(|r| (r.id, r.position))
        .collect();
    assert_eq!(
        order,
        vec![(EVERYONE, 0), (HELPERS, 1), (MODS, 2), (ADMINS, 3)]
    );
    assert_eq!(state.guild_permissions(ADMIN_USER, NOW), Permissions::ALL);
    assert_eq!(
        state.guild_permissions(MODERATOR, NOW),
        Permissions::DEFAULT_EVERYONE | MOD_PERMS
    );
    assert_eq!(
        state.guild_permissions(MEMBER, NOW),
        Permissions::DEFAULT_EVERYONE
    );
    assert_eq!(state.guild_permissions(OUTSIDER, NOW), Permissions::NONE);
}
