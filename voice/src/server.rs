//! The I/O around the sans-I/O [`Sfu`]: one UDP socket shared by every participant, read
//! and written by one task that owns the SFU, and a cloneable [`VoiceHandle`] through which
//! the rest of the process joins, mutes and removes participants and hears what happened.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::sfu::{JoinError, RoomId, Sfu, SfuConfig, SfuEvent, UserId};

/// Where the voice UDP port listens and what it announces.
#[derive(Clone, Debug)]
pub struct VoiceConfig {
    /// The address the UDP socket binds (port 0 picks one).
    pub listen: SocketAddr,
    /// The address put in SDP answers (the ICE host candidate). `None`: the bound address,
    /// with 127.0.0.1 in place of an unspecified IP. A port of 0 means the bound port.
    pub announced: Option<SocketAddr>,
    /// A participant silent (no datagram at all) for this long leaves its room.
    pub silence_timeout: Duration,
}

impl VoiceConfig {
    /// Listen on `listen`, announce it (or 127.0.0.1 for 0.0.0.0), 30 s silence timeout.
    pub fn new(listen: SocketAddr) -> Self {
        VoiceConfig {
            listen,
            announced: None,
            silence_timeout: Duration::from_secs(30),
        }
    }
}

/// One participant as the SFU sees it (for status and tests).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParticipantInfo {
    /// The user.
    pub user: UserId,
    /// ICE and DTLS are up.
    pub connected: bool,
    /// Server-muted.
    pub server_mute: bool,
    /// Server-deafened.
    pub server_deaf: bool,
    /// Frames received from its producer.
    pub produced: u64,
    /// Its consumers: (speaker, m-line, frames forwarded).
    pub consumers: Vec<(UserId, String, u64)>,
}

enum Command {
    Join {
        room: RoomId,
        user: UserId,
        offer: String,
        reply: oneshot::Sender<Result<String, JoinError>>,
    },
    Leave {
        room: RoomId,
        user: UserId,
    },
    Mute {
        room: RoomId,
        user: UserId,
        mute: bool,
    },
    Deaf {
        room: RoomId,
        user: UserId,
        deaf: bool,
    },
    Inspect {
        room: RoomId,
        reply: oneshot::Sender<Vec<ParticipantInfo>>,
    },
}

/// The running voice server: cheap to clone; the task stops when every handle is dropped.
#[derive(Clone)]
pub struct VoiceHandle {
    commands: mpsc::UnboundedSender<Command>,
    events: broadcast::Sender<SfuEvent>,
    local_addr: SocketAddr,
    announced: SocketAddr,
}

/// The voice server's task ended (it only ends when every handle is dropped).
#[derive(Debug, thiserror::Error)]
#[error("the voice server is not running")]
pub struct Stopped;

impl VoiceHandle {
    /// Bind the UDP socket and start the SFU task on the current runtime.
    pub async fn start(config: VoiceConfig) -> io::Result<VoiceHandle> {
        let socket = UdpSocket::from_std(bind_udp(config.listen)?)?;
        let local_addr = socket.local_addr()?;
        let mut announced = config.announced.unwrap_or(local_addr);
        if announced.ip().is_unspecified() {
            announced.set_ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
        }
        if announced.port() == 0 {
            announced.set_port(local_addr.port());
        }
        let mut sfu_config = SfuConfig::new(announced);
        sfu_config.silence_timeout = config.silence_timeout;
        let (commands, rx) = mpsc::unbounded_channel();
        let (events, _) = broadcast::channel(4096);
        tokio::spawn(run(
            socket,
            Sfu::new(sfu_config, Instant::now()),
            rx,
            events.clone(),
        ));
        tracing::info!(%local_addr, %announced, "voice UDP listening");
        Ok(VoiceHandle {
            commands,
            events,
            local_addr,
            announced,
        })
    }

    /// The bound UDP address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address in SDP answers.
    pub fn announced(&self) -> SocketAddr {
        self.announced
    }

    /// Join `room` as `user` with an SDP offer; returns the SDP answer. Replaces the user's
    /// previous transport in that room.
    pub async fn join(
        &self,
        room: RoomId,
        user: UserId,
        offer: String,
    ) -> Result<Result<String, JoinError>, Stopped> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Join {
                room,
                user,
                offer,
                reply,
            })
            .map_err(|_| Stopped)?;
        rx.await.map_err(|_| Stopped)
    }

    /// Remove `user` from `room`.
    pub fn leave(&self, room: RoomId, user: UserId) {
        let _ = self.commands.send(Command::Leave { room, user });
    }

    /// Server mute on or off: forwarding from the participant stops at once.
    pub fn set_server_mute(&self, room: RoomId, user: UserId, mute: bool) {
        let _ = self.commands.send(Command::Mute { room, user, mute });
    }

    /// Server deafen on or off: forwarding to the participant stops at once.
    pub fn set_server_deaf(&self, room: RoomId, user: UserId, deaf: bool) {
        let _ = self.commands.send(Command::Deaf { room, user, deaf });
    }

    /// Who is in `room`, with forwarding counters.
    pub async fn inspect(&self, room: RoomId) -> Result<Vec<ParticipantInfo>, Stopped> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Inspect { room, reply })
            .map_err(|_| Stopped)?;
        rx.await.map_err(|_| Stopped)
    }

    /// Everything the SFU reports from now on (joins, leaves, speaking, consumers).
    pub fn subscribe(&self) -> broadcast::Receiver<SfuEvent> {
        self.events.subscribe()
    }
}

/// A non-blocking UDP socket with 4 MiB buffers (capped by `net.core.rmem_max` and
/// `wmem_max`): one socket carries every participant's media, and a burst while the task
/// is descheduled must not overflow the kernel's default ~200 KiB.
pub fn bind_udp(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    let _ = socket.set_recv_buffer_size(4 << 20);
    let _ = socket.set_send_buffer_size(4 << 20);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

fn inspect(sfu: &Sfu, room: RoomId) -> Vec<ParticipantInfo> {
    let Some(router) = sfu.router(room) else {
        return Vec::new();
    };
    router
        .participants()
        .filter_map(|(user, _)| {
            let t = sfu.transport(room, user)?;
            Some(ParticipantInfo {
                user,
                connected: t.is_connected(),
                server_mute: t.server_mute(),
                server_deaf: t.server_deaf(),
                produced: t.producer().map_or(0, |p| p.frames),
                consumers: t
                    .consumers()
                    .map(|(mid, c)| (c.speaker, mid, c.frames))
                    .collect(),
            })
        })
        .collect()
}

async fn run(
    socket: UdpSocket,
    mut sfu: Sfu,
    mut commands: mpsc::UnboundedReceiver<Command>,
    events: broadcast::Sender<SfuEvent>,
) {
    let mut buf = vec![0u8; 2048];
    loop {
        let deadline = sfu.poll_timeout();
        tokio::select! {
            biased;
            cmd = commands.recv() => {
                let Some(cmd) = cmd else { break };
                let now = Instant::now();
                match cmd {
                    Command::Join { room, user, offer, reply } => {
                        let r = sfu.join(now, room, user, &offer).map(|(_, a)| a.to_sdp_string());
                        let _ = reply.send(r);
                    }
                    Command::Leave { room, user } => sfu.leave(room, user),
                    Command::Mute { room, user, mute } => {
                        sfu.set_server_mute(room, user, mute);
                    }
                    Command::Deaf { room, user, deaf } => {
                        sfu.set_server_deaf(room, user, deaf);
                    }
                    Command::Inspect { room, reply } => {
                        let _ = reply.send(inspect(&sfu, room));
                    }
                }
            }
            r = socket.recv_from(&mut buf) => {
                if let Ok((n, source)) = r {
                    let now = Instant::now();
                    sfu.handle_datagram(now, source, &buf[..n]);
                    // Take what else is queued without going back to the reactor.
                    for _ in 0..256 {
                        match socket.try_recv_from(&mut buf) {
                            Ok((n, source)) => sfu.handle_datagram(now, source, &buf[..n]),
                            Err(_) => break,
                        }
                    }
                }
            }
            _ = tokio::time::sleep_until(deadline.into()) => {}
        }
        sfu.handle_timeout(Instant::now());
        while let Some(t) = sfu.poll_transmit() {
            match socket.try_send_to(&t.contents, t.destination) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let _ = socket.send_to(&t.contents, t.destination).await;
                }
                Err(e) => tracing::debug!(error = %e, to = %t.destination, "voice send failed"),
            }
        }
        while let Some(e) = sfu.poll_event() {
            let _ = events.send(e);
        }
    }
}
