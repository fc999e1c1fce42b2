//! An in-process cache of aggregate states, each behind its own async mutex so that
//! commands on one stream in one process run one at a time (they would conflict anyway),
//! while commands on different streams run in parallel.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use domain::{Aggregate, DomainEvent};
use store::{Direction, EventStore, RecordedEvent, Revision};

use crate::CommandError;

/// An aggregate's state as of a revision of its stream.
#[derive(Default)]
pub struct Loaded<A> {
    pub revision: Revision,
    pub state: A,
}

impl<A: Aggregate> Loaded<A> {
    /// Applies the stream's events after `revision`, so the state includes every event
    /// committed before this call.
    pub async fn catch_up(
        &mut self,
        store: &dyn EventStore,
        stream: &str,
    ) -> Result<(), CommandError> {
        self.catch_up_to(store, stream, Revision::MAX).await
    }

    /// Applies the stream's events after `revision` up to revision `to` (inclusive).
    pub async fn catch_up_to(
        &mut self,
        store: &dyn EventStore,
        stream: &str,
        to: Revision,
    ) -> Result<(), CommandError> {
        const PAGE: usize = 1000;
        while self.revision < to {
            let want = usize::try_from(to - self.revision).map_or(PAGE, |n| n.min(PAGE));
            let events = store
                .read_stream(stream, self.revision + 1, Direction::Forwards, want)
                .await?;
            let n = events.len();
            self.apply_recorded(&events)?;
            if n < want {
                break;
            }
        }
        Ok(())
    }

    /// Applies one page of `stream`'s events read from the log (in revision order).
    fn apply_recorded(&mut self, events: &[RecordedEvent]) -> Result<(), CommandError> {
        for e in events {
            let event = A::Event::from_stored(&e.event_type, e.version, e.data.clone())?;
            self.state.evolve(&event);
            self.revision = e.revision;
        }
        Ok(())
    }

    /// Applies events this process just appended.
    pub fn apply(&mut self, events: &[A::Event], revision: Revision) {
        for e in events {
            self.state.evolve(e);
        }
        self.revision = revision;
    }
}

/// Catches up two aggregates of different streams with one read of the log (one
/// database round trip in the common case), so a command that decides against a second
/// aggregate (a message against its guild's permissions) costs no extra round trip.
pub async fn catch_up_both<A: Aggregate, B: Aggregate>(
    store: &dyn EventStore,
    (a, a_stream): (&mut Loaded<A>, &str),
    (b, b_stream): (&mut Loaded<B>, &str),
) -> Result<(), CommandError> {
    const PAGE: usize = 1000;
    let events = store
        .read_streams_forwards(
            &[(a_stream, a.revision + 1), (b_stream, b.revision + 1)],
            PAGE,
        )
        .await?;
    let split = events.partition_point(|e| e.stream_id == a_stream);
    let (of_a, of_b) = events.split_at(split);
    a.apply_recorded(of_a)?;
    b.apply_recorded(of_b)?;
    // A stream with a full page may have more: read the rest of it on its own.
    if of_a.len() == PAGE {
        a.catch_up(store, a_stream).await?;
    }
    if of_b.len() == PAGE {
        b.catch_up(store, b_stream).await?;
    }
    Ok(())
}

pub type Entry<A> = Arc<tokio::sync::Mutex<Loaded<A>>>;

pub struct Cache<A> {
    entries: Mutex<HashMap<String, Entry<A>>>,
    capacity: usize,
}

impl<A: Aggregate> Cache<A> {
    pub fn new(capacity: usize) -> Self {
        Cache {
            entries: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    /// The entry for a stream (created empty at revision 0).
    pub fn entry(&self, stream: &str) -> Entry<A> {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = entries.get(stream) {
            return e.clone();
        }
        if entries.len() >= self.capacity {
            // Evict entries nobody is using; they are rebuilt from the log on demand.
            entries.retain(|_, e| Arc::strong_count(e) > 1);
        }
        let e: Entry<A> = Arc::default();
        entries.insert(stream.to_owned(), e.clone());
        e
    }
}
