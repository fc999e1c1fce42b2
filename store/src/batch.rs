//! Group commit, shared by the SQL backends.
//!
//! Callers never write to the database themselves: `append_many` validates and serializes
//! its events on the caller's task, sends a [`Request`] to the backend's single appender
//! task and awaits the reply. The appender takes every request queued at that moment
//! ([`next_batch`]), opens one write transaction, loads the current revision of every
//! stream the batch touches and any already stored event ids, and then decides each
//! request in order, in memory, with a [`Decider`]: a request that fails (wrong expected
//! revision, reused event id) writes nothing and does not fail the others, and a later
//! request in the batch sees the revisions written by the earlier ones. The accepted rows
//! are inserted together and committed once, and only then is every caller answered.
//!
//! The decision rules are those of [`crate::memory::MemoryStore`], the reference.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use tokio::sync::{mpsc, oneshot, watch};
use uuid::Uuid;

use crate::{
    validate, AppendResult, ExpectedRevision, Metadata, Position, RecordedEvent, Result, Revision,
    StoreError, StreamAppend,
};

/// The most requests one group commit takes.
const MAX_BATCH_REQUESTS: usize = 1024;
/// A group commit stops taking requests once it holds this many events (a single request
/// may be larger; it is then committed alone).
const MAX_BATCH_EVENTS: usize = 8192;
/// How many times the appender yields to gather more requests before committing.
const MAX_YIELDS: usize = 4;
/// How many requests may wait for the appender before callers are slowed down.
pub(crate) const QUEUE_DEPTH: usize = 4096;

/// An event ready to be written: its data and metadata already serialized to JSON text.
#[derive(Debug)]
pub(crate) struct PreparedEvent {
    pub event_id: Uuid,
    pub event_type: String,
    pub version: u16,
    pub data: String,
    pub metadata: String,
    /// `data` and `metadata` as given, for [`Recent`] once the event is committed.
    pub data_value: serde_json::Value,
    pub metadata_value: Metadata,
}

/// One stream's part of a prepared append.
#[derive(Debug)]
pub(crate) struct PreparedAppend {
    pub stream_id: String,
    pub expected: ExpectedRevision,
    pub events: Vec<PreparedEvent>,
}

/// Validates an append and serializes its events, on the caller's task.
pub(crate) fn prepare(appends: Vec<StreamAppend>) -> Result<Vec<PreparedAppend>> {
    validate(&appends)?;
    appends
        .into_iter()
        .map(|part| {
            let events = part
                .events
                .into_iter()
                .map(|e| {
                    Ok(PreparedEvent {
                        event_id: e.event_id,
                        data: serde_json::to_string(&e.data).map_err(|err| {
                            StoreError::InvalidAppend(format!("event {}: {err}", e.event_id))
                        })?,
                        metadata: serde_json::to_string(&e.metadata).map_err(|err| {
                            StoreError::InvalidAppend(format!("event {}: {err}", e.event_id))
                        })?,
                        event_type: e.event_type,
                        version: e.version,
                        data_value: e.data,
                        metadata_value: e.metadata,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(PreparedAppend {
                stream_id: part.stream_id,
                expected: part.expected,
                events,
            })
        })
        .collect()
}

/// The answer to one request.
pub(crate) type Outcome = Result<Vec<AppendResult>>;
/// Where the appender sends a request's answer.
pub(crate) type Reply = oneshot::Sender<Outcome>;

/// What a caller asks of the appender.
pub(crate) struct Request {
    pub appends: Vec<PreparedAppend>,
    pub reply: Reply,
}

/// A batch that a backend has committed (or found nothing to write in): each request's
/// outcome, in order, and the head of the log afterwards.
pub(crate) struct Committed {
    pub outcomes: Vec<Outcome>,
    pub head: Position,
    /// The events the batch wrote, in position order.
    pub recorded: Vec<RecordedEvent>,
}

impl Committed {
    /// Makes the commit known in this process and returns its requests' outcomes: counted,
    /// its events kept for readers ([`Recent`]) and then the head moved, so that the
    /// readers the head wakes find them.
    pub fn announce(self, head: &Head, recent: &Recent, counters: &Counters) -> Vec<Outcome> {
        counters.record(&self);
        recent.record(self.recorded);
        head.advance(self.head);
        self.outcomes
    }
}

impl Request {
    fn event_count(&self) -> usize {
        self.appends.iter().map(|a| a.events.len()).sum()
    }
}

/// Sends a request to the appender and waits for its answer.
pub(crate) async fn submit(
    requests: &mpsc::Sender<Request>,
    appends: Vec<PreparedAppend>,
) -> Result<Vec<AppendResult>> {
    let (reply, answer) = oneshot::channel();
    requests
        .send(Request { appends, reply })
        .await
        .map_err(|_| StoreError::Backend("the appender task has stopped".into()))?;
    answer.await.map_err(|_| {
        StoreError::Backend("the appender task stopped before answering; the append may or may not have been committed".into())
    })?
}

/// Waits for at least one request, then takes every request already queued, up to the
/// batch limits. `None` once every sender is gone.
///
/// Before closing the batch the appender yields to the runtime, as long as yielding
/// brings in more requests: the callers it has just answered are runnable and usually
/// send their next append within microseconds. Without this, closed-loop writers split
/// into two alternating half-batches, each paying a full commit.
pub(crate) async fn next_batch(requests: &mut mpsc::Receiver<Request>) -> Option<Vec<Request>> {
    let first = requests.recv().await?;
    let mut events = first.event_count();
    let mut batch = vec![first];
    let (mut yields, mut len_at_last_yield) = (0, 0);
    while batch.len() < MAX_BATCH_REQUESTS && events < MAX_BATCH_EVENTS {
        match requests.try_recv() {
            Ok(request) => {
                events += request.event_count();
                batch.push(request);
            }
            // Yield again only if the previous yield brought something in.
            Err(_) if yields < MAX_YIELDS && batch.len() > len_at_last_yield => {
                yields += 1;
                len_at_last_yield = batch.len();
                tokio::task::yield_now().await;
            }
            Err(_) => break,
        }
    }
    Some(batch)
}

/// The distinct streams and the event ids of a batch: what the appender must load.
pub(crate) fn batch_keys(batch: &[Vec<PreparedAppend>]) -> (Vec<String>, Vec<Uuid>) {
    let mut streams = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut ids = Vec::new();
    for part in batch.iter().flatten() {
        if seen.insert(part.stream_id.as_str()) {
            streams.push(part.stream_id.clone());
        }
        ids.extend(part.events.iter().map(|e| e.event_id));
    }
    (streams, ids)
}

/// An event already in the log, as far as idempotency checks need it.
#[derive(Debug, Clone)]
pub(crate) struct KnownEvent {
    pub stream_id: String,
    pub revision: Revision,
    pub position: Position,
}

/// Where the decider put one event of a batch: its position and revision, and which event
/// of the batch it is (request, part, event), so the decider never needs to own events.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Placement {
    position: Position,
    revision: Revision,
    request: usize,
    part: usize,
    event: usize,
}

/// A row to insert into `events`: one placed event of a batch.
#[derive(Debug)]
pub(crate) struct Row<'a> {
    pub position: Position,
    pub stream_id: &'a str,
    pub revision: Revision,
    pub event: &'a PreparedEvent,
}

/// Decides the requests of one batch in order, in memory, against the state loaded in
/// the batch's transaction plus whatever earlier requests of the batch wrote.
#[derive(Debug)]
pub(crate) struct Decider {
    head: Position,
    revisions: HashMap<String, Revision>,
    known: HashMap<Uuid, KnownEvent>,
    placed: Vec<Placement>,
}

impl Decider {
    /// `revisions` holds the current revision of the batch's streams (missing means 0),
    /// `known` the batch's event ids that are already stored, `head` the log's head.
    pub fn new(
        head: Position,
        revisions: HashMap<String, Revision>,
        known: HashMap<Uuid, KnownEvent>,
    ) -> Self {
        Decider {
            head,
            revisions,
            known,
            placed: Vec::new(),
        }
    }

    fn revision(&self, stream_id: &str) -> Revision {
        self.revisions.get(stream_id).copied().unwrap_or(0)
    }

    /// Whether an append part is a retry of one already stored: `Ok(Some(result))` for a
    /// full retry, `Ok(None)` when none of its ids are known, an error when only some
    /// are or they belong elsewhere.
    fn existing_result(&self, part: &PreparedAppend) -> Result<Option<AppendResult>> {
        let found: Vec<Option<&KnownEvent>> = part
            .events
            .iter()
            .map(|e| self.known.get(&e.event_id))
            .collect();
        let Some(first_known) = part
            .events
            .iter()
            .zip(&found)
            .find_map(|(e, f)| f.map(|_| e.event_id))
        else {
            return Ok(None);
        };
        let mut prev: Option<&KnownEvent> = None;
        for (e, f) in part.events.iter().zip(&found) {
            let Some(f) = f else {
                return Err(StoreError::DuplicateEventId(first_known));
            };
            if f.stream_id != part.stream_id || prev.is_some_and(|p| f.revision != p.revision + 1) {
                return Err(StoreError::DuplicateEventId(e.event_id));
            }
            prev = Some(f);
        }
        Ok(prev.map(|last| AppendResult {
            revision: last.revision,
            position: last.position,
        }))
    }

    /// Decides request number `request` of the batch: either every part is accepted (its
    /// events are placed for insertion and the state advances) or nothing changes and the
    /// error is returned.
    pub fn decide(
        &mut self,
        request: usize,
        appends: &[PreparedAppend],
    ) -> Result<Vec<AppendResult>> {
        // Phase 1: check, changing nothing.
        let mut retries = Vec::with_capacity(appends.len());
        for part in appends {
            let existing = self.existing_result(part)?;
            if existing.is_none() {
                let actual = self.revision(&part.stream_id);
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
            // Part of an atomic append was stored and part was not: not a retry of it.
            let id = appends
                .iter()
                .zip(&retries)
                .find(|(_, r)| r.is_some())
                .and_then(|(part, _)| part.events.first())
                .map(|e| e.event_id)
                .unwrap_or_default();
            return Err(StoreError::DuplicateEventId(id));
        }
        // Phase 2: write (into the batch), which cannot fail.
        let mut results = Vec::with_capacity(appends.len());
        for (index, (part, existing)) in appends.iter().zip(retries).enumerate() {
            if let Some(result) = existing {
                results.push(result);
                continue;
            }
            let mut revision = self.revision(&part.stream_id);
            for (event_index, event) in part.events.iter().enumerate() {
                revision += 1;
                self.head += 1;
                self.known.insert(
                    event.event_id,
                    KnownEvent {
                        stream_id: part.stream_id.clone(),
                        revision,
                        position: self.head,
                    },
                );
                self.placed.push(Placement {
                    position: self.head,
                    revision,
                    request,
                    part: index,
                    event: event_index,
                });
            }
            self.revisions.insert(part.stream_id.clone(), revision);
            results.push(AppendResult {
                revision,
                position: self.head,
            });
        }
        Ok(results)
    }

    /// The head of the log once the batch's rows are committed.
    pub fn head(&self) -> Position {
        self.head
    }

    /// The revisions of the batch's streams as the decided batch leaves them.
    pub fn revisions(&self) -> impl Iterator<Item = (&str, Revision)> {
        self.revisions.iter().map(|(s, r)| (s.as_str(), *r))
    }

    /// Whether any event was placed, i.e. whether the batch writes anything.
    pub fn writes(&self) -> bool {
        !self.placed.is_empty()
    }

    /// The rows to insert, in position order: the placed events of `batch`, which must be
    /// the batch this decider decided.
    pub fn rows<'a>(&self, batch: &'a [Vec<PreparedAppend>]) -> Vec<Row<'a>> {
        self.placed
            .iter()
            .map(|p| {
                let part = &batch[p.request][p.part];
                Row {
                    position: p.position,
                    stream_id: &part.stream_id,
                    revision: p.revision,
                    event: &part.events[p.event],
                }
            })
            .collect()
    }

    /// What the batch committed: its outcomes, the new head and the events written, taken
    /// out of `batch` (the batch this decider decided).
    pub fn committed(self, outcomes: Vec<Outcome>, batch: Vec<Vec<PreparedAppend>>) -> Committed {
        // Placements are in batch order (request, part, event), so one walk finds them all.
        let mut placed = self.placed.iter().peekable();
        let mut recorded = Vec::with_capacity(self.placed.len());
        for (request, parts) in batch.into_iter().enumerate() {
            for (part_index, part) in parts.into_iter().enumerate() {
                for (event_index, event) in part.events.into_iter().enumerate() {
                    let Some(p) = placed.next_if(|p| {
                        (p.request, p.part, p.event) == (request, part_index, event_index)
                    }) else {
                        continue;
                    };
                    recorded.push(RecordedEvent {
                        stream_id: part.stream_id.clone(),
                        revision: p.revision,
                        position: p.position,
                        event_id: event.event_id,
                        event_type: event.event_type,
                        version: event.version,
                        data: event.data_value,
                        metadata: event.metadata_value,
                    });
                }
            }
        }
        debug_assert!(placed.next().is_none(), "committed with another batch");
        Committed {
            outcomes,
            head: self.head,
            recorded,
        }
    }
}

/// Decides every request of a batch; returns each request's outcome.
pub(crate) fn decide_all(decider: &mut Decider, batch: &[Vec<PreparedAppend>]) -> Vec<Outcome> {
    batch
        .iter()
        .enumerate()
        .map(|(request, appends)| decider.decide(request, appends))
        .collect()
}

/// Splits a batch of requests into their appends and their reply channels.
pub(crate) fn split(batch: Vec<Request>) -> (Vec<Vec<PreparedAppend>>, Vec<Reply>) {
    batch.into_iter().map(|r| (r.appends, r.reply)).unzip()
}

/// Answers every caller of a batch: with its own outcome when the batch committed, with
/// the backend error when it did not (then nothing of the batch was written, unless the
/// connection failed during COMMIT itself, which a retry with the same ids resolves).
pub(crate) fn reply_all(replies: Vec<Reply>, outcome: Result<Vec<Outcome>, String>) {
    match outcome {
        Ok(results) => {
            for (reply, result) in replies.into_iter().zip(results) {
                // The caller may have given up waiting; its append stands regardless.
                let _ = reply.send(result);
            }
        }
        Err(message) => {
            for reply in replies {
                let _ = reply.send(Err(StoreError::Backend(message.clone())));
            }
        }
    }
}

/// Counts of a store's group commits, to see how well concurrent appends share commits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupCommitStats {
    /// Transactions that wrote events.
    pub commits: u64,
    /// Append requests answered by those transactions (including rejected ones).
    pub requests: u64,
    /// Events written.
    pub events: u64,
    /// Of `commits`, those made in one statement on what the appender already knew of
    /// the log (PostgreSQL's one-statement path; always 0 on the other backends).
    pub one_statement: u64,
}

/// The live counters behind [`GroupCommitStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    commits: AtomicU64,
    requests: AtomicU64,
    events: AtomicU64,
    one_statement: AtomicU64,
}

impl Counters {
    pub fn record(&self, committed: &Committed) {
        let events = committed.recorded.len();
        if events > 0 {
            self.commits.fetch_add(1, Ordering::Relaxed);
        }
        self.requests
            .fetch_add(committed.outcomes.len() as u64, Ordering::Relaxed);
        self.events.fetch_add(events as u64, Ordering::Relaxed);
    }

    /// Counts a commit made in one statement (see [`GroupCommitStats::one_statement`]).
    pub fn record_one_statement(&self) {
        self.one_statement.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> GroupCommitStats {
        GroupCommitStats {
            commits: self.commits.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
            events: self.events.load(Ordering::Relaxed),
            one_statement: self.one_statement.load(Ordering::Relaxed),
        }
    }
}

/// The newest position a store knows of, shared by its appender and its watchers.
#[derive(Debug)]
pub(crate) struct Head(watch::Sender<Position>);

impl Head {
    pub fn new(position: Position) -> Self {
        Head(watch::channel(position).0)
    }

    /// Moves the head forwards (never backwards), waking watchers if it moved.
    pub fn advance(&self, position: Position) {
        self.0.send_if_modified(|head| {
            if position > *head {
                *head = position;
                true
            } else {
                false
            }
        });
    }

    pub fn subscribe(&self) -> watch::Receiver<Position> {
        self.0.subscribe()
    }

    /// The head as far as this process knows.
    pub fn get(&self) -> Position {
        *self.0.borrow()
    }
}

/// The events this process committed last, so that reading the tail of the log (the
/// projection runner's and the publisher's subscriptions, right after a commit) need not
/// go to the database. It holds one run of consecutive positions, at most [`Recent::CAP`]
/// events; a commit that does not continue the run (another process committed in
/// between) starts a new one.
#[derive(Debug, Default)]
pub(crate) struct Recent {
    events: Mutex<VecDeque<RecordedEvent>>,
}

impl Recent {
    /// Most events kept.
    pub const CAP: usize = 1024;

    fn events(&self) -> std::sync::MutexGuard<'_, VecDeque<RecordedEvent>> {
        self.events.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps the events a commit wrote (consecutive positions, in order).
    pub fn record(&self, committed: Vec<RecordedEvent>) {
        let Some(first) = committed.first().map(|e| e.position) else {
            return;
        };
        let mut events = self.events();
        if events.back().is_some_and(|e| e.position + 1 != first) {
            events.clear();
        }
        events.extend(committed);
        let excess = events.len().saturating_sub(Self::CAP);
        events.drain(..excess);
    }

    /// What `read_all(after, limit)` returns, if the kept run holds all of it up to
    /// `head` (the head as far as this process knows); `None` sends the reader to the
    /// database.
    pub fn read(
        &self,
        after: Position,
        limit: usize,
        head: Position,
    ) -> Option<Vec<RecordedEvent>> {
        let want = head.min(after.saturating_add(limit as u64));
        if want <= after {
            return None;
        }
        let events = self.events();
        let first = events.front()?.position;
        let last = events.back()?.position;
        if first > after + 1 || last < want {
            return None;
        }
        let skip = usize::try_from(after + 1 - first).ok()?;
        let take = usize::try_from(want - after).ok()?;
        Some(events.iter().skip(skip).take(take).cloned().collect())
    }
}

/// Aborts a store's background tasks (head polling, LISTEN) when the last handle to the
/// store is dropped. The appender needs no guard: it ends when its queue closes.
#[derive(Debug, Default)]
pub(crate) struct AbortOnDrop(pub Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: Uuid) -> PreparedEvent {
        PreparedEvent {
            event_id: id,
            event_type: "Test".into(),
            version: 1,
            data: "{}".into(),
            metadata: "{}".into(),
            data_value: serde_json::json!({}),
            metadata_value: Metadata::system("test"),
        }
    }

    /// Committed events at `positions`.
    fn recorded(positions: std::ops::RangeInclusive<Position>) -> Vec<RecordedEvent> {
        positions
            .map(|p| RecordedEvent {
                stream_id: "s".into(),
                revision: p,
                position: p,
                event_id: Uuid::new_v4(),
                event_type: "Test".into(),
                version: 1,
                data: serde_json::json!({ "p": p }),
                metadata: Metadata::system("test"),
            })
            .collect()
    }

    fn read(
        recent: &Recent,
        after: Position,
        limit: usize,
        head: Position,
    ) -> Option<Vec<Position>> {
        recent
            .read(after, limit, head)
            .map(|events| events.iter().map(|e| e.position).collect())
    }

    #[test]
    fn recent_serves_a_read_only_when_it_holds_all_of_it() {
        let recent = Recent::default();
        assert_eq!(read(&recent, 0, 10, 0), None, "nothing kept");
        recent.record(recorded(3..=5));
        recent.record(recorded(6..=8));
        assert_eq!(read(&recent, 2, 10, 8), Some(vec![3, 4, 5, 6, 7, 8]));
        assert_eq!(read(&recent, 4, 2, 8), Some(vec![5, 6]), "at most limit");
        assert_eq!(
            read(&recent, 5, 10, 7),
            Some(vec![6, 7]),
            "up to the known head"
        );
        assert_eq!(read(&recent, 1, 10, 8), None, "position 2 is not kept");
        assert_eq!(read(&recent, 6, 10, 9), None, "another process wrote 9");
        assert_eq!(read(&recent, 8, 10, 8), None, "nothing after the head");
        assert_eq!(read(&recent, 4, 0, 8), None, "limit 0 goes to the database");
        let events = recent.read(6, 1, 8).unwrap();
        assert_eq!(events[0].data, serde_json::json!({ "p": 7 }));
    }

    #[test]
    fn recent_starts_a_new_run_after_a_gap_and_keeps_at_most_its_cap() {
        let recent = Recent::default();
        recent.record(recorded(1..=3));
        // Another process committed 4.
        recent.record(recorded(5..=6));
        assert_eq!(read(&recent, 0, 10, 6), None);
        assert_eq!(read(&recent, 4, 10, 6), Some(vec![5, 6]));
        let last = 6 + Recent::CAP as Position + 5;
        recent.record(recorded(7..=last));
        assert_eq!(read(&recent, 10, 1, last), None, "the oldest went");
        assert_eq!(
            read(&recent, last - 2, 10, last),
            Some(vec![last - 1, last])
        );
    }

    fn part(stream: &str, expected: ExpectedRevision, ids: &[Uuid]) -> PreparedAppend {
        PreparedAppend {
            stream_id: stream.into(),
            expected,
            events: ids.iter().copied().map(event).collect(),
        }
    }

    #[test]
    fn a_failing_request_does_not_disturb_the_rest_of_its_batch() {
        let mut d = Decider::new(10, HashMap::from([("a".to_string(), 3)]), HashMap::new());
        let (x, y, z) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let batch = vec![
            vec![part("a", ExpectedRevision::Exact(3), &[x])],
            vec![part("a", ExpectedRevision::Exact(3), &[y])],
            vec![part("b", ExpectedRevision::NoStream, &[z])],
            vec![part("a", ExpectedRevision::Exact(3), &[x])],
        ];
        let outcomes = decide_all(&mut d, &batch);
        assert_eq!(
            outcomes[0].as_ref().unwrap(),
            &vec![AppendResult {
                revision: 4,
                position: 11
            }]
        );
        assert!(outcomes[1].as_ref().unwrap_err().is_conflict());
        assert_eq!(
            outcomes[2].as_ref().unwrap(),
            &vec![AppendResult {
                revision: 1,
                position: 12
            }]
        );
        // A retry inside the same batch gets the first result.
        assert_eq!(outcomes[3].as_ref().unwrap(), outcomes[0].as_ref().unwrap());
        let rows: Vec<_> = d
            .rows(&batch)
            .iter()
            .map(|r| {
                (
                    r.position,
                    r.stream_id.to_owned(),
                    r.revision,
                    r.event.event_id,
                )
            })
            .collect();
        assert_eq!(rows, vec![(11, "a".into(), 4, x), (12, "b".into(), 1, z)]);
        assert_eq!(d.head(), 12);
        let committed = d.committed(outcomes, batch);
        let recorded: Vec<_> = committed
            .recorded
            .iter()
            .map(|e| (e.position, e.stream_id.as_str(), e.revision, e.event_id))
            .collect();
        assert_eq!(recorded, vec![(11, "a", 4, x), (12, "b", 1, z)]);
        assert_eq!(committed.head, 12);
    }
}
