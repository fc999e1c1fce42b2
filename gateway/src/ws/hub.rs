//! A gateway node's fan-out hub: one bus subscription per guild and per user that has a
//! session on this node (never one per socket), duplicates dropped by (stream, revision),
//! gaps backfilled from the log, and each dispatch serialised once and handed to every
//! session that should see it.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, Weak};

use bus::{subjects, Bus, Dedup, Envelope, Observation};

use super::outbound::{Broken, Outbound};
use super::socket::Kind;
use tokio::sync::Notify;
use tokio::task::AbortHandle;

/// The `stream_id` of envelopes that are never stored (see [`Hub::publish_ephemeral`]).
const EPHEMERAL_STREAM: &str = "ephemeral";

/// How many dispatches may wait for a slow socket before the session is dropped.
const SESSION_BUFFER: usize = 512;

/// A dispatch ready to send: its name and its `d`, serialised once for all sessions.
#[derive(Debug)]
pub struct Dispatch {
    pub name: String,
    pub data: Box<str>,
    /// The position in the global log of the event it announces; `None` for what a
    /// session says itself (READY, replies). A session drops what its READY already
    /// reflected.
    pub position: Option<u64>,
    /// What intent filtering needs (see `intents.rs`, which builds dispatches).
    pub(crate) meta: super::intents::Meta,
}

impl Dispatch {
    /// Whether a session whose READY and GUILD_CREATEs were read at log position `since`
    /// already reflects it (the publisher tails the log on its own and may announce an
    /// event after the session identified); such a dispatch is not sent.
    pub(crate) fn known_at(&self, since: u64) -> bool {
        self.position.is_some_and(|p| p <= since)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Topic {
    Guild(u64),
    User(u64),
}

struct Session {
    user: u64,
    mailbox: Arc<Mailbox>,
}

/// A session's queue of dispatches: much smaller than a channel per session (an idle
/// session allocates nothing for it but the struct), and bounded: a session that falls
/// [`SESSION_BUFFER`] dispatches behind is closed.
///
/// While the session's task is idle it lends the mailbox its [`Lane`], and the hub then
/// writes the session's dispatches to its socket itself, without waking the task: at
/// 1,000 sessions a message is 1,000 deliveries, and a task wake-up, poll and `select!`
/// re-arm per delivery cost as much as the write. Whatever the lane does not take (a
/// dispatch the session must look at itself) is queued, and once something is queued
/// everything after it is queued too, so the order holds.
#[derive(Default)]
pub struct Mailbox {
    inner: Mutex<Inner>,
    notify: Notify,
    closed: std::sync::atomic::AtomicBool,
}

#[derive(Default)]
struct Inner {
    queue: std::collections::VecDeque<Arc<Dispatch>>,
    lane: Option<Lane>,
}

/// What writing a session's dispatches takes: its connection's writer and its sending
/// state (the session's, moved here while its task is idle; see `Session::lend`).
pub(crate) struct Lane {
    pub out: Arc<Outbound>,
    pub user_id: u64,
    pub intents: u64,
    pub since: u64,
    pub seq: u64,
    pub sent: std::collections::VecDeque<(u64, Arc<Dispatch>)>,
}

impl Lane {
    /// Sends `dispatch` as the session's task would (`Connection::deliver`); false when
    /// the task must handle it itself.
    fn send(&mut self, dispatch: &Arc<Dispatch>) -> Result<bool, Broken> {
        if dispatch.known_at(self.since) {
            return Ok(true);
        }
        // May have to be followed by a VOICE_SERVER_UPDATE (voice.rs).
        if dispatch.name == "VOICE_STATE_UPDATE" {
            return Ok(false);
        }
        let Some(data) = dispatch.data_for(self.user_id, self.intents) else {
            return Ok(true);
        };
        let seq = self.seq + 1;
        let head = super::session::dispatch_head(&dispatch.name, seq);
        self.out
            .write_frame(Kind::Text, &[head.as_bytes(), data.as_bytes(), b"}"])?;
        self.seq = seq;
        super::resume::remember(&mut self.sent, seq, dispatch.clone());
        Ok(true)
    }
}

impl Mailbox {
    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a dispatch, or writes it through the lane; false (and the mailbox closes)
    /// if the session is too far behind.
    fn push(&self, dispatch: Arc<Dispatch>) -> bool {
        let mut inner = self.inner();
        // Queued instead when the lane leaves it to the task, or the connection broke
        // (which the task then finds when it sends it).
        if inner.queue.is_empty() {
            if let Some(Ok(true)) = inner.lane.as_mut().map(|lane| lane.send(&dispatch)) {
                return true;
            }
        }
        if inner.queue.len() >= SESSION_BUFFER {
            drop(inner);
            self.close();
            return false;
        }
        inner.queue.push_back(dispatch);
        drop(inner);
        self.notify.notify_one();
        true
    }

    /// Lends the mailbox the session's lane if nothing is queued; `Err` gives it back.
    pub(crate) fn lend(&self, lane: Lane) -> Result<(), Lane> {
        let mut inner = self.inner();
        if !inner.queue.is_empty() || self.closed.load(std::sync::atomic::Ordering::Acquire) {
            return Err(lane);
        }
        inner.lane = Some(lane);
        Ok(())
    }

    /// Takes back the lane lent with [`Mailbox::lend`], if it was.
    pub(crate) fn reclaim(&self) -> Option<Lane> {
        self.inner().lane.take()
    }

    fn close(&self) {
        self.closed
            .store(true, std::sync::atomic::Ordering::Release);
        self.notify.notify_one();
    }

    /// The next queued dispatch; `None` once the mailbox is closed. Cancel-safe: a
    /// dispatch is only taken from the queue when it is returned.
    pub async fn recv(&self) -> Option<Arc<Dispatch>> {
        loop {
            if self.closed.load(std::sync::atomic::Ordering::Acquire) {
                return None;
            }
            if let Some(d) = self.inner().queue.pop_front() {
                return Some(d);
            }
            // notify_one stores a permit when nobody waits, so no wake-up is lost.
            self.notify.notified().await;
        }
    }
}

#[derive(Default)]
struct Routes {
    sessions: HashMap<u64, Session>,
    members: HashMap<Topic, HashSet<u64>>,
    dedup: HashMap<&'static str, Dedup>,
}

/// The hub of one gateway node.
pub struct Hub {
    bus: Arc<dyn Bus>,
    /// For backfilling gaps: the log and the read models the publisher renders from.
    store: store::DynStore,
    db: projections::ReadDb,
    routes: Mutex<Routes>,
    /// Each followed guild's permissions, for judging who receives what.
    views: super::audience::Views,
    /// Live bus subscriptions; guarded by an async mutex because subscribing awaits.
    pumps: tokio::sync::Mutex<HashMap<Topic, AbortHandle>>,
    next_id: std::sync::atomic::AtomicU64,
    /// The fan-out workers' queues (see [`Hub::fanout`]).
    fanout: std::sync::OnceLock<Vec<tokio::sync::mpsc::UnboundedSender<Share>>>,
    me: Weak<Hub>,
}

/// A session's registration; dropping it removes the session from the hub.
pub struct Registration {
    hub: Arc<Hub>,
    pub id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let hub = self.hub.clone();
        let id = self.id;
        let emptied = hub.remove_session(id);
        if !emptied.is_empty() {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move { hub.release(emptied).await });
            }
        }
    }
}

impl Hub {
    pub fn new(bus: Arc<dyn Bus>, store: store::DynStore, db: projections::ReadDb) -> Arc<Hub> {
        Arc::new_cyclic(|me| Hub {
            bus,
            store: store.clone(),
            db,
            views: super::audience::Views::new(store.clone()),
            routes: Mutex::default(),
            pumps: tokio::sync::Mutex::default(),
            next_id: 1.into(),
            fanout: std::sync::OnceLock::new(),
            me: me.clone(),
        })
    }

    fn routes(&self) -> std::sync::MutexGuard<'_, Routes> {
        self.routes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Number of bus subscriptions this node holds.
    pub async fn subscription_count(&self) -> usize {
        self.pumps.lock().await.len()
    }

    /// Registers a session of `user_id` in `guilds`; returns once the node's bus
    /// subscriptions for them are live, so nothing published afterwards is missed.
    pub async fn register(
        self: &Arc<Self>,
        user_id: u64,
        guilds: &[u64],
    ) -> Result<(Registration, Arc<Mailbox>), bus::BusError> {
        let mut topics: Vec<Topic> = guilds.iter().map(|g| Topic::Guild(*g)).collect();
        topics.push(Topic::User(user_id));
        self.ensure(&topics).await?;
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mailbox = Arc::new(Mailbox::default());
        let mut routes = self.routes();
        routes.sessions.insert(
            id,
            Session {
                user: user_id,
                mailbox: mailbox.clone(),
            },
        );
        for t in topics {
            routes.members.entry(t).or_default().insert(id);
        }
        drop(routes);
        Ok((
            Registration {
                hub: self.clone(),
                id,
            },
            mailbox,
        ))
    }

    /// Makes sure the node holds a subscription for each topic.
    async fn ensure(&self, topics: &[Topic]) -> Result<(), bus::BusError> {
        let mut pumps = self.pumps.lock().await;
        let mut added = false;
        for &topic in topics {
            if pumps.contains_key(&topic) {
                continue;
            }
            let pattern = match topic {
                Topic::Guild(g) => subjects::guild_all(g),
                Topic::User(u) => subjects::user_all(u),
            };
            let sub = self.bus.subscribe(&pattern).await?;
            let hub = self.me.clone();
            let task = tokio::spawn(pump(hub, topic, sub));
            pumps.insert(topic, task.abort_handle());
            added = true;
        }
        drop(pumps);
        if added {
            self.bus.flush().await;
        }
        Ok(())
    }

    /// Removes a session; returns the topics nobody on this node follows any more.
    fn remove_session(&self, id: u64) -> Vec<Topic> {
        let mut routes = self.routes();
        routes.sessions.remove(&id);
        let mut emptied = Vec::new();
        routes.members.retain(|topic, ids| {
            ids.remove(&id);
            if ids.is_empty() {
                emptied.push(*topic);
                false
            } else {
                true
            }
        });
        emptied
    }

    /// Drops subscriptions of topics that are still unfollowed.
    async fn release(&self, topics: Vec<Topic>) {
        let mut pumps = self.pumps.lock().await;
        let routes = self.routes();
        for t in topics {
            if !routes.members.contains_key(&t) {
                if let Some(p) = pumps.remove(&t) {
                    p.abort();
                }
                if let Topic::Guild(g) = t {
                    self.views.forget(g);
                }
            }
        }
    }

    /// Adds a session to a guild it just joined, subscribing the node if needed.
    ///
    /// Boxed with an explicit `Send`: delivering spawns it, and it spawns the pump that
    /// delivers, so the compiler needs this cycle broken with a named type.
    fn join(
        &self,
        session: u64,
        guild: u64,
    ) -> futures::future::BoxFuture<'_, Result<(), bus::BusError>> {
        Box::pin(async move {
            self.ensure(&[Topic::Guild(guild)]).await?;
            let mut routes = self.routes();
            if routes.sessions.contains_key(&session) {
                routes
                    .members
                    .entry(Topic::Guild(guild))
                    .or_default()
                    .insert(session);
            }
            Ok(())
        })
    }

    /// The subject prefix of a topic's bus subscription.
    fn prefix(topic: Topic) -> String {
        match topic {
            Topic::Guild(g) => format!("chorus.guild.{g}."),
            Topic::User(u) => format!("chorus.user.{u}."),
        }
    }

    /// Publishes a dispatch to a guild's channel that is never stored (TYPING_START): an
    /// envelope at position 0, not [`Envelope::is_logged`], so every node delivers it to
    /// the sessions that can view the channel without deduplicating, backfilling or
    /// dropping it as older than a READY.
    pub async fn publish_ephemeral(
        &self,
        guild_id: u64,
        channel_id: u64,
        dispatch: &str,
        data: serde_json::Value,
    ) -> Result<(), bus::BusError> {
        let env = Envelope {
            stream_id: EPHEMERAL_STREAM.to_owned(),
            revision: 0,
            position: 0,
            event_type: dispatch.to_owned(),
            dispatch: Some(dispatch.to_owned()),
            guild_id: Some(guild_id),
            channel_id: Some(channel_id),
            user_ids: Vec::new(),
            data,
        };
        let subject = subjects::guild(guild_id, &dispatch.to_ascii_lowercase());
        self.bus.publish(&subject, env.to_bytes()?).await
    }

    async fn route(&self, topic: Topic, env: Envelope) {
        if !env.is_logged() {
            self.deliver(topic, env).await;
            return;
        }
        let kind = match topic {
            Topic::Guild(_) => "guild",
            Topic::User(_) => "user",
        };
        let observed = {
            let mut routes = self.routes();
            let dedup = routes.dedup.entry(kind).or_default();
            dedup.observe(&env.stream_id, env.revision)
        };
        match observed {
            Observation::New => {}
            Observation::Duplicate => return,
            Observation::Gap {
                missing_from,
                missing_to,
            } => {
                // Derived envelopes (`{stream}#audit`, `{stream}#roles`) ride on their
                // own numbering, with holes by design, and are not in the log to
                // backfill from; only real streams are.
                if !env.stream_id.contains('#') {
                    self.backfill(topic, &env.stream_id, missing_from, missing_to)
                        .await;
                }
                let mut routes = self.routes();
                if let Some(dedup) = routes.dedup.get_mut(kind) {
                    dedup.mark(&env.stream_id, env.revision);
                }
            }
        }
        self.deliver(topic, env).await;
    }

    /// Delivers the events of `stream` from `from` to `to` (revisions) that this topic
    /// missed on the bus, read from the log and rendered as the publisher renders them.
    async fn backfill(&self, topic: Topic, stream: &str, from: u64, to: u64) {
        tracing::info!(stream, from, to, "backfilling a gap from the log");
        let count = usize::try_from(to.saturating_sub(from) + 1).unwrap_or(usize::MAX);
        let events = match self
            .store
            .read_stream(stream, from, store::Direction::Forwards, count.min(10_000))
            .await
        {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(error = %e, stream, "cannot read the log to backfill a gap");
                return;
            }
        };
        match projections::render_envelopes(&self.db, &events).await {
            Ok(rendered) => {
                let prefix = Self::prefix(topic);
                for (subject, env) in rendered {
                    if subject.starts_with(&prefix) {
                        self.deliver(topic, env).await;
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, stream, "cannot render a backfilled gap"),
        }
    }

    /// Removes from a GUILD_CREATE payload the channels `user` cannot view; false when
    /// the user is not a member of that guild (nothing may be sent).
    pub(crate) async fn filter_guild_create(
        &self,
        user: u64,
        data: &mut serde_json::Value,
    ) -> bool {
        super::audience::filter_guild_create(&self.views, user, data).await
    }

    async fn deliver(&self, topic: Topic, mut env: Envelope) {
        let Some(name) = env.dispatch.clone() else {
            // Not for clients, but the guild's view must still take it in.
            if let Topic::Guild(g) = topic {
                self.views.judge(g, &env, &[]).await;
            }
            return;
        };
        // Who follows the topic, and which of them may see this dispatch.
        let mut targets: Vec<(u64, u64, Arc<Mailbox>)> = {
            let routes = self.routes();
            routes
                .members
                .get(&topic)
                .into_iter()
                .flatten()
                .filter_map(|id| {
                    routes
                        .sessions
                        .get(id)
                        .map(|s| (*id, s.user, s.mailbox.clone()))
                })
                .collect()
        };
        match topic {
            Topic::Guild(g) => {
                let users: Vec<u64> = targets.iter().map(|t| t.1).collect();
                let verdicts = self.views.judge(g, &env, &users).await;
                let mut verdicts = verdicts.into_iter();
                targets.retain(|_| verdicts.next().unwrap_or(false));
            }
            Topic::User(u) if name == "GUILD_CREATE" => {
                // A guild joined. Sessions that already follow it (they got it in their
                // start-up GUILD_CREATEs because the join was committed before they
                // identified) must not get it twice.
                if let Some(g) = env.guild_id {
                    let routes = self.routes();
                    if let Some(following) = routes.members.get(&Topic::Guild(g)) {
                        targets.retain(|t| !following.contains(&t.0));
                    }
                }
                if targets.is_empty() {
                    return;
                }
                // Only the channels this user can view.
                if !self.filter_guild_create(u, &mut env.data).await {
                    return;
                }
            }
            Topic::User(_) if name == "GUILD_DELETE" => {
                // Removed from a guild: these sessions stop following it, so a later
                // re-join is announced with GUILD_CREATE again.
                if let Some(g) = env.guild_id {
                    let mut routes = self.routes();
                    if let Some(following) = routes.members.get_mut(&Topic::Guild(g)) {
                        for t in &targets {
                            following.remove(&t.0);
                        }
                    }
                }
            }
            Topic::User(_) => {}
        }
        if targets.is_empty() {
            return;
        }
        let Some(mut dispatch) = Dispatch::new(name, &env.data) else {
            return;
        };
        dispatch.position = env.is_logged().then_some(env.position);
        let dispatch = Arc::new(dispatch);
        let joins = match (topic, dispatch.name.as_str(), env.guild_id) {
            (Topic::User(_), "GUILD_CREATE", Some(g)) => Some(g),
            _ => None,
        };
        if let Some(guild) = joins {
            for (id, _, mailbox) in targets {
                // Subscribe to the guild before the client learns it joined, so it sees
                // every later event of the guild.
                let Some(hub) = self.me.upgrade() else { return };
                let dispatch = dispatch.clone();
                tokio::spawn(async move {
                    if let Err(e) = hub.join(id, guild).await {
                        tracing::error!(error = %e, guild, "cannot subscribe to a joined guild");
                    }
                    mailbox.push(dispatch);
                });
            }
            return;
        }
        // The writes are shared among the fan-out workers, each session always by the
        // same one, so that its dispatches keep their order.
        let workers = self.fanout();
        let mut shares: Vec<Vec<(u64, Arc<Mailbox>)>> = vec![Vec::new(); workers.len()];
        for (id, _, mailbox) in targets {
            shares[(id % workers.len() as u64) as usize].push((id, mailbox));
        }
        for (worker, share) in workers.iter().zip(shares) {
            if !share.is_empty() {
                let _ = worker.send((dispatch.clone(), share));
            }
        }
    }

    /// The fan-out workers, started on first use (one per core, at most 8).
    fn fanout(&self) -> &[tokio::sync::mpsc::UnboundedSender<Share>] {
        self.fanout.get_or_init(|| {
            let n = std::thread::available_parallelism().map_or(2, |n| n.get().min(8));
            (0..n)
                .map(|_| {
                    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
                    tokio::spawn(fan_out(self.me.clone(), rx));
                    tx
                })
                .collect()
        })
    }
}

/// One dispatch and the sessions a fan-out worker hands it to.
type Share = (Arc<Dispatch>, Vec<(u64, Arc<Mailbox>)>);

/// A fan-out worker: hands each dispatch to its sessions' mailboxes (which write it to
/// the socket at once when the session's task is idle).
async fn fan_out(hub: Weak<Hub>, mut shares: tokio::sync::mpsc::UnboundedReceiver<Share>) {
    while let Some((dispatch, sessions)) = shares.recv().await {
        for (id, mailbox) in sessions {
            if !mailbox.push(dispatch.clone()) {
                // Too slow (or gone): drop the session rather than the whole node's pace.
                tracing::warn!(session = id, "session cannot keep up; disconnecting it");
                if let Some(hub) = hub.upgrade() {
                    hub.routes().sessions.remove(&id);
                }
            }
        }
    }
}

async fn pump(hub: Weak<Hub>, topic: Topic, mut sub: bus::BusSubscription) {
    while let Some(msg) = sub.next().await {
        let Some(hub) = hub.upgrade() else { return };
        match Envelope::from_bytes(&msg.payload) {
            Ok(env) => hub.route(topic, env).await,
            Err(e) => tracing::warn!(subject = %msg.subject, error = %e, "undecodable bus message"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn dispatch(name: &str, position: u64) -> Arc<Dispatch> {
        let mut d = Dispatch::new(name.to_owned(), &serde_json::json!({ "n": position }))
            .expect("serialisable");
        d.position = Some(position);
        Arc::new(d)
    }

    fn lane(server: tokio::net::TcpStream, since: u64, seq: u64) -> Lane {
        Lane {
            out: Outbound::new(Arc::new(server)),
            user_id: 1,
            intents: u64::MAX,
            since,
            seq,
            sent: Default::default(),
        }
    }

    #[tokio::test]
    async fn a_lane_writes_until_one_dispatch_is_queued_then_everything_queues_in_order() {
        let (server, mut client) = super::super::outbound::tests::pair().await;
        let mailbox = Mailbox::default();
        assert!(mailbox.lend(lane(server, 10, 4)).is_ok());

        // Given a lent lane, when dispatches come:
        assert!(mailbox.push(dispatch("CHANNEL_CREATE", 9))); // already in READY: dropped
        assert!(mailbox.push(dispatch("CHANNEL_CREATE", 11))); // written, s = 5
        assert!(mailbox.push(dispatch("VOICE_STATE_UPDATE", 12))); // the task's: queued
        assert!(mailbox.push(dispatch("CHANNEL_UPDATE", 13))); // behind it: queued

        // Then the client got exactly the one written, as a whole text frame with s = 5,
        let expected = "{\"op\":0,\"t\":\"CHANNEL_CREATE\",\"s\":5,\"d\":{\"n\":11}}";
        let mut frame = vec![0u8; 2 + expected.len()];
        client.read_exact(&mut frame).await.unwrap();
        assert_eq!(frame[0], 0x81);
        assert_eq!(frame[1] as usize, expected.len());
        assert_eq!(std::str::from_utf8(&frame[2..]).unwrap(), expected);
        // the task gets the rest in order,
        let next = || tokio::time::timeout(std::time::Duration::from_secs(1), mailbox.recv());
        assert_eq!(next().await.expect("queued").unwrap().position, Some(12));
        assert_eq!(next().await.expect("queued").unwrap().position, Some(13));
        // and takes back the lane with s = 5 and the written dispatch kept for RESUME.
        let lane = mailbox.reclaim().expect("lent");
        assert_eq!(lane.seq, 5);
        let kept: Vec<(u64, Option<u64>)> =
            lane.sent.iter().map(|(s, d)| (*s, d.position)).collect();
        assert_eq!(kept, vec![(5, Some(11))]);
        assert!(mailbox.reclaim().is_none());
        // Nothing else reached the socket.
        let mut more = [0u8; 1];
        let read =
            tokio::time::timeout(std::time::Duration::from_millis(50), client.read(&mut more));
        assert!(read.await.is_err(), "an unexpected byte was written");
    }

    #[tokio::test]
    async fn a_lane_is_not_lent_while_something_is_queued() {
        let (server, _client) = super::super::outbound::tests::pair().await;
        let mailbox = Mailbox::default();
        assert!(mailbox.push(dispatch("CHANNEL_CREATE", 1)));
        let back = mailbox
            .lend(lane(server, 0, 0))
            .expect_err("a queued dispatch goes first");
        assert_eq!(back.seq, 0);
    }
}
