//! The error type shared by every bus backend.

use std::error::Error as StdError;

/// A boxed error from a backend library, kept as the `source` of a [`BusError`].
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Everything that can go wrong on the bus.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BusError {
    /// A subject or pattern is not well formed (empty token, whitespace, misplaced
    /// wildcard, or a wildcard in a subject that is published to).
    #[error("invalid subject {subject:?}: {reason}")]
    InvalidSubject {
        /// The offending subject or pattern, as given.
        subject: String,
        /// Why it was rejected.
        reason: &'static str,
    },

    /// The NATS server could not be reached or refused the connection.
    #[error("cannot connect to NATS at {url}: {source}")]
    Connect {
        /// The address that was dialled.
        url: String,
        /// The underlying client error.
        #[source]
        source: BoxError,
    },

    /// A message could not be published.
    #[error("cannot publish to {subject:?}: {source}")]
    Publish {
        /// The subject that was published to.
        subject: String,
        /// The underlying backend error.
        #[source]
        source: BoxError,
    },

    /// A subscription could not be created.
    #[error("cannot subscribe to {pattern:?}: {source}")]
    Subscribe {
        /// The pattern that was subscribed to.
        pattern: String,
        /// The underlying backend error.
        #[source]
        source: BoxError,
    },

    /// The server did not confirm a flush (see
    /// [`NatsBus::try_flush`](crate::NatsBus::try_flush)).
    #[error("NATS flush failed: {source}")]
    Flush {
        /// What went wrong.
        #[source]
        source: BoxError,
    },

    /// An [`Envelope`](crate::Envelope) could not be encoded or decoded.
    #[error("invalid envelope: {0}")]
    Envelope(#[from] serde_json::Error),
}

impl BusError {
    pub(crate) fn invalid(subject: &str, reason: &'static str) -> Self {
        BusError::InvalidSubject {
            subject: subject.to_owned(),
            reason,
        }
    }
}
