//! Typed snowflake ids: an `Id<ChannelMarker>` cannot be passed where a guild id is wanted.
//! On the wire ids are decimal strings; integers are accepted on input too.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::marker::PhantomData;
use std::num::NonZeroU64;
use std::str::FromStr;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! markers {
    ($($(#[$doc:meta])* $marker:ident => $alias:ident;)*) => {
        $(
            $(#[$doc])*
            #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
            pub struct $marker;
            pub type $alias = Id<$marker>;
        )*
    };
}

markers! {
    /// Users (humans and bots).
    UserMarker => UserId;
    /// Guilds (servers).
    GuildMarker => GuildId;
    /// Channels, threads and DMs.
    ChannelMarker => ChannelId;
    /// Messages.
    MessageMarker => MessageId;
    /// Roles. The @everyone role's id equals its guild's id.
    RoleMarker => RoleId;
    /// Applications (a bot's user id equals its application's id).
    ApplicationMarker => ApplicationId;
}

/// A snowflake id of a resource of kind `T`. Never zero.
pub struct Id<T> {
    value: NonZeroU64,
    marker: PhantomData<fn(T) -> T>,
}

impl<T> Id<T> {
    /// An id from a raw value; `None` for 0.
    pub const fn new_checked(value: u64) -> Option<Self> {
        match NonZeroU64::new(value) {
            Some(value) => Some(Id {
                value,
                marker: PhantomData,
            }),
            None => None,
        }
    }

    /// An id from a raw value.
    ///
    /// # Panics
    /// If `value` is 0; use [`Id::new_checked`] for untrusted input.
    pub const fn new(value: u64) -> Self {
        match Self::new_checked(value) {
            Some(id) => id,
            None => panic!("an id is never 0"),
        }
    }

    pub const fn get(self) -> u64 {
        self.value.get()
    }

    /// The same number as an id of another kind (the @everyone role id is the guild id).
    pub const fn cast<U>(self) -> Id<U> {
        Id {
            value: self.value,
            marker: PhantomData,
        }
    }

    /// When the id was made, in Unix milliseconds.
    pub fn timestamp_ms(self) -> u64 {
        crate::snowflake::timestamp_ms(self.get())
    }
}

impl<T> Clone for Id<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Id<T> {}
impl<T> PartialEq for Id<T> {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}
impl<T> Eq for Id<T> {}
impl<T> PartialOrd for Id<T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Id<T> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.value.cmp(&other.value)
    }
}
impl<T> Hash for Id<T> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.value.hash(state)
    }
}
impl<T> fmt::Debug for Id<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({})", self.value)
    }
}
impl<T> fmt::Display for Id<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.value, f)
    }
}

/// Why a string is not an id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a snowflake id: {0:?}")]
pub struct ParseIdError(pub String);

impl<T> FromStr for Id<T> {
    type Err = ParseIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse::<u64>()
            .ok()
            .and_then(Id::new_checked)
            .ok_or_else(|| ParseIdError(s.chars().take(40).collect()))
    }
}

impl<T> Serialize for Id<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.value)
    }
}

impl<'de, T> Deserialize<'de> for Id<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<T> Visitor<'_> for V<T> {
            type Value = Id<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a snowflake as a decimal string or an integer")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Id::new_checked(v).ok_or_else(|| E::custom("an id is never 0"))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                u64::try_from(v)
                    .ok()
                    .and_then(Id::new_checked)
                    .ok_or_else(|| E::custom("not a snowflake id"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_serialize_as_decimal_strings_and_accept_integers() {
        let id = ChannelId::new(175928847299117063);
        assert_eq!(
            serde_json::to_string(&id).unwrap(),
            "\"175928847299117063\""
        );
        let back: ChannelId = serde_json::from_str("\"175928847299117063\"").unwrap();
        assert_eq!(back, id);
        let from_int: ChannelId = serde_json::from_str("175928847299117063").unwrap();
        assert_eq!(from_int, id);
    }

    #[test]
    fn zero_negative_and_garbage_are_not_ids() {
        assert!(serde_json::from_str::<UserId>("\"0\"").is_err());
        assert!(serde_json::from_str::<UserId>("0").is_err());
        assert!(serde_json::from_str::<UserId>("-5").is_err());
        assert!(serde_json::from_str::<UserId>("\"abc\"").is_err());
        assert!("".parse::<UserId>().is_err());
    }

    #[test]
    fn cast_keeps_the_number() {
        let guild = GuildId::new(42);
        let everyone: RoleId = guild.cast();
        assert_eq!(everyone.get(), 42);
    }
}
