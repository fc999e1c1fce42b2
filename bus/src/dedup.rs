//! [`Dedup`]: per-node duplicate and gap detection by stream revision.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// What [`Dedup::observe`] concluded about an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Observation {
    /// The next event of its stream (or the first seen of it): deliver it.
    New,
    /// At or below the last revision delivered: drop it.
    Duplicate,
    /// Revisions `missing_from..=missing_to` were never seen. Backfill them from the log,
    /// deliver them and this event, then call [`Dedup::mark`] with this event's revision.
    Gap {
        /// The first missing revision.
        missing_from: u64,
        /// The last missing revision (the observed revision minus one).
        missing_to: u64,
    },
}

/// Remembers, per stream, the last revision a node delivered, so it can drop duplicates
/// and notice gaps in what the bus brings.
///
/// Memory is bounded: at most `max_streams` streams are remembered, and the least recently
/// observed one is forgotten to make room. A forgotten stream behaves as never seen: its
/// next event is accepted as [`Observation::New`].
///
/// `Dedup` is not synchronised; share it behind a mutex or keep one per task.
#[derive(Debug)]
pub struct Dedup {
    max_streams: usize,
    tick: u64,
    streams: HashMap<Arc<str>, Slot>,
    /// Streams by the tick of their last use, oldest first.
    recency: BTreeMap<u64, Arc<str>>,
}

#[derive(Debug)]
struct Slot {
    last: u64,
    tick: u64,
}

impl Dedup {
    /// The stream limit used by [`Dedup::default`].
    pub const DEFAULT_MAX_STREAMS: usize = 100_000;

    /// A tracker remembering at most `max_streams` streams (at least 1).
    pub fn new(max_streams: usize) -> Self {
        Dedup {
            max_streams: max_streams.max(1),
            tick: 0,
            streams: HashMap::new(),
            recency: BTreeMap::new(),
        }
    }

    /// Classifies the event at `revision` of `stream_id`.
    ///
    /// The first event seen of a stream is always [`Observation::New`]. A `New` event
    /// becomes the stream's last revision; a [`Observation::Gap`] does not move it, so
    /// later events keep reporting the gap until the caller [`mark`](Self::mark)s it
    /// closed.
    pub fn observe(&mut self, stream_id: &str, revision: u64) -> Observation {
        let tick = self.next_tick();
        let Some(slot) = self.streams.get_mut(stream_id) else {
            self.insert(stream_id, revision, tick);
            return Observation::New;
        };
        let previous_tick = std::mem::replace(&mut slot.tick, tick);
        let observation = if revision <= slot.last {
            Observation::Duplicate
        } else if revision == slot.last + 1 {
            slot.last = revision;
            Observation::New
        } else {
            Observation::Gap {
                missing_from: slot.last + 1,
                missing_to: revision - 1,
            }
        };
        self.retick(previous_tick, tick);
        observation
    }

    /// Records that everything of `stream_id` up to `revision` has been delivered (after a
    /// backfill). Never moves a stream's last revision backwards.
    pub fn mark(&mut self, stream_id: &str, revision: u64) {
        let tick = self.next_tick();
        match self.streams.get_mut(stream_id) {
            Some(slot) => {
                slot.last = slot.last.max(revision);
                let previous_tick = std::mem::replace(&mut slot.tick, tick);
                self.retick(previous_tick, tick);
            }
            None => self.insert(stream_id, revision, tick),
        }
    }

    /// The last revision delivered for `stream_id`, if it is remembered.
    pub fn last_revision(&self, stream_id: &str) -> Option<u64> {
        self.streams.get(stream_id).map(|slot| slot.last)
    }

    /// Forgets `stream_id`, so its next event is accepted as new.
    pub fn forget(&mut self, stream_id: &str) {
        if let Some(slot) = self.streams.remove(stream_id) {
            self.recency.remove(&slot.tick);
        }
    }

    /// How many streams are remembered.
    pub fn len(&self) -> usize {
        self.streams.len()
    }

    /// Whether no stream is remembered.
    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }

    /// The most streams remembered at once.
    pub fn max_streams(&self) -> usize {
        self.max_streams
    }

    fn next_tick(&mut self) -> u64 {
        self.tick += 1;
        self.tick
    }

    fn retick(&mut self, previous: u64, tick: u64) {
        if let Some(stream) = self.recency.remove(&previous) {
            self.recency.insert(tick, stream);
        }
    }

    fn insert(&mut self, stream_id: &str, revision: u64, tick: u64) {
        while self.streams.len() >= self.max_streams {
            let Some((_, oldest)) = self.recency.pop_first() else {
                break;
            };
            self.streams.remove(&oldest);
        }
        let stream: Arc<str> = stream_id.into();
        self.recency.insert(tick, Arc::clone(&stream));
        self.streams.insert(
            stream,
            Slot {
                last: revision,
                tick,
            },
        );
    }
}

impl Default for Dedup {
    fn default() -> Self {
        Self::new(Self::DEFAULT_MAX_STREAMS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Observation::*;

    #[test]
    fn first_sight_is_new_whatever_the_revision() {
        let mut dedup = Dedup::default();
        assert_eq!(dedup.observe("channel-1", 41), New);
        assert_eq!(dedup.observe("channel-2", 0), New);
        assert_eq!(dedup.last_revision("channel-1"), Some(41));
        assert_eq!(dedup.last_revision("channel-2"), Some(0));
    }

    #[test]
    fn consecutive_revisions_are_new_and_repeats_are_duplicates() {
        let mut dedup = Dedup::default();
        assert_eq!(dedup.observe("s", 0), New);
        assert_eq!(dedup.observe("s", 1), New);
        assert_eq!(dedup.observe("s", 1), Duplicate);
        assert_eq!(dedup.observe("s", 0), Duplicate);
        assert_eq!(dedup.observe("s", 2), New);
        assert_eq!(dedup.observe("other", 2), New);
        assert_eq!(dedup.observe("other", 2), Duplicate);
    }

    #[test]
    fn a_skipped_revision_is_a_gap_until_marked() {
        let mut dedup = Dedup::default();
        assert_eq!(dedup.observe("s", 3), New);
        assert_eq!(
            dedup.observe("s", 7),
            Gap {
                missing_from: 4,
                missing_to: 6
            }
        );
        // The gap does not move the stream forward...
        assert_eq!(dedup.last_revision("s"), Some(3));
        assert_eq!(
            dedup.observe("s", 8),
            Gap {
                missing_from: 4,
                missing_to: 7
            }
        );
        assert_eq!(dedup.observe("s", 2), Duplicate);
        // ...until the caller has backfilled and marks it.
        dedup.mark("s", 8);
        assert_eq!(dedup.last_revision("s"), Some(8));
        assert_eq!(dedup.observe("s", 7), Duplicate);
        assert_eq!(dedup.observe("s", 8), Duplicate);
        assert_eq!(dedup.observe("s", 9), New);
    }

    #[test]
    fn mark_never_moves_backwards_and_creates_unseen_streams() {
        let mut dedup = Dedup::default();
        dedup.mark("s", 10);
        assert_eq!(dedup.observe("s", 10), Duplicate);
        dedup.mark("s", 4);
        assert_eq!(dedup.last_revision("s"), Some(10));
        assert_eq!(dedup.observe("s", 11), New);
    }

    #[test]
    fn extreme_revisions_do_not_overflow() {
        let mut dedup = Dedup::default();
        assert_eq!(dedup.observe("s", u64::MAX), New);
        assert_eq!(dedup.observe("s", u64::MAX), Duplicate);
        assert_eq!(dedup.observe("s", 0), Duplicate);
        assert_eq!(dedup.observe("t", 0), New);
        assert_eq!(
            dedup.observe("t", u64::MAX),
            Gap {
                missing_from: 1,
                missing_to: u64::MAX - 1
            }
        );
    }

    #[test]
    fn memory_is_bounded_and_the_least_recently_used_stream_is_evicted() {
        let mut dedup = Dedup::new(2);
        assert_eq!(dedup.observe("a", 1), New);
        assert_eq!(dedup.observe("b", 1), New);
        assert_eq!(dedup.observe("a", 2), New); // a is now more recent than b
        assert_eq!(dedup.observe("c", 1), New); // evicts b
        assert_eq!(dedup.len(), 2);
        assert_eq!(dedup.last_revision("b"), None);
        assert_eq!(dedup.last_revision("a"), Some(2));
        // An evicted stream behaves as unseen.
        assert_eq!(dedup.observe("b", 1), New); // evicts a
        assert_eq!(dedup.last_revision("a"), None);
        assert_eq!(dedup.observe("a", 2), New);
        assert_eq!(dedup.len(), 2);
        assert_eq!(dedup.recency.len(), 2);
    }

    #[test]
    fn forget_and_zero_capacity() {
        let mut dedup = Dedup::new(0);
        assert_eq!(dedup.max_streams(), 1);
        assert_eq!(dedup.observe("a", 5), New);
        assert_eq!(dedup.observe("b", 5), New);
        assert_eq!(dedup.len(), 1);
        dedup.forget("b");
        assert!(dedup.is_empty());
        assert!(dedup.recency.is_empty());
        assert_eq!(dedup.observe("b", 5), New);
        dedup.forget("nope");
    }

    #[test]
    fn many_streams_stay_within_the_cap() {
        let mut dedup = Dedup::new(100);
        for round in 0..3u64 {
            for stream in 0..1000 {
                dedup.observe(&format!("channel-{stream}"), round);
            }
        }
        assert_eq!(dedup.len(), 100);
        assert_eq!(dedup.recency.len(), 100);
    }
}
