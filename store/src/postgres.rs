//! PostgreSQL backend (clustered default): any number of processes append to one database.
//!
//! Writes: every append of this process goes through one appender task that group-commits
//! (see `store/src/batch.rs`): each batch is one transaction that
//! 1. begins `READ COMMITTED` and takes the transaction-level advisory lock
//!    [`APPEND_LOCK`], which serializes appends across every process;
//! 2. reads, in one query and with a snapshot taken after the lock was granted, the head
//!    of the log, the current revision of every stream in the batch and any event ids of
//!    the batch that are already stored;
//! 3. decides each request in memory (a failing request writes nothing and does not fail
//!    the others), assigning positions `head + 1, head + 2, ...`;
//! 4. inserts every accepted event with one `INSERT ... SELECT FROM UNNEST(...)`, and
//!    `pg_notify`s the new head in the same statement;
//! 5. commits.
//!
//! Why positions never become visible out of order: PostgreSQL makes a transaction
//! visible before it releases the transaction's locks, so by the time the next appender
//! is granted [`APPEND_LOCK`], the previous batch is visible to everyone. A reader that
//! sees position N therefore already sees every position below N, and a checkpoint never
//! skips an event that commits later. (A `bigserial` gives no such guarantee: values are
//! handed out before commit, transactions commit in any order, and rollbacks leave gaps.)
//!
//! The one-statement path: when nobody else has committed since this appender's last
//! commit (as far as LISTEN tells) and it knows the revision of every stream in the batch
//! (it read or wrote them before), it decides the batch on that knowledge and commits it
//! as one autocommitted statement that takes [`APPEND_LOCK`], inserts and notifies: one
//! round trip instead of four. That knowledge may be stale (another process committed and
//! its notification is still on the way, or an event id is a retry of a stored one); then
//! the positions, the `(stream_id, revision)` pairs or the event ids it guessed collide
//! with stored rows, the unique indexes reject the statement, nothing is written, and the
//! batch takes the four-step path above. Positions stay gap-free and visible in order:
//! the statement only ever writes `head + 1, ...` after a head that is committed, and the
//! primary key lets only one transaction write each position. A batch in which any
//! request would fail on the guessed state also takes the four-step path, since the guess
//! may be what fails it.
//!
//! Wake-ups: the commit notifies channel [`NOTIFY_CHANNEL`] with the new head, and every
//! store LISTENs on it, so subscribers in other processes wake at once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions, PgRow};
use sqlx::types::Json;
use sqlx::{Connection, PgConnection, PgPool, Postgres, Row as _};
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

use crate::batch::{
    self, batch_keys, decide_all, next_batch, reply_all, AbortOnDrop, Committed, Counters, Decider,
    Head, KnownEvent, Outcome, PreparedAppend, Recent, Request, Row,
};
use crate::{
    AppendResult, Direction, EventStore, GroupCommitStats, Metadata, NewEvent, Position,
    RecordedEvent, Result, Revision, StoreError, StreamAppend,
};

/// The advisory lock every append transaction holds (the ASCII bytes of "chorusev").
pub const APPEND_LOCK: i64 = 0x6368_6f72_7573_6576;
/// Begins an append transaction and takes [`APPEND_LOCK`] in the same round trip.
///
/// The isolation level is spelled out: under REPEATABLE READ the snapshot would be taken
/// by the lock statement itself, before the lock is granted, and the appender would not
/// see the previous holder's events. Under READ COMMITTED each later statement takes a
/// fresh snapshot that includes them.
///
/// `enable_seqscan = off` keeps the appender's look-ups on their indexes whatever the
/// statistics say: the prepared statements' generic plans are cached, and one made while
/// the table was still empty (a fresh database, before autovacuum's first ANALYZE) would
/// otherwise scan the whole table for the event-id check on every batch.
const BEGIN_APPEND: &str = "BEGIN ISOLATION LEVEL READ COMMITTED; \
     SET LOCAL enable_seqscan = off; \
     SELECT pg_advisory_xact_lock(7163097744720225654)";
/// The columns and rows of an insert of a batch: the rows are the array parameters
/// `$1`-`$8`, one array per column; `$from` goes before `unnest` in the FROM list.
macro_rules! insert_events {
    ($from:literal) => {
        concat!(
            "INSERT INTO events \
                 (position, stream_id, revision, event_id, event_type, version, data, metadata) \
             SELECT t.position, t.stream_id, t.revision, t.event_id, t.event_type, t.version, \
                    t.data::jsonb, t.metadata::jsonb \
             FROM ",
            $from,
            "unnest($1::bigint[], $2::text[], $3::bigint[], $4::uuid[], $5::text[], \
                    $6::integer[], $7::text[], $8::text[]) \
                 AS t(position, stream_id, revision, event_id, event_type, version, data, \
                      metadata)"
        )
    };
}
/// Inserts a batch inside the append transaction and notifies the new head `$10` on
/// channel `$9` (delivered when the transaction commits, never before). A data-modifying
/// WITH always runs to completion, whatever the outer query reads.
const INSERT_IN_TRANSACTION: &str = concat!(
    "WITH inserted AS (",
    insert_events!(""),
    ") SELECT pg_notify($9, $10)"
);
/// The one-statement path: takes [`APPEND_LOCK`] (every inserted row joins the lock's
/// row, so the lock is held before the first insert), inserts and notifies, all committed
/// by the statement's own implicit transaction.
const INSERT_ALONE: &str = concat!(
    "WITH locked AS MATERIALIZED (SELECT pg_advisory_xact_lock(7163097744720225654)), \
     inserted AS (",
    insert_events!("locked, "),
    ") SELECT pg_notify($9, $10)"
);
/// The SQLSTATE of a unique violation.
const UNIQUE_VIOLATION: &str = "23505";
/// The channel on which commits announce the new head.
pub const NOTIFY_CHANNEL: &str = "chorus_events";
/// How long [`PostgresStore::connect`] waits for the server to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections in a pool opened by [`PostgresStore::connect`].
const MAX_CONNECTIONS: u32 = 16;
/// After how long without appends the appender checks its connection before using it.
const PING_AFTER_IDLE: Duration = Duration::from_secs(10);
/// How long the LISTEN task waits before retrying after a failed reconnect.
const LISTEN_RETRY: Duration = Duration::from_secs(1);

/// The columns of `events` that make a [`RecordedEvent`], in the order `recorded` reads.
macro_rules! columns {
    () => {
        "position, stream_id, revision, event_id, event_type, version, data, metadata"
    };
}

/// The PostgreSQL event log. Cheap to clone: clones share the pool and the appender.
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    requests: mpsc::Sender<Request>,
    head: Arc<Head>,
    recent: Arc<Recent>,
    counters: Arc<Counters>,
    _tasks: Arc<AbortOnDrop>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore").finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user@host:port/database`), applies the migrations,
    /// starts the appender and the LISTEN task.
    #[tracing::instrument(skip(url))]
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url.parse()?).await
    }

    /// [`connect`](Self::connect) with parsed options.
    pub async fn connect_with(options: PgConnectOptions) -> Result<Self> {
        // One direct connection first, so that an unreachable server or a refused login
        // is reported at once: the pool would retry for its whole acquire timeout (30 s).
        let probe = tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options))
            .await
            .map_err(|_| {
                StoreError::Backend(format!(
                    "PostgreSQL did not answer within {} s",
                    CONNECT_TIMEOUT.as_secs()
                ))
            })??;
        let _ = probe.close().await;
        // The probe has answered for the server, so the pool opens its connections when
        // they are first needed (the migrations, right below) instead of one more now.
        // No ping when a connection leaves the pool (sqlx's default): it is a round trip
        // before every read. A connection that died while pooled fails its read at
        // once instead, and `read` retries on another (sqlx closes the dead one).
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .test_before_acquire(false)
            .connect_lazy_with(options);
        Self::from_pool(pool).await
    }

    /// Uses an existing pool: applies the migrations, starts the appender and the LISTEN
    /// task. Each keeps one of the pool's connections, so the pool needs at least three.
    pub async fn from_pool(pool: PgPool) -> Result<Self> {
        let max = pool.options().get_max_connections();
        if max < 3 {
            return Err(StoreError::Backend(format!(
                "a PostgresStore pool needs at least 3 connections (the appender and LISTEN \
                 keep one each), not {max}"
            )));
        }
        crate::migrations::migrate_postgres(&pool).await?;
        // LISTEN before reading the head, so no commit falls between the two. The
        // listener has a pool of its own that pings a connection before handing it out:
        // after the server dropped its connection, it must not reconnect through one
        // that died in the shared pool.
        let listen_pool = PgPoolOptions::new()
            .max_connections(1)
            .connect_lazy_with((*pool.connect_options()).clone());
        let mut listener = PgListener::connect_with(&listen_pool).await?;
        listener.listen(NOTIFY_CHANNEL).await?;
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
        let listen = tokio::spawn(listen(listener, pool.clone(), head.clone()));
        Ok(PostgresStore {
            pool,
            requests,
            head,
            recent,
            counters,
            _tasks: Arc::new(AbortOnDrop(vec![listen])),
        })
    }

    /// How many commits this store's appender has made for how many requests.
    pub fn group_commit_stats(&self) -> GroupCommitStats {
        self.counters.snapshot()
    }

    /// The pool, for read models that live in the same database.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// PostgreSQL cannot store NUL characters in text, nor `\u0000` in jsonb. Such an event
/// is rejected before it reaches the appender, where it would fail a whole batch.
fn reject_nul(appends: &[StreamAppend]) -> Result<()> {
    fn json_has_nul(value: &serde_json::Value) -> bool {
        match value {
            serde_json::Value::String(s) => s.contains('\0'),
            serde_json::Value::Array(items) => items.iter().any(json_has_nul),
            serde_json::Value::Object(map) => {
                map.iter().any(|(k, v)| k.contains('\0') || json_has_nul(v))
            }
            _ => false,
        }
    }
    fn event_has_nul(e: &NewEvent) -> bool {
        e.event_type.contains('\0')
            || e.metadata.correlation_id.contains('\0')
            || e.metadata
                .reason
                .as_deref()
                .is_some_and(|r| r.contains('\0'))
            || json_has_nul(&e.data)
    }
    for part in appends {
        if part.stream_id.contains('\0') {
            return Err(StoreError::InvalidAppend(
                "stream id contains a NUL character".into(),
            ));
        }
        if let Some(e) = part.events.iter().find(|e| event_has_nul(e)) {
            return Err(StoreError::InvalidAppend(format!(
                "event {} contains a NUL character",
                e.event_id
            )));
        }
    }
    Ok(())
}

/// The appender: one group commit per batch of queued requests, until the store is gone.
async fn run_appender(
    pool: PgPool,
    mut queue: mpsc::Receiver<Request>,
    head: Arc<Head>,
    recent: Arc<Recent>,
    counters: Arc<Counters>,
) {
    // The appender keeps one connection for itself (taking one from the pool per batch
    // would cost a liveness ping per batch), and gives it back after an error. After a
    // quiet spell it pings the connection first, so that a connection the server or the
    // network dropped meanwhile costs a reconnect instead of a failed batch.
    let mut conn: Option<PoolConnection<Postgres>> = None;
    let mut last_used = Instant::now();
    let mut tips = Tips::default();
    while let Some(batch) = next_batch(&mut queue).await {
        if last_used.elapsed() > PING_AFTER_IDLE {
            if let Some(c) = conn.as_mut() {
                if let Err(e) = c.ping().await {
                    tracing::info!(error = %e, "appender connection lost while idle; reconnecting");
                    conn = None;
                }
            }
        }
        let (appends, replies) = batch::split(batch);
        let written = write_batch(&pool, &mut conn, appends, &mut tips, head.get()).await;
        let outcome = match written {
            Ok((committed, path)) => {
                if path == Path::OneStatement {
                    counters.record_one_statement();
                }
                Ok(committed.announce(&head, &recent, &counters))
            }
            Err(e) => {
                conn = None;
                tips = Tips::default();
                tracing::error!(error = %e, "postgres group commit failed");
                Err(e.to_string())
            }
        };
        reply_all(replies, outcome);
        last_used = Instant::now();
    }
}

/// What the appender knows of the log from its own work: the head after its last commit
/// and the revisions of the streams it has read or written. It may be stale (another
/// process may have committed since); the one-statement path relies on the unique indexes
/// to find out.
#[derive(Debug, Default)]
struct Tips {
    head: Position,
    revisions: HashMap<String, Revision>,
}

impl Tips {
    /// Most streams remembered; past that the memory starts again from nothing.
    const CAP: usize = 65_536;

    /// The revisions to decide `streams` on without reading the log, if every one of them
    /// is known and no other process is known to have committed since (`known_head`, the
    /// head as LISTEN has told it, is still this appender's last commit).
    fn guess(&self, streams: &[String], known_head: Position) -> Option<HashMap<String, Revision>> {
        if self.head != known_head {
            return None;
        }
        streams
            .iter()
            .map(|s| self.revisions.get(s).map(|r| (s.clone(), *r)))
            .collect()
    }

    /// Remembers the log as a decided batch left it (once its transaction ended): the
    /// head and the revisions of the batch's streams.
    fn learn(&mut self, decider: &Decider) {
        if self.revisions.len() >= Self::CAP {
            self.revisions.clear();
        }
        self.head = decider.head();
        self.revisions
            .extend(decider.revisions().map(|(s, r)| (s.to_owned(), r)));
    }
}

/// How a batch was committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    /// In one statement, on what the appender already knew of the log.
    OneStatement,
    /// In the four-step transaction.
    Transaction,
}

/// Commits one batch: in one statement on what the appender already knows, if it knows
/// enough and that turns out right, else in one four-step transaction.
#[tracing::instrument(skip_all, fields(requests = batch.len()))]
async fn write_batch(
    pool: &PgPool,
    conn: &mut Option<PoolConnection<Postgres>>,
    batch: Vec<Vec<PreparedAppend>>,
    tips: &mut Tips,
    known_head: Position,
) -> Result<(Committed, Path), sqlx::Error> {
    let (streams, ids) = batch_keys(&batch);
    let conn = match conn {
        Some(conn) => conn,
        None => conn.insert(acquire_live(pool).await?),
    };
    let alone = match tips.guess(&streams, known_head) {
        Some(revisions) => commit_alone(conn, &batch, tips.head, revisions).await?,
        None => None,
    };
    let (decider, outcomes, path) = match alone {
        Some((decider, outcomes)) => (decider, outcomes, Path::OneStatement),
        None => {
            let (decider, outcomes) = commit_in_transaction(conn, &batch, &streams, &ids).await?;
            (decider, outcomes, Path::Transaction)
        }
    };
    tips.learn(&decider);
    Ok((decider.committed(outcomes, batch), path))
}

/// The one-statement path: decides `batch` on the guessed `head` and `revisions` and
/// commits it with [`INSERT_ALONE`]. `None` (nothing written) when the guess makes a
/// request fail, when there is nothing to write, or when the database rejects the guess.
async fn commit_alone(
    conn: &mut PgConnection,
    batch: &[Vec<PreparedAppend>],
    head: Position,
    revisions: HashMap<String, Revision>,
) -> Result<Option<(Decider, Vec<Outcome>)>, sqlx::Error> {
    let mut decider = Decider::new(head, revisions, HashMap::new());
    let outcomes = decide_all(&mut decider, batch);
    if !decider.writes() || outcomes.iter().any(Result::is_err) {
        return Ok(None);
    }
    match insert(conn, INSERT_ALONE, &decider.rows(batch), decider.head()).await {
        Ok(()) => Ok(Some((decider, outcomes))),
        Err(e) if is_unique_violation(&e) => {
            tracing::debug!(error = %e, "the appender's knowledge of the log was stale");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// The four-step path: lock, read the state of the batch's streams and ids, decide,
/// insert and commit (or roll back when nothing is to be written).
async fn commit_in_transaction(
    conn: &mut PgConnection,
    batch: &[Vec<PreparedAppend>],
    streams: &[String],
    ids: &[Uuid],
) -> Result<(Decider, Vec<Outcome>), sqlx::Error> {
    let mut tx = conn.begin_with(BEGIN_APPEND).await?;
    let state = select_state(&mut tx, streams, ids).await?;
    let mut decider = Decider::new(state.head, state.revisions, state.known);
    let outcomes = decide_all(&mut decider, batch);
    if decider.writes() {
        insert(
            &mut tx,
            INSERT_IN_TRANSACTION,
            &decider.rows(batch),
            decider.head(),
        )
        .await?;
        tx.commit().await?;
    } else {
        tx.rollback().await?;
    }
    Ok((decider, outcomes))
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some(UNIQUE_VIOLATION))
}

/// What the appender must know about the log before deciding a batch.
struct BatchState {
    head: Position,
    revisions: HashMap<String, Revision>,
    known: HashMap<Uuid, KnownEvent>,
}

/// One row of [`select_state`]: tag, stream id, revision, event id, position.
type StateRow = (
    String,
    Option<String>,
    Option<i64>,
    Option<Uuid>,
    Option<i64>,
);

/// Reads the head, the streams' revisions and the already stored event ids in one round
/// trip. Rows are tagged: `h` the head, `r` one stream's revision, `e` one stored event.
#[tracing::instrument(skip_all, fields(streams = streams.len(), ids = ids.len()))]
async fn select_state(
    conn: &mut PgConnection,
    streams: &[String],
    ids: &[Uuid],
) -> Result<BatchState, sqlx::Error> {
    let rows: Vec<StateRow> = sqlx::query_as(
        "SELECT 'h', NULL::text, NULL::bigint, NULL::uuid, \
                    (SELECT max(position) FROM events) \
             UNION ALL \
             SELECT 'r', s.stream_id, \
                    (SELECT max(e.revision) FROM events e WHERE e.stream_id = s.stream_id), \
                    NULL, NULL \
             FROM unnest($1::text[]) AS s(stream_id) \
             UNION ALL \
             SELECT 'e', e.stream_id, e.revision, e.event_id, e.position \
             FROM events e WHERE e.event_id = ANY($2::uuid[])",
    )
    .bind(streams)
    .bind(ids)
    .fetch_all(conn)
    .await?;
    let mut state = BatchState {
        head: 0,
        revisions: HashMap::with_capacity(streams.len()),
        known: HashMap::new(),
    };
    for (tag, stream_id, revision, event_id, position) in rows {
        match (tag.as_str(), stream_id, revision, event_id, position) {
            ("h", _, _, _, position) => state.head = position.unwrap_or(0) as Position,
            ("r", Some(stream_id), revision, _, _) => {
                state
                    .revisions
                    .insert(stream_id, revision.unwrap_or(0) as Revision);
            }
            ("e", Some(stream_id), Some(revision), Some(event_id), Some(position)) => {
                state.known.insert(
                    event_id,
                    KnownEvent {
                        stream_id,
                        revision: revision as Revision,
                        position: position as Position,
                    },
                );
            }
            (tag, ..) => {
                return Err(sqlx::Error::Protocol(format!(
                    "unexpected batch state row tagged {tag:?}"
                )))
            }
        }
    }
    Ok(state)
}

/// Inserts a batch's rows with `sql` ([`INSERT_IN_TRANSACTION`] or [`INSERT_ALONE`]),
/// which also notifies listeners of the new head.
#[tracing::instrument(skip_all, fields(rows = rows.len()))]
async fn insert(
    conn: &mut PgConnection,
    sql: &'static str,
    rows: &[Row<'_>],
    head: Position,
) -> Result<(), sqlx::Error> {
    let mut positions = Vec::with_capacity(rows.len());
    let mut stream_ids = Vec::with_capacity(rows.len());
    let mut revisions = Vec::with_capacity(rows.len());
    let mut event_ids = Vec::with_capacity(rows.len());
    let mut event_types = Vec::with_capacity(rows.len());
    let mut versions = Vec::with_capacity(rows.len());
    let mut data = Vec::with_capacity(rows.len());
    let mut metadata = Vec::with_capacity(rows.len());
    for row in rows {
        positions.push(row.position as i64);
        stream_ids.push(row.stream_id);
        revisions.push(row.revision as i64);
        event_ids.push(row.event.event_id);
        event_types.push(row.event.event_type.as_str());
        versions.push(i32::from(row.event.version));
        data.push(row.event.data.as_str());
        metadata.push(row.event.metadata.as_str());
    }
    sqlx::query(sql)
        .bind(positions)
        .bind(stream_ids)
        .bind(revisions)
        .bind(event_ids)
        .bind(event_types)
        .bind(versions)
        .bind(data)
        .bind(metadata)
        .bind(NOTIFY_CHANNEL)
        .bind(head.to_string())
        .execute(conn)
        .await?;
    Ok(())
}

async fn load_head(pool: &PgPool) -> Result<Position> {
    let head: i64 = read(pool, |mut conn| async move {
        sqlx::query_scalar("SELECT COALESCE(max(position), 0) FROM events")
            .fetch_one(&mut *conn)
            .await
    })
    .await?;
    to_u64(head, "position")
}

/// Moves the head whenever any process commits. After a lost connection notifications may
/// have been missed, so the head is re-read from the table.
async fn listen(mut listener: PgListener, pool: PgPool, head: Arc<Head>) {
    loop {
        match listener.try_recv().await {
            Ok(Some(notification)) => match notification.payload().parse::<Position>() {
                Ok(position) => head.advance(position),
                Err(_) => tracing::warn!(
                    payload = notification.payload(),
                    "ignoring a malformed {NOTIFY_CHANNEL} notification"
                ),
            },
            Ok(None) => {
                tracing::warn!("LISTEN connection lost and re-established");
                match load_head(&pool).await {
                    Ok(position) => head.advance(position),
                    Err(e) => tracing::warn!(error = %e, "re-reading the head failed"),
                }
            }
            Err(sqlx::Error::PoolClosed) => return,
            Err(e) => {
                tracing::warn!(error = %e, "LISTEN failed; retrying");
                tokio::time::sleep(LISTEN_RETRY).await;
            }
        }
    }
}

/// Whether a read failed because its connection was dead (the server restarted, or
/// dropped it while it sat in the pool), so that the same read on another connection
/// may succeed.
fn connection_lost(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) => true,
        // Class 08: connection exception; 57P01-57P03: the server is shutting down or
        // terminated this backend.
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| c.starts_with("08") || c.starts_with("57P0")),
        _ => false,
    }
}

/// A connection from `pool` that answers a ping (the pool itself does not check), for the
/// appender, which keeps it.
async fn acquire_live(pool: &PgPool) -> Result<PoolConnection<Postgres>, sqlx::Error> {
    read(pool, |mut conn| async move {
        conn.ping().await?;
        Ok(conn)
    })
    .await
}

/// Runs `query` on a connection from `pool`, again on another connection as long as the
/// one it got turns out dead (at most once per connection the pool can hold, plus one).
async fn read<T, F, Fut>(pool: &PgPool, query: F) -> Result<T, sqlx::Error>
where
    F: Fn(PoolConnection<Postgres>) -> Fut,
    Fut: std::future::Future<Output = Result<T, sqlx::Error>>,
{
    let attempts = pool.options().get_max_connections() + 1;
    let mut attempt = 1;
    loop {
        match query(pool.acquire().await?).await {
            Err(e) if attempt < attempts && connection_lost(&e) => {
                tracing::debug!(error = %e, attempt, "pooled connection lost; reading again");
                attempt += 1;
            }
            result => return result,
        }
    }
}

/// Clamps a revision, position or count to PostgreSQL's bigint.
fn to_i64<T: TryInto<i64>>(value: T) -> i64 {
    value.try_into().unwrap_or(i64::MAX)
}

fn to_u64(value: i64, what: &str) -> Result<u64> {
    u64::try_from(value).map_err(|_| StoreError::Backend(format!("negative {what}: {value}")))
}

fn recorded(row: &PgRow) -> Result<RecordedEvent> {
    let event_id: Uuid = row.try_get("event_id")?;
    let version: i32 = row.try_get("version")?;
    let Json(metadata): Json<Metadata> = row.try_get("metadata")?;
    Ok(RecordedEvent {
        stream_id: row.try_get("stream_id")?,
        revision: to_u64(row.try_get("revision")?, "revision")?,
        position: to_u64(row.try_get("position")?, "position")?,
        event_id,
        event_type: row.try_get("event_type")?,
        version: u16::try_from(version)
            .map_err(|_| StoreError::Backend(format!("stored event version {version}")))?,
        data: row.try_get("data")?,
        metadata,
    })
}

#[async_trait]
impl EventStore for PostgresStore {
    #[tracing::instrument(skip_all, fields(parts = appends.len()))]
    async fn append_many(&self, appends: Vec<StreamAppend>) -> Result<Vec<AppendResult>> {
        reject_nul(&appends)?;
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
                " FROM events WHERE stream_id = $1 AND revision >= $2 \
                 ORDER BY revision ASC LIMIT $3"
            ),
            Direction::Backwards => concat!(
                "SELECT ",
                columns!(),
                " FROM events WHERE stream_id = $1 AND revision <= $2 \
                 ORDER BY revision DESC LIMIT $3"
            ),
        };
        let rows = read(&self.pool, |mut conn| async move {
            sqlx::query(sql)
                .bind(stream_id)
                .bind(to_i64(from))
                .bind(to_i64(limit))
                .fetch_all(&mut *conn)
                .await
        })
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
                let p = |k: usize| format!("${}", 3 * i + k);
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
        let sql = sql.as_str();
        let rows = read(&self.pool, |mut conn| async move {
            let mut query = sqlx::query(sql);
            for (stream, revision) in from {
                query = query
                    .bind(*stream)
                    .bind(to_i64(*revision))
                    .bind(to_i64(limit));
            }
            query.fetch_all(&mut *conn).await
        })
        .await?;
        rows.iter().map(recorded).collect()
    }

    #[tracing::instrument(skip(self))]
    async fn read_all(&self, after: Position, limit: usize) -> Result<Vec<RecordedEvent>> {
        if let Some(events) = self.recent.read(after, limit, self.head.get()) {
            return Ok(events);
        }
        let rows = read(&self.pool, |mut conn| async move {
            sqlx::query(concat!(
                "SELECT ",
                columns!(),
                " FROM events WHERE position > $1 ORDER BY position ASC LIMIT $2"
            ))
            .bind(to_i64(after))
            .bind(to_i64(limit))
            .fetch_all(&mut *conn)
            .await
        })
        .await?;
        rows.iter().map(recorded).collect()
    }

    #[tracing::instrument(skip(self))]
    async fn stream_revision(&self, stream_id: &str) -> Result<Revision> {
        let revision: i64 = read(&self.pool, |mut conn| async move {
            sqlx::query_scalar("SELECT COALESCE(max(revision), 0) FROM events WHERE stream_id = $1")
                .bind(stream_id)
                .fetch_one(&mut *conn)
                .await
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_begin_statement_takes_the_append_lock() {
        assert!(BEGIN_APPEND.ends_with(&format!("pg_advisory_xact_lock({APPEND_LOCK})")));
        assert!(INSERT_ALONE.contains(&format!("pg_advisory_xact_lock({APPEND_LOCK})")));
        assert_eq!(&APPEND_LOCK.to_be_bytes(), b"chorusev");
    }
}
