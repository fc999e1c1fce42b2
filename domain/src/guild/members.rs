//! Member commands: edit (nickname, roles, timeout, voice), kick, ban, unban, leave.

use super::bots::roles_leaving_with;
use super::roles::check_unmanaged;
use super::{GuildEvent, GuildState};
use crate::member::{Nickname, RemovalReason, MAX_DELETE_MESSAGE_SECONDS, MAX_TIMEOUT_MS};
use crate::permissions::Permissions;
use crate::{DomainError, Resource, RoleId, UserId};

/// The fields of a member edit; `None` leaves a field as it is.
pub(super) struct MemberEdit {
    pub nick: Option<Option<Nickname>>,
    pub roles: Option<Vec<RoleId>>,
    pub communication_disabled_until_ms: Option<Option<u64>>,
    pub mute: Option<bool>,
    pub deaf: Option<bool>,
}

fn need(perms: Permissions, needed: Permissions) -> Result<(), DomainError> {
    if perms.contains(needed) {
        Ok(())
    } else {
        Err(DomainError::MissingPermissions)
    }
}

fn need_over(state: &GuildState, actor: UserId, target: UserId) -> Result<(), DomainError> {
    if state.can_manage_member(actor, target) {
        Ok(())
    } else {
        Err(DomainError::MissingPermissions)
    }
}

pub(super) fn edit(
    state: &GuildState,
    actor: UserId,
    user_id: UserId,
    edit: MemberEdit,
    now_ms: u64,
) -> Result<Vec<GuildEvent>, DomainError> {
    let perms = state.require_at(actor, Permissions::NONE, now_ms)?;
    let target = state
        .member(user_id)
        .ok_or(DomainError::Unknown(Resource::Member))?;
    let mut new = target.clone();

    if let Some(nick) = edit.nick.filter(|n| *n != target.nick) {
        if actor == user_id {
            if !perms.intersects(Permissions::CHANGE_NICKNAME | Permissions::MANAGE_NICKNAMES) {
                return Err(DomainError::MissingPermissions);
            }
        } else {
            need(perms, Permissions::MANAGE_NICKNAMES)?;
            need_over(state, actor, user_id)?;
        }
        new.nick = nick;
    }

    if let Some(wanted) = edit.roles {
        let mut roles: Vec<RoleId> = Vec::with_capacity(wanted.len());
        for role_id in wanted {
            if state.is_everyone(role_id) {
                return Err(DomainError::invalid(
                    "roles",
                    "Every member has the @everyone role.",
                ));
            }
            if !state.roles.contains_key(&role_id) {
                return Err(DomainError::Unknown(Resource::Role));
            }
            if !roles.contains(&role_id) {
                roles.push(role_id);
            }
        }
        let added = roles.iter().filter(|r| !target.has_role(**r));
        let removed = target.roles.iter().filter(|r| !roles.contains(r));
        let changes: Vec<RoleId> = added.chain(removed).copied().collect();
        if !changes.is_empty() {
            need(perms, Permissions::MANAGE_ROLES)?;
            for role_id in changes {
                if !state.can_manage_role(actor, role_id) {
                    return Err(DomainError::MissingPermissions);
                }
                if let Some(role) = state.role(role_id) {
                    check_unmanaged(role)?;
                }
            }
            new.roles = roles;
        }
    }

    if let Some(until) = edit
        .communication_disabled_until_ms
        .filter(|u| *u != target.communication_disabled_until_ms)
    {
        need(perms, Permissions::MODERATE_MEMBERS)?;
        need_over(state, actor, user_id)?;
        if let Some(until) = until {
            let admin = state
                .base_permissions(user_id)
                .is_some_and(|p| p.contains(Permissions::ADMINISTRATOR));
            if state.is_owner(user_id) || admin {
                return Err(DomainError::MissingPermissions);
            }
            if until > now_ms.saturating_add(MAX_TIMEOUT_MS) {
                return Err(DomainError::invalid(
                    "communication_disabled_until",
                    "A timeout can end at most 28 days from now.",
                ));
            }
        }
        new.communication_disabled_until_ms = until;
    }

    if let Some(mute) = edit.mute.filter(|m| *m != target.mute) {
        need(perms, Permissions::MUTE_MEMBERS)?;
        new.mute = mute;
    }
    if let Some(deaf) = edit.deaf.filter(|d| *d != target.deaf) {
        need(perms, Permissions::DEAFEN_MEMBERS)?;
        new.deaf = deaf;
    }

    if new == *target {
        return Ok(vec![]);
    }
    Ok(vec![GuildState::member_updated(user_id, new)])
}

pub(super) fn kick(
    state: &GuildState,
    actor: UserId,
    user_id: UserId,
    now_ms: u64,
) -> Result<Vec<GuildEvent>, DomainError> {
    state.require_at(actor, Permissions::KICK_MEMBERS, now_ms)?;
    if !state.is_member(user_id) {
        return Err(DomainError::Unknown(Resource::Member));
    }
    if state.is_owner(user_id) {
        return Err(DomainError::MissingPermissions);
    }
    need_over(state, actor, user_id)?;
    let mut events = vec![GuildEvent::MemberRemoved {
        user_id,
        reason: RemovalReason::Kick,
    }];
    events.extend(roles_leaving_with(state, user_id));
    Ok(events)
}

pub(super) fn ban(
    state: &GuildState,
    actor: UserId,
    user_id: UserId,
    delete_message_seconds: u32,
    now_ms: u64,
) -> Result<Vec<GuildEvent>, DomainError> {
    state.require_at(actor, Permissions::BAN_MEMBERS, now_ms)?;
    if delete_message_seconds > MAX_DELETE_MESSAGE_SECONDS {
        return Err(DomainError::invalid(
            "delete_message_seconds",
            format!("Must be between 0 and {MAX_DELETE_MESSAGE_SECONDS}."),
        ));
    }
    if state.is_owner(user_id) {
        return Err(DomainError::MissingPermissions);
    }
    let member = state.is_member(user_id);
    if member {
        need_over(state, actor, user_id)?;
    } else if state.is_banned(user_id) {
        return Ok(vec![]);
    }
    let mut events = vec![GuildEvent::MemberBanned {
        user_id,
        delete_message_seconds,
    }];
    if member {
        events.push(GuildEvent::MemberRemoved {
            user_id,
            reason: RemovalReason::Ban,
        });
        events.extend(roles_leaving_with(state, user_id));
    }
    Ok(events)
}

pub(super) fn unban(
    state: &GuildState,
    actor: UserId,
    user_id: UserId,
    now_ms: u64,
) -> Result<Vec<GuildEvent>, DomainError> {
    state.require_at(actor, Permissions::BAN_MEMBERS, now_ms)?;
    if !state.is_banned(user_id) {
        // Discord's "Unknown Ban" (10026); the error type has no Ban resource yet.
        return Err(DomainError::Unknown(Resource::Member));
    }
    Ok(vec![GuildEvent::MemberUnbanned { user_id }])
}

pub(super) fn leave(state: &GuildState, user_id: UserId) -> Result<Vec<GuildEvent>, DomainError> {
    if !state.exists() || !state.is_member(user_id) {
        return Err(DomainError::Unknown(Resource::Guild));
    }
    if state.is_owner(user_id) {
        return Err(DomainError::invalid(
            "guild_id",
            "The owner cannot leave their guild.",
        ));
    }
    let mut events = vec![GuildEvent::MemberRemoved {
        user_id,
        reason: RemovalReason::Leave,
    }];
    events.extend(roles_leaving_with(state, user_id));
    Ok(events)
}
