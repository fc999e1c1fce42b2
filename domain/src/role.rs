//! Roles: named permission sets, ranked by position. The @everyone role's id is its
//! guild's id and it sits at position 0; every other role is at 1 or above.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::permissions::{Permissions, RoleRank};
use crate::{DomainError, GuildId, RoleId, UserId};

/// Discord's limit of roles per guild (not counting @everyone).
pub const MAX_ROLES: usize = 250;

/// The largest RGB colour (`0xFFFFFF`); 0 means "no colour".
pub const MAX_COLOR: u32 = 0xFF_FFFF;

/// The @everyone role's name.
pub const EVERYONE_NAME: &str = "@everyone";

/// A role name: 1-100 characters after trimming, without control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RoleName(String);

impl RoleName {
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let s = raw.trim();
        let n = s.chars().count();
        if !(1..=100).contains(&n) {
            return Err(DomainError::invalid(
                "name",
                "Must be between 1 and 100 in length.",
            ));
        }
        if s.chars().any(char::is_control) {
            return Err(DomainError::invalid(
                "name",
                "Must not contain control characters.",
            ));
        }
        Ok(RoleName(s.to_owned()))
    }

    /// The @everyone role's name.
    pub fn everyone() -> Self {
        RoleName(EVERYONE_NAME.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for RoleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A role as the guild holds it, and as `RoleCreated` / `RoleUpdated` record it (the
/// whole role, so a projection replaces its row).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Role {
    pub id: RoleId,
    pub name: RoleName,
    pub permissions: Permissions,
    /// RGB, 0 for none.
    pub color: u32,
    /// Shown separately in the member list.
    pub hoist: bool,
    pub mentionable: bool,
    /// 0 for @everyone, 1 and above for the others; higher ranks higher (ties: the older
    /// role, with the lower id, ranks higher; see [`RoleRank`]).
    pub position: i32,
    /// Managed by an integration (a bot's own role): never assigned or removed by hand.
    #[serde(default)]
    pub managed: bool,
    /// For a bot's managed role, the bot (Discord's `tags.bot_id`); the role goes when the
    /// bot leaves the guild. Events stored before the field existed have none; such a
    /// role is still recognised as a departing bot's by being a managed role that only
    /// the bot holds (see `guild::bots::roles_leaving_with`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bot_id: Option<UserId>,
}

impl Role {
    /// The @everyone role of a guild.
    pub fn everyone(guild_id: GuildId, permissions: Permissions) -> Self {
        Role {
            id: guild_id.cast(),
            name: RoleName::everyone(),
            permissions,
            color: 0,
            hoist: false,
            mentionable: false,
            position: 0,
            managed: false,
            bot_id: None,
        }
    }

    /// The role's place in the hierarchy.
    pub fn rank(&self) -> RoleRank {
        RoleRank {
            position: self.position,
            id: self.id,
        }
    }
}

/// A role's new position, in `RolesReordered`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RolePosition {
    pub role_id: RoleId,
    pub position: i32,
}

/// Checks an RGB colour (0 to `0xFFFFFF`).
pub fn check_color(color: u32) -> Result<u32, DomainError> {
    if color > MAX_COLOR {
        return Err(DomainError::invalid(
            "color",
            "Must be an RGB colour between 0 and 16777215.",
        ));
    }
    Ok(color)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_are_trimmed_and_one_to_a_hundred_characters() {
        assert_eq!(RoleName::parse("  Mods ").unwrap().as_str(), "Mods");
        assert!(RoleName::parse("   ").is_err());
        assert!(RoleName::parse(&"r".repeat(100)).is_ok());
        assert!(RoleName::parse(&"r".repeat(101)).is_err());
        assert!(RoleName::parse("a\u{7}b").is_err());
    }

    #[test]
    fn colours_are_rgb() {
        assert_eq!(check_color(0xFF_FFFF), Ok(0xFF_FFFF));
        assert!(check_color(0x100_0000).is_err());
    }

    #[test]
    fn roles_read_without_a_managed_flag_are_not_managed() {
        let role: Role = serde_json::from_value(serde_json::json!({
            "id": "5", "name": "Mods", "permissions": "8", "color": 0,
            "hoist": false, "mentionable": false, "position": 1
        }))
        .unwrap();
        assert!(!role.managed);
        assert_eq!(role.permissions, Permissions::ADMINISTRATOR);
    }
}
