//! A str0m-based voice client peer, for tests and benchmarks: a real WebRTC endpoint (ICE,
//! DTLS, SRTP) on its own UDP socket that offers one `sendonly` audio m-line (its producer)
//! and some `recvonly` ones (consumer slots), sends fake Opus frames tagged with its user id
//! every 20 ms, and counts what it receives per sender. It works at the RTP level (str0m's
//! RTP mode: one Opus frame per packet, nothing to depacketize), which keeps a swarm of
//! peers cheap enough to load the SFU rather than itself.
//!
//! [`Swarm`] drives many peers on one thread.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::media::{Direction, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{ExtensionValues, RtpPacket, RtpWrite, SeqNo};
use str0m::{Candidate, Event, Input, Output, Rtc, RtcConfig};

/// Frames of one sender as received by one peer.
#[derive(Clone, Debug, Default)]
pub struct Received {
    /// Frames received.
    pub frames: u64,
    /// When the last one arrived.
    pub last: Option<Instant>,
    /// The m-lines they arrived on.
    pub mids: Vec<String>,
    /// The highest frame number (the sender's count, carried in the frame) seen.
    pub highest: Option<u64>,
    /// Frames that arrived after a later one (reordered or duplicated).
    pub late: u64,
    /// The RFC 6464 audio level (dBov) on the last one, if it carried one.
    pub level: Option<i8>,
}

/// A client peer. See the module docs.
pub struct ClientPeer {
    /// The user id it tags its frames with.
    pub user: u64,
    rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
    pending: Option<SdpPendingOffer>,
    send_mid: Mid,
    /// Connected (ICE + DTLS).
    pub connected: bool,
    /// Send a frame every 20 ms while connected.
    pub sending: bool,
    /// RFC 6464 level (dBov) put on sent frames.
    pub level: i8,
    /// Frames sent.
    pub sent: u64,
    next_send: Option<Instant>,
    /// What arrived, per sender user id.
    pub received: HashMap<u64, Received>,
    /// Frames that arrived without a recognisable tag.
    pub garbage: u64,
    /// The transport failed.
    pub failed: bool,
    buf: Vec<u8>,
    wake: Instant,
}

impl ClientPeer {
    /// A peer on a fresh UDP socket at `ip`, with `slots` receive m-lines; returns it and
    /// its SDP offer.
    pub fn new(user: u64, ip: IpAddr, slots: usize) -> io::Result<(ClientPeer, String)> {
        let socket: UdpSocket = crate::server::bind_udp(SocketAddr::new(ip, 0))?;
        let local = socket.local_addr()?;
        let now = Instant::now();
        // str0m 0.24 draws each new m-line's 3-character mid at random and checks it only
        // against m-lines already negotiated, not against the others in the same offer: with
        // 20 m-lines about 1 offer in 1,200 repeats a mid (the SFU rejects such an offer).
        // Draw again until they are unique.
        let (rtc, send_mid, offer, pending) = loop {
            let mut rtc = RtcConfig::new()
                .set_rtp_mode(true)
                .clear_codecs()
                .enable_opus(true, false)
                .build(now);
            let candidate = Candidate::host(local, "udp").map_err(io::Error::other)?;
            rtc.add_local_candidate(candidate);
            let mut change = rtc.sdp_api();
            let mut mids = vec![change.add_media(
                MediaKind::Audio,
                Direction::SendOnly,
                Some(user.to_string()),
                None,
                None,
            )];
            for _ in 0..slots {
                mids.push(change.add_media(
                    MediaKind::Audio,
                    Direction::RecvOnly,
                    None,
                    None,
                    None,
                ));
            }
            let (offer, pending) = change.apply().expect("a change with media");
            let send_mid = mids[0];
            mids.sort_unstable();
            mids.dedup();
            if mids.len() == slots + 1 {
                break (rtc, send_mid, offer, pending);
            }
        };
        Ok((
            ClientPeer {
                user,
                rtc,
                socket,
                local,
                pending: Some(pending),
                send_mid,
                connected: false,
                sending: true,
                level: -20,
                sent: 0,
                next_send: None,
                received: HashMap::new(),
                garbage: 0,
                failed: false,
                buf: vec![0; 2048],
                wake: now,
            },
            offer.to_sdp_string(),
        ))
    }

    /// Apply the server's SDP answer.
    pub fn accept_answer(&mut self, answer: &str) -> Result<(), String> {
        let answer = SdpAnswer::from_sdp_string(answer).map_err(|e| e.to_string())?;
        let pending = self.pending.take().ok_or("no pending offer")?;
        self.rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .map_err(|e| e.to_string())
    }

    /// Frames received from `user`.
    pub fn frames_from(&self, user: u64) -> u64 {
        self.received.get(&user).map_or(0, |r| r.frames)
    }

    /// Senders heard so far, sorted.
    pub fn heard(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self.received.keys().copied().collect();
        v.sort_unstable();
        v
    }

    /// Stop this peer's transport (it sends nothing more).
    pub fn close(&mut self) {
        self.rtc.disconnect();
        self.failed = true;
    }

    /// Read what arrived, send what is due; returns when it wants to run again.
    pub fn step(&mut self, now: Instant) -> Instant {
        if self.failed {
            return now + Duration::from_millis(50);
        }
        let mut active = false;
        while let Ok((n, source)) = self.socket.recv_from(&mut self.buf) {
            active = true;
            let Ok(r) = Receive::new(Protocol::Udp, source, self.local, &self.buf[..n]) else {
                continue;
            };
            if self.rtc.handle_input(Input::Receive(now, r)).is_err() {
                self.failed = true;
                return now + Duration::from_millis(50);
            }
            // str0m holds one received RTP packet until polled: take it before the next.
            self.poll(now, true);
        }
        if !active && now < self.wake {
            return self.wake;
        }
        if self.connected && self.sending && self.next_send.is_none_or(|t| t <= now) {
            self.send_frame(now);
            // A real sender does not catch up on frames it missed: at most one late frame.
            let next = self.next_send.map_or(now, |t| t) + Duration::from_millis(20);
            self.next_send = Some(if next < now {
                now + Duration::from_millis(20)
            } else {
                next
            });
        }
        if self.rtc.handle_input(Input::Timeout(now)).is_err() {
            self.failed = true;
        }
        let mut wake = self.poll(now, false).min(now + Duration::from_millis(20));
        if let Some(t) = self.next_send {
            if self.sending && self.connected {
                wake = wake.min(t);
            }
        }
        self.wake = wake;
        wake
    }

    /// Poll str0m's output: send transmits, count received packets. Stops at the timeout,
    /// which it returns, or after the first RTP packet if `until_packet`.
    fn poll(&mut self, now: Instant, until_packet: bool) -> Instant {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Transmit(t)) => {
                    let _ = self.socket.send_to(&t.contents, t.destination);
                }
                Ok(Output::Timeout(t)) => return t,
                Ok(Output::Event(e)) => match e {
                    Event::Connected => self.connected = true,
                    Event::RtpPacket(p) => {
                        self.count(now, &p);
                        if until_packet {
                            return now;
                        }
                    }
                    _ => {}
                },
                Err(_) => {
                    self.failed = true;
                    return now + Duration::from_millis(50);
                }
            }
        }
    }

    fn count(&mut self, now: Instant, p: &RtpPacket) {
        if p.payload.len() < 16 {
            self.garbage += 1;
            return;
        }
        let from = u64::from_be_bytes(p.payload[..8].try_into().expect("8 bytes"));
        let mid = self
            .rtc
            .direct_api()
            .stream_rx(&p.header.ssrc)
            .map(|s| s.mid());
        let n = u64::from_be_bytes(p.payload[8..16].try_into().expect("8 bytes"));
        let r = self.received.entry(from).or_default();
        r.frames += 1;
        r.last = Some(now);
        r.level = p.header.ext_vals.audio_level;
        if r.highest.is_some_and(|h| n <= h) {
            r.late += 1;
        } else {
            r.highest = Some(n);
        }
        if let Some(mid) = mid {
            if !r.mids.iter().any(|m| **m == *mid) {
                r.mids.push(mid.to_string());
            }
        }
    }

    fn send_frame(&mut self, now: Instant) {
        let Some(pt) = self
            .rtc
            .media(self.send_mid)
            .and_then(|m| m.remote_pts().first().copied())
        else {
            return;
        };
        let mut api = self.rtc.direct_api();
        let Some(stream) = api.stream_tx_by_mid(self.send_mid, None) else {
            return;
        };
        // A 60-byte "Opus frame" (a 20 ms frame at ~24 kbit/s): sender, sequence, filler.
        let mut frame = Vec::with_capacity(60);
        frame.extend_from_slice(&self.user.to_be_bytes());
        frame.extend_from_slice(&self.sent.to_be_bytes());
        frame.resize(60, 0xf8);
        let ext_vals = ExtensionValues {
            audio_level: Some(self.level),
            voice_activity: Some(self.level >= -50),
            ..ExtensionValues::default()
        };
        // 48 kHz RTP clock, 960 ticks per 20 ms frame; sequence numbers from 1.
        let time = (self.sent * 960) as u32;
        stream.write_rtp(
            RtpWrite::new(pt, SeqNo::from(self.sent + 1), time, now, frame)
                .marker(self.sent == 0)
                .ext_vals(ext_vals),
        );
        self.sent += 1;
    }
}

/// Many [`ClientPeer`]s driven by one thread until dropped.
pub struct Swarm {
    peers: Arc<Mutex<Vec<ClientPeer>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Swarm {
    /// Start driving `peers`, waking at most every 2 ms.
    pub fn start(peers: Vec<ClientPeer>) -> Swarm {
        Swarm::start_with_tick(peers, Duration::from_millis(2))
    }

    /// Start driving `peers`, waking at most every `tick` (a longer tick costs less CPU
    /// with many peers).
    pub fn start_with_tick(peers: Vec<ClientPeer>, tick: Duration) -> Swarm {
        let peers = Arc::new(Mutex::new(peers));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (peers.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let now = Instant::now();
                let mut wake = now + Duration::from_millis(5);
                for peer in p.lock().expect("swarm lock").iter_mut() {
                    wake = wake.min(peer.step(now));
                }
                let sleep = wake
                    .saturating_duration_since(Instant::now())
                    .clamp(tick / 4, tick);
                std::thread::sleep(sleep);
            }
        });
        Swarm {
            peers,
            stop,
            thread: Some(thread),
        }
    }

    /// Lock the peers to look at or change them.
    pub fn peers(&self) -> MutexGuard<'_, Vec<ClientPeer>> {
        self.peers.lock().expect("swarm lock")
    }

    /// Wait until `f` holds, polling every 10 ms; false after `timeout`.
    pub fn wait_until(&self, timeout: Duration, mut f: impl FnMut(&[ClientPeer]) -> bool) -> bool {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            if f(&self.peers()) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        f(&self.peers())
    }
}

impl Drop for Swarm {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
