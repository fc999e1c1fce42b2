//! The forwarding core, sans-I/O: it never touches a socket or a clock. The caller feeds it
//! datagrams ([`Sfu::handle_datagram`]) and time ([`Sfu::handle_timeout`]), and drains what
//! it wants sent ([`Sfu::poll_transmit`]) and what happened ([`Sfu::poll_event`]).
//!
//! The vocabulary is mediasoup's: a [`Router`] per room, one [`WebRtcTransport`] per
//! participant (one str0m [`Rtc`]), a [`Producer`] for the audio a participant sends and a
//! [`Consumer`] per (listener, speaker) pair. Media is forwarded without decoding: each Opus
//! frame str0m depacketizes from a producer is written, as the same bytes, into every
//! consumer of that producer (str0m's frame API rewrites only the RTP header: SSRC, sequence
//! number, payload type). RTCP (receiver reports, NACK, SR) is str0m's, per transport, so
//! browsers see a well-behaved peer and keep sending.
//!
//! Demultiplexing on the one shared UDP port follows mediasoup's `WebRtcServer`: a STUN
//! binding request names the transport by its ICE username (`server-ufrag:client-ufrag`);
//! once str0m has verified its integrity, the source address is bound to that transport and
//! every later DTLS, RTP and RTCP datagram from it goes there.
//!
//! Consumers ride on the m-lines the client offered: every audio m-line the server may send
//! on (client direction `recvonly` or `sendrecv`) is a consumer slot, and the first audio
//! m-line the server may receive on (client `sendonly` or `sendrecv`) is the producer. A
//! browser that wants to hear up to N others offers its microphone track plus N-1 extra
//! `recvonly` audio transceivers; no renegotiation is ever needed. When someone leaves, their
//! slots are freed and handed to anyone still waiting for one.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer};
use str0m::ice::StunMessage;
use str0m::media::{Direction, MediaData, MediaKind, Mid};
use str0m::net::{DatagramRecv, Protocol, Receive, Transmit};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc, RtcConfig};

/// A room: the voice channel's id.
pub type RoomId = u64;
/// A participant: the user's id (one voice state per user per room).
pub type UserId = u64;

/// A transport's id, unique for the life of the [`Sfu`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TransportId(pub u64);

/// Tuning of the forwarding core.
#[derive(Clone, Debug)]
pub struct SfuConfig {
    /// The address clients send media to: the ICE host candidate in every answer. With NAT
    /// this is the public address; the socket may listen on another.
    pub announced: SocketAddr,
    /// A participant from whom nothing (not even STUN consent checks or RTCP) arrived for
    /// this long leaves the room.
    pub silence_timeout: Duration,
    /// RFC 6464 level (dBov, 0 loudest, -127 silence) at or above which a producer speaks.
    pub speaking_threshold_dbov: i8,
    /// How long a producer stays "speaking" after its last loud packet.
    pub speaking_hangover: Duration,
}

impl SfuConfig {
    /// Defaults for a server announcing `announced`: 30 s silence timeout, -50 dBov, 300 ms.
    pub fn new(announced: SocketAddr) -> Self {
        SfuConfig {
            announced,
            silence_timeout: Duration::from_secs(30),
            speaking_threshold_dbov: -50,
            speaking_hangover: Duration::from_millis(300),
        }
    }
}

/// Why a participant left its room.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaveReason {
    /// The signalling layer removed it (left the channel, moved, disconnected by a moderator).
    Removed,
    /// It joined again (a new transport replaced this one).
    Replaced,
    /// ICE or DTLS failed or closed.
    TransportClosed,
    /// Nothing arrived from it for [`SfuConfig::silence_timeout`].
    Timeout,
}

/// What the SFU tells its owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SfuEvent {
    /// ICE and DTLS are up: media can flow.
    Connected {
        /// The room.
        room: RoomId,
        /// The participant.
        user: UserId,
    },
    /// A participant's transport is gone.
    Left {
        /// The room.
        room: RoomId,
        /// The participant.
        user: UserId,
        /// Why.
        reason: LeaveReason,
    },
    /// A producer started or stopped speaking (from RFC 6464 audio levels).
    Speaking {
        /// The room.
        room: RoomId,
        /// The speaker.
        user: UserId,
        /// Speaking now?
        speaking: bool,
    },
    /// `listener` now receives `speaker` on the m-line `mid` with SSRC `ssrc`.
    ConsumerOpened {
        /// The room.
        room: RoomId,
        /// Who hears.
        listener: UserId,
        /// Who is heard.
        speaker: UserId,
        /// The listener's m-line carrying it.
        mid: String,
        /// The SSRC the listener sees on that m-line.
        ssrc: u32,
    },
    /// `listener` no longer receives `speaker`.
    ConsumerClosed {
        /// The room.
        room: RoomId,
        /// Who heard.
        listener: UserId,
        /// Who was heard.
        speaker: UserId,
    },
}

/// Joining failed.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// The SDP offer could not be parsed.
    #[error("malformed SDP offer: {0}")]
    MalformedSdp(String),
    /// str0m rejected the offer (e.g. no compatible audio codec).
    #[error("SDP offer rejected: {0}")]
    Rejected(String),
    /// The offer has no audio m-line at all.
    #[error("the offer has no audio m-line")]
    NoAudio,
}

/// A room: who is in it (mediasoup's Router).
#[derive(Debug, Default)]
pub struct Router {
    participants: BTreeMap<UserId, TransportId>,
}

impl Router {
    /// The participants and their transports.
    pub fn participants(&self) -> impl Iterator<Item = (UserId, TransportId)> + '_ {
        self.participants.iter().map(|(u, t)| (*u, *t))
    }
}

/// The audio a participant sends.
#[derive(Debug)]
pub struct Producer {
    /// The m-line it arrives on.
    pub mid: Mid,
    /// Frames received.
    pub frames: u64,
    speaking: bool,
    last_loud: Option<Instant>,
}

/// One speaker forwarded to one listener, on one of the listener's m-lines.
#[derive(Debug, Clone, Copy)]
pub struct Consumer {
    /// Who is heard.
    pub speaker: UserId,
    /// Frames forwarded.
    pub frames: u64,
}

#[derive(Debug)]
struct Slot {
    mid: Mid,
    consumer: Option<Consumer>,
}

/// One participant's WebRTC connection (mediasoup's WebRtcTransport): one str0m [`Rtc`].
pub struct WebRtcTransport {
    room: RoomId,
    user: UserId,
    rtc: Rtc,
    ufrag: String,
    producer: Option<Producer>,
    slots: Vec<Slot>,
    server_mute: bool,
    server_deaf: bool,
    connected: bool,
    closed: bool,
    last_seen: Instant,
    next_timeout: Instant,
    addrs: Vec<SocketAddr>,
    queued: bool,
}

impl WebRtcTransport {
    /// The participant's producer, once the offer's m-lines are known.
    pub fn producer(&self) -> Option<&Producer> {
        self.producer.as_ref()
    }

    /// ICE and DTLS are up.
    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// Server-muted: nothing of it is forwarded.
    pub fn server_mute(&self) -> bool {
        self.server_mute
    }

    /// Server-deafened: nothing is forwarded to it.
    pub fn server_deaf(&self) -> bool {
        self.server_deaf
    }

    /// The consumers: who this participant hears, on which m-line.
    pub fn consumers(&self) -> impl Iterator<Item = (String, Consumer)> + '_ {
        self.slots
            .iter()
            .filter_map(|s| s.consumer.map(|c| (s.mid.to_string(), c)))
    }
}

/// The forwarding core. See the module docs.
pub struct Sfu {
    config: SfuConfig,
    next_id: u64,
    routers: HashMap<RoomId, Router>,
    transports: HashMap<TransportId, WebRtcTransport>,
    by_ufrag: HashMap<String, TransportId>,
    by_addr: HashMap<SocketAddr, TransportId>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<SfuEvent>,
    next_wake: Instant,
    next_tick: Instant,
    // Scratch space reused for every forwarded frame.
    scratch_frames: Vec<MediaData>,
    scratch_targets: Vec<(TransportId, usize)>,
    worklist: Vec<TransportId>,
    pending: Vec<TransportId>,
    last_now: Instant,
}

/// How often eviction and speaking hangovers are checked.
const TICK: Duration = Duration::from_millis(50);

impl Sfu {
    /// An empty SFU.
    pub fn new(config: SfuConfig, now: Instant) -> Self {
        Sfu {
            config,
            next_id: 1,
            routers: HashMap::new(),
            transports: HashMap::new(),
            by_ufrag: HashMap::new(),
            by_addr: HashMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            next_wake: now + TICK,
            next_tick: now + TICK,
            scratch_frames: Vec::new(),
            scratch_targets: Vec::new(),
            worklist: Vec::new(),
            pending: Vec::new(),
            last_now: now,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &SfuConfig {
        &self.config
    }

    /// A room, if anyone is in it.
    pub fn router(&self, room: RoomId) -> Option<&Router> {
        self.routers.get(&room)
    }

    /// The transport of `user` in `room`.
    pub fn transport(&self, room: RoomId, user: UserId) -> Option<&WebRtcTransport> {
        let id = self.routers.get(&room)?.participants.get(&user)?;
        self.transports.get(id)
    }

    /// How many transports exist.
    pub fn transport_count(&self) -> usize {
        self.transports.len()
    }

    /// `user` joins `room` with an SDP offer; the answer goes back to the client. A previous
    /// transport of the same user in the same room is replaced.
    pub fn join(
        &mut self,
        now: Instant,
        room: RoomId,
        user: UserId,
        offer_sdp: &str,
    ) -> Result<(TransportId, SdpAnswer), JoinError> {
        let offer = SdpOffer::from_sdp_string(offer_sdp)
            .map_err(|e| JoinError::MalformedSdp(e.to_string()))?;
        if !offer_sdp.contains("m=audio") {
            return Err(JoinError::NoAudio);
        }
        let mut rtc = RtcConfig::new()
            .set_ice_lite(true)
            .clear_codecs()
            .enable_opus(true, false)
            .build(now);
        let candidate = Candidate::host(self.config.announced, "udp")
            .map_err(|e| JoinError::Rejected(e.to_string()))?;
        rtc.add_local_candidate(candidate);
        let answer = rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| JoinError::Rejected(e.to_string()))?;
        let ufrag = rtc.direct_api().local_ice_credentials().ufrag;

        if let Some(old) = self
            .routers
            .get(&room)
            .and_then(|r| r.participants.get(&user))
        {
            let old = *old;
            self.remove_transport(old, LeaveReason::Replaced);
        }

        let id = TransportId(self.next_id);
        self.next_id += 1;
        let transport = WebRtcTransport {
            room,
            user,
            rtc,
            ufrag: ufrag.clone(),
            producer: None,
            slots: Vec::new(),
            server_mute: false,
            server_deaf: false,
            connected: false,
            closed: false,
            last_seen: now,
            next_timeout: now,
            addrs: Vec::new(),
            queued: false,
        };
        self.transports.insert(id, transport);
        self.by_ufrag.insert(ufrag, id);
        self.routers
            .entry(room)
            .or_default()
            .participants
            .insert(user, id);
        // The offer's m-lines surface as MediaAdded events once DTLS is up; consumers are
        // assigned then.
        self.drain(id, now);
        Ok((id, answer))
    }

    /// `user` leaves `room` (no-op if not there).
    pub fn leave(&mut self, room: RoomId, user: UserId) {
        if let Some(id) = self
            .routers
            .get(&room)
            .and_then(|r| r.participants.get(&user))
        {
            let id = *id;
            self.remove_transport(id, LeaveReason::Removed);
        }
    }

    /// Server mute: nothing of this participant's is forwarded while set. Returns whether
    /// the participant is in the room.
    pub fn set_server_mute(&mut self, room: RoomId, user: UserId, mute: bool) -> bool {
        let Some(id) = self
            .routers
            .get(&room)
            .and_then(|r| r.participants.get(&user))
        else {
            return false;
        };
        let t = self
            .transports
            .get_mut(id)
            .expect("router points at a live transport");
        t.server_mute = mute;
        if mute {
            if let Some(p) = t.producer.as_mut() {
                if p.speaking {
                    p.speaking = false;
                    self.events.push_back(SfuEvent::Speaking {
                        room,
                        user,
                        speaking: false,
                    });
                }
            }
        }
        true
    }

    /// Server deafen: nothing is forwarded to this participant while set.
    pub fn set_server_deaf(&mut self, room: RoomId, user: UserId, deaf: bool) -> bool {
        let Some(id) = self
            .routers
            .get(&room)
            .and_then(|r| r.participants.get(&user))
        else {
            return false;
        };
        self.transports
            .get_mut(id)
            .expect("router points at a live transport")
            .server_deaf = deaf;
        true
    }

    /// One datagram arrived on the shared socket from `source`.
    pub fn handle_datagram(&mut self, now: Instant, source: SocketAddr, data: &[u8]) {
        let is_stun = data.len() >= 20 && data[0] < 2 && data[4..8] == [0x21, 0x12, 0xa4, 0x42];
        let id = if is_stun {
            let Ok(msg) = StunMessage::parse(data) else {
                return;
            };
            let Some((local, _remote)) = msg.split_username() else {
                return;
            };
            match self.by_ufrag.get(local) {
                Some(id) => *id,
                None => return,
            }
        } else {
            match self.by_addr.get(&source) {
                Some(id) => *id,
                None => return,
            }
        };
        let Ok(contents) = DatagramRecv::try_from(data) else {
            return;
        };
        let input = Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source,
                destination: self.config.announced,
                contents,
            },
        );
        let Some(t) = self.transports.get_mut(&id) else {
            return;
        };
        if t.closed || !t.rtc.accepts(&input) {
            return;
        }
        t.last_seen = now;
        if is_stun && !t.addrs.contains(&source) {
            t.addrs.push(source);
            if let Some(prev) = self.by_addr.insert(source, id) {
                if prev != id {
                    if let Some(p) = self.transports.get_mut(&prev) {
                        p.addrs.retain(|a| *a != source);
                    }
                }
            }
        }
        let t = self.transports.get_mut(&id).expect("looked up above");
        if let Err(e) = t.rtc.handle_input(input) {
            tracing::debug!(room = t.room, user = t.user, error = %e, "voice transport failed");
            t.rtc.disconnect();
        }
        self.last_now = now;
        if !t.queued {
            t.queued = true;
            self.pending.push(id);
        }
    }

    /// Time passed: drive every transport whose timer is due, evict the dead and the silent,
    /// and end speaking after the hangover.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.flush();
        if now < self.next_wake {
            return;
        }
        let due: Vec<TransportId> = self
            .transports
            .iter()
            .filter(|(_, t)| t.next_timeout <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            if let Some(t) = self.transports.get_mut(&id) {
                if let Err(e) = t.rtc.handle_input(Input::Timeout(now)) {
                    tracing::debug!(error = %e, "voice transport failed on timeout");
                    t.rtc.disconnect();
                }
                self.drain(id, now);
            }
        }
        if now >= self.next_tick {
            self.next_tick = now + TICK;
            self.tick(now);
        }
        self.next_wake = self
            .transports
            .values()
            .map(|t| t.next_timeout)
            .min()
            .unwrap_or(self.next_tick)
            .min(self.next_tick)
            .max(now);
    }

    /// When [`Sfu::handle_timeout`] wants to be called next.
    pub fn poll_timeout(&self) -> Instant {
        self.next_wake
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.flush();
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<SfuEvent> {
        self.flush();
        self.events.pop_front()
    }

    fn tick(&mut self, now: Instant) {
        let mut dead = Vec::new();
        for (id, t) in &mut self.transports {
            if t.closed || !t.rtc.is_alive() {
                dead.push((*id, LeaveReason::TransportClosed));
            } else if now.saturating_duration_since(t.last_seen) > self.config.silence_timeout {
                dead.push((*id, LeaveReason::Timeout));
            }
            if let Some(p) = t.producer.as_mut() {
                if p.speaking
                    && p.last_loud.is_none_or(|l| {
                        now.saturating_duration_since(l) > self.config.speaking_hangover
                    })
                {
                    p.speaking = false;
                    self.events.push_back(SfuEvent::Speaking {
                        room: t.room,
                        user: t.user,
                        speaking: false,
                    });
                }
            }
        }
        for (id, reason) in dead {
            self.remove_transport(id, reason);
        }
    }

    fn remove_transport(&mut self, id: TransportId, reason: LeaveReason) {
        let Some(t) = self.transports.remove(&id) else {
            return;
        };
        self.by_ufrag.remove(&t.ufrag);
        for a in &t.addrs {
            if self.by_addr.get(a) == Some(&id) {
                self.by_addr.remove(a);
            }
        }
        let room = t.room;
        if let Some(r) = self.routers.get_mut(&room) {
            if r.participants.get(&t.user) == Some(&id) {
                r.participants.remove(&t.user);
            }
            if r.participants.is_empty() {
                self.routers.remove(&room);
            }
        }
        // Free every slot that carried this speaker; give the slots to anyone waiting.
        let others: Vec<TransportId> = self
            .routers
            .get(&room)
            .map(|r| r.participants.values().copied().collect())
            .unwrap_or_default();
        for o in &others {
            let listener = self.transports.get_mut(o).expect("live");
            for s in &mut listener.slots {
                if s.consumer.is_some_and(|c| c.speaker == t.user) {
                    s.consumer = None;
                    self.events.push_back(SfuEvent::ConsumerClosed {
                        room,
                        listener: listener.user,
                        speaker: t.user,
                    });
                }
            }
        }
        if t.producer.as_ref().is_some_and(|p| p.speaking) {
            self.events.push_back(SfuEvent::Speaking {
                room,
                user: t.user,
                speaking: false,
            });
        }
        self.events.push_back(SfuEvent::Left {
            room,
            user: t.user,
            reason,
        });
        if !others.is_empty() {
            self.assign_slots(room);
        }
    }

    /// Give every (listener, speaker) pair in the room a consumer slot if one is free.
    fn assign_slots(&mut self, room: RoomId) {
        let Some(r) = self.routers.get(&room) else {
            return;
        };
        let members: Vec<(UserId, TransportId)> = r.participants().collect();
        for (listener_user, listener_id) in &members {
            for (speaker_user, _) in &members {
                if speaker_user == listener_user {
                    continue;
                }
                let t = self.transports.get_mut(listener_id).expect("live");
                if t.slots
                    .iter()
                    .any(|s| s.consumer.is_some_and(|c| c.speaker == *speaker_user))
                {
                    continue;
                }
                let Some(slot) = t.slots.iter_mut().find(|s| s.consumer.is_none()) else {
                    continue;
                };
                slot.consumer = Some(Consumer {
                    speaker: *speaker_user,
                    frames: 0,
                });
                let mid = slot.mid;
                let ssrc = t
                    .rtc
                    .direct_api()
                    .stream_tx_by_mid(mid, None)
                    .map(|s| *s.ssrc())
                    .unwrap_or(0);
                self.events.push_back(SfuEvent::ConsumerOpened {
                    room,
                    listener: *listener_user,
                    speaker: *speaker_user,
                    mid: mid.to_string(),
                    ssrc,
                });
            }
        }
    }

    /// Poll `start` until it has nothing more, forwarding its media into the other
    /// transports, and poll those in turn.
    fn drain(&mut self, start: TransportId, now: Instant) {
        self.drain_list(&[start], now);
    }

    /// Poll every transport that received input since the last flush, once each: a batch
    /// of datagrams costs one poll per transport, not one per datagram.
    pub fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let ids = std::mem::take(&mut self.pending);
        for id in &ids {
            if let Some(t) = self.transports.get_mut(id) {
                t.queued = false;
            }
        }
        self.drain_list(&ids, self.last_now);
        let mut ids = ids;
        ids.clear();
        self.pending = ids;
    }

    fn drain_list(&mut self, start: &[TransportId], now: Instant) {
        let mut work = std::mem::take(&mut self.worklist);
        work.clear();
        work.extend_from_slice(start);
        while let Some(id) = work.pop() {
            let mut frames = std::mem::take(&mut self.scratch_frames);
            frames.clear();
            let mut added = false;
            if let Some(t) = self.transports.get_mut(&id) {
                loop {
                    if t.closed {
                        break;
                    }
                    let out = match t.rtc.poll_output() {
                        Ok(o) => o,
                        Err(e) => {
                            tracing::debug!(error = %e, "voice transport poll failed");
                            t.rtc.disconnect();
                            t.closed = true;
                            break;
                        }
                    };
                    match out {
                        Output::Transmit(tx) => self.transmits.push_back(tx),
                        Output::Timeout(at) => {
                            t.next_timeout = at;
                            if at < self.next_wake {
                                self.next_wake = at.max(now);
                            }
                            break;
                        }
                        Output::Event(ev) => match ev {
                            Event::Connected => {
                                t.connected = true;
                                self.events.push_back(SfuEvent::Connected {
                                    room: t.room,
                                    user: t.user,
                                });
                            }
                            Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                                t.closed = true;
                            }
                            Event::MediaAdded(m) if m.kind == MediaKind::Audio => {
                                added = true;
                                let (recv, send) = match m.direction {
                                    Direction::SendRecv => (true, true),
                                    Direction::RecvOnly => (true, false),
                                    Direction::SendOnly => (false, true),
                                    Direction::Inactive => (false, false),
                                };
                                if recv && t.producer.is_none() {
                                    t.producer = Some(Producer {
                                        mid: m.mid,
                                        frames: 0,
                                        speaking: false,
                                        last_loud: None,
                                    });
                                }
                                if send {
                                    t.slots.push(Slot {
                                        mid: m.mid,
                                        consumer: None,
                                    });
                                }
                            }
                            Event::MediaData(d) => frames.push(d),
                            _ => {}
                        },
                    }
                }
            }
            if added {
                if let Some(room) = self.transports.get(&id).map(|t| t.room) {
                    self.assign_slots(room);
                }
            }
            for d in frames.drain(..) {
                self.forward(id, d, now, &mut work);
            }
            self.scratch_frames = frames;
        }
        self.worklist = work;
    }

    /// Forward one frame of `from`'s producer to every consumer of it.
    fn forward(
        &mut self,
        from: TransportId,
        d: MediaData,
        now: Instant,
        work: &mut Vec<TransportId>,
    ) {
        let Some(t) = self.transports.get_mut(&from) else {
            return;
        };
        let Some(p) = t.producer.as_mut() else {
            return;
        };
        if p.mid != d.mid || t.server_mute {
            return;
        }
        p.frames += 1;
        let (room, speaker) = (t.room, t.user);
        let loud = d
            .ext_vals
            .audio_level
            .is_some_and(|l| l >= self.config.speaking_threshold_dbov)
            || d.ext_vals.voice_activity == Some(true);
        if loud {
            p.last_loud = Some(now);
            if !p.speaking {
                p.speaking = true;
                self.events.push_back(SfuEvent::Speaking {
                    room,
                    user: speaker,
                    speaking: true,
                });
            }
        }
        let Some(r) = self.routers.get(&room) else {
            return;
        };
        let mut targets = std::mem::take(&mut self.scratch_targets);
        targets.clear();
        for (&user, &tid) in &r.participants {
            if user == speaker {
                continue;
            }
            let Some(l) = self.transports.get(&tid) else {
                continue;
            };
            if l.server_deaf || !l.connected || l.closed {
                continue;
            }
            if let Some(i) = l
                .slots
                .iter()
                .position(|s| s.consumer.is_some_and(|c| c.speaker == speaker))
            {
                targets.push((tid, i));
            }
        }
        for &(tid, i) in &targets {
            let l = self.transports.get_mut(&tid).expect("live");
            let slot = &mut l.slots[i];
            let Some(writer) = l.rtc.writer(slot.mid) else {
                continue;
            };
            let Some(pt) = writer.match_params(d.params) else {
                continue;
            };
            let writer = match (d.ext_vals.audio_level, d.ext_vals.voice_activity) {
                (Some(level), va) => writer.audio_level(level, va.unwrap_or(loud)),
                _ => writer,
            };
            match writer.write(pt, d.network_time, d.time, d.data.clone()) {
                Ok(()) => {
                    if let Some(c) = slot.consumer.as_mut() {
                        c.frames += 1;
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "voice consumer write failed");
                }
            }
            if !work.contains(&tid) {
                work.push(tid);
            }
        }
        self.scratch_targets = targets;
    }
}
