//! Stream names: one stream per aggregate instance.

use crate::id::{ChannelId, GuildId, UserId};

pub fn user(id: UserId) -> String {
    format!("user-{id}")
}

pub fn guild(id: GuildId) -> String {
    format!("guild-{id}")
}

pub fn channel(id: ChannelId) -> String {
    format!("channel-{id}")
}

/// An application (and its bot's lifecycle).
pub fn application(id: crate::id::ApplicationId) -> String {
    format!("application-{id}")
}

pub fn invite(code: &str) -> String {
    format!("invite-{code}")
}

/// The stream that makes a username unique: claimed once, by one user.
pub fn username(name: &crate::values::Username) -> String {
    format!("username-{}", name.as_str())
}

/// The aggregate kind and id of a stream name (`("channel", "123")`).
pub fn parse(stream_id: &str) -> Option<(&str, &str)> {
    stream_id.split_once('-')
}
