//! The publisher: a second tail of the log, behind the read models, that renders each
//! event's Discord dispatch from the read models and publishes a [`bus::Envelope`].
//!
//! Delivery is at least once: a batch is published while its transaction holds the
//! `publisher` checkpoint row, and the checkpoint is committed after the last publish. A
//! crash in between republishes the batch; gateways drop duplicates by
//! (stream, revision). The lock makes one process publish a batch at a time, so in a
//! cluster each event is normally published once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bus::{subjects, Bus, Envelope};
use domain::channel::ChannelEvent;
use domain::guild::GuildEvent;
use domain::invite::InviteEvent;
use domain::user::{UserEvent, UsernameEvent};
use domain::{ChannelId, DomainEvent, GuildId, UserId};
use sqlx::AnyConnection;
use store::{DynStore, RecordedEvent};
use tokio::sync::watch;

use crate::db::{lock_checkpoint, set_checkpoint, to_i64, HeldConnection};
use crate::queries;
use crate::render;
use crate::rows::{MessageRow, UserRow};
use crate::{ReadDb, Result, PUBLISHER};

/// Most events published per transaction.
const BATCH: u64 = 512;
/// Wait before retrying after a failure.
const RETRY: Duration = Duration::from_millis(500);

/// One message to publish.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub subject: String,
    pub envelope: Envelope,
}

/// Runs the publisher until `shutdown` is set.
pub(crate) async fn run(
    store: DynStore,
    db: ReadDb,
    bus: Arc<dyn Bus>,
    mut projected: watch::Receiver<u64>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut known = 0u64;
    let mut conn = HeldConnection::default();
    loop {
        let target = *projected.borrow_and_update();
        if target <= known {
            let runner_gone = tokio::select! {
                changed = projected.changed() => changed.is_err(),
                _ = shutdown.wait_for(|s| *s) => return,
            };
            if runner_gone {
                // Nothing will be projected any more: wait for the shutdown.
                let _ = shutdown.wait_for(|s| *s).await;
                return;
            }
            continue;
        }
        let step = tokio::select! {
            r = publish_batch(&store, &db, &mut conn, bus.as_ref(), target) => r,
            _ = shutdown.wait_for(|s| *s) => return,
        };
        match step {
            Ok(position) => known = position,
            Err(e) => {
                conn.reset();
                tracing::warn!(error = %e, "publisher failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(RETRY) => {}
                    _ = shutdown.wait_for(|s| *s) => return,
                }
            }
        }
    }
}

/// Publishes the next batch of events up to `until` (a position the read models include)
/// and returns the publisher checkpoint afterwards.
#[tracing::instrument(skip(store, db, conn, bus))]
pub(crate) async fn publish_batch(
    store: &DynStore,
    db: &ReadDb,
    conn: &mut HeldConnection,
    bus: &dyn Bus,
    until: u64,
) -> Result<u64> {
    let mut tx = conn.begin_replayable(db).await?;
    let checkpoint = lock_checkpoint(&mut tx, db.dialect, PUBLISHER).await?;
    if checkpoint >= until {
        tx.rollback().await?;
        return Ok(checkpoint);
    }
    let limit = (until - checkpoint).min(BATCH);
    let events = store
        .read_all(checkpoint, usize::try_from(limit).unwrap_or(512))
        .await?;
    let events: Vec<RecordedEvent> = events.into_iter().filter(|e| e.position <= until).collect();
    let Some(last) = events.last().map(|e| e.position) else {
        tx.rollback().await?;
        return Ok(checkpoint);
    };
    let mut renderer = Renderer::default();
    for e in &events {
        for out in renderer.render(&mut tx, e).await? {
            let bytes = out.envelope.to_bytes()?;
            bus.publish(&out.subject, bytes).await?;
        }
    }
    // The publishes woke the bus's writer (NATS: the connection's task); let it send
    // before this task's next round trip instead of after.
    tokio::task::yield_now().await;
    set_checkpoint(&mut tx, PUBLISHER, last).await?;
    tx.commit().await?;
    Ok(last)
}

/// Renders envelopes, caching users within a batch.
#[derive(Default)]
pub(crate) struct Renderer {
    users: HashMap<UserId, Option<UserRow>>,
}

fn envelope(e: &RecordedEvent, dispatch: Option<&str>, data: serde_json::Value) -> Envelope {
    Envelope {
        stream_id: e.stream_id.clone(),
        revision: e.revision,
        position: e.position,
        event_type: e.event_type.clone(),
        dispatch: dispatch.map(str::to_owned),
        guild_id: None,
        channel_id: None,
        user_ids: Vec::new(),
        data,
    }
}

/// `MessageCreated` -> `message_created`: the subject token of an event without a
/// dispatch.
fn snake(event_type: &str) -> String {
    let mut out = String::with_capacity(event_type.len() + 4);
    for (i, c) in event_type.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else if c.is_ascii_alphanumeric() {
            out.push(c);
        }
    }
    if out.is_empty() {
        out.push_str("event");
    }
    out
}

fn to_json<T: serde::Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}

/// The subject of an event of a channel (in its guild when it has one).
fn channel_subject(guild: Option<GuildId>, channel: ChannelId, event: &str) -> String {
    match guild {
        Some(g) => subjects::guild_channel(g.get(), channel.get(), event),
        None => subjects::channel(channel.get(), event),
    }
}

fn stream_id_part(stream_id: &str) -> Option<&str> {
    domain::streams::parse(stream_id).map(|(_, id)| id)
}

impl Renderer {
    async fn user(&mut self, conn: &mut AnyConnection, id: UserId) -> Result<Option<UserRow>> {
        if let Some(u) = self.users.get(&id) {
            return Ok(u.clone());
        }
        let u = queries::user_row(conn, id).await?;
        self.users.insert(id, u.clone());
        Ok(u)
    }

    /// The envelopes of one event: usually one, two for `MemberJoined` (the guild's
    /// `GUILD_MEMBER_ADD` and the joining user's `GUILD_CREATE`) and for `MemberRemoved`
    /// and `MemberBanned` (the guild's dispatch and the removed user's `GUILD_DELETE`), none for an event
    /// that cannot be decoded or placed on any subject. Events without a dispatch are
    /// still published (dispatch `None`, data `null`) so that every stream's revisions
    /// arrive without gaps.
    pub async fn render(
        &mut self,
        conn: &mut AnyConnection,
        e: &RecordedEvent,
    ) -> Result<Vec<Outgoing>> {
        let Some((kind, _)) = domain::streams::parse(&e.stream_id) else {
            return Ok(Vec::new());
        };
        let data = e.data.clone();
        let out = match kind {
            "user" => match UserEvent::from_stored(&e.event_type, e.version, data) {
                Ok(UserEvent::UserRegistered { user_id, .. }) => vec![self.plain_user(e, user_id)],
                Ok(UserEvent::TokenIssued { .. }) => {
                    match stream_id_part(&e.stream_id).and_then(|s| s.parse::<UserId>().ok()) {
                        Some(uid) => vec![self.plain_user(e, uid)],
                        None => Vec::new(),
                    }
                }
                Err(err) => skip(e, &err),
            },
            "username" => match UsernameEvent::from_stored(&e.event_type, e.version, data) {
                Ok(UsernameEvent::UsernameClaimed { user_id }) => {
                    vec![self.plain_user(e, user_id)]
                }
                Err(err) => skip(e, &err),
            },
            "guild" => {
                let Some(guild_id) =
                    stream_id_part(&e.stream_id).and_then(|s| s.parse::<GuildId>().ok())
                else {
                    return Ok(Vec::new());
                };
                match GuildEvent::from_stored(&e.event_type, e.version, data) {
                    Ok(ev) => self.guild_event(conn, e, guild_id, ev).await?,
                    Err(err) => skip(e, &err),
                }
            }
            "channel" => {
                let Some(channel_id) =
                    stream_id_part(&e.stream_id).and_then(|s| s.parse::<ChannelId>().ok())
                else {
                    return Ok(Vec::new());
                };
                match ChannelEvent::from_stored(&e.event_type, e.version, data) {
                    Ok(ev) => self.channel_event(conn, e, channel_id, ev).await?,
                    Err(err) => skip(e, &err),
                }
            }
            "voice" => {
                let Some(guild_id) =
                    stream_id_part(&e.stream_id).and_then(|s| s.parse::<GuildId>().ok())
                else {
                    return Ok(Vec::new());
                };
                match domain::voice::VoiceEvent::from_stored(&e.event_type, e.version, data) {
                    Ok(ev) => vec![self.voice_state(conn, e, guild_id, ev).await?],
                    Err(err) => skip(e, &err),
                }
            }
            "invite" => match InviteEvent::from_stored(&e.event_type, e.version, data) {
                Ok(ev) => self.invite_event(conn, e, ev).await?,
                Err(err) => skip(e, &err),
            },
            _ => {
                tracing::debug!(stream = %e.stream_id, "not publishing an event of an unknown stream kind");
                Vec::new()
            }
        };
        let mut out = out;
        if AUDITED.contains(&e.event_type.as_str()) {
            if let Some(g) = out.first().and_then(|o| o.envelope.guild_id) {
                out.extend(self.audit(conn, e, g).await?);
            }
        }
        Ok(out)
    }

    /// `GUILD_AUDIT_LOG_ENTRY_CREATE` for each audit entry the event recorded. Only
    /// sessions whose user has VIEW_AUDIT_LOG may receive them (the gateway filters by
    /// the dispatch name).
    async fn audit(
        &mut self,
        conn: &mut AnyConnection,
        e: &RecordedEvent,
        g: u64,
    ) -> Result<Vec<Outgoing>> {
        let Some(guild_id) = domain::Id::new_checked(g) else {
            return Ok(Vec::new());
        };
        let at = to_i64(domain::timefmt::unix_ms(e.metadata.occurred_at));
        let entries = queries::audit_entries_at(conn, guild_id, at, e.position).await?;
        Ok(entries
            .into_iter()
            .enumerate()
            .map(|(k, entry)| {
                let data = to_json(&crate::wire::GuildAuditLogEntryCreate { entry, guild_id });
                let mut env = envelope(e, Some("GUILD_AUDIT_LOG_ENTRY_CREATE"), data);
                env.stream_id = format!("{}{AUDIT_STREAM_SUFFIX}", e.stream_id);
                env.revision = e.revision * 2 + k as u64;
                env.guild_id = Some(g);
                Outgoing {
                    subject: subjects::guild(g, "guild_audit_log_entry_create"),
                    envelope: env,
                }
            })
            .collect())
    }

    /// VOICE_STATE_UPDATE to the guild: the user's voice state with their member (server
    /// mute and deafen are the member's).
    async fn voice_state(
        &mut self,
        conn: &mut AnyConnection,
        e: &RecordedEvent,
        guild_id: GuildId,
        ev: domain::voice::VoiceEvent,
    ) -> Result<Outgoing> {
        let domain::voice::VoiceEvent::VoiceStateChanged {
            user_id,
            channel_id,
            session_id,
            self_mute,
            self_deaf,
            ..
        } = ev;
        let user = self.user(conn, user_id).await?;
        let member = queries::member_row(conn, guild_id, user_id)
            .await?
            .map(|m| render::member(&m, user.as_ref()));
        let (mute, deaf) = member.as_ref().map_or((false, false), |m| (m.mute, m.deaf));
        let data = serde_json::json!({
            "guild_id": guild_id.to_string(),
            "channel_id": channel_id.map(|c| c.to_string()),
            "user_id": user_id.to_string(),
            "member": member,
            "session_id": session_id.unwrap_or_default(),
            "deaf": deaf,
            "mute": mute,
            "self_deaf": self_deaf,
            "self_mute": self_mute,
            "self_stream": false,
            "self_video": false,
            "suppress": false,
            "request_to_speak_timestamp": null,
        });
        let mut env = envelope(e, Some("VOICE_STATE_UPDATE"), data);
        env.guild_id = Some(guild_id.get());
        env.user_ids = vec![user_id.get()];
        Ok(Outgoing {
            subject: subjects::guild(guild_id.get(), "voice_state_update"),
            envelope: env,
        })
    }

    fn plain_user(&self, e: &RecordedEvent, user_id: UserId) -> Outgoing {
        let mut env = envelope(e, None, serde_json::Value::Null);
        env.user_ids = vec![user_id.get()];
        Outgoing {
            subject: subjects::user(user_id.get(), &snake(&e.event_type)),
            envelope: env,
        }
    }

    async fn guild_event(
        &mut self,
        conn: &mut AnyConnection,
        e: &RecordedEvent,
        guild_id: GuildId,
        ev: GuildEvent,
    ) -> Result<Vec<Outgoing>> {
        let g = guild_id.get();
        Ok(match ev {
            GuildEvent::GuildCreated { .. } => {
                // The owner's MemberJoined carries GUILD_CREATE.
                let mut env = envelope(e, None, serde_json::Value::Null);
                env.guild_id = Some(g);
                vec![Outgoing {
                    subject: subjects::guild(g, &snake(&e.event_type)),
                    envelope: env,
                }]
            }
            GuildEvent::ChannelCreated { channel_id, .. } => {
                let data = match queries::channel_row(conn, channel_id).await? {
                    Some(row) => to_json(&render::channel(&row)),
                    None => serde_json::Value::Null,
                };
                let mut env = envelope(e, Some("CHANNEL_CREATE"), data);
                env.guild_id = Some(g);
                env.channel_id = Some(channel_id.get());
                vec![Outgoing {
                    subject: subjects::guild(g, "channel_create"),
                    envelope: env,
                }]
            }
            GuildEvent::MemberJoined { user_id, .. } => {
                let u = user_id.get();
                let user = self.user(conn, user_id).await?;
                let member = queries::member_row(conn, guild_id, user_id).await?;
                let mut out = Vec::with_capacity(2);
                let add = match &member {
                    Some(m) => to_json(&crate::wire::GuildMemberAdd {
                        member: render::member(m, user.as_ref()),
                        guild_id,
                    }),
                    None => serde_json::Value::Null,
                };
                let mut env = envelope(e, Some("GUILD_MEMBER_ADD"), add);
                env.guild_id = Some(g);
                env.user_ids = vec![u];
                out.push(Outgoing {
                    subject: subjects::guild(g, "guild_member_add"),
                    envelope: env,
                });
                if let Some(payload) = queries::guild_create_on(conn, guild_id, user_id).await? {
                    let mut env = envelope(e, Some("GUILD_CREATE"), to_json(&payload));
                    env.guild_id = Some(g);
                    env.user_ids = vec![u];
                    out.push(Outgoing {
                        subject: subjects::user(u, "guild_create"),
                        envelope: env,
                    });
                }
                out
            }
            GuildEvent::RoleCreated { role } | GuildEvent::RoleUpdated { role } => {
                let dispatch = if e.event_type == "RoleCreated" {
                    "GUILD_ROLE_CREATE"
                } else {
                    "GUILD_ROLE_UPDATE"
                };
                let row = crate::rows::RoleRow {
                    guild_id,
                    id: role.id,
                    name: role.name.as_str().to_owned(),
                    color: i64::from(role.color),
                    hoist: role.hoist,
                    position: i64::from(role.position),
                    permissions: role.permissions.bits(),
                    managed: role.managed,
                    mentionable: role.mentionable,
                    bot_id: role.bot_id,
                };
                let data = to_json(&crate::wire::GuildRole {
                    guild_id,
                    role: render::role(&row),
                });
                vec![guild_out(e, g, dispatch, data)]
            }
            GuildEvent::RoleDeleted { role_id } => {
                let data = to_json(&crate::wire::GuildRoleDelete { guild_id, role_id });
                vec![guild_out(e, g, "GUILD_ROLE_DELETE", data)]
            }
            GuildEvent::MemberUpdated {
                user_id,
                nick,
                roles,
                communication_disabled_until_ms,
                mute,
                deaf,
            } => {
                let user = self.user(conn, user_id).await?;
                let joined_at = queries::member_row(conn, guild_id, user_id)
                    .await?
                    .map_or(0, |m| m.joined_at);
                let mut roles = roles;
                roles.sort();
                let row = crate::rows::MemberRow {
                    guild_id,
                    user_id,
                    joined_at,
                    nick: nick.map(|n| n.into_string()),
                    communication_disabled_until: communication_disabled_until_ms.map(to_i64),
                    mute,
                    deaf,
                    roles,
                };
                let data = to_json(&crate::wire::GuildMemberUpdate {
                    member: render::member(&row, user.as_ref()),
                    guild_id,
                });
                let mut out = guild_out(e, g, "GUILD_MEMBER_UPDATE", data);
                out.envelope.user_ids = vec![user_id.get()];
                vec![out]
            }
            GuildEvent::MemberRemoved { user_id, .. }
            | GuildEvent::MemberBanned { user_id, .. }
            | GuildEvent::MemberUnbanned { user_id } => {
                let dispatch = match e.event_type.as_str() {
                    "MemberRemoved" => "GUILD_MEMBER_REMOVE",
                    "MemberBanned" => "GUILD_BAN_ADD",
                    _ => "GUILD_BAN_REMOVE",
                };
                let user = self.user(conn, user_id).await?;
                let data = match user {
                    Some(u) => to_json(&crate::wire::GuildUser {
                        guild_id,
                        user: render::user(&u),
                    }),
                    None => serde_json::Value::Null,
                };
                let mut out = guild_out(e, g, dispatch, data);
                out.envelope.user_ids = vec![user_id.get()];
                let mut out = vec![out];
                if e.event_type != "MemberUnbanned" {
                    // The removed user's sessions learn they left the guild: GUILD_DELETE
                    // without `unavailable` (Discord's "removed from the guild").
                    let u = user_id.get();
                    let mut env = envelope(
                        e,
                        Some("GUILD_DELETE"),
                        to_json(&crate::wire::GuildDelete { id: guild_id }),
                    );
                    env.guild_id = Some(g);
                    env.user_ids = vec![u];
                    out.push(Outgoing {
                        subject: subjects::user(u, "guild_delete"),
                        envelope: env,
                    });
                }
                out
            }
            GuildEvent::ChannelUpdated { channel_id, .. }
            | GuildEvent::ChannelDeleted { channel_id }
            | GuildEvent::ChannelOverwriteSet { channel_id, .. }
            | GuildEvent::ChannelOverwriteDeleted { channel_id, .. } => {
                let dispatch = if e.event_type == "ChannelDeleted" {
                    "CHANNEL_DELETE"
                } else {
                    "CHANNEL_UPDATE"
                };
                let data = match queries::channel_row(conn, channel_id).await? {
                    Some(row) => to_json(&queries::render_channel(conn, &row).await?),
                    None => serde_json::Value::Null,
                };
                let mut out = guild_out(e, g, dispatch, data);
                out.envelope.channel_id = Some(channel_id.get());
                vec![out]
            }
            GuildEvent::GuildRenamed { .. } => {
                // The whole guild object, as GUILD_CREATE's guild part (roles included).
                let data = match queries::guild_row(conn, guild_id).await? {
                    Some(row) => {
                        let roles = queries::role_rows(conn, guild_id).await?;
                        to_json(&render::guild_with_roles(&row, &roles))
                    }
                    None => serde_json::Value::Null,
                };
                vec![guild_out(e, g, "GUILD_UPDATE", data)]
            }
            // Discord sends one GUILD_ROLE_UPDATE per moved role. The event's own
            // envelope carries none (so the stream's revisions stay whole); each role's
            // dispatch rides in an envelope of `{stream}#roles`, numbered
            // `revision * 1000 + k` (gateways skip backfill for `#` streams).
            GuildEvent::RolesReordered { positions } => {
                let mut env = envelope(e, None, serde_json::Value::Null);
                env.guild_id = Some(g);
                let mut out = vec![Outgoing {
                    subject: subjects::guild(g, &snake(&e.event_type)),
                    envelope: env,
                }];
                for (k, moved) in positions.iter().enumerate().take(1000) {
                    let Some(row) = queries::role_row(conn, guild_id, moved.role_id).await? else {
                        continue;
                    };
                    let data = to_json(&crate::wire::GuildRole {
                        guild_id,
                        role: render::role(&row),
                    });
                    let mut env = envelope(e, Some("GUILD_ROLE_UPDATE"), data);
                    env.stream_id = format!("{}#roles", e.stream_id);
                    env.revision = e.revision * 1000 + k as u64;
                    env.guild_id = Some(g);
                    out.push(Outgoing {
                        subject: subjects::guild(g, "guild_role_update"),
                        envelope: env,
                    });
                }
                out
            }
        })
    }

    async fn channel_event(
        &mut self,
        conn: &mut AnyConnection,
        e: &RecordedEvent,
        channel_id: ChannelId,
        ev: ChannelEvent,
    ) -> Result<Vec<Outgoing>> {
        let at = to_i64(domain::timefmt::unix_ms(e.metadata.occurred_at));
        let (dispatch, subject_event, guild, data) = match ev {
            ChannelEvent::ChannelOpened { guild_id, .. } => (
                None,
                snake(&e.event_type),
                guild_id,
                serde_json::Value::Null,
            ),
            ChannelEvent::MessageCreated {
                message_id,
                channel_id: cid,
                guild_id,
                author_id,
                content,
                nonce,
                tts,
                mention_everyone,
            } => {
                // Rendered from the event itself: the row may already show later edits.
                let row = MessageRow {
                    id: message_id,
                    channel_id: cid,
                    guild_id,
                    author_id,
                    content: content.into_string(),
                    nonce: nonce.map(|n| n.into_string()),
                    tts,
                    created_at: at,
                    edited_at: None,
                    deleted_at: None,
                    revision: to_i64(e.revision),
                    pinned_at: None,
                    mention_everyone,
                };
                let msg = self.message(conn, &row).await?;
                (
                    Some("MESSAGE_CREATE"),
                    "message_create".to_owned(),
                    guild_id,
                    to_json(&msg),
                )
            }
            ChannelEvent::MessageEdited {
                message_id,
                content,
            } => match queries::message_row(conn, channel_id, message_id).await? {
                Some(mut row) => {
                    row.content = content.into_string();
                    row.edited_at = Some(at);
                    let guild = row.guild_id;
                    let msg = self.message(conn, &row).await?;
                    (
                        Some("MESSAGE_UPDATE"),
                        "message_update".to_owned(),
                        guild,
                        to_json(&msg),
                    )
                }
                None => {
                    let guild = queries::channel_guild(conn, channel_id).await?;
                    (None, snake(&e.event_type), guild, serde_json::Value::Null)
                }
            },
            ChannelEvent::MessageDeleted { message_id } => {
                let guild = match queries::message_row(conn, channel_id, message_id).await? {
                    Some(row) => row.guild_id,
                    None => queries::channel_guild(conn, channel_id).await?,
                };
                let data = to_json(&crate::wire::MessageDelete {
                    id: message_id,
                    channel_id,
                    guild_id: guild,
                });
                (
                    Some("MESSAGE_DELETE"),
                    "message_delete".to_owned(),
                    guild,
                    data,
                )
            }
            ChannelEvent::MessagePinned { .. } | ChannelEvent::MessageUnpinned { .. } => {
                let guild = queries::channel_guild(conn, channel_id).await?;
                let last = queries::last_pin(conn, channel_id).await?;
                let data = serde_json::json!({
                    "guild_id": guild.map(|g| g.to_string()),
                    "channel_id": channel_id.to_string(),
                    "last_pin_timestamp": last.map(render::ts),
                });
                (
                    Some("CHANNEL_PINS_UPDATE"),
                    "channel_pins_update".to_owned(),
                    guild,
                    data,
                )
            }
            ChannelEvent::MessagesBulkDeleted { message_ids } => {
                let guild = queries::channel_guild(conn, channel_id).await?;
                let data = to_json(&crate::wire::MessageDeleteBulk {
                    ids: message_ids,
                    channel_id,
                    guild_id: guild,
                });
                (
                    Some("MESSAGE_DELETE_BULK"),
                    "message_delete_bulk".to_owned(),
                    guild,
                    data,
                )
            }
        };
        let mut env = envelope(e, dispatch, data);
        env.guild_id = guild.map(|g| g.get());
        env.channel_id = Some(channel_id.get());
        Ok(vec![Outgoing {
            subject: channel_subject(guild, channel_id, &subject_event),
            envelope: env,
        }])
    }

    async fn message(
        &mut self,
        conn: &mut AnyConnection,
        row: &MessageRow,
    ) -> Result<crate::wire::Message> {
        let author = self
            .user(conn, row.author_id)
            .await?
            .unwrap_or_else(|| render::unknown_user(row));
        let member = match row.guild_id {
            Some(g) => queries::member_row(conn, g, row.author_id).await?,
            None => None,
        };
        let mut msg = render::message(row, &author, member.as_ref());
        queries::fill_mentions(conn, std::slice::from_mut(&mut msg)).await?;
        Ok(msg)
    }

    async fn invite_event(
        &mut self,
        conn: &mut AnyConnection,
        e: &RecordedEvent,
        ev: InviteEvent,
    ) -> Result<Vec<Outgoing>> {
        let code = stream_id_part(&e.stream_id).unwrap_or_default();
        if let InviteEvent::InviteDeleted {
            guild_id,
            channel_id,
            ..
        } = ev
        {
            // The read model no longer has it: the event says where it led.
            let data = to_json(&crate::wire::InviteDelete {
                channel_id,
                guild_id,
                code: code.to_owned(),
            });
            let mut env = envelope(e, Some("INVITE_DELETE"), data);
            env.guild_id = Some(guild_id.get());
            env.channel_id = Some(channel_id.get());
            return Ok(vec![Outgoing {
                subject: subjects::guild(guild_id.get(), "invite_delete"),
                envelope: env,
            }]);
        }
        let row = queries::invite_row(conn, code).await?;
        let Some(row) = row else {
            tracing::debug!(stream = %e.stream_id, "not publishing an event of an unknown invite");
            return Ok(Vec::new());
        };
        let g = row.guild_id.get();
        let (dispatch, subject, data) = match ev {
            InviteEvent::InviteCreated { .. } => {
                let inviter = self.user(conn, row.inviter_id).await?;
                // As of creation: later uses are not part of INVITE_CREATE.
                let mut created = row.clone();
                created.uses = 0;
                (
                    Some("INVITE_CREATE"),
                    "invite_create".to_owned(),
                    to_json(&render::invite_create(&created, inviter.as_ref())),
                )
            }
            InviteEvent::InviteUsed { .. } | InviteEvent::InviteDeleted { .. } => {
                (None, snake(&e.event_type), serde_json::Value::Null)
            }
        };
        let mut env = envelope(e, dispatch, data);
        env.guild_id = Some(g);
        env.channel_id = Some(row.channel_id.get());
        Ok(vec![Outgoing {
            subject: subjects::guild(g, &subject),
            envelope: env,
        }])
    }
}

/// A guild dispatch on the guild's subject.
fn guild_out(e: &RecordedEvent, g: u64, dispatch: &str, data: serde_json::Value) -> Outgoing {
    let mut env = envelope(e, Some(dispatch), data);
    env.guild_id = Some(g);
    Outgoing {
        subject: subjects::guild(g, &dispatch.to_ascii_lowercase()),
        envelope: env,
    }
}

/// The event types that may record audit log entries.
const AUDITED: &[&str] = &[
    "ChannelCreated",
    "RoleCreated",
    "RoleUpdated",
    "RoleDeleted",
    "MemberUpdated",
    "MemberRemoved",
    "MemberBanned",
    "MemberUnbanned",
    "ChannelUpdated",
    "ChannelDeleted",
    "ChannelOverwriteSet",
    "ChannelOverwriteDeleted",
    "GuildRenamed",
    "InviteCreated",
    "InviteDeleted",
    "MessageDeleted",
    "MessagesBulkDeleted",
    "MessagePinned",
    "MessageUnpinned",
];

/// The suffix of the stream id of `GUILD_AUDIT_LOG_ENTRY_CREATE` envelopes: they ride
/// beside their event's own envelope (same position), on `{stream}#audit` with revision
/// `2 × revision + k` (k: the event's first or second entry), so that they are neither
/// taken for duplicates of the event's envelope nor part of its stream's revisions.
pub const AUDIT_STREAM_SUFFIX: &str = "#audit";

fn skip(e: &RecordedEvent, err: &domain::EventDecodeError) -> Vec<Outgoing> {
    match err {
        domain::EventDecodeError::UnknownType(_) => {
            tracing::debug!(stream = %e.stream_id, event_type = %e.event_type, "not publishing an unknown event type")
        }
        _ => {
            tracing::warn!(stream = %e.stream_id, position = e.position, error = %err, "not publishing an event that cannot be decoded")
        }
    }
    Vec::new()
}

/// Renders the bus messages (subject, envelope) of already projected events, as the
/// publisher would: for a gateway that backfills a gap it detected by stream revision.
pub async fn render_envelopes(
    db: &ReadDb,
    events: &[RecordedEvent],
) -> Result<Vec<(String, Envelope)>> {
    let mut conn = db.pool.acquire().await?;
    let mut renderer = Renderer::default();
    let mut out = Vec::new();
    for e in events {
        for o in renderer.render(&mut conn, e).await? {
            out.push((o.subject, o.envelope));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::snake;

    #[test]
    fn event_types_become_snake_case_subject_tokens() {
        assert_eq!(snake("MessageCreated"), "message_created");
        assert_eq!(snake("InviteUsed"), "invite_used");
        assert_eq!(snake("a.b*>"), "ab");
        assert_eq!(snake(""), "event");
    }
}
