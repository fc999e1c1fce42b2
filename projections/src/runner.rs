//! The projection runner and the [`Projections`] handle.

use std::sync::Arc;
use std::time::Duration;

use store::{DynStore, RecordedEvent, StoreError};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::db::{self, lock_checkpoint, set_checkpoint, HeldConnection, ReadDb};
use crate::publisher::{self, Publishing, PUBLISH_TIMEOUT};
use crate::writer::{Plan, Target};
use crate::{Result, PUBLISHER, READ_MODELS};

/// Most events applied in one transaction.
pub(crate) const MAX_BATCH: usize = 4096;
/// Largest batch the runner publishes itself. A larger one is a backlog (a restart after
/// downtime, a burst): the runner applies it at full speed and leaves its publishing to
/// the catch-up task, which renders on a connection of its own meanwhile.
pub(crate) const PUBLISH_MAX: usize = 64;
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
    /// False if this transaction applied events that it did not publish (publishing
    /// failed, or the publisher's checkpoint is behind): the catch-up task must.
    pub published: bool,
}

/// Applies `batch` (the events after `after`, in order) to `target` in one transaction
/// that locks the read models' checkpoint first and sets it last. Events at or below the
/// locked checkpoint are skipped (another process applied them). If the checkpoint is
/// below `after`, nothing is applied: the caller must re-read from the checkpoint. `plan`
/// is `batch`'s plan made in advance; it is used when every event is to be applied.
///
/// With `publishing` that is in step, and at most [`PUBLISH_MAX`] events to apply, the
/// events are also rendered, from the read models as this transaction left them, and
/// published before it commits, and the transaction moves the publisher's checkpoint
/// along with its own: a crash before the commit loses the batch's changes and both
/// checkpoints together, so the batch is applied and published again (at least once;
/// gateways drop duplicates). Otherwise, or if the bus fails or does not take the
/// envelopes within [`PUBLISH_TIMEOUT`], the batch commits without moving the
/// publisher's checkpoint, for the catch-up task to publish.
#[tracing::instrument(skip(db, conn, batch, plan, target, publishing), fields(events = batch.len()))]
pub(crate) async fn apply_batch(
    db: &ReadDb,
    conn: &mut HeldConnection,
    target: &Target,
    after: u64,
    batch: &[RecordedEvent],
    plan: Option<Plan>,
    publishing: Option<&Publishing>,
) -> Result<BatchOutcome> {
    let mut tx = conn.begin_replayable(db).await?;
    let checkpoint = lock_checkpoint(&mut tx, db.dialect, READ_MODELS).await?;
    let last = batch.last().map_or(after, |e| e.position);
    if checkpoint < after || checkpoint >= last {
        tx.rollback().await?;
        return Ok(BatchOutcome {
            checkpoint,
            applied: 0,
            published: true,
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
    let published = match publishing {
        Some(p) if p.in_step() && events.len() <= PUBLISH_MAX => {
            publish_in(&mut tx, p, &events, checkpoint, last).await?
        }
        Some(_) => false,
        None => true,
    };
    set_checkpoint(&mut tx, READ_MODELS, last).await?;
    tx.commit().await?;
    Ok(BatchOutcome {
        checkpoint: last,
        applied: events.len(),
        published,
    })
}

/// Renders and publishes `events` inside the batch transaction `tx`, and moves the
/// publisher's checkpoint from `from` to `to`. False if the bus failed or stalled, or the
/// checkpoint was behind `from`; database errors fail the batch.
async fn publish_in(
    tx: &mut sqlx::AnyConnection,
    publishing: &Publishing,
    events: &[&RecordedEvent],
    from: u64,
    to: u64,
) -> Result<bool> {
    let outgoing = publisher::render_all(tx, events).await?;
    let sent = tokio::time::timeout(
        PUBLISH_TIMEOUT,
        publisher::send(publishing.bus.as_ref(), &outgoing),
    )
    .await;
    match sent {
        Ok(Ok(())) => db::follow_checkpoint(tx, PUBLISHER, from, to).await,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "publishing failed; the read models go on without it");
            Ok(false)
        }
        Err(_) => {
            tracing::warn!(
                timeout = ?PUBLISH_TIMEOUT,
                "the bus did not take a batch in time; the read models go on without it"
            );
            Ok(false)
        }
    }
}

/// Runs the read-model projection (and, with a bus, the publishing) until `shutdown` is
/// set, retrying after failures.
async fn run_projection(
    store: DynStore,
    db: ReadDb,
    publishing: Option<Arc<Publishing>>,
    position: watch::Sender<u64>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let result = tokio::select! {
            r = project(&store, &db, publishing.as_deref(), &position) => r,
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

/// Tails the log from the stored checkpoint and applies (and publishes) batch after
/// batch.
async fn project(
    store: &DynStore,
    db: &ReadDb,
    publishing: Option<&Publishing>,
    position: &watch::Sender<u64>,
) -> Result<()> {
    let mut after = {
        let mut conn = db.pool.acquire().await?;
        db::ensure_checkpoint(&mut conn, READ_MODELS, 0).await?;
        db::read_checkpoint(&mut conn, READ_MODELS).await?
    };
    advance(position, after);
    // Dropped with the rest when a batch fails: the retry takes a fresh connection.
    let mut conn = HeldConnection::default();
    let target = Target::live();
    let mut tail = Tail::start(store.clone(), after, MAX_BATCH);
    loop {
        let Prepared { events, plan } = tail.next().await?;
        let last = events.last().map_or(after, |e| e.position);
        let outcome = apply_batch(
            db,
            &mut conn,
            &target,
            after,
            &events,
            Some(plan),
            publishing,
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
        if let (Some(p), false) = (publishing, outcome.published) {
            p.fell_behind();
        }
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

/// The running read side: the projection runner, which with a bus also publishes, and
/// the publisher's catch-up task.
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
    /// Starts the runner (publishing on `bus` when given) on the current runtime.
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
        let publishing = bus.map(Publishing::new);
        let mut tasks = Vec::with_capacity(2);
        if let Some(p) = &publishing {
            tasks.push(tokio::spawn(publisher::run(
                store.clone(),
                db.clone(),
                p.clone(),
                position.clone(),
                shutdown_rx.clone(),
            )));
        }
        tasks.push(tokio::spawn(run_projection(
            store,
            db,
            publishing,
            position_tx,
            shutdown_rx,
        )));
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

    /// Stops the runner and the catch-up task, letting a batch in flight finish or roll
    /// back.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}
