//! The voice part of a node: the SFU's UDP port, the voice WebSocket (`/voice` on the HTTP
//! listener), and the loop that keeps the SFU in line with the log: a voice state that
//! leaves or moves a room disconnects the old room's connection, server mute and deafen
//! apply at once, and a participant the SFU drops (dead or silent transport) has its voice
//! state cleared.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::ValueEnum;
use serde_json::Value;

/// What a node serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Role {
    /// REST, gateway and voice (the embedded shape).
    All,
    /// REST and gateway, no voice.
    Api,
    /// Voice only: the SFU and the voice WebSocket.
    Voice,
}

/// Voice flags of `chorus serve`.
#[derive(clap::Args, Debug, Clone)]
pub struct VoiceArgs {
    /// What this node serves: all (REST, gateway, voice), api (no voice) or voice (only
    /// the SFU and the voice WebSocket).
    #[arg(long, env = "CHORUS_ROLE", value_enum, default_value_t = Role::All)]
    pub role: Role,
    /// UDP address of the SFU: one port for every participant. Port 0 picks one.
    #[arg(long, env = "CHORUS_VOICE_UDP", default_value = "127.0.0.1:0")]
    pub voice_udp: SocketAddr,
    /// Address announced to clients for media (behind NAT: the public IP), as IP or
    /// IP:port. Default: the UDP address (127.0.0.1 when it is 0.0.0.0).
    #[arg(long, env = "CHORUS_VOICE_ANNOUNCED")]
    pub voice_announced: Option<String>,
    /// This node's voice endpoint as clients reach its HTTP listener (host:port), sent in
    /// VOICE_SERVER_UPDATE. Default: the bind address.
    #[arg(long, env = "CHORUS_VOICE_ENDPOINT")]
    pub voice_endpoint: Option<String>,
    /// Every voice node's endpoint, comma-separated, the same on every node: rooms are
    /// placed over them. Default: this node's endpoint.
    #[arg(long, env = "CHORUS_VOICE_ENDPOINTS", value_delimiter = ',')]
    pub voice_endpoints: Vec<String>,
    /// Secret that signs voice tokens, the same on every node. Default: random, which only
    /// works when one node both issues and serves them.
    #[arg(long, env = "CHORUS_VOICE_SECRET")]
    pub voice_secret: Option<String>,
    /// A participant from whom nothing arrived for this long (ms) leaves the room.
    #[arg(
        long,
        env = "CHORUS_VOICE_SILENCE_TIMEOUT_MS",
        default_value_t = 30_000
    )]
    pub voice_silence_timeout_ms: u64,
}

impl VoiceArgs {
    /// Checks the flags.
    pub fn validate(&self) -> anyhow::Result<()> {
        if let Some(a) = &self.voice_announced {
            parse_announced(a)?;
        }
        if self.voice_silence_timeout_ms < 1000 {
            bail!("--voice-silence-timeout-ms must be at least 1000");
        }
        for e in self.voice_endpoints.iter().chain(&self.voice_endpoint) {
            if e.is_empty() || e.contains("://") || e.contains('/') {
                bail!("voice endpoints are host:port (no scheme, no path), got {e:?}");
            }
        }
        Ok(())
    }

    /// Whether this node runs the SFU.
    pub fn serves_voice(&self) -> bool {
        self.role != Role::Api
    }

    /// Whether this node serves REST and the gateway.
    pub fn serves_api(&self) -> bool {
        self.role != Role::Voice
    }

    fn endpoint(&self, bind: SocketAddr) -> String {
        self.voice_endpoint
            .clone()
            .unwrap_or_else(|| bind.to_string())
    }

    /// How the gateway answers op 4: tokens under the shared secret, rooms placed over
    /// the voice endpoints.
    pub fn routing(&self, bind: SocketAddr) -> voice::placement::VoiceRouting {
        voice::placement::VoiceRouting {
            tokens: voice::token::VoiceTokens::new(self.secret()),
            placement: self.placement(bind),
            token_ttl: Duration::from_secs(600),
        }
    }

    fn placement(&self, bind: SocketAddr) -> voice::placement::Placement {
        let endpoints = if self.voice_endpoints.is_empty() {
            vec![self.endpoint(bind)]
        } else {
            self.voice_endpoints.clone()
        };
        voice::placement::Placement::new(endpoints)
    }

    fn secret(&self) -> String {
        static RANDOM: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        match &self.voice_secret {
            Some(s) => s.clone(),
            None => RANDOM
                .get_or_init(|| {
                    use rand::Rng;
                    let bytes: [u8; 32] = rand::thread_rng().gen();
                    hex::encode(bytes)
                })
                .clone(),
        }
    }
}

fn parse_announced(a: &str) -> anyhow::Result<SocketAddr> {
    if let Ok(addr) = a.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let ip: IpAddr = a
        .parse()
        .with_context(|| format!("--voice-announced must be an IP or IP:port, got {a:?}"))?;
    Ok(SocketAddr::new(ip, 0))
}

/// Starts the SFU and returns the voice WebSocket's routes.
pub async fn start(
    args: &VoiceArgs,
    bind: SocketAddr,
    commands: Arc<commands::Commands>,
    bus: Arc<dyn bus::Bus>,
) -> anyhow::Result<axum::Router> {
    let mut config = voice::server::VoiceConfig::new(args.voice_udp);
    config.announced = args
        .voice_announced
        .as_deref()
        .map(parse_announced)
        .transpose()?;
    config.silence_timeout = Duration::from_millis(args.voice_silence_timeout_ms);
    let handle = voice::server::VoiceHandle::start(config)
        .await
        .with_context(|| format!("cannot bind the voice UDP port {}", args.voice_udp))?;
    let me = args.endpoint(bind);
    let placement = args.placement(bind);
    if !placement.endpoints().contains(&me) {
        tracing::warn!(endpoint = %me, endpoints = ?placement.endpoints(), "this node's voice endpoint is not among --voice-endpoints: no room will be placed on it");
    }
    let auth = voice::placement::NodeAuth {
        tokens: voice::token::VoiceTokens::new(args.secret()),
        placement,
        me: me.clone(),
    };
    let gateway = voice::signalling::VoiceGateway::new(handle.clone(), auth);
    let subscription = bus
        .subscribe("chorus.guild.>")
        .await
        .context("cannot subscribe to guild events for voice")?;
    tokio::spawn(follow_log(subscription, gateway.clone()));
    tokio::spawn(clear_departed(gateway.departures(), commands));
    // Tests and scripts read this line.
    println!(
        "chorus voice on udp {} (announced {}), websocket ws://{me}/voice",
        handle.local_addr(),
        handle.announced()
    );
    Ok(gateway.routes())
}

fn id(v: &Value) -> Option<u64> {
    match v {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

/// Applies what the log says about voice to this node's rooms.
async fn follow_log<A: voice::token::VoiceAuth>(
    mut sub: bus::BusSubscription,
    gateway: voice::signalling::VoiceGateway<A>,
) {
    while let Some(msg) = sub.next().await {
        let Ok(env) = bus::Envelope::from_bytes(&msg.payload) else {
            continue;
        };
        let Some(guild) = env.guild_id else {
            continue;
        };
        let d = &env.data;
        match env.event_type.as_str() {
            "VoiceStateChanged" => {
                let Some(user) = id(&d["user_id"]) else {
                    continue;
                };
                gateway.follow_voice_state(guild, user, id(&d["channel_id"]));
                if let (Some(mute), Some(deaf)) = (d["mute"].as_bool(), d["deaf"].as_bool()) {
                    gateway.set_member_voice(guild, user, mute, deaf);
                }
            }
            "MemberUpdated" => {
                let Some(user) = id(&d["user"]["id"]) else {
                    continue;
                };
                if let (Some(mute), Some(deaf)) = (d["mute"].as_bool(), d["deaf"].as_bool()) {
                    gateway.set_member_voice(guild, user, mute, deaf);
                }
            }
            "MemberRemoved" | "MemberBanned" => {
                if let Some(user) = id(&d["user"]["id"]) {
                    gateway.follow_voice_state(guild, user, None);
                }
            }
            _ => {}
        }
    }
}

/// Clears the voice state of participants the SFU dropped.
async fn clear_departed(
    mut departures: tokio::sync::broadcast::Receiver<voice::signalling::Departure>,
    commands: Arc<commands::Commands>,
) {
    loop {
        let d = match departures.recv().await {
            Ok(d) => d,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
            Err(_) => return,
        };
        let user = domain::UserId::new(d.user_id);
        let ctx = commands::Context::user(user, format!("voice-departure-{}", d.channel_id));
        if let Err(e) = commands
            .drop_voice_state(&ctx, domain::GuildId::new(d.guild_id), user)
            .await
        {
            tracing::warn!(error = %e, user = d.user_id, "cannot clear a departed voice state");
        }
    }
}
