//! Resumable sessions. An identified session keeps the dispatches it sent since the
//! client's last heartbeat acknowledged a sequence number (a heartbeat's `d` is the last
//! `s` the client received). When its connection drops without the session being
//! invalidated, the session is parked here, still registered with the hub (so dispatches
//! keep arriving in its mailbox), for [`RESUME_WINDOW`]. A RESUME on any connection to
//! the same node takes it back, replays what the client missed with the original `s`,
//! sends RESUMED, and carries on from the mailbox.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use super::hub::{Dispatch, Hub, Mailbox, Registration};

/// How long a disconnected session can be resumed.
pub const RESUME_WINDOW: Duration = Duration::from_secs(120);
/// At most this many unacknowledged dispatches are kept for replay; a client further
/// behind must identify anew.
pub const REPLAY_LIMIT: usize = 2048;

/// An identified session, independent of the connection carrying it.
pub struct Session {
    /// Held for its `Drop`, which unregisters the session from the hub.
    #[allow(dead_code)]
    pub registration: Registration,
    pub mailbox: Arc<Mailbox>,
    pub user_id: u64,
    pub intents: u64,
    pub session_id: String,
    /// The last `s` sent.
    pub seq: u64,
    /// The read models' position when the session identified: its READY and
    /// GUILD_CREATEs reflect every event up to here, so dispatches of those events
    /// (which a lagging publisher may still be sending) are not sent again.
    pub since: u64,
    /// Dispatches sent and not yet acknowledged by a heartbeat, with their `s`.
    pub sent: VecDeque<(u64, Arc<Dispatch>)>,
    /// The voice rooms this session was last sent VOICE_SERVER_UPDATE for (`voice.rs`).
    pub voice: super::voice::OwnVoice,
}

impl Session {
    /// Remembers a sent dispatch for replay.
    pub fn remember(&mut self, seq: u64, dispatch: Arc<Dispatch>) {
        remember(&mut self.sent, seq, dispatch);
    }

    /// Forgets what the client says it received (a heartbeat's `d`).
    pub fn acknowledge(&mut self, seq: u64) {
        while self.sent.front().is_some_and(|(s, _)| *s <= seq) {
            self.sent.pop_front();
        }
        if self.sent.is_empty() && self.sent.capacity() > 64 {
            self.sent.shrink_to(16);
        }
    }

    /// Whether every dispatch after `seq` is still kept.
    pub fn can_replay_after(&self, seq: u64) -> bool {
        match self.sent.front() {
            Some((first, _)) => *first <= seq + 1,
            None => true,
        }
    }
}

/// Keeps `dispatch`, sent with `seq`, for replay (at most [`REPLAY_LIMIT`]).
pub(crate) fn remember(
    sent: &mut VecDeque<(u64, Arc<Dispatch>)>,
    seq: u64,
    dispatch: Arc<Dispatch>,
) {
    if sent.len() >= REPLAY_LIMIT {
        sent.pop_front();
    }
    sent.push_back((seq, dispatch));
}

struct Parked {
    session: Session,
    hub: usize,
    generation: u64,
}

static PARKED: LazyLock<Mutex<HashMap<String, Parked>>> = LazyLock::new(Mutex::default);
static GENERATION: AtomicU64 = AtomicU64::new(0);

fn parked() -> std::sync::MutexGuard<'static, HashMap<String, Parked>> {
    PARKED.lock().unwrap_or_else(|p| p.into_inner())
}

fn hub_key(hub: &Arc<Hub>) -> usize {
    Arc::as_ptr(hub) as usize
}

/// Keeps a disconnected session resumable for [`RESUME_WINDOW`].
pub fn park(hub: &Arc<Hub>, session: Session) {
    let generation = GENERATION.fetch_add(1, Ordering::Relaxed);
    let id = session.session_id.clone();
    let old = parked().insert(
        id.clone(),
        Parked {
            session,
            hub: hub_key(hub),
            generation,
        },
    );
    drop(old);
    tokio::spawn(async move {
        tokio::time::sleep(RESUME_WINDOW).await;
        let expired = {
            let mut map = parked();
            match map.get(&id) {
                Some(p) if p.generation == generation => map.remove(&id),
                _ => None,
            }
        };
        // Dropping the session unregisters it from the hub (outside the lock).
        drop(expired);
    });
}

/// Takes a parked session of `hub` back, if it is still resumable.
pub fn take(hub: &Arc<Hub>, session_id: &str) -> Option<Session> {
    let mut map = parked();
    match map.get(session_id) {
        Some(p) if p.hub == hub_key(hub) => map.remove(session_id).map(|p| p.session),
        _ => None,
    }
}
