//! Voice tokens: what VOICE_SERVER_UPDATE's `token` carries and the voice WebSocket's
//! IDENTIFY presents. A token is `base64url(grant JSON) "." base64url(HMAC-SHA256)` under a
//! secret the gateway and the voice nodes share, so a voice node verifies it without a
//! database or a round trip, and a token names exactly one user, session and room.

use std::future::Future;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// What a voice token grants: `user` (gateway session `session_id`) may join the room of
/// `channel_id` in `guild_id` until `expires_at` (Unix seconds).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VoiceGrant {
    /// The guild (IDENTIFY's `server_id`).
    pub guild_id: u64,
    /// The voice channel: the room.
    pub channel_id: u64,
    /// The user.
    pub user_id: u64,
    /// The gateway session that asked to join.
    pub session_id: String,
    /// Unix seconds after which the token is refused.
    pub expires_at: u64,
    /// Server-muted when the token was issued (the SFU starts with it).
    #[serde(default)]
    pub mute: bool,
    /// Server-deafened when the token was issued.
    #[serde(default)]
    pub deaf: bool,
}

/// IDENTIFY's payload, as the client sent it.
#[derive(Clone, Debug, Deserialize)]
pub struct Identify {
    /// The guild id (a snowflake string).
    pub server_id: String,
    /// The user id (a snowflake string).
    pub user_id: String,
    /// The gateway session id from READY.
    pub session_id: String,
    /// VOICE_SERVER_UPDATE's token.
    pub token: String,
}

/// Why IDENTIFY was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The token is not one we issued, has expired, or names someone else.
    #[error("authentication failed")]
    Failed,
    /// The token is valid but for a room this node does not serve.
    #[error("server not found")]
    ServerNotFound,
}

/// Decides whether an IDENTIFY may join, and which room.
pub trait VoiceAuth: Send + Sync + 'static {
    /// Check `identify`; the grant names the room.
    fn verify(
        &self,
        identify: &Identify,
    ) -> impl Future<Output = Result<VoiceGrant, AuthError>> + Send;
}

/// Issues and verifies HMAC-signed voice tokens.
#[derive(Clone)]
pub struct VoiceTokens {
    secret: Vec<u8>,
}

type HmacSha256 = Hmac<Sha256>;

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl VoiceTokens {
    /// Tokens under `secret` (shared by every node that issues or verifies them).
    pub fn new(secret: impl Into<Vec<u8>>) -> Self {
        VoiceTokens {
            secret: secret.into(),
        }
    }

    fn mac(&self, payload: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.secret).expect("HMAC takes any key length");
        mac.update(payload);
        mac
    }

    /// A token for `grant`.
    pub fn issue(&self, grant: &VoiceGrant) -> String {
        let payload = serde_json::to_vec(grant).expect("a grant serializes");
        let sig = self.mac(&payload).finalize().into_bytes();
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&payload),
            URL_SAFE_NO_PAD.encode(sig)
        )
    }

    /// The grant in `token` if we signed it and it has not expired.
    pub fn decode(&self, token: &str) -> Option<VoiceGrant> {
        let (payload, sig) = token.split_once('.')?;
        let payload = URL_SAFE_NO_PAD.decode(payload).ok()?;
        let sig = URL_SAFE_NO_PAD.decode(sig).ok()?;
        self.mac(&payload).verify_slice(&sig).ok()?;
        let grant: VoiceGrant = serde_json::from_slice(&payload).ok()?;
        (grant.expires_at >= unix_now()).then_some(grant)
    }
}

impl VoiceAuth for VoiceTokens {
    async fn verify(&self, identify: &Identify) -> Result<VoiceGrant, AuthError> {
        let grant = self.decode(&identify.token).ok_or(AuthError::Failed)?;
        let same = identify.server_id == grant.guild_id.to_string()
            && identify.user_id == grant.user_id.to_string()
            && identify.session_id == grant.session_id;
        if same {
            Ok(grant)
        } else {
            Err(AuthError::Failed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(expires_at: u64) -> VoiceGrant {
        VoiceGrant {
            guild_id: 1,
            channel_id: 2,
            user_id: 3,
            session_id: "s".into(),
            expires_at,
            mute: false,
            deaf: true,
        }
    }

    #[test]
    fn a_token_round_trips_and_a_tampered_or_expired_one_does_not() {
        let tokens = VoiceTokens::new("secret");
        let g = grant(unix_now() + 60);
        let t = tokens.issue(&g);
        assert_eq!(tokens.decode(&t), Some(g));
        assert!(VoiceTokens::new("other").decode(&t).is_none());
        let mut tampered = t.clone();
        tampered.insert(0, 'x');
        assert!(tokens.decode(&tampered).is_none());
        assert!(tokens
            .decode(&tokens.issue(&grant(unix_now() - 1)))
            .is_none());
        assert!(tokens.decode("garbage").is_none());
    }
}
