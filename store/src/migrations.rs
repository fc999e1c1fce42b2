//! The SQL schema, embedded from `migrations/{sqlite,postgres}` at the workspace root.
//!
//! Each folder is one ordered set of numbered migrations (`0001_event_log.sql`, then the
//! read models' `0002_...`), applied with sqlx's [`Migrator`]: applying is idempotent,
//! and concurrent processes are serialized by the migrator's own lock. A released
//! migration is never edited (its checksum is recorded); changes go into a new file.
//! `store/build.rs` makes cargo re-embed the folders when a file is added.

use sqlx::migrate::Migrator;
use sqlx::{PgPool, SqlitePool};

use crate::{Result, StoreError};

/// Every SQLite migration, in order.
pub static SQLITE: Migrator = sqlx::migrate!("../migrations/sqlite");

/// Every PostgreSQL migration, in order.
pub static POSTGRES: Migrator = sqlx::migrate!("../migrations/postgres");

/// Applies every pending SQLite migration.
#[tracing::instrument(skip(pool))]
pub async fn migrate_sqlite(pool: &SqlitePool) -> Result<()> {
    SQLITE
        .run(pool)
        .await
        .map_err(|e| StoreError::Backend(format!("sqlite migrations: {e}")))
}

/// Applies every pending PostgreSQL migration.
#[tracing::instrument(skip(pool))]
pub async fn migrate_postgres(pool: &PgPool) -> Result<()> {
    POSTGRES
        .run(pool)
        .await
        .map_err(|e| StoreError::Backend(format!("postgres migrations: {e}")))
}
