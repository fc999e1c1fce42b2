//! The projection runner and the [`Projections`] handle.

use std::sync::Arc;
use std::time::Duration;

use store::{DynStore, RecordedEvent, StoreError};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::db::{self, lock_checkpoint, set_checkpoint, HeldConnection, ReadDb};
use crate::writer::{Plan, Target};
use crate::{publisher, Result, READ_MODELS};

/// Most events applied in one transaction.
pub(crate) const MAX_BATCH: usize = 4096;
/// Pages read ahead of the applier.
const READ_AHEAD: usize = 8;
/// Wait before retrying after a failure.
const RETRY: Duration = Duration::from_millis(500);

/// A batch read ahead of the applier, with its plan made for the case that every event
/// in it is still to apply.
pub(crate) struct Prepared {
    pub events: Vec<RecordedEvent>,
    pub plan: Plan,
}

/// Reads and plans the log ahead of the applier, on two tasks of their own: a reader
/// (store pages) and a planner (merges the pages that are ready into one batch and
/// decodes it into row operations). Reading, decoding and writing overlap.
pub(crate) struct Tail {
    rx: mpsc::Receiver<Result<Prepared, StoreError>>,
    tasks: [JoinHandle<()>; 2],
}

impl Tail {
    /// Tails every event after `after`, in batches of at most about `max` events.
    pub fn start(store: DynStore, after: u64, max: usize) -> Tail {
        let (pages_tx, mut pages) = mpsc::channel(READ_AHEAD);
        let reader = tokio::spawn(async move {
            let mut sub = store::subscribe_all(store, after);
            loop {
                let batch = sub.next_batch().await;
                let failed = batch.is_err();
                if pages_tx.send(batch).await.is_err() {
                    return;
                }
                if failed {
                    tokio::time::sleep(RETRY).await;
                }
            }
        });
        let (tx, rx) = mpsc::channel(2);
        let planner = tokio::spawn(async move {
            while let Some(first) = pages.recv().await {
                let mut events = match first {
                    Ok(events) => events,
                    Err(e) => {
                        if tx.send(Err(e)).await.is_err() {
                            return;
                        }
                        continue;
                    }
                };
                let mut pending_error = None;
                while events.len() < max {
                    match pages.try_recv() {
                        Ok(Ok(more)) => events.extend(more),
                        Ok(Err(e)) => {
                            pending_error = Some(e);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                let refs: Vec<&RecordedEvent> = events.iter().collect();
                let plan = Plan::new(&refs);
                if tx.send(Ok(Prepared { events, plan })).await.is_err() {
                    return;
                }
                if let Some(e) = pending_error {
                    if tx.send(Err(e)).await.is_err() {
                        return;
                    }
                }
            }
        });
        Tail {
            rx,
            tasks: [reader, planner],
        }
    }

    /// The next batch (at least one event).
    pub async fn next(&mut self) -> Result<Prepared> {
        match self.rx.recv().await {
            Some(batch) => Ok(batch?),
            None => Err(crate::Error::Invalid("the log tail stopped".into())),
        }
    }
}

impl Drop for Tail {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// The outcome of one batch transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchOutcome {
    /// The checkpoint after the transaction (the database's truth).
    pub checkpoint: u64,
    /// Events applied by this transaction.
    pub applied: usize,
}

/// Applies `batch` (the events after `after`, in order) to `target` in one transaction
/// that locks checkpoint `name` first and sets it last. Events at or below the locked
/// checkpoint are skipped (another process applied them). If the checkpoint is below
/// `after`, nothing is applied: the caller must re-read from the checkpoint. `plan` is
/// `batch`'s plan made in advance; it is used when every event is to be applied.
#[tracing::instrument(skip(db, conn, batch, plan, target), fields(events = batch.len()))]
pub(crate) async fn apply_batch(
    db: &ReadDb,
    conn: &mut HeldConnection,
    name: &str,
    target: &Target,
    after: u64,
    batch: &[RecordedEvent],
    plan: Option<Plan>,
) -> Result<BatchOutcome> {
    let mut tx = conn.begin_replayable(db).await?;
    let checkpoint = lock_checkpoint(&mut tx, db.dialect, name).await?;
    let last = batch.last().map_or(after, |e| e.position);
    if checkpoint < after || checkpoint >= last {
        tx.rollback().await?;
        return Ok(BatchOutcome {
            checkpoint,
            applied: 0,
        });
    }
    let events: Vec<&RecordedEvent> = batch.iter().filter(|e| e.position > checkpoint).collect();
    let plan = match plan {
        Some(plan) if events.len() == batch.len() => plan,
        _ => Plan::new(&events),
    };
    if plan.skipped > 0 {
        tracing::debug!(skipped = plan.skipped, "events without read-model changes");
    }
    plan.write(&mut tx, db.dialect, target).await?;
    set_checkpoint(&mut tx, name, last).await?;
    tx.commit().await?;
    Ok(BatchOutcome {
        checkpoint: last,
        applied: events.len(),
    })
}

/// Runs the read-model projection until `shutdown` is set, retrying after failures.
async fn run_projection(
    store: DynStore,
    db: ReadDb,
    position: watch::Sender<u64>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let result = tokio::select! {
            r = project(&store, &db, &position) => r,
            _ = shutdown.wait_for(|s| *s) => return,
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "projection runner failed; retrying");
        }
        tokio::select! {
            _ = tokio::time::sleep(RETRY) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

/// Tails the log from the stored checkpoint and applies batch after batch.
async fn project(store: &DynStore, db: &ReadDb, position: &watch::Sender<u64>) -> Result<()> {
    let mut after = {
        let mut conn = db.pool.acquire().await?;
        db::ensure_checkpoint(&mut conn, READ_MODELS, 0).await?;
        db::read_checkpoint(&mut conn, READ_MODELS).await?
    };
    advance(position, after);
    let target = Target::live();
    // Dropped with the rest when a batch fails: the retry takes a fresh connection.
    let mut conn = HeldConnection::default();
    let mut tail = Tail::start(store.clone(), after, MAX_BATCH);
    loop {
        let Prepared { events, plan } = tail.next().await?;
        let last = events.last().map_or(after, |e| e.position);
        let outcome = apply_batch(
            db,
            &mut conn,
            READ_MODELS,
            &target,
            after,
            &events,
            Some(plan),
        )
        .await?;
        if outcome.checkpoint != last {
            // Another process moved the checkpoint (past this batch, or back for a
            // reason of its own): continue from where the database says.
            tracing::debug!(
                checkpoint = outcome.checkpoint,
                last,
                "re-reading the log from the stored checkpoint"
            );
            tail = Tail::start(store.clone(), outcome.checkpoint, MAX_BATCH);
        }
        after = outcome.checkpoint;
        advance(position, after);
    }
}

/// Publishes a new known position; `send_replace` so it works without receivers.
fn advance(position: &watch::Sender<u64>, to: u64) {
    position.send_if_modified(|p| {
        if *p != to {
            *p = to;
            true
        } else {
            false
        }
    });
}

/// The running read side: the projection runner and, with a bus, the publisher.
pub struct Projections {
    position: watch::Receiver<u64>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Projections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Projections")
            .field("position", &*self.position.borrow())
            .finish_non_exhaustive()
    }
}

impl Projections {
    /// Starts the runner (and the publisher when `bus` is given) on the current runtime.
    /// The checkpoint rows are created if missing; the runner resumes at its checkpoint.
    pub async fn start(
        store: DynStore,
        db: ReadDb,
        bus: Option<Arc<dyn bus::Bus>>,
    ) -> Result<Projections> {
        let initial = {
            let mut conn = db.pool.acquire().await?;
            db::ensure_checkpoint(&mut conn, READ_MODELS, 0).await?;
            let initial = db::read_checkpoint(&mut conn, READ_MODELS).await?;
            if bus.is_some() {
                // A publisher that never ran starts where the read models are: events
                // before it were never announced, and nobody waits for them now.
                db::ensure_checkpoint(&mut conn, crate::PUBLISHER, initial).await?;
            }
            initial
        };
        let (position_tx, position) = watch::channel(initial);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut tasks = vec![tokio::spawn(run_projection(
            store.clone(),
            db.clone(),
            position_tx,
            shutdown_rx.clone(),
        ))];
        if let Some(bus) = bus {
            tasks.push(tokio::spawn(publisher::run(
                store,
                db,
                bus,
                position.clone(),
                shutdown_rx,
            )));
        }
        Ok(Projections {
            position,
            shutdown,
            tasks,
        })
    }

    /// The global position the read models include (as far as this process knows).
    pub fn position(&self) -> u64 {
        *self.position.borrow()
    }

    /// Waits until the read models include global position `position` (read-your-writes:
    /// a command returns the position of its events, the handler waits, then queries).
    /// False if `timeout` passed first.
    pub async fn wait_for(&self, position: u64, timeout: Duration) -> bool {
        let mut rx = self.position.clone();
        let reached = async move { rx.wait_for(|p| *p >= position).await.is_ok() };
        matches!(tokio::time::timeout(timeout, reached).await, Ok(true))
    }

    /// Stops the runner and the publisher, letting a batch in flight finish or roll back.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}
