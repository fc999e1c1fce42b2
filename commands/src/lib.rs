//! Command handlers: load an aggregate's current state, decide, append with the expected
//! revision, and retry on a conflict. Only this crate appends events.
//!
//! State comes from an in-process cache of aggregates that is caught up from the log
//! before every decision (one indexed read of the events after the cached revision), so a
//! command always decides on every event committed before it, on any node.

mod applications;
pub mod auth;
mod cache;
mod error;
mod handlers;
mod invites;
mod moderation;
mod permissions;
mod voice;

use std::sync::Arc;

use domain::SnowflakeGenerator;
use store::{Actor, DynStore, Metadata, NewEvent};

pub use applications::BotToken;
pub use cache::Loaded;
pub use error::CommandError;
pub use handlers::{ChannelSpec, InviteSpec, Registered, SentMessage};
pub use moderation::{Banned, ChannelEdit, MemberEdit, RoleEdit, RoleSpec};
pub use voice::VoiceOutcome;

/// Who is acting, and why: becomes every event's metadata.
#[derive(Debug, Clone)]
pub struct Context {
    pub actor: domain::UserId,
    pub bot: bool,
    /// The request id, recorded as the events' correlation id.
    pub correlation_id: String,
    /// `X-Audit-Log-Reason`, when given.
    pub reason: Option<String>,
}

impl Context {
    pub fn user(actor: domain::UserId, correlation_id: impl Into<String>) -> Self {
        Context {
            actor,
            bot: false,
            correlation_id: correlation_id.into(),
            reason: None,
        }
    }

    fn metadata(&self) -> Metadata {
        Metadata {
            actor: if self.bot {
                Actor::Bot(self.actor.get())
            } else {
                Actor::User(self.actor.get())
            },
            occurred_at: time::OffsetDateTime::now_utc(),
            correlation_id: self.correlation_id.clone(),
            reason: self.reason.clone(),
        }
    }
}

/// The command side of Chorus.
pub struct Commands {
    store: DynStore,
    ids: Arc<SnowflakeGenerator>,
    users: cache::Cache<domain::user::UserState>,
    guilds: cache::Cache<domain::guild::GuildState>,
    channels: cache::Cache<domain::channel::ChannelState>,
    invites: cache::Cache<domain::invite::InviteState>,
}

impl Commands {
    pub fn new(store: DynStore, ids: Arc<SnowflakeGenerator>) -> Self {
        Commands {
            store,
            ids,
            users: cache::Cache::new(100_000),
            guilds: cache::Cache::new(10_000),
            channels: cache::Cache::new(10_000),
            invites: cache::Cache::new(10_000),
        }
    }

    pub fn store(&self) -> &DynStore {
        &self.store
    }

    pub fn ids(&self) -> &SnowflakeGenerator {
        &self.ids
    }
}

/// Encodes domain events for the log, each with a fresh event id.
///
/// Event ids are version 7 UUIDs (time-ordered, and ordered by creation within the
/// process): the log's unique index on `event_id` then grows at its right edge, as the
/// position index does. Random (v4) ids land on a random leaf of an index that grows
/// with the log, so every append dirtied another page; with a long-running log that cost
/// PostgreSQL appends 10-15 % of their throughput (BENCHMARKS.md).
fn encode<E: domain::DomainEvent>(events: &[E], meta: &Metadata) -> Vec<NewEvent> {
    events
        .iter()
        .map(|e| NewEvent {
            event_id: uuid::Uuid::now_v7(),
            event_type: e.event_type().to_owned(),
            version: e.version(),
            data: e.to_data(),
            metadata: meta.clone(),
        })
        .collect()
}

/// How often a command is retried after losing an optimistic-concurrency race.
const MAX_ATTEMPTS: usize = 32;

#[cfg(test)]
mod tests {
    use super::*;
    use domain::user::UsernameEvent;
    use domain::UserId;

    #[test]
    fn event_ids_are_time_ordered_uuids_in_creation_order() {
        // given three events of one command and one event of a later command
        let user_id = UserId::new_checked(42).expect("non-zero");
        let event = UsernameEvent::UsernameClaimed { user_id };
        let meta = Metadata::system("test");
        // when they are encoded
        let first = encode(&[event.clone(), event.clone(), event.clone()], &meta);
        let later = encode(&[event], &meta);
        // then every id is a version 7 UUID, and the ids sort in the order they were made
        let ids: Vec<uuid::Uuid> = first.iter().chain(&later).map(|e| e.event_id).collect();
        assert!(ids.iter().all(|id| id.get_version_num() == 7), "{ids:?}");
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    }
}
