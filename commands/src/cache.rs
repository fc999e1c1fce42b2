//! An in-process cache of aggregate states, each behind its own async mutex so that
//! commands on one stream in one process run one at a time (they would conflict anyway),
//! while commands on different streams run in parallel.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use domain::{Aggregate, DomainEvent};
use store::{Direction, EventStore, Revision};

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
        const PAGE: usize = 1000;
        loop {
            let events = store
                .read_stream(stream, self.revision + 1, Direction::Forwards, PAGE)
                .await?;
            let n = events.len();
            for e in events {
                let event = A::Event::from_stored(&e.event_type, e.version, e.data)?;
                self.state.evolve(&event);
                self.revision = e.revision;
            }
            if n < PAGE {
                return Ok(());
            }
        }
    }

    /// Applies events this process just appended.
    pub fn apply(&mut self, events: &[A::Event], revision: Revision) {
        for e in events {
            self.state.evolve(e);
        }
        self.revision = revision;
    }
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
