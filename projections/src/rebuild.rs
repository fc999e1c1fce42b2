//! Rebuilding projections without downtime, and their status.
//!
//! A rebuild replays the log from position 0 into fresh shadow tables (`{table}__rebuild`)
//! while the live tables keep serving, catches up to the head, and then, in one
//! transaction that holds the same checkpoint lock as the runner's batches, applies the
//! last few events, drops the live tables, renames the shadow tables into their place
//! and sets the checkpoint. Readers see the old tables until that commit and the new ones
//! after it; the runner never writes half-swapped tables.
//!
//! Projections: `read_models` (every read-model table) or one table by name (`users`,
//! `guilds`, `channels`, `members`, `invites`, `messages`). A one-table rebuild stops at
//! the live checkpoint instead of the head, so the table it swaps in is exactly as far as
//! the others. Run one rebuild at a time.

use std::time::{Duration, Instant};

use sqlx::{AnyConnection, Row as _};
use store::{EventStore, RecordedEvent};

use crate::db::{lock_checkpoint, set_checkpoint, Dialect, ReadDb};
use crate::schema::{create_table, Table, CHECKPOINTS};
use crate::writer::{Plan, Target};
use crate::{Error, Result, READ_MODELS};

/// The suffix of a rebuild's shadow tables.
pub const SHADOW_SUFFIX: &str = "__rebuild";
/// Events read per page while rebuilding.
const PAGE: usize = 4096;
/// The rebuild swaps once it is at most this many events behind its target; the rest is
/// applied inside the swap transaction.
const SWAP_LAG: u64 = 2048;

/// A projection's progress through the log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ProjectionStatus {
    /// The checkpoint name (`read_models`, `publisher`).
    pub name: String,
    /// The last global position it has processed.
    pub position: u64,
    /// The newest position in the log.
    pub head: u64,
    /// `head - position`.
    pub lag: u64,
}

/// What a rebuild did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RebuildReport {
    /// The projection rebuilt.
    pub name: String,
    /// The tables swapped in.
    pub tables: Vec<String>,
    /// Events replayed.
    pub events: u64,
    /// The position the swapped-in tables include (the checkpoint after the swap).
    pub position: u64,
    #[serde(skip)]
    pub elapsed: Duration,
}

/// The names [`rebuild`] accepts.
pub fn projection_names() -> Vec<&'static str> {
    let mut names = vec![READ_MODELS];
    names.extend(Table::ALL.iter().map(|t| t.name()));
    names
}

/// Every checkpoint with its lag behind the log's head (`read_models` always, `publisher`
/// once a publisher has run).
#[tracing::instrument(skip_all)]
pub async fn status(store: &dyn EventStore, db: &ReadDb) -> Result<Vec<ProjectionStatus>> {
    let rows = sqlx::query(&format!(
        "SELECT name, position FROM {CHECKPOINTS} ORDER BY name"
    ))
    .fetch_all(&db.pool)
    .await?;
    let head = store.head().await?;
    let mut out: Vec<ProjectionStatus> = Vec::with_capacity(rows.len() + 1);
    for row in rows {
        let name: String = row.try_get(0)?;
        let position = crate::db::to_u64(row.try_get::<i64, _>(1)?);
        out.push(ProjectionStatus {
            name,
            position,
            head,
            lag: head.saturating_sub(position),
        });
    }
    if !out.iter().any(|s| s.name == READ_MODELS) {
        out.insert(
            0,
            ProjectionStatus {
                name: READ_MODELS.to_owned(),
                position: 0,
                head,
                lag: head,
            },
        );
    }
    Ok(out)
}

/// Rebuilds projection `name` from position 0 into fresh tables and swaps them in (see
/// the module docs). `progress(done, total)` is called after every page with the
/// position reached and the position aimed at (which moves while the log grows).
#[tracing::instrument(skip(store, db, progress))]
pub async fn rebuild(
    store: &dyn EventStore,
    db: &ReadDb,
    name: &str,
    progress: impl Fn(u64, u64),
) -> Result<RebuildReport> {
    let started = Instant::now();
    let (full, tables) = if name == READ_MODELS {
        (true, Table::ALL.to_vec())
    } else if name == Table::AuditLog.name() {
        // Its entries compare with the other tables as they were before each event,
        // which only a rebuild of every table replays.
        return Err(Error::Invalid(format!(
            "the audit_log is rebuilt together with the others: rebuild {READ_MODELS}"
        )));
    } else if let Some(t) = Table::from_name(name) {
        (false, vec![t])
    } else {
        return Err(Error::Invalid(format!(
            "unknown projection {name:?} (one of: {})",
            projection_names().join(", ")
        )));
    };
    let target = Target {
        suffix: SHADOW_SUFFIX.to_owned(),
        tables: tables.clone(),
    };
    create_shadow_tables(db, &tables).await?;

    // Replay into the shadow tables, page by page, until close to the target.
    let aim = |db: &ReadDb| {
        let db = db.clone();
        async move {
            if full {
                Ok::<u64, Error>(store.head().await?)
            } else {
                db.checkpoint(READ_MODELS).await
            }
        }
    };
    let mut pos = 0u64;
    let mut events = 0u64;
    let mut goal = aim(db).await?;
    progress(pos, goal);
    // The next page is read while the current one is written.
    let mut next: Option<Vec<RecordedEvent>> = None;
    loop {
        let page = match next.take() {
            Some(page) => page,
            None => {
                if goal.saturating_sub(pos) <= SWAP_LAG {
                    goal = aim(db).await?;
                    if goal.saturating_sub(pos) <= SWAP_LAG {
                        break;
                    }
                }
                read_until(store, pos, goal, PAGE).await?
            }
        };
        let Some(last) = page.last().map(|e| e.position) else {
            goal = aim(db).await?;
            continue;
        };
        let write = async {
            let mut tx = db.begin_write().await?;
            apply_events(&mut tx, db.dialect, &target, &page).await?;
            tx.commit().await?;
            Ok::<(), Error>(())
        };
        let read_ahead = async {
            if goal.saturating_sub(last) > SWAP_LAG {
                read_until(store, last, goal, PAGE).await.map(Some)
            } else {
                Ok(None)
            }
        };
        let (written, read) = tokio::join!(write, read_ahead);
        written?;
        next = read?;
        events += page.len() as u64;
        pos = last;
        progress(pos, goal.max(pos));
    }

    // Swap, holding the runner's lock.
    let mut tx = db.begin_write().await?;
    let live = lock_checkpoint(&mut tx, db.dialect, READ_MODELS).await?;
    let end = if full {
        store.head().await?.max(live)
    } else {
        if live < pos {
            return Err(Error::Invalid(format!(
                "the live checkpoint ({live}) moved below the rebuilt position ({pos})"
            )));
        }
        live
    };
    while pos < end {
        let page = read_until(store, pos, end, PAGE).await?;
        let Some(last) = page.last().map(|e| e.position) else {
            break;
        };
        apply_events(&mut tx, db.dialect, &target, &page).await?;
        events += page.len() as u64;
        pos = last;
    }
    swap_tables(&mut tx, db.dialect, &tables).await?;
    if full {
        set_checkpoint(&mut tx, READ_MODELS, pos).await?;
    }
    tx.commit().await?;
    progress(pos, pos);
    Ok(RebuildReport {
        name: name.to_owned(),
        tables: tables.iter().map(|t| t.name().to_owned()).collect(),
        events,
        position: pos,
        elapsed: started.elapsed(),
    })
}

/// Events after `after` up to `until` (inclusive), at most `limit`.
async fn read_until(
    store: &dyn EventStore,
    after: u64,
    until: u64,
    limit: usize,
) -> Result<Vec<RecordedEvent>> {
    if until <= after {
        return Ok(Vec::new());
    }
    let limit = limit.min(usize::try_from(until - after).unwrap_or(limit));
    let mut page = store.read_all(after, limit).await?;
    page.retain(|e| e.position <= until);
    Ok(page)
}

async fn apply_events(
    conn: &mut AnyConnection,
    dialect: Dialect,
    target: &Target,
    events: &[RecordedEvent],
) -> Result<()> {
    let refs: Vec<&RecordedEvent> = events.iter().collect();
    Plan::new(&refs).write(conn, dialect, target).await
}

/// Drops leftovers of an interrupted rebuild and creates empty shadow tables.
#[tracing::instrument(skip(db))]
async fn create_shadow_tables(db: &ReadDb, tables: &[Table]) -> Result<()> {
    let mut tx = db.begin_write().await?;
    for t in tables {
        let shadow = format!("{}{SHADOW_SUFFIX}", t.name());
        sqlx::query(&format!("DROP TABLE IF EXISTS {shadow}"))
            .execute(&mut *tx)
            .await?;
        sqlx::query(&create_table(db.dialect, *t, &shadow))
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Replaces each live table by its shadow (inside the caller's transaction).
async fn swap_tables(conn: &mut AnyConnection, dialect: Dialect, tables: &[Table]) -> Result<()> {
    for t in tables {
        let live = t.name();
        let shadow = format!("{live}{SHADOW_SUFFIX}");
        sqlx::query(&format!("DROP TABLE {live}"))
            .execute(&mut *conn)
            .await?;
        sqlx::query(&format!("ALTER TABLE {shadow} RENAME TO {live}"))
            .execute(&mut *conn)
            .await?;
        if dialect == Dialect::Postgres {
            // Constraint indexes keep their names through a table rename; give them the
            // names the migration's tables have, so the next rebuild can reuse them.
            let rows = sqlx::query(
                "SELECT indexname::text FROM pg_indexes \
                 WHERE schemaname = current_schema() AND tablename = $1",
            )
            .bind(live)
            .fetch_all(&mut *conn)
            .await?;
            for row in rows {
                let index: String = row.try_get(0)?;
                if index.contains(&shadow) {
                    let renamed = index.replace(&shadow, live);
                    sqlx::query(&format!("ALTER INDEX \"{index}\" RENAME TO \"{renamed}\""))
                        .execute(&mut *conn)
                        .await?;
                }
            }
        }
    }
    Ok(())
}
