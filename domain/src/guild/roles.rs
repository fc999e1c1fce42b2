//! Role commands: create, edit, delete, reorder, assign and remove.

use std::collections::HashSet;

use super::{require_grant, GuildEvent, GuildState};
use crate::member::Member;
use crate::permissions::Permissions;
use crate::role::{check_color, Role, RoleName, RolePosition, MAX_ROLES};
use crate::{DomainError, Resource, RoleId, UserId};

/// The fields of a role edit; `None` leaves a field as it is.
pub(super) struct RoleEdit {
    pub name: Option<RoleName>,
    pub permissions: Option<Permissions>,
    pub color: Option<u32>,
    pub hoist: Option<bool>,
    pub mentionable: Option<bool>,
}

/// The role `role_id` if `actor` may manage it: it exists, and ranks below the actor's
/// highest role unless the actor owns the guild.
fn manageable(state: &GuildState, actor: UserId, role_id: RoleId) -> Result<&Role, DomainError> {
    let role = state
        .roles
        .get(&role_id)
        .ok_or(DomainError::Unknown(Resource::Role))?;
    if !state.can_manage_role(actor, role_id) {
        return Err(DomainError::MissingPermissions);
    }
    Ok(role)
}

/// `role` is the new role at position 1; the others move up one to make room.
pub(super) fn create(
    state: &GuildState,
    actor: UserId,
    role: Role,
    now_ms: u64,
) -> Result<Vec<GuildEvent>, DomainError> {
    let perms = state.require_at(actor, Permissions::MANAGE_ROLES, now_ms)?;
    if state.roles.contains_key(&role.id) || state.is_everyone(role.id) {
        return Err(DomainError::AlreadyExists(Resource::Role));
    }
    check_color(role.color)?;
    require_grant(perms, role.permissions)?;
    let others: Vec<&Role> = state
        .roles
        .values()
        .filter(|r| !state.is_everyone(r.id))
        .collect();
    if others.len() >= MAX_ROLES {
        return Err(DomainError::invalid(
            "roles",
            format!("Maximum number of guild roles reached ({MAX_ROLES})."),
        ));
    }
    let mut events = Vec::with_capacity(2);
    let bumped: Vec<RolePosition> = others
        .iter()
        .filter(|r| r.position >= role.position)
        .map(|r| RolePosition {
            role_id: r.id,
            position: r.position + 1,
        })
        .collect();
    if !bumped.is_empty() {
        events.push(GuildEvent::RolesReordered { positions: bumped });
    }
    events.push(GuildEvent::RoleCreated { role });
    Ok(events)
}

pub(super) fn edit(
    state: &GuildState,
    actor: UserId,
    role_id: RoleId,
    edit: RoleEdit,
    now_ms: u64,
) -> Result<Vec<GuildEvent>, DomainError> {
    let perms = state.require_at(actor, Permissions::MANAGE_ROLES, now_ms)?;
    let role = manageable(state, actor, role_id)?;
    let mut new = role.clone();
    if let Some(name) = edit.name {
        if name != role.name && state.is_everyone(role_id) {
            return Err(DomainError::invalid(
                "name",
                "The @everyone role cannot be renamed.",
            ));
        }
        new.name = name;
    }
    if let Some(permissions) = edit.permissions {
        require_grant(perms, permissions.difference(role.permissions))?;
        new.permissions = permissions;
    }
    if let Some(color) = edit.color {
        new.color = check_color(color)?;
    }
    if let Some(hoist) = edit.hoist {
        new.hoist = hoist;
    }
    if let Some(mentionable) = edit.mentionable {
        new.mentionable = mentionable;
    }
    if new == *role {
        return Ok(vec![]);
    }
    Ok(vec![GuildEvent::RoleUpdated { role: new }])
}

pub(super) fn delete(
    state: &GuildState,
    actor: UserId,
    role_id: RoleId,
    now_ms: u64,
) -> Result<Vec<GuildEvent>, DomainError> {
    state.require_at(actor, Permissions::MANAGE_ROLES, now_ms)?;
    if state.is_everyone(role_id) {
        return Err(DomainError::invalid(
            "role_id",
            "The @everyone role cannot be deleted.",
        ));
    }
    let role = manageable(state, actor, role_id)?;
    if role.managed {
        return Err(DomainError::invalid(
            "role_id",
            "A managed role cannot be deleted by hand.",
        ));
    }
    Ok(vec![GuildEvent::RoleDeleted { role_id }])
}

/// Discord's role positions are literal: each listed role takes the given position and
/// the others stay (ties are ranked by id, see `RoleRank`). Clients send every role whose
/// position changes.
pub(super) fn reorder(
    state: &GuildState,
    actor: UserId,
    positions: &[(RoleId, i32)],
    now_ms: u64,
) -> Result<Vec<GuildEvent>, DomainError> {
    state.require_at(actor, Permissions::MANAGE_ROLES, now_ms)?;
    let highest = state
        .highest_role(actor)
        .ok_or(DomainError::MissingAccess)?;
    let owner = state.is_owner(actor);
    let mut seen = HashSet::new();
    let mut changed = Vec::new();
    for &(role_id, position) in positions {
        if !seen.insert(role_id) {
            return Err(DomainError::invalid("positions", "A role is listed twice."));
        }
        if state.is_everyone(role_id) {
            if position == 0 {
                continue;
            }
            return Err(DomainError::invalid(
                "positions",
                "The @everyone role stays at position 0.",
            ));
        }
        if position < 1 {
            return Err(DomainError::invalid(
                "positions",
                "Roles other than @everyone are at position 1 or above.",
            ));
        }
        let role = state
            .roles
            .get(&role_id)
            .ok_or(DomainError::Unknown(Resource::Role))?;
        if role.position == position {
            continue;
        }
        if !owner && (role.rank() >= highest || position >= highest.position) {
            return Err(DomainError::MissingPermissions);
        }
        changed.push(RolePosition { role_id, position });
    }
    if changed.is_empty() {
        return Ok(vec![]);
    }
    Ok(vec![GuildEvent::RolesReordered { positions: changed }])
}

/// Adds (`add`) or removes a role of a member.
pub(super) fn assign(
    state: &GuildState,
    actor: UserId,
    user_id: UserId,
    role_id: RoleId,
    add: bool,
    now_ms: u64,
) -> Result<Vec<GuildEvent>, DomainError> {
    state.require_at(actor, Permissions::MANAGE_ROLES, now_ms)?;
    let member = state
        .member(user_id)
        .ok_or(DomainError::Unknown(Resource::Member))?;
    if state.is_everyone(role_id) {
        return Err(DomainError::invalid(
            "role_id",
            "Every member has the @everyone role.",
        ));
    }
    let role = manageable(state, actor, role_id)?;
    check_unmanaged(role)?;
    if member.has_role(role_id) == add {
        return Ok(vec![]);
    }
    let mut new: Member = member.clone();
    if add {
        new.roles.push(role_id);
    } else {
        new.roles.retain(|r| *r != role_id);
    }
    Ok(vec![GuildState::member_updated(user_id, new)])
}

/// Managed roles (an integration's) are never assigned or removed by hand.
pub(super) fn check_unmanaged(role: &Role) -> Result<(), DomainError> {
    if role.managed {
        return Err(DomainError::invalid(
            "roles",
            "A managed role cannot be assigned or removed by hand.",
        ));
    }
    Ok(())
}
