//! Who may receive a guild's dispatch.
//!
//! The hub keeps, per guild it follows, a view of the guild's permission pieces (roles,
//! members, channels with overwrites, owner: the Guild aggregate's state) that advances
//! through the guild's stream in step with the bus: a guild event's dispatch is judged
//! once the view includes that event, and a message is judged by the guild as of the
//! newest guild event published before it. So each dispatch is judged by the
//! permissions at its place in the log, on every node alike:
//!
//! - channel events (messages, channel objects, invites, typing) reach only members who
//!   can VIEW_CHANNEL that channel; CHANNEL_DELETE is judged just before the deletion;
//! - GUILD_AUDIT_LOG_ENTRY_CREATE reaches only members with VIEW_AUDIT_LOG;
//! - every other guild dispatch reaches members only (not someone just kicked).
//!
//! A view that cannot be read from the log fails closed: nothing is delivered, and the
//! error is logged.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use bus::Envelope;
use domain::guild::GuildState;
use domain::permissions::Permissions;
use domain::timefmt::now_ms;
use domain::{ChannelId, GuildId, UserId};
use store::DynStore;

/// Which members a dispatch is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Audience {
    /// Every member of the guild.
    Members,
    /// Members who can view the channel.
    Channel(ChannelId),
    /// Members holding these guild permissions.
    Holding(Permissions),
}

impl Audience {
    pub(crate) fn of(env: &Envelope) -> Audience {
        if env.dispatch.as_deref() == Some("GUILD_AUDIT_LOG_ENTRY_CREATE") {
            return Audience::Holding(Permissions::VIEW_AUDIT_LOG);
        }
        match env.channel_id {
            Some(c) => Audience::Channel(ChannelId::new(c)),
            None => Audience::Members,
        }
    }

    pub(crate) fn allows(self, guild: &GuildState, user: UserId, now_ms: u64) -> bool {
        if !guild.is_member(user) {
            return false;
        }
        match self {
            Audience::Members => true,
            Audience::Channel(c) => guild
                .channel_permissions(user, c, now_ms)
                .contains(Permissions::VIEW_CHANNEL),
            Audience::Holding(p) => guild.guild_permissions(user, now_ms).contains(p),
        }
    }
}

/// One guild's permission pieces as of a revision of its stream.
type View = commands::Loaded<GuildState>;

/// Applies `guild`'s events to `view` up to revision `to` (inclusive; `u64::MAX`: all).
async fn advance(view: &mut View, store: &DynStore, guild: GuildId, to: u64) -> Result<(), String> {
    view.catch_up_to(store.as_ref(), &domain::streams::guild(guild), to)
        .await
        .map_err(|e| e.to_string())
}

/// The hub's guild views.
pub(crate) struct Views {
    store: DynStore,
    views: Mutex<HashMap<u64, Arc<tokio::sync::Mutex<View>>>>,
}

impl Views {
    pub(crate) fn new(store: DynStore) -> Views {
        Views {
            store,
            views: Mutex::default(),
        }
    }

    fn view(&self, guild: u64) -> Arc<tokio::sync::Mutex<View>> {
        let mut views = self.views.lock().unwrap_or_else(|p| p.into_inner());
        views.entry(guild).or_default().clone()
    }

    /// Forgets a guild nobody on this node follows any more.
    pub(crate) fn forget(&self, guild: u64) {
        let mut views = self.views.lock().unwrap_or_else(|p| p.into_inner());
        views.remove(&guild);
    }

    /// For each of `users`, whether they may receive `env`, a dispatch of `guild`'s bus
    /// subscription, judged at the event's place in the log. Advances the view.
    pub(crate) async fn judge(&self, guild: u64, env: &Envelope, users: &[u64]) -> Vec<bool> {
        let view = self.view(guild);
        let mut v = view.lock().await;
        let guild_id = GuildId::new(guild);
        let own = env.stream_id == domain::streams::guild(guild_id);
        // A deleted channel is judged by who could see it before the deletion.
        let before = own && env.dispatch.as_deref() == Some("CHANNEL_DELETE");
        let until = match (own, before) {
            (true, false) => env.revision,
            (true, true) => env.revision.saturating_sub(1),
            // The first event of a guild this node starts following: the newest state.
            (false, _) if v.revision == 0 => u64::MAX,
            (false, _) => 0,
        };
        if let Err(e) = advance(&mut v, &self.store, guild_id, until).await {
            tracing::error!(guild, error = %e, "cannot read a guild's permissions; withholding a dispatch");
            return vec![false; users.len()];
        }
        let audience = Audience::of(env);
        let now = now_ms();
        let verdicts = users
            .iter()
            .map(|u| audience.allows(&v.state, UserId::new(*u), now))
            .collect();
        if before {
            if let Err(e) = advance(&mut v, &self.store, guild_id, env.revision).await {
                tracing::error!(guild, error = %e, "cannot read a guild's permissions");
            }
        }
        verdicts
    }

    /// The channels of `guild` that `user` can view, by the guild's newest state; `None`
    /// when the user is not a member.
    pub(crate) async fn visible_channels(&self, guild: u64, user: u64) -> Option<HashSet<u64>> {
        let view = self.view(guild);
        let mut v = view.lock().await;
        let guild_id = GuildId::new(guild);
        if let Err(e) = advance(&mut v, &self.store, guild_id, u64::MAX).await {
            tracing::error!(guild, error = %e, "cannot read a guild's permissions");
            return None;
        }
        let user = UserId::new(user);
        if !v.state.is_member(user) {
            return None;
        }
        let now = now_ms();
        Some(
            v.state
                .channels
                .keys()
                .filter(|c| {
                    v.state
                        .channel_permissions(user, **c, now)
                        .contains(Permissions::VIEW_CHANNEL)
                })
                .map(|c| c.get())
                .collect(),
        )
    }
}

/// A guild's current voice states, folded from its voice stream.
async fn voice_states(
    store: &DynStore,
    guild: GuildId,
) -> Result<domain::voice::VoiceStates, String> {
    let mut loaded = commands::Loaded::<domain::voice::VoiceStates>::default();
    loaded
        .catch_up(store.as_ref(), &domain::voice::stream(guild))
        .await
        .map_err(|e| e.to_string())?;
    Ok(loaded.state)
}

/// Fills GUILD_CREATE's `voice_states`: who is in which voice channel the user can see
/// (partial voice states, without `guild_id`, as Discord sends them there).
async fn fill_voice_states(views: &Views, guild: u64, data: &mut serde_json::Value) {
    let states = match voice_states(&views.store, GuildId::new(guild)).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(guild, error = %e, "cannot read a guild's voice states");
            return;
        }
    };
    let ids = |key: &str, field: &str| -> HashMap<String, serde_json::Value> {
        data.get(key)
            .and_then(|v| v.as_array())
            .into_iter()
            .flatten()
            .filter_map(|c| {
                let id = match field {
                    "user" => c.get("user")?.get("id")?.as_str()?.to_owned(),
                    _ => c.get("id")?.as_str()?.to_owned(),
                };
                Some((id, c.clone()))
            })
            .collect()
    };
    let channels = ids("channels", "id");
    let members = ids("members", "user");
    let list: Vec<serde_json::Value> = states
        .states
        .iter()
        .filter(|(_, s)| channels.contains_key(&s.channel_id.to_string()))
        .map(|(user, s)| {
            let member = members.get(&user.to_string());
            let flag = |k: &str| {
                member
                    .and_then(|m| m.get(k))
                    .cloned()
                    .unwrap_or(false.into())
            };
            serde_json::json!({
                "channel_id": s.channel_id.to_string(),
                "user_id": user.to_string(),
                "session_id": s.session_id,
                "deaf": flag("deaf"),
                "mute": flag("mute"),
                "self_deaf": s.self_deaf,
                "self_mute": s.self_mute,
                "self_stream": false,
                "self_video": false,
                "suppress": false,
                "request_to_speak_timestamp": null,
            })
        })
        .collect();
    data["voice_states"] = serde_json::Value::Array(list);
}

/// Removes the channels `user` cannot view from a GUILD_CREATE payload (its `channels`
/// and `threads`) and fills its `voice_states`; false when the user is not a member,
/// and the payload must not be sent.
pub(crate) async fn filter_guild_create(
    views: &Views,
    user: u64,
    data: &mut serde_json::Value,
) -> bool {
    let Some(guild) = data
        .get("id")
        .and_then(|v| v.as_str())
        .and_then(|s| s.parse::<u64>().ok())
    else {
        return false;
    };
    let Some(visible) = views.visible_channels(guild, user).await else {
        return false;
    };
    for key in ["channels", "threads"] {
        if let Some(list) = data.get_mut(key).and_then(|v| v.as_array_mut()) {
            list.retain(|c| {
                c.get("id")
                    .and_then(|v| v.as_str())
                    .and_then(|s| s.parse::<u64>().ok())
                    .is_some_and(|id| visible.contains(&id))
            });
        }
    }
    fill_voice_states(views, guild, data).await;
    true
}
