//! Where rooms live in a cluster, and what the gateway tells a joining client.
//!
//! Every node is configured with the same list of voice endpoints (`host:port` of the voice
//! nodes' HTTP listeners). A room is placed on one of them by rendezvous hashing of its
//! channel id, so every gateway node picks the same voice node for a room without talking
//! to anyone, and adding a node moves only the rooms that land on it. A voice node refuses
//! (close 4011) a token for a room placed elsewhere.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use crate::token::{AuthError, Identify, VoiceAuth, VoiceGrant, VoiceTokens};

/// The voice endpoints of the cluster.
#[derive(Clone, Debug)]
pub struct Placement {
    endpoints: Vec<String>,
}

impl Placement {
    /// Rooms placed over `endpoints` (at least one; duplicates removed, order irrelevant).
    pub fn new(mut endpoints: Vec<String>) -> Self {
        endpoints.sort();
        endpoints.dedup();
        assert!(
            !endpoints.is_empty(),
            "a placement needs at least one voice endpoint"
        );
        Placement { endpoints }
    }

    /// The endpoints.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// The endpoint that holds `channel_id`'s room.
    pub fn endpoint_for(&self, channel_id: u64) -> &str {
        self.endpoints
            .iter()
            .max_by_key(|e| {
                let mut h = Sha256::new();
                h.update(channel_id.to_be_bytes());
                h.update(e.as_bytes());
                let d = h.finalize();
                u64::from_be_bytes(d[..8].try_into().expect("8 bytes"))
            })
            .expect("at least one endpoint")
    }
}

/// What a gateway node needs to answer op 4: the token secret and the placement.
#[derive(Clone)]
pub struct VoiceRouting {
    /// Signs the tokens.
    pub tokens: VoiceTokens,
    /// Where rooms live.
    pub placement: Placement,
    /// How long a token may be used to IDENTIFY.
    pub token_ttl: Duration,
}

impl std::fmt::Debug for VoiceRouting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VoiceRouting")
            .field("tokens", &"<secret>")
            .field("placement", &self.placement)
            .field("token_ttl", &self.token_ttl)
            .finish()
    }
}

/// VOICE_SERVER_UPDATE's `token` and `endpoint`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerUpdate {
    /// The voice token.
    pub token: String,
    /// `host:port/voice`: the client opens `ws://{endpoint}?v=8`.
    pub endpoint: String,
}

impl VoiceRouting {
    /// The token and endpoint for `user`'s session `session_id` joining `channel_id`.
    pub fn server_update(
        &self,
        guild_id: u64,
        channel_id: u64,
        user_id: u64,
        session_id: &str,
        mute: bool,
        deaf: bool,
    ) -> ServerUpdate {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let token = self.tokens.issue(&VoiceGrant {
            guild_id,
            channel_id,
            user_id,
            session_id: session_id.to_owned(),
            expires_at: now + self.token_ttl.as_secs(),
            mute,
            deaf,
        });
        ServerUpdate {
            token,
            endpoint: format!("{}/voice", self.placement.endpoint_for(channel_id)),
        }
    }
}

/// A voice node's admission: a valid token for a room placed on this node.
#[derive(Clone)]
pub struct NodeAuth {
    /// Verifies the tokens.
    pub tokens: VoiceTokens,
    /// Where rooms live.
    pub placement: Placement,
    /// This node's endpoint, as listed in the placement.
    pub me: String,
}

impl VoiceAuth for NodeAuth {
    async fn verify(&self, identify: &Identify) -> Result<VoiceGrant, AuthError> {
        let grant = self.tokens.verify(identify).await?;
        if self.placement.endpoint_for(grant.channel_id) != self.me {
            return Err(AuthError::ServerNotFound);
        }
        Ok(grant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_is_stable_spread_and_moves_few_rooms_when_a_node_is_added() {
        let two = Placement::new(vec!["b:1".into(), "a:1".into()]);
        let same = Placement::new(vec!["a:1".into(), "b:1".into(), "a:1".into()]);
        let three = Placement::new(vec!["a:1".into(), "b:1".into(), "c:1".into()]);
        let mut on_a = 0;
        let mut moved = 0;
        for room in 0..1000u64 {
            assert_eq!(two.endpoint_for(room), same.endpoint_for(room));
            if two.endpoint_for(room) == "a:1" {
                on_a += 1;
            }
            if two.endpoint_for(room) != three.endpoint_for(room) {
                moved += 1;
                assert_eq!(
                    three.endpoint_for(room),
                    "c:1",
                    "only rooms that land on the new node move"
                );
            }
        }
        assert!((350..650).contains(&on_a), "{on_a} of 1000 on a");
        assert!((200..470).contains(&moved), "{moved} moved");
    }
}
