//! The forwarding core, sans-I/O: it never touches a socket or a clock. The caller feeds it
//! datagrams ([`Sfu::handle_datagram`]) and time ([`Sfu::handle_timeout`]), and drains what
//! it wants sent ([`Sfu::poll_transmit`]) and what happened ([`Sfu::poll_event`]).
//!
//! The vocabulary is mediasoup's: a [`Router`] per room, one [`WebRtcTransport`] per
//! participant (one str0m [`Rtc`]), a [`Producer`] for the audio a participant sends and a
//! [`Consumer`] per (listener, speaker) pair. Media is forwarded without decoding, at the
//! RTP level (str0m's RTP mode: nothing is depacketized or packetized): each RTP packet a
//! producer sends is SRTP-decrypted once and its payload (shared, not copied) written into
//! every consumer of that producer with a new header: the listener's SSRC and payload type,
//! a sequence number and timestamp continuous per consumer slot (rebased when a slot is
//! handed to another speaker), and the RFC 6464 audio level. RTCP (receiver and sender
//! reports) is str0m's, per transport, so browsers see a well-behaved peer and keep sending.
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
use std::hash::{BuildHasherDefault, Hasher};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer};
use str0m::ice::StunMessage;
use str0m::media::{Direction, MediaKind, Mid, Pt};
use str0m::net::{DatagramRecv, Protocol, Receive, Transmit};
use str0m::rtp::{ExtensionValues, RtpPacket, RtpWrite, SeqNo, Ssrc};
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
    /// The SSRC its packets arrive with, once seen.
    ssrc: Option<Ssrc>,
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
    /// The listener's payload type for Opus on this m-line, once looked up.
    pt: Option<Pt>,
    /// The SSRC the listener sees on this m-line, once looked up.
    ssrc: Option<Ssrc>,
    /// Sequence number and timestamp continuity across speakers.
    seq: SlotSeq,
}

/// What the listener sees on one m-line is one RTP stream (one SSRC) whoever speaks on it:
/// sequence numbers and timestamps continue across a change of speaker. Within one speaker
/// they keep the producer's gaps, so the listener's jitter buffer sees real loss.
#[derive(Debug, Default)]
struct SlotSeq {
    /// The next packet starts a new speaker (or is the first): rebase the offsets.
    rebase: bool,
    started: bool,
    seq_offset: u64,
    ts_offset: u32,
    last_seq: u64,
    last_ts: u32,
}

/// Opus at 48 kHz, 20 ms frames: the timestamp step assumed across a change of speaker.
const OPUS_FRAME_TICKS: u32 = 960;

impl SlotSeq {
    fn new() -> Self {
        SlotSeq {
            rebase: true,
            ..SlotSeq::default()
        }
    }

    /// The sequence number, timestamp and marker bit to send `seq`/`ts` with.
    fn map(&mut self, seq: u64, ts: u32, marker: bool) -> (u64, u32, bool) {
        let mut marker = marker;
        if self.rebase {
            self.rebase = false;
            // The first packet keeps the 16-bit sequence number with no rollover count (the
            // listener assumes a ROC of 0); later speakers continue after the last one.
            let (next_seq, next_ts) = if self.started {
                (
                    self.last_seq + 1,
                    self.last_ts.wrapping_add(OPUS_FRAME_TICKS),
                )
            } else {
                (seq & 0xffff, ts)
            };
            self.seq_offset = next_seq.wrapping_sub(seq);
            self.ts_offset = next_ts.wrapping_sub(ts);
            self.started = true;
            self.last_seq = next_seq;
            self.last_ts = next_ts;
            // A new talkspurt as far as the listener's jitter buffer is concerned.
            marker = true;
        }
        let out_seq = seq.wrapping_add(self.seq_offset);
        let out_ts = ts.wrapping_add(self.ts_offset);
        if out_seq > self.last_seq {
            self.last_seq = out_seq;
            self.last_ts = out_ts;
        }
        (out_seq, out_ts, marker)
    }
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
    /// Packets were written or a timer is due: str0m needs a timeout before polling.
    drive: bool,
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
    routers: IdMap<RoomId, Router>,
    transports: IdMap<TransportId, WebRtcTransport>,
    by_ufrag: HashMap<String, TransportId>,
    by_addr: HashMap<SocketAddr, TransportId>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<SfuEvent>,
    next_wake: Instant,
    next_tick: Instant,
    // Scratch space reused for every forwarded packet.
    scratch_packets: Vec<RtpPacket>,
    scratch_targets: Vec<(TransportId, usize)>,
    /// Transports written to or read from since the last flush: each is driven and polled
    /// once per batch of datagrams, not once per packet.
    pending: Vec<TransportId>,
    last_now: Instant,
}

/// A map keyed by ids the server assigns (transports, rooms), looked up several times per
/// forwarded packet: a multiplicative hash instead of SipHash, which guards against keys an
/// attacker chooses (the maps keyed by ICE username and address keep SipHash).
type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        // FxHash's step.
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

/// How often eviction and speaking hangovers are checked.
const TICK: Duration = Duration::from_millis(50);

impl Sfu {
    /// An empty SFU.
    pub fn new(config: SfuConfig, now: Instant) -> Self {
        Sfu {
            config,
            next_id: 1,
            routers: IdMap::default(),
            transports: IdMap::default(),
            by_ufrag: HashMap::new(),
            by_addr: HashMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            next_wake: now + TICK,
            next_tick: now + TICK,
            scratch_packets: Vec::new(),
            scratch_targets: Vec::new(),
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
        // BUNDLE needs every m-line's mid to be unique (RFC 8843); str0m accepts repeats,
        // after which two consumers would share one m-line and the listener hears only one.
        let mut mids: Vec<&str> = offer_sdp
            .lines()
            .filter_map(|l| l.trim_end().strip_prefix("a=mid:"))
            .collect();
        let count = mids.len();
        mids.sort_unstable();
        mids.dedup();
        if mids.len() != count {
            return Err(JoinError::Rejected("an m-line's mid is repeated".into()));
        }
        let mut rtc = RtcConfig::new()
            .set_ice_lite(true)
            .set_rtp_mode(true)
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
            drive: false,
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
        // RFC 7983: 128..=191 is RTP or RTCP. str0m holds one received RTP packet until it is
        // polled, so take it now (the rest of the transport's output waits for the flush).
        if !is_stun && (128..192).contains(&data[0]) {
            let mut packets = std::mem::take(&mut self.scratch_packets);
            self.poll(id, now, true, &mut packets);
            for p in packets.drain(..) {
                self.forward(id, p, now);
            }
            self.scratch_packets = packets;
        }
    }

    /// Time passed: drive every transport whose timer is due, evict the dead and the silent,
    /// and end speaking after the hangover.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.flush();
        if now < self.next_wake {
            return;
        }
        self.last_now = self.last_now.max(now);
        for (id, t) in &mut self.transports {
            if t.next_timeout <= now {
                t.drive = true;
                if !t.queued {
                    t.queued = true;
                    self.pending.push(*id);
                }
            }
        }
        self.flush();
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
                slot.seq.rebase = true;
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

    /// Drive and poll `id` (e.g. after joining), forwarding whatever it produced.
    fn drain(&mut self, id: TransportId, now: Instant) {
        if let Some(t) = self.transports.get_mut(&id) {
            t.drive = true;
            if !t.queued {
                t.queued = true;
                self.pending.push(id);
            }
        }
        self.last_now = self.last_now.max(now);
        self.flush();
    }

    /// Drive every transport that received input or had packets written since the last
    /// flush, once each, and poll it until it has nothing more: a batch of datagrams costs
    /// one timeout and one poll loop per transport, not one per packet.
    pub fn flush(&mut self) {
        let now = self.last_now;
        let mut packets = std::mem::take(&mut self.scratch_packets);
        while !self.pending.is_empty() {
            let mut ids = std::mem::take(&mut self.pending);
            for &id in &ids {
                let Some(t) = self.transports.get_mut(&id) else {
                    continue;
                };
                t.queued = false;
                // A transport that only received has been driven by str0m's receive.
                if std::mem::take(&mut t.drive) && !t.closed {
                    if let Err(e) = t.rtc.handle_input(Input::Timeout(now)) {
                        tracing::debug!(error = %e, "voice transport failed on timeout");
                        t.rtc.disconnect();
                    }
                }
                self.poll(id, now, false, &mut packets);
                // Packets a poll surfaces (normally taken in handle_datagram) are forwarded,
                // which queues the consumers' transports for the next round.
                for p in packets.drain(..) {
                    self.forward(id, p, now);
                }
            }
            ids.clear();
            if self.pending.is_empty() {
                self.pending = ids;
            }
        }
        self.scratch_packets = packets;
    }

    /// Poll `id`'s output: transmits are queued, events handled, received RTP packets put in
    /// `packets`. Stops at the timeout (nothing more), or after the first RTP packet if
    /// `until_packet`.
    fn poll(
        &mut self,
        id: TransportId,
        now: Instant,
        until_packet: bool,
        packets: &mut Vec<RtpPacket>,
    ) {
        let Some(t) = self.transports.get_mut(&id) else {
            return;
        };
        let mut added = false;
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
                    Event::RtpPacket(p) => {
                        packets.push(p);
                        if until_packet {
                            break;
                        }
                    }
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
                                ssrc: None,
                            });
                        }
                        if send {
                            t.slots.push(Slot {
                                mid: m.mid,
                                consumer: None,
                                pt: None,
                                ssrc: None,
                                seq: SlotSeq::new(),
                            });
                        }
                    }
                    _ => {}
                },
            }
        }
        if added {
            let room = t.room;
            self.assign_slots(room);
        }
    }

    /// Forward one RTP packet of `from`'s producer to every consumer of it.
    fn forward(&mut self, from: TransportId, p: RtpPacket, now: Instant) {
        let Some(t) = self.transports.get_mut(&from) else {
            return;
        };
        let Some(producer) = t.producer.as_mut() else {
            return;
        };
        if producer.ssrc != Some(p.header.ssrc) {
            // Only the producer's m-line is forwarded (a browser may send on others).
            let mid = t
                .rtc
                .direct_api()
                .stream_rx(&p.header.ssrc)
                .map(|s| s.mid());
            if mid != Some(producer.mid) {
                return;
            }
            producer.ssrc = Some(p.header.ssrc);
        }
        if t.server_mute {
            return;
        }
        producer.frames += 1;
        let (room, speaker) = (t.room, t.user);
        let level = p.header.ext_vals.audio_level;
        let activity = p.header.ext_vals.voice_activity;
        let loud = level.is_some_and(|l| l >= self.config.speaking_threshold_dbov)
            || activity == Some(true);
        if loud {
            producer.last_loud = Some(now);
            if !producer.speaking {
                producer.speaking = true;
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
        let ext_vals = ExtensionValues {
            audio_level: level,
            voice_activity: level.map(|_| activity.unwrap_or(loud)),
            ..ExtensionValues::default()
        };
        let (seq, ts) = (*p.seq_no, p.header.timestamp);
        for &(tid, i) in &targets {
            let l = self.transports.get_mut(&tid).expect("live");
            let slot = &mut l.slots[i];
            if slot.pt.is_none() {
                slot.pt = l
                    .rtc
                    .media(slot.mid)
                    .and_then(|m| m.remote_pts().first().copied());
            }
            let Some(pt) = slot.pt else {
                continue;
            };
            let mut api = l.rtc.direct_api();
            // By SSRC (a hash lookup) once known; by mid (a scan of the m-lines) otherwise.
            let ssrc = match slot.ssrc.filter(|s| api.stream_tx(s).is_some()) {
                Some(s) => s,
                None => match api.stream_tx_by_mid(slot.mid, None) {
                    Some(stream) => stream.ssrc(),
                    None => continue,
                },
            };
            slot.ssrc = Some(ssrc);
            let Some(stream) = api.stream_tx(&ssrc) else {
                continue;
            };
            let (out_seq, out_ts, marker) = slot.seq.map(seq, ts, p.header.marker);
            stream.write_rtp(
                RtpWrite::new(pt, SeqNo::from(out_seq), out_ts, now, p.payload.clone())
                    .marker(marker)
                    .ext_vals(ext_vals.clone()),
            );
            if let Some(c) = slot.consumer.as_mut() {
                c.frames += 1;
            }
            l.drive = true;
            if !l.queued {
                l.queued = true;
                self.pending.push(tid);
            }
        }
        self.scratch_targets = targets;
    }
}

#[cfg(test)]
mod tests {
    use super::SlotSeq;

    #[test]
    fn a_slot_keeps_one_continuous_sequence_across_speakers_and_the_gaps_within_one() {
        let mut s = SlotSeq::new();
        // The first speaker's numbers are kept (without a rollover count), marker set.
        assert_eq!(s.map(70_000, 5_000, false), (70_000 & 0xffff, 5_000, true));
        assert_eq!(
            s.map(70_001, 5_960, false),
            ((70_000 & 0xffff) + 1, 5_960, false)
        );
        // A lost packet stays a gap for the listener.
        assert_eq!(
            s.map(70_003, 7_880, false),
            ((70_000 & 0xffff) + 3, 7_880, false)
        );
        // A late packet keeps its place and does not move the high-water mark.
        assert_eq!(
            s.map(70_002, 6_920, false),
            ((70_000 & 0xffff) + 2, 6_920, false)
        );
        let last = (70_000 & 0xffff) + 3;
        // Another speaker takes the slot: one frame later, new talkspurt.
        s.rebase = true;
        assert_eq!(s.map(10, 1_000_000, false), (last + 1, 7_880 + 960, true));
        assert_eq!(
            s.map(11, 1_000_960, false),
            (last + 2, 7_880 + 1_920, false)
        );
        // Timestamps wrap around u32 like RTP's.
        s.rebase = true;
        let (_, ts, _) = s.map(500, u32::MAX, false);
        assert_eq!(s.map(501, 959, false).1, ts.wrapping_add(960));
    }
}
