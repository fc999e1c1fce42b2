//! Chorus voice: always-on voice rooms.
//!
//! - [`sfu`]: the Selective Forwarding Unit, sans-I/O, on str0m, in mediasoup's vocabulary
//!   (a [`sfu::Router`] per room, a [`sfu::WebRtcTransport`] per participant, producers and
//!   consumers).
//! - [`server`]: the one UDP socket all participants share, driving the SFU on a task, and
//!   the [`server::VoiceHandle`] the rest of the process talks to it through.
//! - [`signalling`]: Discord's voice WebSocket (IDENTIFY, SELECT_PROTOCOL with an SDP offer,
//!   SESSION_DESCRIPTION, SPEAKING, heartbeats, CLIENT_DISCONNECT) as an axum router.
//! - [`placement`]: which voice node holds a room (rendezvous hashing over the configured
//!   endpoints), and what VOICE_SERVER_UPDATE carries.
//! - [`token`]: voice tokens (HMAC-signed grants) the gateway issues and the voice node
//!   verifies without a database.

pub mod client;
pub mod placement;
pub mod server;
pub mod sfu;
pub mod signalling;
pub mod token;
