//! [`Envelope`]: the payload of every event published on the bus.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::BusError;

/// One committed event, as the log tail publishes it and gateways receive it (JSON).
///
/// `stream_id` and `revision` identify the event in its stream and drive duplicate and gap
/// detection ([`Dedup`](crate::Dedup)); `position` is its place in the global log, for
/// backfill and resume.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// The stream the event was appended to, e.g. `channel-123`.
    pub stream_id: String,
    /// The event's revision within its stream.
    pub revision: u64,
    /// The event's position in the global log.
    pub position: u64,
    /// The domain event type, e.g. `MessageCreated`.
    pub event_type: String,
    /// The Discord gateway dispatch name, e.g. `MESSAGE_CREATE`; `None` for events that
    /// clients never see.
    #[serde(default)]
    pub dispatch: Option<String>,
    /// The guild the event belongs to, if any.
    #[serde(default)]
    pub guild_id: Option<u64>,
    /// The channel the event belongs to, if any.
    #[serde(default)]
    pub channel_id: Option<u64>,
    /// Users directly concerned (a joining member, both sides of a relationship), who may
    /// need it even without a guild or channel subscription.
    #[serde(default)]
    pub user_ids: Vec<u64>,
    /// The Discord-shaped dispatch payload (the gateway's `d`).
    #[serde(default)]
    pub data: serde_json::Value,
}

impl Envelope {
    /// Whether the envelope announces an event of the log. An ephemeral dispatch (such as
    /// TYPING_START) is published with `position` 0, which no logged event has: it has no
    /// revision to deduplicate or backfill by and nothing a READY could have included.
    pub fn is_logged(&self) -> bool {
        self.position != 0
    }

    /// Encodes the envelope as JSON.
    pub fn to_bytes(&self) -> Result<Bytes, BusError> {
        Ok(Bytes::from(serde_json::to_vec(self)?))
    }

    /// Decodes an envelope from JSON; [`BusError::Envelope`] if it is malformed.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, BusError> {
        Ok(serde_json::from_slice(bytes)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> Envelope {
        Envelope {
            stream_id: "channel-42".into(),
            revision: 7,
            position: 1234,
            event_type: "MessageCreated".into(),
            dispatch: Some("MESSAGE_CREATE".into()),
            guild_id: Some(1),
            channel_id: Some(42),
            user_ids: vec![u64::MAX],
            data: json!({"id": "99", "content": "hi"}),
        }
    }

    #[test]
    fn only_position_zero_is_ephemeral() {
        assert!(sample().is_logged());
        let ephemeral = Envelope {
            position: 0,
            ..sample()
        };
        assert!(!ephemeral.is_logged());
    }

    #[test]
    fn round_trips_through_bytes() {
        let envelope = sample();
        let bytes = envelope.to_bytes().unwrap();
        assert_eq!(Envelope::from_bytes(&bytes).unwrap(), envelope);
    }

    #[test]
    fn wire_shape_is_stable() {
        let value: serde_json::Value =
            serde_json::from_slice(&sample().to_bytes().unwrap()).unwrap();
        assert_eq!(
            value,
            json!({
                "stream_id": "channel-42",
                "revision": 7,
                "position": 1234,
                "event_type": "MessageCreated",
                "dispatch": "MESSAGE_CREATE",
                "guild_id": 1,
                "channel_id": 42,
                "user_ids": [u64::MAX],
                "data": {"id": "99", "content": "hi"}
            })
        );
    }

    #[test]
    fn optional_fields_may_be_absent() {
        let envelope = Envelope::from_bytes(
            br#"{"stream_id":"user-1","revision":0,"position":5,"event_type":"UserCreated"}"#,
        )
        .unwrap();
        assert_eq!(envelope.dispatch, None);
        assert_eq!(envelope.guild_id, None);
        assert!(envelope.user_ids.is_empty());
        assert!(envelope.data.is_null());
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        for bad in [
            &b""[..],
            b"{",
            b"null",
            b"[]",
            b"{\"stream_id\":1}",
            b"\xff\xfe",
        ] {
            assert!(matches!(
                Envelope::from_bytes(bad),
                Err(BusError::Envelope(_))
            ));
        }
    }
}
