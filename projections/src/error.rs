//! The crate's error type.

/// What can go wrong in the read side.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The read-model database failed.
    #[error("read-model database: {0}")]
    Db(#[from] sqlx::Error),
    /// Applying the migrations failed.
    #[error("read-model migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The event log failed.
    #[error("event log: {0}")]
    Store(#[from] store::StoreError),
    /// The bus failed.
    #[error("bus: {0}")]
    Bus(#[from] bus::BusError),
    /// A caller asked for something that does not exist or makes no sense (an unknown
    /// projection name, an unsupported database URL).
    #[error("{0}")]
    Invalid(String),
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
