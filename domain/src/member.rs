//! Guild members: their roles, nickname, timeout and voice state, and why they left.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::permissions::is_timed_out;
use crate::{DomainError, RoleId};

/// How far ahead a timeout may end: 28 days, in milliseconds.
pub const MAX_TIMEOUT_MS: u64 = 28 * 24 * 60 * 60 * 1000;

/// How far back a ban may delete the user's messages: 7 days, in seconds.
pub const MAX_DELETE_MESSAGE_SECONDS: u32 = 7 * 24 * 60 * 60;

/// A nickname: 1-32 characters after trimming, without control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Nickname(String);

impl Nickname {
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let s = raw.trim();
        let n = s.chars().count();
        if !(1..=32).contains(&n) {
            return Err(DomainError::invalid(
                "nick",
                "Must be between 1 and 32 in length.",
            ));
        }
        if s.chars().any(char::is_control) {
            return Err(DomainError::invalid(
                "nick",
                "Must not contain control characters.",
            ));
        }
        Ok(Nickname(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for Nickname {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A member as the guild holds it (`MemberUpdated` records all of it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Member {
    /// Roles besides @everyone (which every member has implicitly).
    pub roles: Vec<RoleId>,
    pub nick: Option<Nickname>,
    /// Timed out until then (Unix ms); a past value means no timeout.
    pub communication_disabled_until_ms: Option<u64>,
    /// Server-muted in voice.
    pub mute: bool,
    /// Server-deafened in voice.
    pub deaf: bool,
}

impl Member {
    pub fn has_role(&self, role: RoleId) -> bool {
        self.roles.contains(&role)
    }

    /// Whether the member is timed out at `now_ms`.
    pub fn is_timed_out(&self, now_ms: u64) -> bool {
        is_timed_out(self.communication_disabled_until_ms, now_ms)
    }
}

/// Why a member is no longer one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RemovalReason {
    /// They left.
    Leave,
    /// A moderator kicked them.
    Kick,
    /// A moderator banned them (recorded together with `MemberBanned`).
    Ban,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nicknames_are_one_to_thirty_two_characters() {
        assert_eq!(Nickname::parse(" Ada ").unwrap().as_str(), "Ada");
        assert!(Nickname::parse("").is_err());
        assert!(Nickname::parse("  ").is_err());
        assert!(Nickname::parse(&"é".repeat(32)).is_ok());
        assert!(Nickname::parse(&"é".repeat(33)).is_err());
        assert!(Nickname::parse("a\nb").is_err());
    }

    #[test]
    fn a_timeout_lasts_until_its_end() {
        let m = Member {
            communication_disabled_until_ms: Some(1_000),
            ..Member::default()
        };
        assert!(m.is_timed_out(999));
        assert!(!m.is_timed_out(1_000));
        assert!(!Member::default().is_timed_out(0));
    }
}
