//! End-to-end tests: spawned `chorus serve` processes, real HTTP and WebSocket sockets,
//! on the embedded shape (SQLite, in-process bus) and the clustered shape (PostgreSQL,
//! NATS).

mod applications;
mod authorization;
mod bad_input;
mod cli;
mod compose;
mod guild_lifecycle;
mod harness;
mod messaging;
mod moderation;
mod roles;
mod visibility;
mod voice;
