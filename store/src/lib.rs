//! The event log: one [`EventStore`] interface and its backends.
//!
//! Streams hold the events of one aggregate each (`guild-{id}`, `channel-{id}`, ...).
//! Every event has a per-stream *revision* (1-based: the first event of a stream has
//! revision 1, so a stream's current revision is its length) and a *global position*
//! (1-based, strictly increasing in commit order, never skipping a committed event that a
//! reader could later observe). Backends: [`memory::MemoryStore`], [`sqlite::SqliteStore`]
//! and [`postgres::PostgresStore`]; all pass the contract suite in `tests/contract.rs`.
//!
//! The SQL backends write through one appender task per process that group-commits:
//! concurrent appends share one transaction, each decided on its own (one append's
//! conflict fails only that append). Their schema is the numbered SQL under
//! `migrations/{sqlite,postgres}`, applied by [`migrate_sqlite`] / [`migrate_postgres`]
//! (and by the stores' constructors).

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::sync::watch;
use uuid::Uuid;

mod batch;
pub mod memory;
pub mod migrations;
pub mod postgres;
pub mod sqlite;
mod subscribe;

pub use batch::GroupCommitStats;
pub use migrations::{migrate_postgres, migrate_sqlite};
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;
pub use subscribe::{subscribe_all, Subscription};

/// A global log position. `0` means "before the first event".
pub type Position = u64;
/// A stream revision. `0` means "the stream has no events".
pub type Revision = u64;

/// What the writer believes the stream's current revision to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExpectedRevision {
    /// Append whatever the current revision is.
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream's current revision (its last event's revision) must be exactly this.
    Exact(Revision),
}

impl ExpectedRevision {
    /// Whether a stream currently at `actual` satisfies this expectation.
    pub fn matches(self, actual: Revision) -> bool {
        match self {
            ExpectedRevision::Any => true,
            ExpectedRevision::NoStream => actual == 0,
            ExpectedRevision::Exact(n) => actual == n,
        }
    }
}

/// Who caused an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum Actor {
    /// A human account (its user id).
    User(u64),
    /// A bot account (its user id).
    Bot(u64),
    /// Chorus itself (migrations, background jobs).
    System,
}

/// Facts about an event's cause; audit and replay tooling is built from these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    pub actor: Actor,
    #[serde(with = "time::serde::rfc3339")]
    pub occurred_at: OffsetDateTime,
    /// The request or correlation id that produced the event.
    pub correlation_id: String,
    /// The optional audit reason (`X-Audit-Log-Reason`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Metadata {
    /// Metadata for an event caused by Chorus itself, now.
    pub fn system(correlation_id: impl Into<String>) -> Self {
        Metadata {
            actor: Actor::System,
            occurred_at: OffsetDateTime::now_utc(),
            correlation_id: correlation_id.into(),
            reason: None,
        }
    }
}

/// An event to append.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewEvent {
    /// Idempotency key: appending the same event id again never duplicates the event.
    pub event_id: Uuid,
    pub event_type: String,
    pub version: u16,
    pub data: serde_json::Value,
    pub metadata: Metadata,
}

/// An event as stored in the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedEvent {
    pub stream_id: String,
    pub revision: Revision,
    pub position: Position,
    pub event_id: Uuid,
    pub event_type: String,
    pub version: u16,
    pub data: serde_json::Value,
    pub metadata: Metadata,
}

/// One stream's part of an (atomic) append.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamAppend {
    pub stream_id: String,
    pub expected: ExpectedRevision,
    pub events: Vec<NewEvent>,
}

/// The outcome of appending to one stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendResult {
    /// The stream's revision after the append (its last event's revision).
    pub revision: Revision,
    /// The global position of the stream's last appended event (or, for an empty
    /// append, the current head of the log).
    pub position: Position,
}

/// Which way to read a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Forwards,
    Backwards,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Optimistic concurrency failed: nothing was written.
    #[error("stream {stream}: expected revision {expected:?}, but it is at {actual}")]
    WrongExpectedRevision {
        stream: String,
        expected: ExpectedRevision,
        actual: Revision,
    },
    /// An event id was reused for a different event (a retry must resend the same batch).
    #[error("event id {0} was already used by a different append")]
    DuplicateEventId(Uuid),
    #[error("invalid append: {0}")]
    InvalidAppend(String),
    #[error("event log backend: {0}")]
    Backend(String),
}

impl StoreError {
    pub fn is_conflict(&self) -> bool {
        matches!(self, StoreError::WrongExpectedRevision { .. })
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Backend(e.to_string())
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The event log.
#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Appends to several streams atomically: either every part is written or none is.
    /// Each part's expected revision is checked; a retry with the same event ids returns
    /// the first result and writes nothing. Concurrent calls share commits.
    async fn append_many(&self, appends: Vec<StreamAppend>) -> Result<Vec<AppendResult>>;

    /// Appends events to one stream.
    async fn append(
        &self,
        stream_id: &str,
        expected: ExpectedRevision,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult> {
        let mut results = self
            .append_many(vec![StreamAppend {
                stream_id: stream_id.to_owned(),
                expected,
                events,
            }])
            .await?;
        Ok(results.remove(0))
    }

    /// Reads up to `limit` events of a stream starting at revision `from` (inclusive),
    /// forwards (ascending) or backwards (descending). Backwards from `u64::MAX` reads the
    /// newest events.
    async fn read_stream(
        &self,
        stream_id: &str,
        from: Revision,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>>;

    /// Reads several streams forwards in one round trip: for each `(stream, from)`, up
    /// to `limit` events of that stream from revision `from` (inclusive), in revision
    /// order. The result holds each stream's events together, in the order the streams
    /// were given. A stream that returned `limit` events may have more.
    ///
    /// Commands use it to catch up an aggregate and the aggregates it decides against
    /// (a channel and its guild's permissions) with one query instead of one each.
    async fn read_streams_forwards(
        &self,
        from: &[(&str, Revision)],
        limit: usize,
    ) -> Result<Vec<RecordedEvent>> {
        let mut out = Vec::new();
        for (stream, revision) in from {
            out.extend(
                self.read_stream(stream, *revision, Direction::Forwards, limit)
                    .await?,
            );
        }
        Ok(out)
    }

    /// Reads up to `limit` events of the global log with a position greater than `after`.
    async fn read_all(&self, after: Position, limit: usize) -> Result<Vec<RecordedEvent>>;

    /// The current revision of a stream (0 when it has no events).
    async fn stream_revision(&self, stream_id: &str) -> Result<Revision>;

    /// The position of the newest committed event (0 when the log is empty).
    async fn head(&self) -> Result<Position>;

    /// A receiver that changes whenever this store learns of newer commits. Subscribers
    /// use it to wake up; they never rely on it for correctness.
    fn watch_head(&self) -> watch::Receiver<Position>;
}

/// A shared handle to any backend.
pub type DynStore = Arc<dyn EventStore>;

/// Validation shared by all backends, run before anything is written.
pub(crate) fn validate(appends: &[StreamAppend]) -> Result<()> {
    let mut seen_streams = std::collections::HashSet::new();
    let mut seen_ids = std::collections::HashSet::new();
    for a in appends {
        if a.stream_id.is_empty() || a.stream_id.len() > 200 {
            return Err(StoreError::InvalidAppend(
                "stream id must be 1-200 bytes".into(),
            ));
        }
        if !seen_streams.insert(a.stream_id.as_str()) {
            return Err(StoreError::InvalidAppend(format!(
                "stream {} appears twice in one append",
                a.stream_id
            )));
        }
        for e in &a.events {
            if !seen_ids.insert(e.event_id) {
                return Err(StoreError::InvalidAppend(format!(
                    "event id {} appears twice in one append",
                    e.event_id
                )));
            }
        }
    }
    Ok(())
}
