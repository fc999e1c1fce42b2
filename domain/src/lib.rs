//! Chorus's domain: typed ids, snowflakes, events, aggregates (decide / evolve) and the
//! rules they enforce. No I/O, no async runtime, no SQL: everything here is a pure
//! function of its inputs, so every rule is tested given/when/then in this crate.

pub mod application;
pub mod channel;
pub mod error;
pub mod event;
pub mod guild;
pub mod id;
pub mod invite;
pub mod member;
pub mod permissions;
pub mod role;
pub mod snowflake;
pub mod streams;
pub mod timefmt;
pub mod user;
pub mod values;
pub mod voice;

#[cfg(test)]
mod testing;

pub use error::{DomainError, Resource};
pub use event::{DomainEvent, EventDecodeError};
pub use id::{ChannelId, GuildId, Id, MessageId, RoleId, UserId};
pub use snowflake::SnowflakeGenerator;

/// An aggregate's state, rebuilt by applying its events in stream order. `evolve` only
/// applies facts and never fails; the rules live in each aggregate's `decide`.
pub trait Aggregate: Default + Clone + Send + Sync + 'static {
    type Event: DomainEvent;
    fn evolve(&mut self, event: &Self::Event);
}
