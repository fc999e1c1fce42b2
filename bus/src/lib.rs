//! Event fan-out for Chorus: committed events travel from the log tail to gateway nodes.
//!
//! * [`Bus`] is the interface, used as `Arc<dyn Bus>`: [`publish`](Bus::publish) to a
//!   subject, [`subscribe`](Bus::subscribe) to a pattern, [`flush`](Bus::flush).
//! * [`InProcessBus`] fans out inside one process (the embedded deployment shape).
//! * [`NatsBus`] uses core NATS publish/subscribe (the cluster shape).
//! * [`subjects`] builds the hierarchical subjects (`chorus.guild.{id}.{event}`, ...) and
//!   holds the NATS matching rules.
//! * [`Envelope`] is the payload every publisher sends and every gateway reads.
//! * [`Dedup`] lets a gateway node drop duplicates and notice gaps by stream revision.
//!
//! The bus is at-most-once: a message can be lost (a full subscriber buffer, a NATS
//! reconnect) or, after a publisher restart, repeated. Gateways make delivery exact by
//! feeding every [`Envelope`] through [`Dedup`] and backfilling gaps from the event log.

#![warn(missing_docs)]

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{BoxStream, Stream, StreamExt};

mod dedup;
mod envelope;
mod error;
mod in_process;
mod nats;
pub mod subjects;

pub use dedup::{Dedup, Observation};
pub use envelope::Envelope;
pub use error::{BoxError, BusError};
pub use in_process::InProcessBus;
pub use nats::NatsBus;

/// A message-passing backend with hierarchical subjects and NATS wildcard semantics.
///
/// Implementations validate every subject and pattern (see [`subjects`]) and return
/// [`BusError::InvalidSubject`] instead of sending anything malformed.
///
/// Messages published by one task arrive at each subscriber in publish order. Nothing
/// else is promised: messages may be dropped (slow subscriber, reconnect), so consumers
/// that need every message detect gaps themselves (see [`Dedup`]).
#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Sends `payload` to every current subscription whose pattern matches `subject`.
    ///
    /// `subject` must not contain wildcards.
    async fn publish(&self, subject: &str, payload: Bytes) -> Result<(), BusError>;

    /// Subscribes to every subject matching `pattern` (`*` matches one token, `>` one or
    /// more trailing tokens). Dropping the returned subscription unsubscribes.
    async fn subscribe(&self, pattern: &str) -> Result<BusSubscription, BusError>;

    /// Waits until everything published and subscribed so far on this handle has been
    /// processed by the server.
    ///
    /// After `flush` returns, subscriptions made on this bus see every message that any
    /// node publishes from then on, and messages published on it have been routed. For
    /// NATS this is a round trip to the server (a failure is logged, not returned; use
    /// [`NatsBus::try_flush`] to handle it); in process it is a no-op, since publish and
    /// subscribe take effect immediately.
    async fn flush(&self);
}

/// One message received from the bus.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BusMessage {
    /// The concrete subject the message was published to.
    pub subject: String,
    /// The opaque payload, usually an encoded [`Envelope`].
    pub payload: Bytes,
}

/// A live subscription: a stream of [`BusMessage`]s matching one pattern.
///
/// Read it with [`next`](BusSubscription::next) or as a [`Stream`]. It ends (yields
/// `None`) when the bus side goes away. Dropping it unsubscribes; for [`NatsBus`] the
/// unsubscribe is sent by a task spawned on the current Tokio runtime, so drop it inside
/// one.
pub struct BusSubscription {
    pattern: String,
    stream: BoxStream<'static, BusMessage>,
    // Dropped after `stream`; lets a backend unregister eagerly.
    _guard: Option<Box<dyn Send>>,
}

impl BusSubscription {
    /// Wraps any stream of messages as a subscription to `pattern`.
    ///
    /// For backends (and test doubles) outside this crate. Dropping the subscription
    /// drops the stream, which must release whatever it holds.
    pub fn from_stream(
        pattern: impl Into<String>,
        stream: impl Stream<Item = BusMessage> + Send + 'static,
    ) -> Self {
        BusSubscription {
            pattern: pattern.into(),
            stream: stream.boxed(),
            _guard: None,
        }
    }

    pub(crate) fn with_guard(mut self, guard: Box<dyn Send>) -> Self {
        self._guard = Some(guard);
        self
    }

    /// The pattern this subscription was created with.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    /// Waits for the next message; `None` once the subscription has ended.
    pub async fn next(&mut self) -> Option<BusMessage> {
        self.stream.next().await
    }
}

impl Stream for BusSubscription {
    type Item = BusMessage;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<BusMessage>> {
        self.stream.poll_next_unpin(cx)
    }
}

impl fmt::Debug for BusSubscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BusSubscription")
            .field("pattern", &self.pattern)
            .finish_non_exhaustive()
    }
}
