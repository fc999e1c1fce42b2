//! Catch-up-then-live subscription to the global log, shared by every backend.

use std::time::Duration;

use futures::Stream;

use crate::{DynStore, Position, RecordedEvent, Result};

/// How many events a subscription reads per query.
const PAGE: usize = 512;
/// How often a subscription polls when no wake-up arrives (another process may append).
const POLL: Duration = Duration::from_millis(250);

/// A subscription to the global log: yields every event after a position exactly once, in
/// position order, first the history and then live events as they are committed.
pub struct Subscription {
    store: DynStore,
    after: Position,
    buffer: std::collections::VecDeque<RecordedEvent>,
    head: tokio::sync::watch::Receiver<Position>,
    /// The last wait for a wake-up ran out: read the log even if the head did not move.
    poll_due: bool,
}

impl Subscription {
    /// The position of the last event handed out (the checkpoint to resume from).
    pub fn position(&self) -> Position {
        self.after
    }

    /// The next event, waiting for one to be committed if the subscriber is caught up.
    pub async fn next(&mut self) -> Result<RecordedEvent> {
        loop {
            if let Some(e) = self.buffer.pop_front() {
                self.after = e.position;
                return Ok(e);
            }
            self.fill().await?;
        }
    }

    /// The next batch of events (at most `PAGE`, 512), waiting if the subscriber is caught up.
    pub async fn next_batch(&mut self) -> Result<Vec<RecordedEvent>> {
        if self.buffer.is_empty() {
            self.fill().await?;
            while self.buffer.is_empty() {
                self.fill().await?;
            }
        }
        let batch: Vec<_> = self.buffer.drain(..).collect();
        if let Some(last) = batch.last() {
            self.after = last.position;
        }
        Ok(batch)
    }

    async fn fill(&mut self) -> Result<()> {
        // Mark the current head as seen before reading, so a commit that lands while we
        // read is not missed.
        let head = *self.head.borrow_and_update();
        // Caught up with every commit this process knows of (its own, and others' it was
        // told of): wait for the next one instead of asking the log for nothing. The poll
        // still reads the log, in case a wake-up from another process was lost.
        let page = if self.after >= head && !self.poll_due {
            Vec::new()
        } else {
            self.store.read_all(self.after, PAGE).await?
        };
        if page.is_empty() {
            self.poll_due = tokio::time::timeout(POLL, self.head.changed())
                .await
                .is_err();
        } else {
            self.poll_due = false;
            self.buffer.extend(page);
        }
        Ok(())
    }

    /// Turns the subscription into a `Stream` of events.
    pub fn into_stream(self) -> impl Stream<Item = Result<RecordedEvent>> + Send {
        futures::stream::unfold(self, |mut sub| async move {
            let item = sub.next().await;
            Some((item, sub))
        })
    }
}

/// Subscribes to every event with a position greater than `after`.
pub fn subscribe_all(store: DynStore, after: Position) -> Subscription {
    let head = store.watch_head();
    Subscription {
        store,
        after,
        buffer: Default::default(),
        head,
        poll_due: false,
    }
}
