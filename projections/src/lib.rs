//! Projections: the read side of Chorus.
//!
//! A projection runner tails the global event log ([`store::subscribe_all`]) and keeps
//! read models in SQL (users, guilds, channels, members, invites, messages), one code path
//! for SQLite and PostgreSQL through [`sqlx::AnyPool`]. A publisher tails the log a second
//! time, behind the runner, renders each event's Discord dispatch from the read models
//! and publishes it on the bus as a [`bus::Envelope`].
//!
//! * [`ReadDb`]: the read-model database (the same database as the event log).
//! * [`Projections`]: the running runner and publisher; [`Projections::wait_for`] gives
//!   REST handlers read-your-writes.
//! * [`queries`]: what the REST API and the gateway read, as Discord-shaped [`wire`]
//!   structs.
//! * [`rebuild()`] and [`status()`]: rebuild a projection into fresh tables and swap it in
//!   without downtime; report each projection's lag.
//!
//! Architecture invariants:
//! * A projection's checkpoint is written in the same transaction as its changes, and
//!   every batch transaction first locks the checkpoint row (PostgreSQL `FOR UPDATE`;
//!   SQLite's single writer), so several processes can run the runner against one
//!   database and no event is ever applied twice.
//! * Only this crate writes the read-model tables.
//! * Nothing here panics on bad data: an event that cannot be decoded is logged and
//!   skipped.

pub mod db;
mod error;
mod publisher;
pub mod queries;
pub mod rebuild;
mod render;
mod rows;
mod runner;
pub mod schema;
pub mod wire;
mod writer;

pub use db::{Dialect, ReadDb};
pub use error::{Error, Result};
pub use publisher::{render_envelopes, AUDIT_STREAM_SUFFIX};
pub use rebuild::{rebuild, status, ProjectionStatus, RebuildReport};
pub use runner::Projections;

/// The checkpoint name of the read models (every read-model table is one projection).
pub const READ_MODELS: &str = "read_models";
/// The checkpoint name of the bus publisher.
pub const PUBLISHER: &str = "publisher";
