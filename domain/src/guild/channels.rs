//! Channel commands on the guild: overwrites, edit, delete.

use super::{require_grant, ChannelKind, GuildEvent, GuildState, MAX_RATE_LIMIT_PER_USER};
use crate::permissions::{Overwrite, OverwriteTarget, Permissions};
use crate::values::{ChannelName, Topic};
use crate::{ChannelId, DomainError, Resource, UserId};

/// The fields of a channel edit; `None` leaves a field as it is.
pub(super) struct ChannelEdit {
    pub name: Option<ChannelName>,
    pub topic: Option<Option<Topic>>,
    pub nsfw: Option<bool>,
    pub position: Option<i32>,
    pub parent_id: Option<Option<ChannelId>>,
    pub rate_limit_per_user: Option<u32>,
    pub lock_permissions: bool,
}

/// Checks that a channel of `kind` may be placed in `parent`: a category of this guild,
/// and not itself a category.
pub(super) fn check_parent(
    state: &GuildState,
    kind: ChannelKind,
    parent: ChannelId,
) -> Result<(), DomainError> {
    if kind == ChannelKind::Category {
        return Err(DomainError::invalid(
            "parent_id",
            "A category cannot have a parent.",
        ));
    }
    match state.channels.get(&parent) {
        Some(c) if c.kind == ChannelKind::Category => Ok(()),
        _ => Err(DomainError::invalid(
            "parent_id",
            "Not a category channel of this guild.",
        )),
    }
}

pub(super) fn set_overwrite(
    state: &GuildState,
    actor: UserId,
    channel_id: ChannelId,
    overwrite: Overwrite,
    now_ms: u64,
) -> Result<Vec<GuildEvent>, DomainError> {
    let perms = state.require_in_channel(actor, channel_id, Permissions::MANAGE_ROLES, now_ms)?;
    if let OverwriteTarget::Role(role) = overwrite.target {
        if !state.roles.contains_key(&role) {
            return Err(DomainError::Unknown(Resource::Role));
        }
    }
    require_grant(perms, overwrite.allow | overwrite.deny)?;
    if state.effective_overwrites(channel_id).contains(&overwrite) {
        return Ok(vec![]);
    }
    Ok(vec![GuildEvent::ChannelOverwriteSet {
        channel_id,
        overwrite,
    }])
}

pub(super) fn delete_overwrite(
    state: &GuildState,
    actor: UserId,
    channel_id: ChannelId,
    target: OverwriteTarget,
    now_ms: u64,
) -> Result<Vec<GuildEvent>, DomainError> {
    let perms = state.require_in_channel(actor, channel_id, Permissions::MANAGE_ROLES, now_ms)?;
    let Some(existing) = state
        .effective_overwrites(channel_id)
        .iter()
        .find(|o| o.target == target)
    else {
        return Ok(vec![]);
    };
    require_grant(perms, existing.allow | existing.deny)?;
    Ok(vec![GuildEvent::ChannelOverwriteDeleted {
        channel_id,
        target,
    }])
}

pub(super) fn edit(
    state: &GuildState,
    actor: UserId,
    channel_id: ChannelId,
    edit: ChannelEdit,
    now_ms: u64,
) -> Result<Vec<GuildEvent>, DomainError> {
    state.require_in_channel(actor, channel_id, Permissions::MANAGE_CHANNELS, now_ms)?;
    let Some(old) = state.channels.get(&channel_id) else {
        return Err(DomainError::Unknown(Resource::Channel));
    };
    let kind = old.kind;
    let name = edit.name.unwrap_or_else(|| old.name.clone());
    let topic = match edit.topic {
        Some(topic) => {
            if topic.is_some() && kind != ChannelKind::Text {
                return Err(DomainError::invalid(
                    "topic",
                    "Only text channels have a topic.",
                ));
            }
            topic
        }
        None => old.topic.clone(),
    };
    let nsfw = edit.nsfw.unwrap_or(old.nsfw);
    let position = edit.position.unwrap_or(old.position);
    if position < 0 {
        return Err(DomainError::invalid("position", "Must be 0 or more."));
    }
    let parent_id = match edit.parent_id {
        Some(Some(parent)) => {
            if parent == channel_id {
                return Err(DomainError::invalid(
                    "parent_id",
                    "A channel cannot be its own parent.",
                ));
            }
            check_parent(state, kind, parent)?;
            Some(parent)
        }
        Some(None) => None,
        None => old.parent_id,
    };
    let rate_limit_per_user = match edit.rate_limit_per_user {
        Some(r) if r > MAX_RATE_LIMIT_PER_USER => {
            return Err(DomainError::invalid(
                "rate_limit_per_user",
                format!("Must be between 0 and {MAX_RATE_LIMIT_PER_USER}."),
            ))
        }
        Some(r) if r > 0 && kind == ChannelKind::Category => {
            return Err(DomainError::invalid(
                "rate_limit_per_user",
                "Categories have no slowmode.",
            ))
        }
        Some(r) => r,
        None => old.rate_limit_per_user,
    };
    let permission_synced = parent_id.is_some()
        && (edit.lock_permissions || (old.permission_synced && parent_id == old.parent_id));
    let new = GuildEvent::ChannelUpdated {
        channel_id,
        kind,
        name,
        position,
        parent_id,
        topic,
        nsfw,
        rate_limit_per_user,
        permission_synced,
    };
    let unchanged = GuildEvent::ChannelUpdated {
        channel_id,
        kind,
        name: old.name.clone(),
        position: old.position,
        parent_id: old.parent_id,
        topic: old.topic.clone(),
        nsfw: old.nsfw,
        rate_limit_per_user: old.rate_limit_per_user,
        permission_synced: old.permission_synced,
    };
    if new == unchanged {
        return Ok(vec![]);
    }
    Ok(vec![new])
}

pub(super) fn delete(
    state: &GuildState,
    actor: UserId,
    channel_id: ChannelId,
    now_ms: u64,
) -> Result<Vec<GuildEvent>, DomainError> {
    state.require_in_channel(actor, channel_id, Permissions::MANAGE_CHANNELS, now_ms)?;
    Ok(vec![GuildEvent::ChannelDeleted { channel_id }])
}
