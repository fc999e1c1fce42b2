//! Discord's permission model as pure functions.
//!
//! - [`Permissions`]: the bitmask, every flag at Discord's bit position, bit operations,
//!   names for `Debug` / `Display`, and the wire form (a decimal string; integers are
//!   accepted on input too).
//! - [`compute_channel_permissions`]: what a member may do in a channel, evaluated
//!   exactly as Discord's developer documentation describes it ("Permission Overwrites",
//!   "Implicit Permissions", "Permissions for Timed Out Members"). Commands, the permission-cache projection and gateway filtering all call
//!   this one function, so they cannot disagree. The steps are public too:
//!   [`base_permissions`], [`overwrite_permissions`], [`apply_timeout`],
//!   [`apply_implicit`], and [`effective_overwrites`] for channels synced with their
//!   category.
//! - Role hierarchy ("Permission Hierarchy"): [`highest_role`], [`can_manage_role`],
//!   [`can_manage_member`], [`can_grant`].
//!
//! The evaluation and hierarchy functions never allocate: inputs are borrowed slices and
//! lookups the caller provides ([`RolePermissions`], [`RolePositions`]), so they are cheap
//! enough to call per event and per recipient. (Only formatting and parse errors
//! allocate.)

mod compute;
mod hierarchy;
mod overwrite;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use std::fmt;
use std::ops::{
    BitAnd, BitAndAssign, BitOr, BitOrAssign, BitXor, BitXorAssign, Not, Sub, SubAssign,
};
use std::str::FromStr;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use compute::{
    apply_implicit, apply_timeout, base_permissions, compute_channel_permissions,
    compute_guild_permissions, is_timed_out, ChannelClass, ChannelPermissionInput,
    GuildPermissionInput, MemberRoles, RolePermissions,
};
pub use hierarchy::{
    can_grant, can_manage_member, can_manage_role, highest_role, highest_role_position,
    RolePositions, RoleRank,
};
pub use overwrite::{
    effective_overwrites, is_synced, overwrite_permissions, Overwrite, OverwriteTarget,
};

/// A permission bitmask, on the wire as a decimal string.
///
/// Bits Chorus does not name (Discord adds new ones from time to time) are kept as they
/// are: parsing, serde and the bit operations preserve them, and `Display` shows them in
/// hex after the names. `!` is the plain bitwise complement (so `a & !b` is
/// [`difference`](Self::difference), as in Discord's pseudocode); use
/// [`complement`](Self::complement) for "every named flag not in `self`".
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Permissions(pub u64);

macro_rules! flags {
    ($($(#[$doc:meta])* $name:ident = $bit:literal;)*) => {
        impl Permissions {
            $(
                $(#[$doc])*
                #[doc = concat!("\n\nBit ", stringify!($bit), ".")]
                pub const $name: Self = Self(1 << $bit);
            )*

            /// Every flag Chorus names.
            pub const ALL: Self = Self(0 $(| (1 << $bit))*);
        }

        /// Every named flag with its name, in bit order.
        const NAMED: &[(&str, Permissions)] = &[$((stringify!($name), Permissions::$name)),*];
    };
}

flags! {
    /// Allows creation of instant invites.
    CREATE_INSTANT_INVITE = 0;
    /// Allows kicking members.
    KICK_MEMBERS = 1;
    /// Allows banning members.
    BAN_MEMBERS = 2;
    /// Allows all permissions and bypasses channel permission overwrites.
    ADMINISTRATOR = 3;
    /// Allows management and editing of channels.
    MANAGE_CHANNELS = 4;
    /// Allows management and editing of the guild.
    MANAGE_GUILD = 5;
    /// Allows adding reactions to messages.
    ADD_REACTIONS = 6;
    /// Allows viewing the audit log.
    VIEW_AUDIT_LOG = 7;
    /// Allows using priority speaker in a voice channel.
    PRIORITY_SPEAKER = 8;
    /// Allows going live (video and screen share).
    STREAM = 9;
    /// Allows viewing a channel, which includes reading messages in text channels.
    VIEW_CHANNEL = 10;
    /// Allows sending messages in a channel (not in threads).
    SEND_MESSAGES = 11;
    /// Allows sending `/tts` messages.
    SEND_TTS_MESSAGES = 12;
    /// Allows deleting other users' messages.
    MANAGE_MESSAGES = 13;
    /// Links sent with this permission are embedded.
    EMBED_LINKS = 14;
    /// Allows uploading files.
    ATTACH_FILES = 15;
    /// Allows reading message history.
    READ_MESSAGE_HISTORY = 16;
    /// Allows `@everyone` and `@here` mentions (and mentioning every role).
    MENTION_EVERYONE = 17;
    /// Allows custom emojis from other guilds.
    USE_EXTERNAL_EMOJIS = 18;
    /// Allows viewing guild insights.
    VIEW_GUILD_INSIGHTS = 19;
    /// Allows joining a voice channel.
    CONNECT = 20;
    /// Allows speaking in a voice channel.
    SPEAK = 21;
    /// Allows muting members in a voice channel.
    MUTE_MEMBERS = 22;
    /// Allows deafening members in a voice channel.
    DEAFEN_MEMBERS = 23;
    /// Allows moving members between voice channels.
    MOVE_MEMBERS = 24;
    /// Allows voice-activity detection in a voice channel.
    USE_VAD = 25;
    /// Allows changing one's own nickname.
    CHANGE_NICKNAME = 26;
    /// Allows changing other members' nicknames.
    MANAGE_NICKNAMES = 27;
    /// Allows managing roles (below one's highest role).
    MANAGE_ROLES = 28;
    /// Allows managing webhooks.
    MANAGE_WEBHOOKS = 29;
    /// Allows editing and deleting emojis, stickers and soundboard sounds.
    MANAGE_GUILD_EXPRESSIONS = 30;
    /// Allows using application commands.
    USE_APPLICATION_COMMANDS = 31;
    /// Allows requesting to speak in stage channels.
    REQUEST_TO_SPEAK = 32;
    /// Allows editing and deleting scheduled events.
    MANAGE_EVENTS = 33;
    /// Allows deleting and archiving threads and viewing all private threads.
    MANAGE_THREADS = 34;
    /// Allows creating public and announcement threads.
    CREATE_PUBLIC_THREADS = 35;
    /// Allows creating private threads.
    CREATE_PRIVATE_THREADS = 36;
    /// Allows custom stickers from other guilds.
    USE_EXTERNAL_STICKERS = 37;
    /// Allows sending messages in threads.
    SEND_MESSAGES_IN_THREADS = 38;
    /// Allows using activities (embedded applications) in a voice channel.
    USE_EMBEDDED_ACTIVITIES = 39;
    /// Allows timing out members.
    MODERATE_MEMBERS = 40;
    /// Allows viewing role subscription insights.
    VIEW_CREATOR_MONETIZATION_ANALYTICS = 41;
    /// Allows using the soundboard in a voice channel.
    USE_SOUNDBOARD = 42;
    /// Allows creating emojis, stickers and soundboard sounds, and editing one's own.
    CREATE_GUILD_EXPRESSIONS = 43;
    /// Allows creating scheduled events, and editing one's own.
    CREATE_EVENTS = 44;
    /// Allows soundboard sounds from other guilds.
    USE_EXTERNAL_SOUNDS = 45;
    /// Allows sending voice messages.
    SEND_VOICE_MESSAGES = 46;
    /// Allows setting a voice channel's status.
    SET_VOICE_CHANNEL_STATUS = 48;
    /// Allows sending polls.
    SEND_POLLS = 49;
    /// Allows user-installed apps to send public responses.
    USE_EXTERNAL_APPS = 50;
    /// Allows pinning and unpinning messages.
    PIN_MESSAGES = 51;
    /// Allows bypassing slowmode.
    BYPASS_SLOWMODE = 52;
}

impl Permissions {
    /// No permission at all.
    pub const NONE: Self = Self(0);

    /// What @everyone may do in a new guild: the set Discord gives the @everyone role of
    /// a newly created guild. The value seen on Discord is `2248473465835073`
    /// (`0x7_FCF9_8637_CE41`); this is that value without bit 47 (the retired
    /// `USE_CLYDE_AI`, which Chorus does not name), i.e. `2107735977479745`:
    ///
    /// - text: VIEW_CHANNEL, SEND_MESSAGES, READ_MESSAGE_HISTORY, ADD_REACTIONS,
    ///   EMBED_LINKS, ATTACH_FILES, MENTION_EVERYONE, USE_EXTERNAL_EMOJIS,
    ///   USE_EXTERNAL_STICKERS, SEND_VOICE_MESSAGES, SEND_POLLS;
    /// - threads: CREATE_PUBLIC_THREADS, CREATE_PRIVATE_THREADS, SEND_MESSAGES_IN_THREADS;
    /// - voice: CONNECT, SPEAK, USE_VAD, STREAM, REQUEST_TO_SPEAK, USE_SOUNDBOARD,
    ///   USE_EXTERNAL_SOUNDS, USE_EMBEDDED_ACTIVITIES, SET_VOICE_CHANNEL_STATUS;
    /// - members: CREATE_INSTANT_INVITE, CHANGE_NICKNAME, USE_APPLICATION_COMMANDS,
    ///   USE_EXTERNAL_APPS, CREATE_GUILD_EXPRESSIONS, CREATE_EVENTS.
    ///
    /// Not included (as on Discord): SEND_TTS_MESSAGES and every moderation or
    /// management flag.
    pub const DEFAULT_EVERYONE: Self = Self::CREATE_INSTANT_INVITE
        .union(Self::ADD_REACTIONS)
        .union(Self::STREAM)
        .union(Self::VIEW_CHANNEL)
        .union(Self::SEND_MESSAGES)
        .union(Self::EMBED_LINKS)
        .union(Self::ATTACH_FILES)
        .union(Self::READ_MESSAGE_HISTORY)
        .union(Self::MENTION_EVERYONE)
        .union(Self::USE_EXTERNAL_EMOJIS)
        .union(Self::CONNECT)
        .union(Self::SPEAK)
        .union(Self::USE_VAD)
        .union(Self::CHANGE_NICKNAME)
        .union(Self::USE_APPLICATION_COMMANDS)
        .union(Self::REQUEST_TO_SPEAK)
        .union(Self::CREATE_PUBLIC_THREADS)
        .union(Self::CREATE_PRIVATE_THREADS)
        .union(Self::USE_EXTERNAL_STICKERS)
        .union(Self::SEND_MESSAGES_IN_THREADS)
        .union(Self::USE_EMBEDDED_ACTIVITIES)
        .union(Self::USE_SOUNDBOARD)
        .union(Self::CREATE_GUILD_EXPRESSIONS)
        .union(Self::CREATE_EVENTS)
        .union(Self::USE_EXTERNAL_SOUNDS)
        .union(Self::SEND_VOICE_MESSAGES)
        .union(Self::SET_VOICE_CHANNEL_STATUS)
        .union(Self::SEND_POLLS)
        .union(Self::USE_EXTERNAL_APPS);

    /// What depends on being able to send: without SEND_MESSAGES (SEND_MESSAGES_IN_THREADS
    /// in a thread) these are implicitly denied. Discord documents MENTION_EVERYONE,
    /// SEND_TTS_MESSAGES, ATTACH_FILES and EMBED_LINKS; SEND_POLLS and SEND_VOICE_MESSAGES
    /// are messages too.
    pub const REQUIRES_SEND: Self = Self::MENTION_EVERYONE
        .union(Self::SEND_TTS_MESSAGES)
        .union(Self::ATTACH_FILES)
        .union(Self::EMBED_LINKS)
        .union(Self::SEND_POLLS)
        .union(Self::SEND_VOICE_MESSAGES);

    /// What only means something once connected to a voice channel: without CONNECT in
    /// a voice or stage channel these are implicitly denied.
    pub const REQUIRES_CONNECT: Self = Self::PRIORITY_SPEAKER
        .union(Self::STREAM)
        .union(Self::SPEAK)
        .union(Self::MUTE_MEMBERS)
        .union(Self::DEAFEN_MEMBERS)
        .union(Self::MOVE_MEMBERS)
        .union(Self::USE_VAD)
        .union(Self::REQUEST_TO_SPEAK)
        .union(Self::USE_EMBEDDED_ACTIVITIES)
        .union(Self::USE_SOUNDBOARD)
        .union(Self::USE_EXTERNAL_SOUNDS)
        .union(Self::SET_VOICE_CHANNEL_STATUS);

    /// What a timed-out member keeps (unless owner or administrator).
    pub const TIMED_OUT: Self = Self::VIEW_CHANNEL.union(Self::READ_MESSAGE_HISTORY);

    /// No permission at all.
    pub const fn empty() -> Self {
        Self::NONE
    }

    /// Every named flag.
    pub const fn all() -> Self {
        Self::ALL
    }

    /// The raw bits.
    pub const fn bits(self) -> u64 {
        self.0
    }

    /// The mask if every set bit is a named flag.
    pub const fn from_bits(bits: u64) -> Option<Self> {
        if bits & !Self::ALL.0 == 0 {
            Some(Self(bits))
        } else {
            None
        }
    }

    /// The mask without the bits Chorus does not name.
    pub const fn from_bits_truncate(bits: u64) -> Self {
        Self(bits & Self::ALL.0)
    }

    /// The mask as is, unnamed bits included (the same as `Permissions(bits)`).
    pub const fn from_bits_retain(bits: u64) -> Self {
        Self(bits)
    }

    /// The set bits Chorus does not name.
    pub const fn unknown_bits(self) -> u64 {
        self.0 & !Self::ALL.0
    }

    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether every named flag is set.
    pub const fn is_all(self) -> bool {
        self.contains(Self::ALL)
    }

    /// Whether every bit of `other` is set in `self`.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether `self` and `other` share a bit.
    pub const fn intersects(self, other: Self) -> bool {
        self.0 & other.0 != 0
    }

    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    pub const fn intersection(self, other: Self) -> Self {
        Self(self.0 & other.0)
    }

    /// `self` without the bits of `other`.
    pub const fn difference(self, other: Self) -> Self {
        Self(self.0 & !other.0)
    }

    pub const fn symmetric_difference(self, other: Self) -> Self {
        Self(self.0 ^ other.0)
    }

    /// Every named flag not in `self`.
    pub const fn complement(self) -> Self {
        Self(!self.0 & Self::ALL.0)
    }

    /// Sets the bits of `other`.
    pub fn insert(&mut self, other: Self) {
        self.0 |= other.0;
    }

    /// Clears the bits of `other`.
    pub fn remove(&mut self, other: Self) {
        self.0 &= !other.0;
    }

    /// Flips the bits of `other`.
    pub fn toggle(&mut self, other: Self) {
        self.0 ^= other.0;
    }

    /// Sets or clears the bits of `other`.
    pub fn set(&mut self, other: Self, value: bool) {
        if value {
            self.insert(other);
        } else {
            self.remove(other);
        }
    }

    /// `self` with the bits of `other`.
    #[must_use]
    pub const fn with(self, other: Self) -> Self {
        self.union(other)
    }

    /// `self` without the bits of `other`.
    #[must_use]
    pub const fn without(self, other: Self) -> Self {
        self.difference(other)
    }

    /// The named flags that are set, in bit order, each with its name.
    pub fn iter_names(self) -> impl Iterator<Item = (&'static str, Permissions)> {
        NAMED
            .iter()
            .copied()
            .filter(move |(_, flag)| self.contains(*flag))
    }

    /// The named flags that are set, in bit order.
    pub fn iter(self) -> impl Iterator<Item = Permissions> {
        self.iter_names().map(|(_, flag)| flag)
    }

    /// The name of a single named flag.
    pub fn name(self) -> Option<&'static str> {
        NAMED
            .iter()
            .find(|(_, flag)| *flag == self)
            .map(|(name, _)| *name)
    }

    /// The flag with this name (`"SEND_MESSAGES"`).
    pub fn from_name(name: &str) -> Option<Self> {
        NAMED
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, flag)| *flag)
    }

    /// Parses the [`Display`](fmt::Display) form: flag names joined by `|`, `NONE`, and
    /// hex (`0x…`) for unnamed bits. The wire form (a decimal string) is parsed by
    /// [`FromStr`].
    pub fn from_names(s: &str) -> Result<Self, ParsePermissionsError> {
        if s.trim().is_empty() {
            return Err(ParsePermissionsError::Empty);
        }
        let mut out = Self::NONE;
        for part in s.split('|').map(str::trim) {
            if part == "NONE" {
                continue;
            }
            if let Some(flag) = Self::from_name(part) {
                out.insert(flag);
            } else if let Some(bits) = part
                .strip_prefix("0x")
                .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_hexdigit()))
                .and_then(|h| u64::from_str_radix(h, 16).ok())
            {
                out.insert(Self(bits));
            } else {
                return Err(ParsePermissionsError::UnknownName(excerpt(part)));
            }
        }
        Ok(out)
    }

    /// Parses the wire form: a decimal string of an unsigned 64-bit integer, digits only.
    pub fn from_decimal(s: &str) -> Result<Self, ParsePermissionsError> {
        if s.is_empty() {
            return Err(ParsePermissionsError::Empty);
        }
        if !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParsePermissionsError::NotDecimal(excerpt(s)));
        }
        s.parse::<u64>()
            .map(Self)
            .map_err(|_| ParsePermissionsError::TooLarge(excerpt(s)))
    }
}

/// At most 40 characters of bad input, for error messages.
fn excerpt(s: &str) -> String {
    s.chars().take(40).collect()
}

/// Why a string is not a permission mask.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParsePermissionsError {
    #[error("permissions must not be empty")]
    Empty,
    #[error("permissions must be a decimal string of digits only, got {0:?}")]
    NotDecimal(String),
    #[error("permissions do not fit in 64 bits: {0:?}")]
    TooLarge(String),
    #[error("not a permission name: {0:?}")]
    UnknownName(String),
}

/// The wire form: a decimal string (`"2112"`).
impl FromStr for Permissions {
    type Err = ParsePermissionsError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_decimal(s)
    }
}

/// `VIEW_CHANNEL | SEND_MESSAGES`, `NONE`, unnamed bits in hex at the end.
impl fmt::Display for Permissions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("NONE");
        }
        let mut first = true;
        for (name, _) in self.iter_names() {
            if !first {
                f.write_str(" | ")?;
            }
            f.write_str(name)?;
            first = false;
        }
        let unknown = self.unknown_bits();
        if unknown != 0 {
            if !first {
                f.write_str(" | ")?;
            }
            write!(f, "{unknown:#x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Permissions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Permissions({self})")
    }
}

impl From<u64> for Permissions {
    fn from(bits: u64) -> Self {
        Self(bits)
    }
}

impl From<Permissions> for u64 {
    fn from(p: Permissions) -> Self {
        p.0
    }
}

macro_rules! binop {
    ($tr:ident $m:ident $atr:ident $am:ident $op:tt) => {
        impl $tr for Permissions {
            type Output = Self;
            fn $m(self, rhs: Self) -> Self {
                Self(self.0 $op rhs.0)
            }
        }
        impl $atr for Permissions {
            fn $am(&mut self, rhs: Self) {
                *self = *self $op rhs;
            }
        }
    };
}

binop!(BitOr bitor BitOrAssign bitor_assign |);
binop!(BitAnd bitand BitAndAssign bitand_assign &);
binop!(BitXor bitxor BitXorAssign bitxor_assign ^);

/// `a - b` is `a` without the bits of `b`.
impl Sub for Permissions {
    type Output = Self;
    fn sub(self, rhs: Self) -> Self {
        self.difference(rhs)
    }
}

impl SubAssign for Permissions {
    fn sub_assign(&mut self, rhs: Self) {
        self.remove(rhs);
    }
}

/// The plain bitwise complement, unnamed bits included (see [`Permissions::complement`]).
impl Not for Permissions {
    type Output = Self;
    fn not(self) -> Self {
        Self(!self.0)
    }
}

impl FromIterator<Permissions> for Permissions {
    fn from_iter<I: IntoIterator<Item = Permissions>>(iter: I) -> Self {
        iter.into_iter().fold(Self::NONE, Self::union)
    }
}

impl Extend<Permissions> for Permissions {
    fn extend<I: IntoIterator<Item = Permissions>>(&mut self, iter: I) {
        for p in iter {
            self.insert(p);
        }
    }
}

impl Serialize for Permissions {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Permissions {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Permissions;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("permissions as a decimal string or a non-negative integer")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Permissions(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                u64::try_from(v)
                    .map(Permissions)
                    .map_err(|_| E::custom("permissions must not be negative"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Permissions::from_decimal(v).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}
