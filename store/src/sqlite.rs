//! SQLite backend (embedded default): one database file, shared with any other process
//! (the CLI) that opens it.
//!
//! Writes: every append of this process goes through one appender task that group-commits
//! (see `store/src/batch.rs`) in a `BEGIN IMMEDIATE` transaction. SQLite serializes write
//! transactions across processes (the write lock, waited for up to the busy timeout), and
//! the appender assigns positions as `max(position) + 1` while it holds that lock, so
//! positions are gap-free in commit order no matter how many processes append.
//!
//! Reads go through the pool; in WAL mode they never block on, nor block, the writer.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Connection, QueryBuilder, Row as _, Sqlite, SqliteConnection, SqlitePool};
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

use crate::batch::{
    self, batch_keys, decide_all, next_batch, reply_all, AbortOnDrop, Committed, Counters, Decider,
    Head, KnownEvent, PreparedAppend, Recent, Request, Row,
};
use crate::{
    AppendResult, Direction, EventStore, GroupCommitStats, Metadata, Position, RecordedEvent,
    Result, Revision, StoreError, StreamAppend,
};

/// How long a write waits for another process's write transaction before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the store re-reads the head to notice appends by other processes.
const HEAD_POLL: Duration = Duration::from_secs(1);
/// Connections in a pool opened by [`SqliteStore::open`].
const MAX_CONNECTIONS: u32 = 8;
/// Rows per INSERT statement (8 bound values each, well under SQLite's 32766 limit).
const INSERT_CHUNK: usize = 1000;

/// The columns of `events` that make a [`RecordedEvent`], in the order `recorded` reads.
macro_rules! columns {
    () => {
        "position, stream_id, revision, event_id, event_type, version, data, metadata"
    };
}

/// The SQLite event log. Cheap to clone: clones share the pool and the appender.
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    requests: mpsc::Sender<Request>,
    head: Arc<Head>,
    recent: Arc<Recent>,
    counters: Arc<Counters>,
    _tasks: Arc<AbortOnDrop>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// The connection options Chorus uses for a database file: created if missing, WAL
    /// journal, a busy timeout so that processes sharing the file wait for each other's
    /// writes, foreign keys on, and `synchronous = FULL` (a commit that returned survives a
    /// power loss). `url_or_path` is a `sqlite:` URL or a plain file path.
    pub fn connect_options(url_or_path: &str) -> Result<SqliteConnectOptions> {
        let options = if url_or_path.starts_with("sqlite:") {
            SqliteConnectOptions::from_str(url_or_path)?
        } else {
            SqliteConnectOptions::new().filename(url_or_path)
        };
        Ok(options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true)
            .synchronous(SqliteSynchronous::Full))
    }

    /// Opens (creating if needed) the database at `url_or_path`, applies the migrations
    /// and starts the appender.
    #[tracing::instrument]
    pub async fn open(url_or_path: &str) -> Result<Self> {
        let pool = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .connect_with(Self::connect_options(url_or_path)?)
            .await?;
        Self::from_pool(pool).await
    }

    /// Uses an existing pool (whose connections should have the settings of
    /// [`SqliteStore::connect_options`]), applies the migrations and starts the appender.
    /// The appender keeps one of the pool's connections, so the pool needs at least two.
    pub async fn from_pool(pool: SqlitePool) -> Result<Self> {
        let max = pool.options().get_max_connections();
        if max < 2 {
            return Err(StoreError::Backend(format!(
                "a SqliteStore pool needs at least 2 connections (one is the appender's), not {max}"
            )));
        }
        crate::migrations::migrate_sqlite(&pool).await?;
        let head = Arc::new(Head::new(load_head(&pool).await?));
        let recent = Arc::new(Recent::default());
        let counters = Arc::new(Counters::default());
        let (requests, queue) = mpsc::channel(batch::QUEUE_DEPTH);
        tokio::spawn(run_appender(
            pool.clone(),
            queue,
            head.clone(),
            recent.clone(),
            counters.clone(),
        ));
        let poller = tokio::spawn(poll_head(pool.clone(), head.clone()));
        Ok(SqliteStore {
            pool,
            requests,
            head,
            recent,
            counters,
            _tasks: Arc::new(AbortOnDrop(vec![poller])),
        })
    }

    /// How many commits this store's appender has made for how many requests.
    pub fn group_commit_stats(&self) -> GroupCommitStats {
        self.counters.snapshot()
    }

    /// The pool, for read models that live in the same database.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

/// The appender: one group commit per batch of queued requests, until the store is gone.
async fn run_appender(
    pool: SqlitePool,
    mut queue: mpsc::Receiver<Request>,
    head: Arc<Head>,
    recent: Arc<Recent>,
    counters: Arc<Counters>,
) {
    // The appender keeps one connection for itself (taking one from the pool per batch
    // would cost a liveness ping per batch), and gives it back after an error.
    let mut conn = None;
    while let Some(batch) = next_batch(&mut queue).await {
        let (appends, replies) = batch::split(batch);
        let outcome = match write_batch(&pool, &mut conn, appends).await {
            Ok(committed) => Ok(committed.announce(&head, &recent, &counters)),
            Err(e) => {
                conn = None;
                tracing::error!(error = %e, "sqlite group commit failed");
                Err(e.to_string())
            }
        };
        reply_all(replies, outcome);
    }
}

/// Commits one batch in one write transaction.
#[tracing::instrument(skip_all, fields(requests = batch.len()))]
async fn write_batch(
    pool: &SqlitePool,
    conn: &mut Option<PoolConnection<Sqlite>>,
    batch: Vec<Vec<PreparedAppend>>,
) -> Result<Committed, sqlx::Error> {
    let (streams, ids) = batch_keys(&batch);
    let conn = match conn {
        Some(conn) => conn,
        None => conn.insert(pool.acquire().await?),
    };
    // IMMEDIATE takes the write lock now, so everything read below is the latest state
    // and stays so until COMMIT, in this process and every other.
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
    let head = select_head(&mut tx).await?;
    let revisions = select_revisions(&mut tx, &streams).await?;
    let known = select_known(&mut tx, &ids).await?;
    let mut decider = Decider::new(head, revisions, known);
    let outcomes = decide_all(&mut decider, &batch);
    if !decider.writes() {
        tx.rollback().await?;
        return Ok(decider.committed(outcomes, batch));
    }
    for chunk in decider.rows(&batch).chunks(INSERT_CHUNK) {
        insert_rows(&mut tx, chunk).await?;
    }
    tx.commit().await?;
    Ok(decider.committed(outcomes, batch))
}

fn to_json_array<T: serde::Serialize>(items: &[T]) -> Result<String, sqlx::Error> {
    serde_json::to_string(items).map_err(|e| sqlx::Error::Encode(Box::new(e)))
}

#[tracing::instrument(skip_all)]
async fn select_head(conn: &mut SqliteConnection) -> Result<Position, sqlx::Error> {
    let head: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(position), 0) FROM events")
        .fetch_one(conn)
        .await?;
    Ok(head as Position)
}

/// The current revision of each stream (0 for streams without events).
#[tracing::instrument(skip_all, fields(streams = streams.len()))]
async fn select_revisions(
    conn: &mut SqliteConnection,
    streams: &[String],
) -> Result<HashMap<String, Revision>, sqlx::Error> {
    // One MAX per stream, which SQLite answers from the end of the (stream_id, revision)
    // index; `... IN (...) GROUP BY stream_id` would read every event of the streams.
    let rows: Vec<(String, Option<i64>)> = sqlx::query_as(
        "SELECT s.value, (SELECT MAX(revision) FROM events WHERE stream_id = s.value) \
         FROM json_each(?1) AS s",
    )
    .bind(to_json_array(streams)?)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(stream, revision)| (stream, revision.unwrap_or(0) as Revision))
        .collect())
}

/// The events among `ids` that are already stored.
#[tracing::instrument(skip_all, fields(ids = ids.len()))]
async fn select_known(
    conn: &mut SqliteConnection,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, KnownEvent>, sqlx::Error> {
    let rows: Vec<(String, String, i64, i64)> = sqlx::query_as(
        "SELECT event_id, stream_id, revision, position FROM events \
         WHERE event_id IN (SELECT value FROM json_each(?1))",
    )
    .bind(to_json_array(ids)?)
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(|(id, stream_id, revision, position)| {
            let id = Uuid::parse_str(&id).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
            Ok((
                id,
                KnownEvent {
                    stream_id,
                    revision: revision as Revision,
                    position: position as Position,
                },
            ))
        })
        .collect()
}

#[tracing::instrument(skip_all, fields(rows = rows.len()))]
async fn insert_rows(conn: &mut SqliteConnection, rows: &[Row<'_>]) -> Result<(), sqlx::Error> {
    let mut insert = QueryBuilder::<Sqlite>::new(
        "INSERT INTO events (position, stream_id, revision, event_id, event_type, version, \
         data, metadata) ",
    );
    insert.push_values(rows, |mut values, row| {
        values
            .push_bind(row.position as i64)
            .push_bind(row.stream_id)
            .push_bind(row.revision as i64)
            .push_bind(row.event.event_id.hyphenated().to_string())
            .push_bind(row.event.event_type.as_str())
            .push_bind(i64::from(row.event.version))
            .push_bind(row.event.data.as_str())
            .push_bind(row.event.metadata.as_str());
    });
    // Batches vary in size: keep these one-off statements out of the statement cache.
    insert.build().persistent(false).execute(conn).await?;
    Ok(())
}

async fn load_head(pool: &SqlitePool) -> Result<Position> {
    let mut conn = pool.acquire().await?;
    Ok(select_head(&mut conn).await?)
}

/// Keeps the head fresh when another process appends to the same file.
async fn poll_head(pool: SqlitePool, head: Arc<Head>) {
    let mut interval = tokio::time::interval(HEAD_POLL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        match load_head(&pool).await {
            Ok(position) => head.advance(position),
            Err(e) => tracing::warn!(error = %e, "sqlite head poll failed"),
        }
    }
}

/// Clamps a revision, position or count to SQLite's signed 64-bit integers.
fn to_i64<T: TryInto<i64>>(value: T) -> i64 {
    value.try_into().unwrap_or(i64::MAX)
}

fn to_u64(value: i64, what: &str) -> Result<u64> {
    u64::try_from(value).map_err(|_| StoreError::Backend(format!("negative {what}: {value}")))
}

fn recorded(row: &SqliteRow) -> Result<RecordedEvent> {
    let event_id: String = row.try_get("event_id")?;
    let version: i64 = row.try_get("version")?;
    let data: String = row.try_get("data")?;
    let metadata: String = row.try_get("metadata")?;
    Ok(RecordedEvent {
        stream_id: row.try_get("stream_id")?,
        revision: to_u64(row.try_get("revision")?, "revision")?,
        position: to_u64(row.try_get("position")?, "position")?,
        event_id: Uuid::parse_str(&event_id)
            .map_err(|e| StoreError::Backend(format!("stored event id {event_id}: {e}")))?,
        event_type: row.try_get("event_type")?,
        version: u16::try_from(version)
            .map_err(|_| StoreError::Backend(format!("stored event version {version}")))?,
        data: serde_json::from_str(&data)
            .map_err(|e| StoreError::Backend(format!("stored event data of {event_id}: {e}")))?,
        metadata: serde_json::from_str::<Metadata>(&metadata).map_err(|e| {
            StoreError::Backend(format!("stored event metadata of {event_id}: {e}"))
        })?,
    })
}

#[async_trait]
impl EventStore for SqliteStore {
    #[tracing::instrument(skip_all, fields(parts = appends.len()))]
    async fn append_many(&self, appends: Vec<StreamAppend>) -> Result<Vec<AppendResult>> {
        let prepared = batch::prepare(appends)?;
        if prepared.is_empty() {
            return Ok(Vec::new());
        }
        batch::submit(&self.requests, prepared).await
    }

    #[tracing::instrument(skip(self))]
    async fn read_stream(
        &self,
        stream_id: &str,
        from: Revision,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>> {
        let sql = match direction {
            Direction::Forwards => concat!(
                "SELECT ",
                columns!(),
                " FROM events WHERE stream_id = ?1 AND revision >= ?2 \
                 ORDER BY revision ASC LIMIT ?3"
            ),
            Direction::Backwards => concat!(
                "SELECT ",
                columns!(),
                " FROM events WHERE stream_id = ?1 AND revision <= ?2 \
                 ORDER BY revision DESC LIMIT ?3"
            ),
        };
        let rows = sqlx::query(sql)
            .bind(stream_id)
            .bind(to_i64(from))
            .bind(to_i64(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(recorded).collect()
    }

    #[tracing::instrument(skip(self))]
    async fn read_streams_forwards(
        &self,
        from: &[(&str, Revision)],
        limit: usize,
    ) -> Result<Vec<RecordedEvent>> {
        if from.is_empty() {
            return Ok(Vec::new());
        }
        // One sub-select per stream (each an index range scan), glued with UNION ALL;
        // the outer ORDER BY keeps each stream's events together and in order.
        let parts: Vec<String> = (0..from.len())
            .map(|i| {
                let p = |k: usize| format!("?{}", 3 * i + k);
                format!(
                    "SELECT * FROM (SELECT {}, {i} AS part FROM events WHERE stream_id = {} \
                     AND revision >= {} ORDER BY revision ASC LIMIT {}) AS s{i}",
                    columns!(),
                    p(1),
                    p(2),
                    p(3)
                )
            })
            .collect();
        let sql = format!("{} ORDER BY part, revision", parts.join(" UNION ALL "));
        let mut query = sqlx::query(&sql);
        for (stream, revision) in from {
            query = query
                .bind(*stream)
                .bind(to_i64(*revision))
                .bind(to_i64(limit));
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(recorded).collect()
    }

    #[tracing::instrument(skip(self))]
    async fn read_all(&self, after: Position, limit: usize) -> Result<Vec<RecordedEvent>> {
        if let Some(events) = self.recent.read(after, limit, self.head.get()) {
            return Ok(events);
        }
        let rows = sqlx::query(concat!(
            "SELECT ",
            columns!(),
            " FROM events WHERE position > ?1 ORDER BY position ASC LIMIT ?2"
        ))
        .bind(to_i64(after))
        .bind(to_i64(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(recorded).collect()
    }

    #[tracing::instrument(skip(self))]
    async fn stream_revision(&self, stream_id: &str) -> Result<Revision> {
        let revision: i64 = sqlx::query_scalar(
            "SELECT COALESCE(MAX(revision), 0) FROM events WHERE stream_id = ?1",
        )
        .bind(stream_id)
        .fetch_one(&self.pool)
        .await?;
        to_u64(revision, "revision")
    }

    #[tracing::instrument(skip(self))]
    async fn head(&self) -> Result<Position> {
        let position = load_head(&self.pool).await?;
        self.head.advance(position);
        Ok(position)
    }

    fn watch_head(&self) -> watch::Receiver<Position> {
        self.head.subscribe()
    }
}
