//! [`ReadDb`]: the read-model database, and the checkpoint rows every batch locks.

use std::time::{Duration, Instant};

use sqlx::any::AnyPoolOptions;
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, Connection as _};
use sqlx::{AnyPool, Row as _};

use crate::schema::{Table, CHECKPOINTS};
use crate::{Error, Result};

/// How long a SQLite write waits for another writer (the event log's appender, another
/// process) before failing.
const SQLITE_BUSY_TIMEOUT_MS: u64 = 30_000;
/// Pool size.
const MAX_CONNECTIONS: u32 = 8;

/// The SQL dialect of a [`ReadDb`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// The read-model database: the same database (SQLite file or PostgreSQL database) as the
/// event log, reached through `sqlx::Any` so that one code path serves both dialects.
#[derive(Debug, Clone)]
pub struct ReadDb {
    pub pool: AnyPool,
    pub dialect: Dialect,
}

impl ReadDb {
    /// Connects to `url` (`sqlite://PATH`, `sqlite:PATH` or a plain file path for SQLite;
    /// `postgres://...` or `postgresql://...`) and applies the migrations (the whole
    /// `migrations/{dialect}` folder, event log included; applying is idempotent).
    ///
    /// A SQLite file is created if missing; connections use WAL, a 30 s busy timeout and
    /// `synchronous = NORMAL` (a read-model commit lost to a power cut is lost together
    /// with its checkpoint, and is re-applied). Open the event store first when both are
    /// opened on a fresh SQLite file: sqlx's SQLite migrator does not lock against a
    /// concurrent migrator.
    #[tracing::instrument]
    pub async fn connect(url: &str) -> Result<ReadDb> {
        sqlx::any::install_default_drivers();
        let (url, dialect) = normalize_url(url)?;
        let mut options = AnyPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(Duration::from_secs(60));
        if dialect == Dialect::Sqlite {
            options = options.after_connect(|conn, _meta| {
                Box::pin(async move {
                    for pragma in [
                        format!("PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}"),
                        "PRAGMA journal_mode = WAL".to_owned(),
                        "PRAGMA synchronous = NORMAL".to_owned(),
                    ] {
                        sqlx::query(&pragma).execute(&mut *conn).await?;
                    }
                    Ok(())
                })
            });
        }
        let pool = options.connect(&url).await?;
        let db = ReadDb { pool, dialect };
        db.migrate().await?;
        Ok(db)
    }

    /// Applies every pending migration of the dialect's folder.
    #[tracing::instrument(skip(self))]
    pub async fn migrate(&self) -> Result<()> {
        let migrator = match self.dialect {
            Dialect::Sqlite => &store::migrations::SQLITE,
            Dialect::Postgres => &store::migrations::POSTGRES,
        };
        migrator.run(&self.pool).await?;
        Ok(())
    }

    /// Begins a transaction that writes. SQLite: `BEGIN IMMEDIATE`, which takes the
    /// database's single write lock at once (waiting up to the busy timeout), so the
    /// transaction never has to upgrade a read snapshot to a write, which SQLite refuses
    /// at once (`SQLITE_BUSY`) when another connection committed in between. PostgreSQL:
    /// a plain `BEGIN` (the checkpoint row lock does the serializing).
    pub async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        Ok(match self.dialect {
            Dialect::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Dialect::Postgres => self.pool.begin().await?,
        })
    }

    /// Begins on `conn` a write transaction that the log can replay: one that moves a
    /// checkpoint together with what it covers (the projection runner's, the
    /// publisher's, on the connection each keeps: [`HeldConnection`]). Losing its commit
    /// in a crash loses both, and they are applied again from the log, so PostgreSQL does
    /// not wait for the commit's WAL flush (`synchronous_commit = off`, the counterpart of
    /// the SQLite read-model connections' `synchronous = NORMAL`), set with the `BEGIN` in
    /// one round trip. The commit is visible to every session at once either way. SQLite:
    /// `BEGIN IMMEDIATE`, as [`ReadDb::begin_write`].
    pub async fn begin_replayable<'c>(
        &self,
        conn: &'c mut AnyConnection,
    ) -> Result<sqlx::Transaction<'c, Any>> {
        let begin = match self.dialect {
            Dialect::Sqlite => "BEGIN IMMEDIATE",
            Dialect::Postgres => "BEGIN; SET LOCAL synchronous_commit = off",
        };
        Ok(conn.begin_with(begin).await?)
    }

    /// Every row of every live read-model table as text, sorted by primary key: for
    /// tests and diagnostics (`rebuild` must reproduce it exactly).
    pub async fn dump(&self) -> Result<Vec<(String, Vec<Vec<String>>)>> {
        let mut conn = self.pool.acquire().await?;
        let mut out = Vec::new();
        for t in Table::ALL {
            out.push((
                t.name().to_owned(),
                dump_table(&mut conn, t, t.name()).await?,
            ));
        }
        Ok(out)
    }

    /// The stored position of a checkpoint (0 when it has none).
    pub async fn checkpoint(&self, name: &str) -> Result<u64> {
        let mut conn = self.pool.acquire().await?;
        read_checkpoint(&mut conn, name).await
    }
}

/// Reads every row of `physical` (a table shaped like `table`) as text.
pub(crate) async fn dump_table(
    conn: &mut AnyConnection,
    table: Table,
    physical: &str,
) -> Result<Vec<Vec<String>>> {
    let cols: Vec<&str> = table.columns().iter().map(|c| c.name).collect();
    let sql = format!(
        "SELECT {} FROM {physical} ORDER BY {}",
        cols.join(", "),
        table.order_by()
    );
    let rows = sqlx::query(&sql).fetch_all(&mut *conn).await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let mut values = Vec::with_capacity(cols.len());
        for (i, c) in table.columns().iter().enumerate() {
            let v = match c.ty {
                crate::schema::ColumnType::Int => row
                    .try_get::<Option<i64>, _>(i)?
                    .map_or("NULL".to_owned(), |v| v.to_string()),
                crate::schema::ColumnType::Text => row
                    .try_get::<Option<String>, _>(i)?
                    .map_or("NULL".to_owned(), |v| format!("{v:?}")),
            };
            values.push(v);
        }
        out.push(values);
    }
    Ok(out)
}

fn normalize_url(url: &str) -> Result<(String, Dialect)> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok((url.to_owned(), Dialect::Postgres));
    }
    let url = if let Some(rest) = url.strip_prefix("sqlite:") {
        format!("sqlite:{rest}")
    } else if url.contains("://") {
        return Err(Error::Invalid(format!(
            "unsupported read-model database URL {url:?} (sqlite: or postgres:)"
        )));
    } else {
        format!("sqlite://{url}")
    };
    let url = if url.contains("mode=") {
        url
    } else if url.contains('?') {
        format!("{url}&mode=rwc")
    } else {
        format!("{url}?mode=rwc")
    };
    Ok((url, Dialect::Sqlite))
}

/// Creates the checkpoint row `name` at `initial` if it does not exist yet.
pub(crate) async fn ensure_checkpoint(
    conn: &mut AnyConnection,
    name: &str,
    initial: u64,
) -> Result<()> {
    sqlx::query(&format!(
        "INSERT INTO {CHECKPOINTS} (name, position) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING"
    ))
    .bind(name)
    .bind(to_i64(initial))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The position of checkpoint `name` (0 without a row), without locking.
pub(crate) async fn read_checkpoint(conn: &mut AnyConnection, name: &str) -> Result<u64> {
    let row = sqlx::query(&format!(
        "SELECT position FROM {CHECKPOINTS} WHERE name = $1"
    ))
    .bind(name)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(match row {
        Some(row) => to_u64(row.try_get::<i64, _>(0)?),
        None => 0,
    })
}

/// How long a kept connection may sit idle before it is pinged before use.
const PING_AFTER_IDLE: Duration = Duration::from_secs(10);

/// A connection that a long-running task (the projection runner, the publisher) keeps
/// between its transactions. sqlx pings a connection when it leaves the pool and again
/// when it goes back, a round trip each on PostgreSQL and a hop to a worker thread on
/// SQLite, and one message goes through two such transactions on its way to the gateway.
/// A kept connection is pinged only after it sat idle for [`PING_AFTER_IDLE`]; after an
/// error the task [`reset`](Self::reset)s it, so the next transaction starts on a fresh
/// one from the pool.
#[derive(Debug, Default)]
pub(crate) struct HeldConnection {
    /// The connection and when it was last used.
    conn: Option<(PoolConnection<Any>, Instant)>,
}

impl HeldConnection {
    /// Begins a replayable transaction ([`ReadDb::begin_replayable`]) on the kept
    /// connection, taking one from the pool first if there is none.
    pub async fn begin_replayable<'c>(
        &'c mut self,
        db: &ReadDb,
    ) -> Result<sqlx::Transaction<'c, Any>> {
        if let Some((conn, used)) = self.conn.as_mut() {
            if used.elapsed() > PING_AFTER_IDLE && conn.ping().await.is_err() {
                self.conn = None;
            }
        }
        let conn = match self.conn.take() {
            Some((conn, _)) => conn,
            None => db.pool.acquire().await?,
        };
        let (conn, _) = self.conn.insert((conn, Instant::now()));
        db.begin_replayable(conn).await
    }

    /// Gives the connection back (after an error: it may be broken).
    pub fn reset(&mut self) {
        self.conn = None;
    }
}

/// Inside a transaction from [`ReadDb::begin_write`]: locks checkpoint `name` against
/// every other batch of every process and returns its position. PostgreSQL:
/// `SELECT ... FOR UPDATE` on its row (created at 0 if missing). SQLite: the transaction
/// already holds the database's single write lock, so the value read cannot change until
/// it ends.
#[tracing::instrument(skip(conn))]
pub(crate) async fn lock_checkpoint(
    conn: &mut AnyConnection,
    dialect: Dialect,
    name: &str,
) -> Result<u64> {
    let select = match dialect {
        // The transaction began IMMEDIATE (`ReadDb::begin_write`): it holds the write lock.
        Dialect::Sqlite => format!("SELECT position FROM {CHECKPOINTS} WHERE name = $1"),
        Dialect::Postgres => {
            format!("SELECT position FROM {CHECKPOINTS} WHERE name = $1 FOR UPDATE")
        }
    };
    for _ in 0..2 {
        let row = sqlx::query(&select)
            .bind(name)
            .fetch_optional(&mut *conn)
            .await?;
        if let Some(row) = row {
            return Ok(to_u64(row.try_get::<i64, _>(0)?));
        }
        ensure_checkpoint(conn, name, 0).await?;
    }
    Err(Error::Invalid(format!(
        "checkpoint {name} cannot be created"
    )))
}

/// Sets checkpoint `name` (inside the transaction that locked it).
pub(crate) async fn set_checkpoint(
    conn: &mut AnyConnection,
    name: &str,
    position: u64,
) -> Result<()> {
    sqlx::query(&format!(
        "UPDATE {CHECKPOINTS} SET position = $2 WHERE name = $1"
    ))
    .bind(name)
    .bind(to_i64(position))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A `u64` (id, position, permission bits) as the `i64` stored in a BIGINT column, bit for
/// bit.
pub(crate) fn to_i64(v: u64) -> i64 {
    v as i64
}

/// The inverse of [`to_i64`].
pub(crate) fn to_u64(v: i64) -> u64 {
    v as u64
}
