//! An in-memory event log for unit tests. Appends are serialised by one mutex, so
//! positions are assigned in commit order.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use tokio::sync::watch;

use crate::{
    validate, AppendResult, Direction, EventStore, Position, RecordedEvent, Result, Revision,
    StoreError, StreamAppend,
};

#[derive(Default)]
struct Inner {
    log: Vec<RecordedEvent>,
    /// stream id -> positions (indexes into `log`) of its events, in revision order.
    streams: HashMap<String, Vec<usize>>,
    /// event id -> index into `log`.
    ids: HashMap<uuid::Uuid, usize>,
}

/// The in-memory backend.
pub struct MemoryStore {
    inner: Mutex<Inner>,
    head: watch::Sender<Position>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore {
            inner: Mutex::default(),
            head: watch::channel(0).0,
        }
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }
}

/// Checks whether an append part is a retry of one already stored. `Ok(Some(result))`
/// for a full retry, `Ok(None)` when none of its ids are known, an error when only some
/// are or they belong elsewhere.
fn existing_result(inner: &Inner, part: &StreamAppend) -> Result<Option<AppendResult>> {
    let found: Vec<Option<&RecordedEvent>> = part
        .events
        .iter()
        .map(|e| inner.ids.get(&e.event_id).map(|&i| &inner.log[i]))
        .collect();
    if found.iter().all(Option::is_none) {
        return Ok(None);
    }
    let mut prev: Option<Revision> = None;
    for (e, f) in part.events.iter().zip(&found) {
        let Some(f) = f else {
            return Err(StoreError::DuplicateEventId(
                found.iter().flatten().next().unwrap().event_id,
            ));
        };
        if f.stream_id != part.stream_id || prev.is_some_and(|p| f.revision != p + 1) {
            return Err(StoreError::DuplicateEventId(e.event_id));
        }
        prev = Some(f.revision);
    }
    let last = found.last().unwrap().unwrap();
    Ok(Some(AppendResult {
        revision: last.revision,
        position: last.position,
    }))
}

#[async_trait]
impl EventStore for MemoryStore {
    async fn append_many(&self, appends: Vec<StreamAppend>) -> Result<Vec<AppendResult>> {
        validate(&appends)?;
        let mut inner = self.inner.lock().unwrap();
        // Phase 1: decide, writing nothing.
        let mut retries = Vec::with_capacity(appends.len());
        for part in &appends {
            let existing = existing_result(&inner, part)?;
            if existing.is_none() {
                let actual = inner.streams.get(&part.stream_id).map_or(0, |s| s.len()) as u64;
                if !part.expected.matches(actual) {
                    return Err(StoreError::WrongExpectedRevision {
                        stream: part.stream_id.clone(),
                        expected: part.expected,
                        actual,
                    });
                }
            }
            retries.push(existing);
        }
        if retries.iter().any(Option::is_some) && retries.iter().any(Option::is_none) {
            let part = appends
                .iter()
                .zip(&retries)
                .find(|(_, r)| r.is_some())
                .unwrap()
                .0;
            return Err(StoreError::DuplicateEventId(part.events[0].event_id));
        }
        // Phase 2: write.
        let mut results = Vec::with_capacity(appends.len());
        for (part, existing) in appends.into_iter().zip(retries) {
            if let Some(r) = existing {
                results.push(r);
                continue;
            }
            let mut revision = inner.streams.get(&part.stream_id).map_or(0, |s| s.len()) as u64;
            for e in part.events {
                revision += 1;
                let index = inner.log.len();
                inner.log.push(RecordedEvent {
                    stream_id: part.stream_id.clone(),
                    revision,
                    position: index as u64 + 1,
                    event_id: e.event_id,
                    event_type: e.event_type,
                    version: e.version,
                    data: e.data,
                    metadata: e.metadata,
                });
                inner.ids.insert(e.event_id, index);
                inner
                    .streams
                    .entry(part.stream_id.clone())
                    .or_default()
                    .push(index);
            }
            results.push(AppendResult {
                revision,
                position: inner.log.len() as u64,
            });
        }
        let head = inner.log.len() as u64;
        drop(inner);
        self.head.send_replace(head);
        Ok(results)
    }

    async fn read_stream(
        &self,
        stream_id: &str,
        from: Revision,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>> {
        let inner = self.inner.lock().unwrap();
        let Some(indexes) = inner.streams.get(stream_id) else {
            return Ok(Vec::new());
        };
        let events = indexes.iter().map(|&i| &inner.log[i]);
        Ok(match direction {
            Direction::Forwards => events
                .filter(|e| e.revision >= from)
                .take(limit)
                .cloned()
                .collect(),
            Direction::Backwards => events
                .rev()
                .filter(|e| e.revision <= from)
                .take(limit)
                .cloned()
                .collect(),
        })
    }

    async fn read_all(&self, after: Position, limit: usize) -> Result<Vec<RecordedEvent>> {
        let inner = self.inner.lock().unwrap();
        let start = (after as usize).min(inner.log.len());
        Ok(inner.log[start..].iter().take(limit).cloned().collect())
    }

    async fn stream_revision(&self, stream_id: &str) -> Result<Revision> {
        let inner = self.inner.lock().unwrap();
        Ok(inner.streams.get(stream_id).map_or(0, |s| s.len()) as u64)
    }

    async fn head(&self) -> Result<Position> {
        Ok(self.inner.lock().unwrap().log.len() as u64)
    }

    fn watch_head(&self) -> watch::Receiver<Position> {
        self.head.subscribe()
    }
}
