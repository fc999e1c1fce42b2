//! Gateway intents: which dispatches a session asked for, and Discord's MESSAGE_CONTENT
//! rule (without it a session receives other people's guild messages with empty
//! `content`, `embeds`, `attachments` and `components`, unless the message mentions it).
//!
//! The hub serialises each dispatch once for every session on the node; this module adds
//! to that shared [`Dispatch`] what filtering needs, computed once per dispatch: whether
//! it happened in a guild, the message's author and mentioned users, and a lazily built
//! content-stripped rendering shared by every session that lacks MESSAGE_CONTENT.

use std::sync::OnceLock;

use serde_json::Value;

use super::hub::Dispatch;

pub const GUILDS: u64 = 1 << 0;
pub const GUILD_MEMBERS: u64 = 1 << 1;
pub const GUILD_MODERATION: u64 = 1 << 2;
pub const GUILD_EXPRESSIONS: u64 = 1 << 3;
pub const GUILD_INTEGRATIONS: u64 = 1 << 4;
pub const GUILD_WEBHOOKS: u64 = 1 << 5;
pub const GUILD_INVITES: u64 = 1 << 6;
pub const GUILD_VOICE_STATES: u64 = 1 << 7;
pub const GUILD_PRESENCES: u64 = 1 << 8;
pub const GUILD_MESSAGES: u64 = 1 << 9;
pub const GUILD_MESSAGE_REACTIONS: u64 = 1 << 10;
pub const GUILD_MESSAGE_TYPING: u64 = 1 << 11;
pub const DIRECT_MESSAGES: u64 = 1 << 12;
pub const DIRECT_MESSAGE_REACTIONS: u64 = 1 << 13;
pub const DIRECT_MESSAGE_TYPING: u64 = 1 << 14;
pub const MESSAGE_CONTENT: u64 = 1 << 15;
pub const GUILD_SCHEDULED_EVENTS: u64 = 1 << 16;
pub const AUTO_MODERATION_CONFIGURATION: u64 = 1 << 20;
pub const AUTO_MODERATION_EXECUTION: u64 = 1 << 21;
pub const GUILD_MESSAGE_POLLS: u64 = 1 << 24;
pub const DIRECT_MESSAGE_POLLS: u64 = 1 << 25;

/// Every intent Discord defines; IDENTIFY with any other bit is closed with 4013.
pub const ALL: u64 = ((1 << 22) - 1) | GUILD_MESSAGE_POLLS | DIRECT_MESSAGE_POLLS;

/// Whether `intents` names only intents Discord defines.
pub fn valid(intents: u64) -> bool {
    intents & !ALL == 0
}

/// What the session filter needs to know about a dispatch, computed once by the hub.
#[derive(Debug, Default)]
pub struct Meta {
    /// The dispatch happened in a guild (its `d` has a `guild_id`).
    in_guild: bool,
    /// For MESSAGE_CREATE/MESSAGE_UPDATE: the author and the mentioned users.
    author: Option<u64>,
    mentions: Box<[u64]>,
    /// The rendering without message content, built by the first session that needs it.
    stripped: OnceLock<Box<str>>,
}

impl Meta {
    fn of(name: &str, data: &Value) -> Meta {
        let id = |v: &Value| v.as_str().and_then(|s| s.parse::<u64>().ok());
        let mut meta = Meta {
            in_guild: data.get("guild_id").is_some_and(|g| !g.is_null()),
            ..Meta::default()
        };
        if is_message_with_content(name) {
            meta.author = data.get("author").and_then(|a| a.get("id")).and_then(id);
            meta.mentions = data
                .get("mentions")
                .and_then(Value::as_array)
                .map(|m| m.iter().filter_map(|u| u.get("id").and_then(id)).collect())
                .unwrap_or_default();
        }
        meta
    }
}

fn is_message_with_content(name: &str) -> bool {
    matches!(name, "MESSAGE_CREATE" | "MESSAGE_UPDATE")
}

impl Dispatch {
    /// Serialises a dispatch once for all sessions of the node; `None` if `data` cannot be
    /// serialised.
    pub fn new(name: String, data: &Value) -> Option<Dispatch> {
        let meta = Meta::of(&name, data);
        let data = serde_json::to_string(data).ok()?.into_boxed_str();
        Some(Dispatch {
            name,
            data,
            position: None,
            meta,
        })
    }

    /// The intent a session needs to receive this dispatch; `None` when every session
    /// receives it (READY, USER_UPDATE, VOICE_SERVER_UPDATE, INTERACTION_CREATE, ...).
    pub fn intent(&self) -> Option<u64> {
        let guild = self.meta.in_guild;
        let name = self.name.as_str();
        Some(match name {
            "GUILD_CREATE"
            | "GUILD_UPDATE"
            | "GUILD_DELETE"
            | "GUILD_ROLE_CREATE"
            | "GUILD_ROLE_UPDATE"
            | "GUILD_ROLE_DELETE"
            | "CHANNEL_CREATE"
            | "CHANNEL_UPDATE"
            | "CHANNEL_DELETE"
            | "CHANNEL_PINS_UPDATE"
            | "THREAD_CREATE"
            | "THREAD_UPDATE"
            | "THREAD_DELETE"
            | "THREAD_LIST_SYNC"
            | "THREAD_MEMBER_UPDATE"
            | "STAGE_INSTANCE_CREATE"
            | "STAGE_INSTANCE_UPDATE"
            | "STAGE_INSTANCE_DELETE" => {
                if !guild && name.starts_with("CHANNEL_") {
                    return None;
                }
                GUILDS
            }
            "GUILD_MEMBER_ADD"
            | "GUILD_MEMBER_UPDATE"
            | "GUILD_MEMBER_REMOVE"
            | "THREAD_MEMBERS_UPDATE" => GUILD_MEMBERS,
            "GUILD_BAN_ADD" | "GUILD_BAN_REMOVE" | "GUILD_AUDIT_LOG_ENTRY_CREATE" => {
                GUILD_MODERATION
            }
            "GUILD_EMOJIS_UPDATE"
            | "GUILD_STICKERS_UPDATE"
            | "GUILD_SOUNDBOARD_SOUND_CREATE"
            | "GUILD_SOUNDBOARD_SOUND_UPDATE"
            | "GUILD_SOUNDBOARD_SOUND_DELETE"
            | "GUILD_SOUNDBOARD_SOUNDS_UPDATE" => GUILD_EXPRESSIONS,
            "GUILD_INTEGRATIONS_UPDATE"
            | "INTEGRATION_CREATE"
            | "INTEGRATION_UPDATE"
            | "INTEGRATION_DELETE" => GUILD_INTEGRATIONS,
            "WEBHOOKS_UPDATE" => GUILD_WEBHOOKS,
            "INVITE_CREATE" | "INVITE_DELETE" => GUILD_INVITES,
            "VOICE_STATE_UPDATE" => GUILD_VOICE_STATES,
            "PRESENCE_UPDATE" => GUILD_PRESENCES,
            "MESSAGE_CREATE" | "MESSAGE_UPDATE" | "MESSAGE_DELETE" | "MESSAGE_DELETE_BULK" => {
                if guild {
                    GUILD_MESSAGES
                } else {
                    DIRECT_MESSAGES
                }
            }
            "MESSAGE_REACTION_ADD"
            | "MESSAGE_REACTION_REMOVE"
            | "MESSAGE_REACTION_REMOVE_ALL"
            | "MESSAGE_REACTION_REMOVE_EMOJI" => {
                if guild {
                    GUILD_MESSAGE_REACTIONS
                } else {
                    DIRECT_MESSAGE_REACTIONS
                }
            }
            "TYPING_START" => {
                if guild {
                    GUILD_MESSAGE_TYPING
                } else {
                    DIRECT_MESSAGE_TYPING
                }
            }
            "MESSAGE_POLL_VOTE_ADD" | "MESSAGE_POLL_VOTE_REMOVE" => {
                if guild {
                    GUILD_MESSAGE_POLLS
                } else {
                    DIRECT_MESSAGE_POLLS
                }
            }
            "GUILD_SCHEDULED_EVENT_CREATE"
            | "GUILD_SCHEDULED_EVENT_UPDATE"
            | "GUILD_SCHEDULED_EVENT_DELETE"
            | "GUILD_SCHEDULED_EVENT_USER_ADD"
            | "GUILD_SCHEDULED_EVENT_USER_REMOVE" => GUILD_SCHEDULED_EVENTS,
            "AUTO_MODERATION_RULE_CREATE"
            | "AUTO_MODERATION_RULE_UPDATE"
            | "AUTO_MODERATION_RULE_DELETE" => AUTO_MODERATION_CONFIGURATION,
            "AUTO_MODERATION_ACTION_EXECUTION" => AUTO_MODERATION_EXECUTION,
            _ => return None,
        })
    }

    /// The `d` a session of `user` with `intents` receives, or `None` when its intents
    /// exclude this dispatch.
    pub fn data_for(&self, user: u64, intents: u64) -> Option<&str> {
        if let Some(needed) = self.intent() {
            if intents & needed == 0 {
                return None;
            }
        }
        if intents & MESSAGE_CONTENT != 0
            || !is_message_with_content(&self.name)
            || !self.meta.in_guild
            || self.meta.author == Some(user)
            || self.meta.mentions.contains(&user)
        {
            return Some(&self.data);
        }
        Some(self.meta.stripped.get_or_init(|| strip_content(&self.data)))
    }
}

/// `data` with `content`, `embeds`, `attachments`, `components` (and a poll) emptied, as
/// Discord sends messages to an app without MESSAGE_CONTENT.
fn strip_content(data: &str) -> Box<str> {
    let Ok(mut v) = serde_json::from_str::<Value>(data) else {
        return data.into();
    };
    if let Some(o) = v.as_object_mut() {
        if o.contains_key("content") {
            o.insert("content".into(), Value::String(String::new()));
        }
        for key in ["embeds", "attachments", "components"] {
            if o.contains_key(key) {
                o.insert(key.into(), Value::Array(Vec::new()));
            }
        }
        o.remove("poll");
    }
    v.to_string().into_boxed_str()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn all_names_every_defined_intent() {
        assert_eq!(ALL, 0x033F_FFFF);
        assert!(valid(ALL));
        assert!(!valid(1 << 22));
    }

    #[test]
    fn message_content_is_stripped_unless_authored_or_mentioned() {
        let m = json!({"id": "5", "guild_id": "1", "content": "secret", "embeds": [{"title": "t"}],
            "attachments": [], "components": [], "author": {"id": "7"}, "mentions": [{"id": "8"}]});
        let d = Dispatch::new("MESSAGE_CREATE".into(), &m).unwrap();
        let stripped: Value = serde_json::from_str(d.data_for(9, GUILD_MESSAGES).unwrap()).unwrap();
        assert_eq!(stripped["content"], "");
        assert_eq!(stripped["embeds"], json!([]));
        assert_eq!(stripped["id"], "5");
        assert!(d.data_for(7, GUILD_MESSAGES).unwrap().contains("secret"));
        assert!(d.data_for(8, GUILD_MESSAGES).unwrap().contains("secret"));
        assert!(d
            .data_for(9, GUILD_MESSAGES | MESSAGE_CONTENT)
            .unwrap()
            .contains("secret"));
        assert!(d.data_for(9, DIRECT_MESSAGES | MESSAGE_CONTENT).is_none());
    }

    #[test]
    fn direct_messages_need_direct_message_intents() {
        let m = json!({"id": "5", "channel_id": "2", "content": "hi", "author": {"id": "7"}});
        let d = Dispatch::new("MESSAGE_CREATE".into(), &m).unwrap();
        assert!(d.data_for(9, GUILD_MESSAGES).is_none());
        assert_eq!(d.data_for(9, DIRECT_MESSAGES), Some(d.data.as_ref()));
        let ready = Dispatch::new("READY".into(), &json!({})).unwrap();
        assert!(ready.data_for(9, 0).is_some());
    }
}
