//! [`InProcessBus`]: fan-out inside one process, for the embedded deployment shape.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, Weak};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

use crate::subjects::{validate_pattern, validate_subject};
use crate::{Bus, BusError, BusMessage, BusSubscription};

/// In-process publish/subscribe with NATS subject semantics.
///
/// Subscriptions live in a token tree keyed by pattern, so a publish costs time in the
/// depth of the subject and the number of matching subscriptions, not the number of
/// subscriptions overall. Each subscription has a bounded buffer; when a subscriber falls
/// that far behind, further messages for it are dropped (and counted, and logged) rather
/// than blocking the publisher. Consumers detect the gap by stream revision and backfill
/// from the event log (see [`Dedup`](crate::Dedup)).
///
/// Cloning gives another handle to the same bus.
#[derive(Clone)]
pub struct InProcessBus {
    shared: Arc<Shared>,
}

struct Shared {
    capacity: usize,
    next_id: AtomicU64,
    dropped: AtomicU64,
    tree: RwLock<Node>,
}

struct Entry {
    id: u64,
    pattern: Arc<str>,
    tx: mpsc::Sender<BusMessage>,
    dropped: AtomicU64,
}

/// One level of the subscription tree. Children are keyed by literal token, or by `*`
/// and `>` (validation keeps those out of published subjects, so they never collide).
#[derive(Default)]
struct Node {
    children: HashMap<Box<str>, Node>,
    entries: Vec<Entry>,
}

impl Node {
    fn insert(&mut self, entry: Entry) {
        let pattern = Arc::clone(&entry.pattern);
        let mut node = self;
        for token in pattern.split('.') {
            node = node.children.entry(token.into()).or_default();
        }
        node.entries.push(entry);
    }

    /// Removes subscription `id` registered under `pattern`, pruning empty branches.
    fn remove(&mut self, pattern: &str, id: u64) {
        let tokens: Vec<&str> = pattern.split('.').collect();
        self.remove_at(&tokens, id);
    }

    fn remove_at(&mut self, tokens: &[&str], id: u64) {
        match tokens.split_first() {
            None => self.entries.retain(|e| e.id != id),
            Some((first, rest)) => {
                if let Some(child) = self.children.get_mut(*first) {
                    child.remove_at(rest, id);
                    if child.is_empty() {
                        self.children.remove(*first);
                    }
                }
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.children.is_empty()
    }

    fn for_each_match(&self, tokens: &[&str], f: &mut impl FnMut(&Entry)) {
        let Some((first, rest)) = tokens.split_first() else {
            self.entries.iter().for_each(&mut *f);
            return;
        };
        if let Some(rest_wildcard) = self.children.get(">") {
            rest_wildcard.entries.iter().for_each(&mut *f);
        }
        if let Some(child) = self.children.get(*first) {
            child.for_each_match(rest, f);
        }
        if let Some(child) = self.children.get("*") {
            child.for_each_match(rest, f);
        }
    }

    fn count(&self) -> usize {
        self.entries.len() + self.children.values().map(Node::count).sum::<usize>()
    }
}

/// Unregisters a subscription when its [`BusSubscription`] is dropped.
struct Unregister {
    shared: Weak<Shared>,
    pattern: Arc<str>,
    id: u64,
}

impl Drop for Unregister {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.upgrade() {
            shared.write().remove(&self.pattern, self.id);
        }
    }
}

impl Shared {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Node> {
        self.tree.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Node> {
        self.tree.write().unwrap_or_else(PoisonError::into_inner)
    }
}

impl InProcessBus {
    /// The per-subscription buffer used by [`InProcessBus::new`].
    pub const DEFAULT_CAPACITY: usize = 4096;

    /// A bus whose subscriptions buffer up to [`Self::DEFAULT_CAPACITY`] messages.
    pub fn new() -> Self {
        Self::with_capacity(Self::DEFAULT_CAPACITY)
    }

    /// A bus whose subscriptions buffer up to `capacity` messages each (at least 1).
    pub fn with_capacity(capacity: usize) -> Self {
        InProcessBus {
            shared: Arc::new(Shared {
                capacity: capacity.max(1),
                next_id: AtomicU64::new(0),
                dropped: AtomicU64::new(0),
                tree: RwLock::new(Node::default()),
            }),
        }
    }

    /// The number of live subscriptions.
    pub fn subscription_count(&self) -> usize {
        self.shared.read().count()
    }

    /// How many messages have been dropped, over all subscriptions, because a
    /// subscriber's buffer was full.
    pub fn dropped_messages(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }
}

impl Default for InProcessBus {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for InProcessBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InProcessBus")
            .field("capacity", &self.shared.capacity)
            .field("subscriptions", &self.subscription_count())
            .field("dropped_messages", &self.dropped_messages())
            .finish()
    }
}

#[async_trait]
impl Bus for InProcessBus {
    async fn publish(&self, subject: &str, payload: Bytes) -> Result<(), BusError> {
        validate_subject(subject)?;
        let tokens: Vec<&str> = subject.split('.').collect();
        let mut closed: Vec<(Arc<str>, u64)> = Vec::new();
        {
            let tree = self.shared.read();
            tree.for_each_match(&tokens, &mut |entry| {
                let message = BusMessage {
                    subject: subject.to_owned(),
                    payload: payload.clone(),
                };
                match entry.tx.try_send(message) {
                    Ok(()) => {}
                    Err(TrySendError::Full(_)) => {
                        let mine = entry.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                        let total = self.shared.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                        // Log the first drop and then at powers of two, so a stuck
                        // subscriber cannot flood the log.
                        if mine.is_power_of_two() {
                            tracing::warn!(
                                pattern = %entry.pattern,
                                subject,
                                dropped = mine,
                                dropped_total = total,
                                "bus subscriber is not keeping up; message dropped"
                            );
                        }
                    }
                    Err(TrySendError::Closed(_)) => {
                        closed.push((Arc::clone(&entry.pattern), entry.id));
                    }
                }
            });
        }
        if !closed.is_empty() {
            let mut tree = self.shared.write();
            for (pattern, id) in closed {
                tree.remove(&pattern, id);
            }
        }
        Ok(())
    }

    async fn subscribe(&self, pattern: &str) -> Result<BusSubscription, BusError> {
        validate_pattern(pattern)?;
        let (tx, mut rx) = mpsc::channel(self.shared.capacity);
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let pattern: Arc<str> = pattern.into();
        self.shared.write().insert(Entry {
            id,
            pattern: Arc::clone(&pattern),
            tx,
            dropped: AtomicU64::new(0),
        });
        let guard = Unregister {
            shared: Arc::downgrade(&self.shared),
            pattern: Arc::clone(&pattern),
            id,
        };
        let stream = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
        Ok(BusSubscription::from_stream(&*pattern, stream).with_guard(Box::new(guard)))
    }

    async fn flush(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_removal_prunes_empty_branches() {
        let bus = InProcessBus::new();
        let (tx, _rx) = mpsc::channel(1);
        let mut tree = bus.shared.write();
        for (id, pattern) in ["a.b.c", "a.*.c", "a.>", "a.b.c"].into_iter().enumerate() {
            tree.insert(Entry {
                id: id as u64,
                pattern: pattern.into(),
                tx: tx.clone(),
                dropped: AtomicU64::new(0),
            });
        }
        assert_eq!(tree.count(), 4);
        let mut seen = Vec::new();
        tree.for_each_match(&["a", "b", "c"], &mut |e| seen.push(e.id));
        seen.sort_unstable();
        assert_eq!(seen, [0, 1, 2, 3]);

        tree.remove("a.b.c", 0);
        tree.remove("a.b.c", 3);
        assert!(!tree.children["a"].children.contains_key("b"));
        tree.remove("a.*.c", 1);
        tree.remove("a.>", 2);
        assert!(tree.is_empty());
        // Removing what is not there is harmless.
        tree.remove("x.y", 9);
        assert!(tree.is_empty());
    }
}
