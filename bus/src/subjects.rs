//! Subject names, patterns and the rules they follow.
//!
//! Subjects are hierarchical, `.`-separated tokens, exactly as in NATS. Every Chorus
//! subject starts with [`ROOT`]:
//!
//! | builder                         | subject                                      |
//! |---------------------------------|----------------------------------------------|
//! | [`guild`]`(g, e)`               | `chorus.guild.{g}.{e}`                       |
//! | [`guild_channel`]`(g, c, e)`    | `chorus.guild.{g}.channel.{c}.{e}`           |
//! | [`channel`]`(c, e)`             | `chorus.channel.{c}.{e}` (DMs, group DMs)    |
//! | [`user`]`(u, e)`                | `chorus.user.{u}.{e}`                        |
//! | [`guild_all`]`(g)`              | `chorus.guild.{g}.>` (includes its channels) |
//! | [`guild_channel_all`]`(g, c)`   | `chorus.guild.{g}.channel.{c}.>`             |
//! | [`channel_all`]`(c)`            | `chorus.channel.{c}.>`                       |
//! | [`user_all`]`(u)`               | `chorus.user.{u}.>`                          |
//!
//! Event names are lower-case snake case (`message_create`, `guild_member_add`).
//!
//! In a pattern, `*` matches exactly one token and `>` matches one or more trailing
//! tokens (so `chorus.guild.1.>` does not match `chorus.guild.1`). A wildcard must be a
//! whole token, `>` must be the last token, and subjects that are published to contain no
//! wildcard at all.

use crate::BusError;

/// The first token of every Chorus subject.
pub const ROOT: &str = "chorus";

/// The longest subject or pattern accepted, in bytes.
pub const MAX_SUBJECT_LEN: usize = 1024;

/// `chorus.guild.{guild_id}.{event}`: a guild-wide event (roles, members, channel list).
pub fn guild(guild_id: u64, event: &str) -> String {
    format!("{ROOT}.guild.{guild_id}.{event}")
}

/// `chorus.guild.{guild_id}.channel.{channel_id}.{event}`: an event of a guild channel
/// (messages, reactions, pins, typing).
pub fn guild_channel(guild_id: u64, channel_id: u64, event: &str) -> String {
    format!("{ROOT}.guild.{guild_id}.channel.{channel_id}.{event}")
}

/// `chorus.channel.{channel_id}.{event}`: an event of a channel outside any guild
/// (direct and group messages).
pub fn channel(channel_id: u64, event: &str) -> String {
    format!("{ROOT}.channel.{channel_id}.{event}")
}

/// `chorus.user.{user_id}.{event}`: an event addressed to one user (relationships,
/// settings, a guild they just joined).
pub fn user(user_id: u64, event: &str) -> String {
    format!("{ROOT}.user.{user_id}.{event}")
}

/// `chorus.guild.{guild_id}.>`: every event of a guild, including its channels.
pub fn guild_all(guild_id: u64) -> String {
    format!("{ROOT}.guild.{guild_id}.>")
}

/// `chorus.guild.{guild_id}.channel.{channel_id}.>`: every event of one guild channel.
pub fn guild_channel_all(guild_id: u64, channel_id: u64) -> String {
    format!("{ROOT}.guild.{guild_id}.channel.{channel_id}.>")
}

/// `chorus.channel.{channel_id}.>`: every event of a channel outside any guild.
pub fn channel_all(channel_id: u64) -> String {
    format!("{ROOT}.channel.{channel_id}.>")
}

/// `chorus.user.{user_id}.>`: every event addressed to one user.
pub fn user_all(user_id: u64) -> String {
    format!("{ROOT}.user.{user_id}.>")
}

/// Checks that `subject` can be published to: non-empty `.`-separated tokens, no
/// whitespace or control characters, and no wildcards.
pub fn validate_subject(subject: &str) -> Result<(), BusError> {
    validate(subject, false)
}

/// Checks that `pattern` can be subscribed to: like [`validate_subject`], but a token may
/// be `*`, and the last token may be `>`.
pub fn validate_pattern(pattern: &str) -> Result<(), BusError> {
    validate(pattern, true)
}

fn validate(subject: &str, wildcards: bool) -> Result<(), BusError> {
    if subject.is_empty() {
        return Err(BusError::invalid(subject, "subject is empty"));
    }
    if subject.len() > MAX_SUBJECT_LEN {
        return Err(BusError::invalid(subject, "subject is too long"));
    }
    let mut tokens = subject.split('.').peekable();
    while let Some(token) = tokens.next() {
        if token.is_empty() {
            return Err(BusError::invalid(
                subject,
                "empty token (leading, trailing or doubled '.')",
            ));
        }
        if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(BusError::invalid(
                subject,
                "contains whitespace or a control character",
            ));
        }
        match token {
            "*" | ">" if !wildcards => {
                return Err(BusError::invalid(
                    subject,
                    "wildcards are not allowed in a published subject",
                ));
            }
            ">" if tokens.peek().is_some() => {
                return Err(BusError::invalid(subject, "'>' must be the last token"));
            }
            "*" | ">" => {}
            _ if token.contains(['*', '>']) => {
                return Err(BusError::invalid(
                    subject,
                    "a wildcard must be a whole token",
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Whether the subject `subject` matches the pattern `pattern`, with NATS semantics.
///
/// Returns `false` if either is invalid (see [`validate_subject`] and
/// [`validate_pattern`]); never panics.
pub fn matches(pattern: &str, subject: &str) -> bool {
    if validate_pattern(pattern).is_err() || validate_subject(subject).is_err() {
        return false;
    }
    let mut p = pattern.split('.');
    let mut s = subject.split('.');
    loop {
        match (p.next(), s.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_produce_the_documented_subjects() {
        assert_eq!(guild(1, "guild_update"), "chorus.guild.1.guild_update");
        assert_eq!(
            guild_channel(1, 2, "message_create"),
            "chorus.guild.1.channel.2.message_create"
        );
        assert_eq!(
            channel(3, "message_create"),
            "chorus.channel.3.message_create"
        );
        assert_eq!(
            user(4, "relationship_add"),
            "chorus.user.4.relationship_add"
        );
        assert_eq!(guild_all(1), "chorus.guild.1.>");
        assert_eq!(guild_channel_all(1, 2), "chorus.guild.1.channel.2.>");
        assert_eq!(channel_all(3), "chorus.channel.3.>");
        assert_eq!(user_all(4), "chorus.user.4.>");
        assert_eq!(guild(u64::MAX, "x"), format!("chorus.guild.{}.x", u64::MAX));
    }

    #[test]
    fn builders_produce_valid_subjects_and_patterns() {
        for s in [
            guild(1, "guild_update"),
            guild_channel(1, 2, "message_create"),
            channel(3, "typing_start"),
            user(4, "ready"),
        ] {
            validate_subject(&s).unwrap();
        }
        for p in [
            guild_all(1),
            guild_channel_all(1, 2),
            channel_all(3),
            user_all(4),
        ] {
            validate_pattern(&p).unwrap();
        }
    }

    #[test]
    fn builder_patterns_match_builder_subjects() {
        assert!(matches(&guild_all(1), &guild(1, "guild_update")));
        assert!(matches(
            &guild_all(1),
            &guild_channel(1, 2, "message_create")
        ));
        assert!(!matches(&guild_all(1), &guild(10, "guild_update")));
        assert!(!matches(&guild_all(1), &channel(1, "message_create")));
        assert!(matches(
            &guild_channel_all(1, 2),
            &guild_channel(1, 2, "message_create")
        ));
        assert!(!matches(
            &guild_channel_all(1, 2),
            &guild_channel(1, 3, "message_create")
        ));
        assert!(matches(&channel_all(3), &channel(3, "message_delete")));
        assert!(matches(&user_all(4), &user(4, "ready")));
        assert!(!matches(&user_all(4), &user(44, "ready")));
    }

    #[test]
    fn matching_table() {
        let table: &[(&str, &str, bool)] = &[
            // literals
            ("a", "a", true),
            ("a.b.c", "a.b.c", true),
            ("a.b.c", "a.b", false),
            ("a.b", "a.b.c", false),
            ("a.b.c", "a.b.d", false),
            ("a.b.c", "a.bc", false),
            ("ab", "a", false),
            // `*` matches exactly one token
            ("*", "a", true),
            ("*", "a.b", false),
            ("a.*", "a.b", true),
            ("a.*", "a", false),
            ("a.*", "a.b.c", false),
            ("a.*.c", "a.b.c", true),
            ("a.*.c", "a.x.c", true),
            ("a.*.c", "a.b.d", false),
            ("*.*", "a.b", true),
            ("*.*", "a.b.c", false),
            ("*.b.*", "a.b.c", true),
            ("*.b.*", "a.x.c", false),
            // `>` matches one or more trailing tokens
            (">", "a", true),
            (">", "a.b.c", true),
            ("a.>", "a.b", true),
            ("a.>", "a.b.c.d", true),
            ("a.>", "a", false),
            ("a.>", "b.c", false),
            ("a.*.>", "a.b.c", true),
            ("a.*.>", "a.b", false),
            ("*.>", "a.b", true),
            ("*.>", "a", false),
            // realistic
            (
                "chorus.guild.1.>",
                "chorus.guild.1.channel.2.message_create",
                true,
            ),
            ("chorus.guild.1.>", "chorus.guild.12.member_add", false),
            (
                "chorus.guild.*.channel.*.typing_start",
                "chorus.guild.1.channel.2.typing_start",
                true,
            ),
            (
                "chorus.guild.*.channel.*.typing_start",
                "chorus.guild.1.channel.2.message_create",
                false,
            ),
            ("chorus.*.1.>", "chorus.user.1.ready", true),
        ];
        for &(pattern, subject, expected) in table {
            assert_eq!(
                matches(pattern, subject),
                expected,
                "matches({pattern:?}, {subject:?})"
            );
        }
    }

    #[test]
    fn invalid_subjects_are_rejected() {
        let too_long = "a.".repeat(MAX_SUBJECT_LEN) + "a";
        for bad in [
            "",
            ".",
            "a.",
            ".a",
            "a..b",
            "a b",
            "a.b c",
            " a",
            "a\t.b",
            "a.\n",
            "a.\u{0}",
            "a.*",
            "a.>",
            "*",
            ">",
            "a.b*",
            "a.>b",
            too_long.as_str(),
        ] {
            let err = validate_subject(bad).unwrap_err();
            assert!(
                matches!(err, BusError::InvalidSubject { ref subject, .. } if subject == bad),
                "{bad:?}: {err}"
            );
        }
    }

    #[test]
    fn invalid_patterns_are_rejected() {
        for bad in [
            "", ".", "a.", ".a", "a..b", "a b", "a.>.b", ">.a", "a.b*", "a.*b", "a.>>", "a.**",
        ] {
            assert!(
                matches!(validate_pattern(bad), Err(BusError::InvalidSubject { .. })),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn valid_patterns_and_subjects_are_accepted() {
        for ok in [
            "a",
            "a.b",
            "chorus.guild.1.message_create",
            "ünï.cödé",
            "a-b_c.D9",
        ] {
            validate_subject(ok).unwrap();
            validate_pattern(ok).unwrap();
        }
        for ok in ["*", ">", "a.*", "a.>", "*.*.>", "a.*.b.>"] {
            validate_pattern(ok).unwrap();
        }
    }

    #[test]
    fn matching_invalid_input_is_false_not_a_panic() {
        assert!(!matches("a..b", "a..b"));
        assert!(!matches("a.>", "a.*"));
        assert!(!matches("", ""));
        assert!(!matches("a.>.b", "a.x.b"));
    }
}
