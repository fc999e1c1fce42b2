//! Redaction for snapshots: ids become the name of what they identify, timestamps and
//! secrets become placeholders, so a snapshot shows shapes and relations, not values.

use std::collections::HashMap;

use serde_json::{Map, Value};

/// Replaces volatile values in JSON documents before they are snapshotted.
#[derive(Clone, Default)]
pub struct Redactor {
    names: HashMap<String, String>,
}

/// Keys whose string values are secrets or vary per run (session ids, tokens, URLs with
/// ports, invite codes, nonces).
const SECRET_KEYS: &[&str] = &[
    "token",
    "session_id",
    "resume_gateway_url",
    "url",
    "code",
    "nonce",
    "verify_key",
];

impl Redactor {
    /// Names a snowflake: it is shown as `{name}` wherever it appears.
    pub fn name(&mut self, id: &str, name: &str) {
        self.names.insert(id.to_owned(), format!("{{{name}}}"));
    }

    /// The redacted copy of `value`.
    pub fn apply(&self, value: &Value) -> Value {
        self.walk(None, value)
    }

    fn walk(&self, key: Option<&str>, value: &Value) -> Value {
        match value {
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), self.walk(Some(k), v)))
                    .collect::<Map<_, _>>(),
            ),
            Value::Array(items) => Value::Array(items.iter().map(|v| self.walk(key, v)).collect()),
            Value::String(s) => Value::String(self.string(key, s)),
            other => other.clone(),
        }
    }

    fn string(&self, key: Option<&str>, s: &str) -> String {
        if let Some(name) = self.names.get(s) {
            return name.clone();
        }
        if s.len() >= 17 && s.bytes().all(|b| b.is_ascii_digit()) {
            return "[snowflake]".into();
        }
        if is_timestamp(s) {
            return "[timestamp]".into();
        }
        if key.is_some_and(|k| SECRET_KEYS.contains(&k)) {
            return format!("[{}]", key.unwrap());
        }
        s.to_owned()
    }
}

/// `2024-01-01T12:34:56...`: the date-time prefix of ISO 8601.
fn is_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 19
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[..4].iter().all(u8::is_ascii_digit)
}

#[test]
fn redaction_names_ids_and_hides_secrets() {
    let mut r = Redactor::default();
    r.name("1234567890123456789", "guild");
    let v = serde_json::json!({
        "id": "1234567890123456789",
        "roles": ["1234567890123456789", "2234567890123456789"],
        "permissions": "2248473465835073",
        "joined_at": "2024-01-01T12:34:56.789000+00:00",
        "token": "abc.def",
        "code": 50035,
    });
    assert_eq!(
        r.apply(&v),
        serde_json::json!({
            "id": "{guild}",
            "roles": ["{guild}", "[snowflake]"],
            "permissions": "2248473465835073",
            "joined_at": "[timestamp]",
            "token": "[token]",
            "code": 50035,
        })
    );
}
