//! Parse, don't validate: newtypes whose constructors are the only way in, so the core
//! never sees an invalid name or message.

use serde::{Deserialize, Serialize};

use crate::DomainError;

macro_rules! string_value {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

fn length(field: &'static str, s: &str, min: usize, max: usize) -> Result<(), DomainError> {
    let n = s.chars().count();
    if n < min || n > max {
        return Err(DomainError::invalid(
            field,
            format!("Must be between {min} and {max} in length."),
        ));
    }
    Ok(())
}

string_value! {
    /// A unique username: 2-32 characters of lowercase letters, digits, `_` and `.`,
    /// without two dots in a row (Discord's rules). Input is lowercased.
    Username
}

impl Username {
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let s = raw.trim().to_lowercase();
        length("username", &s, 2, 32)?;
        if !s
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.')
        {
            return Err(DomainError::invalid(
                "username",
                "Username can only contain lowercase letters, digits, '_' and '.'.",
            ));
        }
        if s.contains("..") {
            return Err(DomainError::invalid(
                "username",
                "Username cannot contain two dots in a row.",
            ));
        }
        Ok(Username(s))
    }
}

string_value! {
    /// A password as typed: 8-128 characters. Only its argon2 hash is ever stored.
    Password
}

impl Password {
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        length("password", raw, 8, 128)?;
        Ok(Password(raw.to_owned()))
    }
}

string_value! {
    /// A guild name: 2-100 characters after trimming.
    GuildName
}

impl GuildName {
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let s = raw.trim();
        length("name", s, 2, 100)?;
        Ok(GuildName(s.to_owned()))
    }
}

string_value! {
    /// A channel name: 1-100 characters after trimming.
    ChannelName
}

impl ChannelName {
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let s = raw.trim();
        length("name", s, 1, 100)?;
        if s.chars().any(char::is_control) {
            return Err(DomainError::invalid(
                "name",
                "Must not contain control characters.",
            ));
        }
        Ok(ChannelName(s.to_owned()))
    }
}

string_value! {
    /// A channel topic: up to 1024 characters.
    Topic
}

impl Topic {
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        length("topic", raw, 0, 1024)?;
        Ok(Topic(raw.to_owned()))
    }
}

string_value! {
    /// Message content: 1-2000 characters (not only whitespace).
    Content
}

impl Content {
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        if raw.trim().is_empty() {
            return Err(DomainError::invalid(
                "content",
                "Cannot send an empty message.",
            ));
        }
        length("content", raw, 1, 2000)?;
        Ok(Content(raw.to_owned()))
    }
}

string_value! {
    /// A message nonce (Discord: an integer or a string of at most 25 characters).
    Nonce
}

impl Nonce {
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        length("nonce", raw, 1, 25)?;
        Ok(Nonce(raw.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_lowercased_and_checked() {
        assert_eq!(Username::parse(" Alice ").unwrap().as_str(), "alice");
        assert!(Username::parse("a").is_err());
        assert!(Username::parse("has space").is_err());
        assert!(Username::parse("a..b").is_err());
        assert!(Username::parse(&"x".repeat(33)).is_err());
        assert!(Username::parse("ok_name.2").is_ok());
    }

    #[test]
    fn content_is_one_to_two_thousand_characters() {
        assert!(Content::parse("").is_err());
        assert!(Content::parse("   ").is_err());
        assert!(Content::parse(&"é".repeat(2000)).is_ok());
        assert!(Content::parse(&"é".repeat(2001)).is_err());
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(
            GuildName::parse("  My Guild ").unwrap().as_str(),
            "My Guild"
        );
        assert!(GuildName::parse("x").is_err());
        assert!(ChannelName::parse("").is_err());
        assert!(ChannelName::parse("bad\nname").is_err());
        assert!(Password::parse("short").is_err());
        assert!(Nonce::parse(&"1".repeat(26)).is_err());
    }
}
