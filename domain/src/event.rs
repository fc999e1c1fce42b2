//! Versioned, serialisable events. Each event has a type name (`MessageCreated`) and a
//! version; stored events are never edited, and old versions are upcast when read.

use serde::de::DeserializeOwned;
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum EventDecodeError {
    #[error("unknown event type {0}")]
    UnknownType(String),
    #[error("event {event_type} v{version} is newer than this build understands")]
    UnknownVersion { event_type: String, version: u16 },
    #[error("event {event_type}: {source}")]
    Data {
        event_type: String,
        source: serde_json::Error,
    },
}

/// An event enum of one aggregate. Implemented by [`domain_event!`]; every variant is a
/// struct variant whose name is the stored type name.
pub trait DomainEvent: Sized + Clone + Send + Sync + 'static {
    /// The type name stored with the event.
    fn event_type(&self) -> &'static str;
    /// The version of this event type's payload that this build writes.
    fn version(&self) -> u16 {
        1
    }
    /// The payload to store.
    fn to_data(&self) -> serde_json::Value;
    /// Decodes a stored event, upcasting older versions.
    fn from_stored(
        event_type: &str,
        version: u16,
        data: serde_json::Value,
    ) -> Result<Self, EventDecodeError>;
    /// Whether this enum has a variant for the type name.
    fn knows(event_type: &str) -> bool;
}

/// Serialises an adjacently tagged enum into `(type, data)`.
pub fn split<E: Serialize>(event: &E) -> serde_json::Value {
    match serde_json::to_value(event) {
        Ok(serde_json::Value::Object(mut map)) => {
            map.remove("data").unwrap_or(serde_json::Value::Null)
        }
        _ => serde_json::Value::Null,
    }
}

/// Deserialises an adjacently tagged enum from `(type, data)`.
pub fn join<E: DeserializeOwned>(
    event_type: &str,
    data: serde_json::Value,
) -> Result<E, EventDecodeError> {
    serde_json::from_value(serde_json::json!({ "type": event_type, "data": data })).map_err(
        |source| EventDecodeError::Data {
            event_type: event_type.to_owned(),
            source,
        },
    )
}

/// Implements [`DomainEvent`] for an adjacently tagged (`type`/`data`) enum of struct
/// variants, all at version 1.
#[macro_export]
macro_rules! domain_event {
    ($enum:ident { $($variant:ident),* $(,)? }) => {
        impl $crate::event::DomainEvent for $enum {
            fn event_type(&self) -> &'static str {
                match self {
                    $( $enum::$variant { .. } => stringify!($variant), )*
                }
            }
            fn to_data(&self) -> serde_json::Value {
                $crate::event::split(self)
            }
            fn from_stored(
                event_type: &str,
                version: u16,
                data: serde_json::Value,
            ) -> Result<Self, $crate::event::EventDecodeError> {
                if !Self::knows(event_type) {
                    return Err($crate::event::EventDecodeError::UnknownType(event_type.to_owned()));
                }
                if version != 1 {
                    return Err($crate::event::EventDecodeError::UnknownVersion {
                        event_type: event_type.to_owned(),
                        version,
                    });
                }
                $crate::event::join(event_type, data)
            }
            fn knows(event_type: &str) -> bool {
                matches!(event_type, $( stringify!($variant) )|*)
            }
        }
    };
}
