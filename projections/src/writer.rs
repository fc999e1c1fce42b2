//! Applying a batch of events to the read-model tables.
//!
//! A batch is first *planned*: each event is decoded and turned into row operations, and
//! later events of the same batch are folded into earlier pending rows where that is
//! exact (an edit or deletion of a message created in the same batch changes the row to
//! insert; invite uses are counted). Then the plan is *written*: runs of inserts into one
//! table become multi-row `INSERT` statements, and each channel's `last_message_id` is
//! updated once. Everything happens on the caller's transaction.

use std::collections::{BTreeMap, HashMap};

use domain::channel::ChannelEvent;
use domain::guild::GuildEvent;
use domain::invite::InviteEvent;
use domain::user::{UserEvent, UsernameEvent};
use domain::{DomainEvent, EventDecodeError};
use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::Any;
use sqlx::AnyConnection;
use store::RecordedEvent;

use crate::db::{to_i64, Dialect};
use crate::schema::Table;
use crate::Result;

mod moderation;

pub(crate) use moderation::{action, entry_id};
use moderation::{AuditOp, ChannelOp, Entry};

/// Most bound parameters in one statement (well under SQLite's 32766 and PostgreSQL's
/// 65535).
const MAX_PARAMS: usize = 4000;
/// Most rows in one multi-row `INSERT`.
const MAX_ROWS: usize = 400;

/// Which physical tables a batch writes: the live ones, or a rebuild's shadow tables
/// (`{table}{suffix}`), possibly only some of them.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub suffix: String,
    pub tables: Vec<Table>,
}

impl Target {
    /// Every live table.
    pub fn live() -> Target {
        Target {
            suffix: String::new(),
            tables: Table::ALL.to_vec(),
        }
    }

    fn includes(&self, t: Table) -> bool {
        self.tables.contains(&t)
    }

    fn name(&self, t: Table) -> String {
        format!("{}{}", t.name(), self.suffix)
    }
}

/// A bound value.
#[derive(Debug, Clone)]
pub(crate) enum Val {
    Int(i64),
    OptInt(Option<i64>),
    Text(String),
    OptText(Option<String>),
}

pub(crate) fn bind<'q>(
    q: Query<'q, Any, AnyArguments<'q>>,
    v: Val,
) -> Query<'q, Any, AnyArguments<'q>> {
    match v {
        Val::Int(i) => q.bind(i),
        Val::OptInt(i) => q.bind(i),
        Val::Text(s) => q.bind(s),
        Val::OptText(s) => q.bind(s),
    }
}

fn b(v: bool) -> Val {
    Val::Int(i64::from(v))
}

/// One row operation.
#[derive(Debug)]
enum Op {
    /// Insert a row (ignored if its key exists: events are facts, first one wins).
    Insert(Table, Vec<Val>),
    /// Set a message's content and edit time.
    Edit {
        channel_id: i64,
        id: i64,
        content: String,
        edited_at: i64,
        revision: i64,
    },
    /// Flag a message deleted.
    Delete {
        channel_id: i64,
        id: i64,
        deleted_at: i64,
        revision: i64,
    },
    /// Set or clear a message's pin time.
    Pin {
        channel_id: i64,
        id: i64,
        pinned_at: Option<i64>,
        revision: i64,
    },
    /// Add to an invite's uses.
    InviteUses { code: String, n: i64 },
    /// A statement on one table, run in log order (`{t}` is the table's physical name).
    Exec {
        table: Table,
        sql: &'static str,
        vals: Vec<Val>,
    },
    /// A channel change computed from the rows as they are (overwrites, sync).
    Channel(ChannelOp),
    /// An audit entry computed from the state before its event.
    Audit(AuditOp),
}

/// Column indexes inside a message insert row (see `schema::Table::Messages`).
const MSG_CONTENT: usize = 4;
const MSG_EDITED_AT: usize = 8;
const MSG_DELETED_AT: usize = 9;
const MSG_REVISION: usize = 10;
const MSG_PINNED_AT: usize = 11;
/// Column index of `uses` in an invite insert row.
const INVITE_USES: usize = 6;

/// The row operations of one batch.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    ops: Vec<Op>,
    /// Message id -> index of its pending insert. (If the log repeated a creation of a
    /// message that already has a row, an edit folded into the repeated insert would be
    /// lost with it; the domain never repeats a message id.)
    pending_messages: HashMap<i64, usize>,
    /// Invite code -> index of its pending insert or uses op.
    pending_invites: HashMap<String, usize>,
    /// Channel -> newest message id seen in the batch.
    last_message: BTreeMap<i64, i64>,
    /// Events applied (decoded and understood).
    pub applied: usize,
    /// Events skipped (unknown type or undecodable).
    pub skipped: usize,
}

/// Decodes a stored event of one aggregate; logs and returns `None` when it cannot.
fn decode<E: DomainEvent>(e: &RecordedEvent) -> Option<E> {
    match E::from_stored(&e.event_type, e.version, e.data.clone()) {
        Ok(ev) => Some(ev),
        Err(EventDecodeError::UnknownType(t)) => {
            tracing::debug!(stream = %e.stream_id, position = e.position, event_type = %t, "skipping an event type the read models do not use");
            None
        }
        Err(err) => {
            tracing::warn!(stream = %e.stream_id, position = e.position, error = %err, "skipping an event that cannot be decoded");
            None
        }
    }
}

/// The id part of a stream name (`guild-123` -> 123), if it is a snowflake.
fn stream_snowflake(stream_id: &str) -> Option<i64> {
    let (_, id) = domain::streams::parse(stream_id)?;
    id.parse::<u64>().ok().filter(|v| *v > 0).map(to_i64)
}

impl Plan {
    /// Plans every event of `events`, in order.
    pub fn new(events: &[&RecordedEvent]) -> Plan {
        let mut plan = Plan::default();
        for e in events {
            if plan.event(e) {
                plan.applied += 1;
            } else {
                plan.skipped += 1;
            }
        }
        plan
    }

    fn push(&mut self, op: Op) -> usize {
        self.ops.push(op);
        self.ops.len() - 1
    }

    /// Plans one event; false if it was skipped.
    fn event(&mut self, e: &RecordedEvent) -> bool {
        let at = to_i64(domain::timefmt::unix_ms(e.metadata.occurred_at));
        let revision = to_i64(e.revision);
        let Some((kind, _)) = domain::streams::parse(&e.stream_id) else {
            tracing::debug!(stream = %e.stream_id, "skipping an event of an unnamed stream");
            return false;
        };
        match kind {
            "user" => match decode::<UserEvent>(e) {
                Some(UserEvent::UserRegistered {
                    user_id,
                    username,
                    bot,
                    ..
                }) => {
                    self.push(Op::Insert(
                        Table::Users,
                        vec![
                            Val::Int(to_i64(user_id.get())),
                            Val::Text(username.into_string()),
                            b(bot),
                            Val::Int(at),
                        ],
                    ));
                    true
                }
                Some(UserEvent::TokenIssued { .. }) => true,
                None => false,
            },
            "username" => decode::<UsernameEvent>(e).is_some(),
            "guild" => {
                let Some(guild_id) = stream_snowflake(&e.stream_id) else {
                    tracing::warn!(stream = %e.stream_id, "skipping a guild event of a stream without a guild id");
                    return false;
                };
                match decode::<GuildEvent>(e) {
                    Some(GuildEvent::GuildCreated {
                        guild_id: gid,
                        name,
                        owner_id,
                        everyone_permissions,
                    }) => {
                        self.push(Op::Insert(
                            Table::Guilds,
                            vec![
                                Val::Int(to_i64(gid.get())),
                                Val::Text(name.into_string()),
                                Val::Int(to_i64(owner_id.get())),
                                Val::Int(to_i64(everyone_permissions.0)),
                                Val::Int(at),
                            ],
                        ));
                        let everyone = domain::role::Role::everyone(gid, everyone_permissions);
                        self.push(Op::Insert(
                            Table::Roles,
                            moderation::role_row(to_i64(gid.get()), &everyone),
                        ));
                        true
                    }
                    Some(GuildEvent::ChannelCreated {
                        channel_id,
                        kind,
                        name,
                        position,
                        parent_id,
                        topic,
                        nsfw,
                    }) => {
                        let parent = parent_id.map(|p| to_i64(p.get()));
                        // The guild's own first channel (revision 3, with GuildCreated)
                        // is not a moderator's doing: no audit entry, as on Discord.
                        if e.revision > 3 {
                            let changes = moderation::channel_created_changes(
                                name.as_str(),
                                kind.discord_type(),
                                nsfw,
                                parent,
                            );
                            self.push(Op::Insert(
                                Table::AuditLog,
                                Entry::of(e, guild_id, at, 0).row(
                                    Some(to_i64(channel_id.get())),
                                    action::CHANNEL_CREATE,
                                    changes,
                                    None,
                                ),
                            ));
                        }
                        self.push(Op::Insert(
                            Table::Channels,
                            vec![
                                Val::Int(to_i64(channel_id.get())),
                                Val::OptInt(Some(guild_id)),
                                Val::Int(i64::from(kind.discord_type())),
                                Val::Text(name.into_string()),
                                Val::Int(i64::from(position)),
                                Val::OptInt(parent),
                                Val::OptText(topic.map(|t| t.into_string())),
                                b(nsfw),
                                Val::OptInt(None),
                                Val::Int(at),
                                Val::Int(0),
                                Val::Text("[]".to_owned()),
                                b(parent.is_some()),
                                Val::OptInt(None),
                            ],
                        ));
                        true
                    }
                    Some(GuildEvent::MemberJoined { user_id, .. }) => {
                        self.push(Op::Insert(
                            Table::Members,
                            vec![
                                Val::Int(guild_id),
                                Val::Int(to_i64(user_id.get())),
                                Val::Int(at),
                                Val::OptText(None),
                                Val::OptInt(None),
                                b(false),
                                b(false),
                            ],
                        ));
                        true
                    }
                    Some(ev) => self.moderation(e, guild_id, at, ev),
                    None => false,
                }
            }
            "channel" => match decode::<ChannelEvent>(e) {
                _ if stream_snowflake(&e.stream_id).is_none() => {
                    tracing::warn!(stream = %e.stream_id, "skipping a channel event of a stream without a channel id");
                    false
                }
                Some(ChannelEvent::ChannelOpened { .. }) => true,
                Some(ChannelEvent::MessageCreated {
                    message_id,
                    channel_id,
                    guild_id,
                    author_id,
                    content,
                    nonce,
                    tts,
                    mention_everyone,
                }) => {
                    let id = to_i64(message_id.get());
                    let channel = to_i64(channel_id.get());
                    let i = self.push(Op::Insert(
                        Table::Messages,
                        vec![
                            Val::Int(id),
                            Val::Int(channel),
                            Val::OptInt(guild_id.map(|g| to_i64(g.get()))),
                            Val::Int(to_i64(author_id.get())),
                            Val::Text(content.into_string()),
                            Val::OptText(nonce.map(|n| n.into_string())),
                            b(tts),
                            Val::Int(at),
                            Val::OptInt(None),
                            Val::OptInt(None),
                            Val::Int(revision),
                            Val::OptInt(None),
                            b(mention_everyone),
                        ],
                    ));
                    self.pending_messages.entry(id).or_insert(i);
                    let last = self.last_message.entry(channel).or_insert(id);
                    *last = (*last).max(id);
                    true
                }
                Some(ChannelEvent::MessageEdited {
                    message_id,
                    content,
                }) => {
                    let stream_channel = stream_snowflake(&e.stream_id).unwrap_or_default();
                    let id = to_i64(message_id.get());
                    if let Some(row) = self.pending_message(id) {
                        row[MSG_CONTENT] = Val::Text(content.into_string());
                        row[MSG_EDITED_AT] = Val::OptInt(Some(at));
                        row[MSG_REVISION] = Val::Int(revision);
                    } else {
                        self.push(Op::Edit {
                            channel_id: stream_channel,
                            id,
                            content: content.into_string(),
                            edited_at: at,
                            revision,
                        });
                    }
                    true
                }
                Some(ChannelEvent::MessageDeleted { message_id }) => {
                    let stream_channel = stream_snowflake(&e.stream_id).unwrap_or_default();
                    let id = to_i64(message_id.get());
                    self.message_deleted_audit(e, stream_channel, id, at);
                    self.message_gone(stream_channel, id, at, revision);
                    true
                }
                Some(ChannelEvent::MessagePinned { message_id }) => {
                    self.message_pin(e, message_id, Some(at), at, revision);
                    true
                }
                Some(ChannelEvent::MessageUnpinned { message_id }) => {
                    self.message_pin(e, message_id, None, at, revision);
                    true
                }
                Some(ChannelEvent::MessagesBulkDeleted { message_ids }) => {
                    let stream_channel = stream_snowflake(&e.stream_id).unwrap_or_default();
                    for message_id in &message_ids {
                        self.message_gone(stream_channel, to_i64(message_id.get()), at, revision);
                    }
                    self.push(Op::Audit(AuditOp::BulkDelete {
                        entry: Entry::of(e, 0, at, 0),
                        channel_id: stream_channel,
                        count: message_ids.len(),
                    }));
                    true
                }
                None => false,
            },
            "invite" => match decode::<InviteEvent>(e) {
                Some(InviteEvent::InviteCreated {
                    code,
                    guild_id,
                    channel_id,
                    inviter_id,
                    max_age,
                    max_uses,
                    temporary,
                    created_at_ms,
                }) => {
                    self.push(Op::Insert(
                        Table::AuditLog,
                        Entry::of(e, to_i64(guild_id.get()), at, 0).row(
                            None,
                            action::INVITE_CREATE,
                            vec![
                                moderation::change("code", None, Some(code.clone().into())),
                                moderation::change(
                                    "channel_id",
                                    None,
                                    Some(channel_id.get().to_string().into()),
                                ),
                                moderation::change(
                                    "inviter_id",
                                    None,
                                    Some(inviter_id.get().to_string().into()),
                                ),
                                moderation::change("max_uses", None, Some(max_uses.into())),
                                moderation::change("max_age", None, Some(max_age.into())),
                                moderation::change("temporary", None, Some(temporary.into())),
                            ],
                            None,
                        ),
                    ));
                    let i = self.push(Op::Insert(
                        Table::Invites,
                        vec![
                            Val::Text(code.clone()),
                            Val::Int(to_i64(guild_id.get())),
                            Val::Int(to_i64(channel_id.get())),
                            Val::Int(to_i64(inviter_id.get())),
                            Val::Int(i64::from(max_age)),
                            Val::Int(i64::from(max_uses)),
                            Val::Int(0),
                            b(temporary),
                            Val::Int(to_i64(created_at_ms)),
                        ],
                    ));
                    self.pending_invites.entry(code).or_insert(i);
                    true
                }
                Some(InviteEvent::InviteUsed { .. }) => {
                    let Some((_, code)) = domain::streams::parse(&e.stream_id) else {
                        return false;
                    };
                    match self
                        .pending_invites
                        .get(code)
                        .and_then(|i| self.ops.get_mut(*i))
                    {
                        Some(Op::Insert(_, row)) => {
                            if let Val::Int(n) = &mut row[INVITE_USES] {
                                *n += 1;
                            }
                        }
                        Some(Op::InviteUses { n, .. }) => *n += 1,
                        _ => {
                            let i = self.push(Op::InviteUses {
                                code: code.to_owned(),
                                n: 1,
                            });
                            self.pending_invites.insert(code.to_owned(), i);
                        }
                    }
                    true
                }
                Some(InviteEvent::InviteDeleted { .. }) => {
                    // A revoked invite is gone from the read models (GET is 404).
                    let Some((_, code)) = domain::streams::parse(&e.stream_id) else {
                        return false;
                    };
                    self.pending_invites.remove(code);
                    // The guild of the entry is read from the invite's row.
                    self.push(Op::Audit(moderation::AuditOp::Invite {
                        entry: Entry::of(e, 0, at, 0),
                        code: code.to_owned(),
                    }));
                    self.push(Op::Exec {
                        table: Table::Invites,
                        sql: "DELETE FROM {t} WHERE code = $1",
                        vals: vec![Val::Text(code.to_owned())],
                    });
                    true
                }
                None => false,
            },
            other => {
                tracing::debug!(stream = %e.stream_id, kind = other, event_type = %e.event_type, "skipping an event of a stream the read models do not use");
                false
            }
        }
    }

    /// The insert row of message `id` when it was created in this batch (a later change
    /// of it is folded into the row instead of updating it after the insert).
    fn pending_message(&mut self, id: i64) -> Option<&mut Vec<Val>> {
        match self
            .pending_messages
            .get(&id)
            .and_then(|i| self.ops.get_mut(*i))
        {
            Some(Op::Insert(_, row)) => Some(row),
            _ => None,
        }
    }

    /// Marks a message deleted at `at` (by the event at stream `revision`).
    fn message_gone(&mut self, channel_id: i64, id: i64, at: i64, revision: i64) {
        if let Some(row) = self.pending_message(id) {
            row[MSG_DELETED_AT] = Val::OptInt(Some(at));
            row[MSG_REVISION] = Val::Int(revision);
        } else {
            self.push(Op::Delete {
                channel_id,
                id,
                deleted_at: at,
                revision,
            });
        }
    }

    /// Pins (`pinned_at` set) or unpins a message, with its MESSAGE_PIN / MESSAGE_UNPIN
    /// audit entry.
    fn message_pin(
        &mut self,
        e: &RecordedEvent,
        message_id: domain::MessageId,
        pinned_at: Option<i64>,
        at: i64,
        revision: i64,
    ) {
        let channel_id = stream_snowflake(&e.stream_id).unwrap_or_default();
        let id = to_i64(message_id.get());
        self.push(Op::Audit(AuditOp::Pin {
            entry: Entry::of(e, 0, at, 0),
            channel_id,
            message_id: id,
            pinned: pinned_at.is_some(),
        }));
        if let Some(row) = self.pending_message(id) {
            row[MSG_PINNED_AT] = Val::OptInt(pinned_at);
            row[MSG_REVISION] = Val::Int(revision);
        } else {
            self.push(Op::Pin {
                channel_id,
                id,
                pinned_at,
                revision,
            });
        }
    }

    /// Plans the audit entry of a message deletion by someone else than its author (read
    /// at write time, unless the message was created in this batch).
    fn message_deleted_audit(&mut self, e: &RecordedEvent, channel: i64, id: i64, at: i64) {
        let actor = match e.metadata.actor {
            store::Actor::User(a) | store::Actor::Bot(a) => Some(to_i64(a)),
            _ => return,
        };
        if let Some(row) = self.pending_message(id) {
            if matches!(row.get(3), Some(Val::Int(author)) if Some(*author) == actor) {
                return;
            }
        }
        self.push(Op::Audit(AuditOp::Message {
            entry: Entry::of(e, 0, at, 0),
            channel_id: channel,
            message_id: id,
            actor,
        }));
    }

    /// Writes the plan to `target` on `conn` (a transaction).
    #[tracing::instrument(skip_all, fields(ops = self.ops.len()))]
    pub async fn write(
        self,
        conn: &mut AnyConnection,
        dialect: Dialect,
        target: &Target,
    ) -> Result<()> {
        // Inserts first, one multi-row run per table, then the updates in log order.
        // This reorders nothing that matters: an update never targets a row inserted in
        // the same batch (those were folded into the row to insert), so it touches a row
        // that existed before the batch, which no insert of the batch changes (an insert
        // of an existing key is ignored), and the tables have no foreign keys.
        //
        // Moderation operations (`Exec`, `Channel`, `Audit`) run in log order instead:
        // each first writes the pending inserts of the tables it touches (a member who
        // leaves and joins again in one batch must end up present).
        let mut inserts: BTreeMap<Table, Vec<Vec<Val>>> = BTreeMap::new();
        let mut updates = Vec::new();
        for op in self.ops {
            match op {
                Op::Insert(table, row) => inserts.entry(table).or_default().push(row),
                Op::Exec { table, sql, vals } => {
                    flush(conn, dialect, target, &mut inserts, &[table]).await?;
                    if target.includes(table) {
                        let sql = sql.replace("{t}", &target.name(table));
                        let mut q = sqlx::query(&sql);
                        for v in vals {
                            q = bind(q, v);
                        }
                        q.execute(&mut *conn).await?;
                    }
                }
                Op::Channel(op) => {
                    flush(conn, dialect, target, &mut inserts, &[op.table()]).await?;
                    if target.includes(op.table()) {
                        op.apply(conn, target).await?;
                    }
                }
                Op::Audit(op) => {
                    if target.includes(Table::AuditLog) {
                        flush(conn, dialect, target, &mut inserts, op.reads()).await?;
                        for row in op.rows(conn, target).await? {
                            inserts.entry(Table::AuditLog).or_default().push(row);
                        }
                    }
                }
                other => updates.push(other),
            }
        }
        for (table, rows) in inserts {
            if target.includes(table) {
                insert_rows(conn, dialect, table, &target.name(table), rows).await?;
            }
        }
        for op in updates {
            match op {
                Op::Insert(..) | Op::Exec { .. } | Op::Channel(_) | Op::Audit(_) => {}
                Op::Edit {
                    channel_id,
                    id,
                    content,
                    edited_at,
                    revision,
                } if target.includes(Table::Messages) => {
                    sqlx::query(&format!(
                        "UPDATE {} SET content = $3, edited_at = $4, revision = $5 \
                         WHERE channel_id = $1 AND id = $2",
                        target.name(Table::Messages)
                    ))
                    .bind(channel_id)
                    .bind(id)
                    .bind(content)
                    .bind(edited_at)
                    .bind(revision)
                    .execute(&mut *conn)
                    .await?;
                }
                Op::Delete {
                    channel_id,
                    id,
                    deleted_at,
                    revision,
                } if target.includes(Table::Messages) => {
                    sqlx::query(&format!(
                        "UPDATE {} SET deleted_at = $3, revision = $4 \
                         WHERE channel_id = $1 AND id = $2 AND deleted_at IS NULL",
                        target.name(Table::Messages)
                    ))
                    .bind(channel_id)
                    .bind(id)
                    .bind(deleted_at)
                    .bind(revision)
                    .execute(&mut *conn)
                    .await?;
                }
                Op::Pin {
                    channel_id,
                    id,
                    pinned_at,
                    revision,
                } if target.includes(Table::Messages) => {
                    sqlx::query(&format!(
                        "UPDATE {} SET pinned_at = $3, revision = $4 \
                         WHERE channel_id = $1 AND id = $2",
                        target.name(Table::Messages)
                    ))
                    .bind(channel_id)
                    .bind(id)
                    .bind(pinned_at)
                    .bind(revision)
                    .execute(&mut *conn)
                    .await?;
                }
                Op::InviteUses { code, n } if target.includes(Table::Invites) => {
                    sqlx::query(&format!(
                        "UPDATE {} SET uses = uses + $2 WHERE code = $1",
                        target.name(Table::Invites)
                    ))
                    .bind(code)
                    .bind(n)
                    .execute(&mut *conn)
                    .await?;
                }
                Op::Edit { .. } | Op::Delete { .. } | Op::Pin { .. } | Op::InviteUses { .. } => {}
            }
        }
        if target.includes(Table::Channels) {
            let sql = format!(
                "UPDATE {} SET last_message_id = $2 WHERE id = $1 \
                 AND (last_message_id IS NULL OR last_message_id < $2)",
                target.name(Table::Channels)
            );
            for (channel, message) in self.last_message {
                sqlx::query(&sql)
                    .bind(channel)
                    .bind(message)
                    .execute(&mut *conn)
                    .await?;
            }
        }
        Ok(())
    }
}

/// Writes the pending inserts of `tables` (those the target includes).
async fn flush(
    conn: &mut AnyConnection,
    dialect: Dialect,
    target: &Target,
    inserts: &mut BTreeMap<Table, Vec<Vec<Val>>>,
    tables: &[Table],
) -> Result<()> {
    for t in tables {
        if let Some(rows) = inserts.remove(t) {
            if target.includes(*t) && !rows.is_empty() {
                insert_rows(conn, dialect, *t, &target.name(*t), rows).await?;
            }
        }
    }
    Ok(())
}

/// Inserts rows, ignoring those whose key exists, in as few statements as it can.
///
/// PostgreSQL: one `INSERT ... SELECT * FROM UNNEST($1::bigint[], $2::text[], ...)` per
/// chunk, each column bound as one array literal (`sqlx::Any` has no array types), so a
/// statement has as many parameters as the table has columns whatever the row count.
/// SQLite: multi-row `VALUES (?, ...), (?, ...)` with anonymous placeholders (sqlx asks
/// SQLite for each parameter's name, a linear scan over named ones, which would make
/// `$n` quadratic in the row count).
async fn insert_rows(
    conn: &mut AnyConnection,
    dialect: Dialect,
    table: Table,
    physical: &str,
    rows: Vec<Vec<Val>>,
) -> Result<()> {
    match dialect {
        Dialect::Sqlite => insert_values(conn, table, physical, rows).await,
        Dialect::Postgres => insert_unnest(conn, table, physical, rows).await,
    }
}

/// Rows per PostgreSQL `UNNEST` insert.
const UNNEST_ROWS: usize = 2000;
/// Up to this many rows, a PostgreSQL insert is `ON CONFLICT DO NOTHING` at once instead
/// of a plain insert inside a savepoint.
const SPECULATIVE_ROWS: usize = 16;

async fn insert_unnest(
    conn: &mut AnyConnection,
    table: Table,
    physical: &str,
    rows: Vec<Vec<Val>>,
) -> Result<()> {
    let cols = table.columns();
    let names: Vec<&str> = cols.iter().map(|c| c.name).collect();
    let arrays: Vec<String> = cols
        .iter()
        .enumerate()
        .map(|(i, c)| match c.ty {
            crate::schema::ColumnType::Int => format!("${}::bigint[]", i + 1),
            crate::schema::ColumnType::Text => format!("${}::text[]", i + 1),
        })
        .collect();
    let plain = format!(
        "INSERT INTO {physical} ({}) SELECT * FROM UNNEST({})",
        names.join(", "),
        arrays.join(", ")
    );
    let tolerant = format!("{plain} ON CONFLICT DO NOTHING");
    for chunk in rows.chunks(UNNEST_ROWS) {
        let arrays: Vec<String> = (0..cols.len())
            .map(|c| pg_array(chunk.iter().map(|row| row.get(c))))
            .collect();
        if chunk.len() <= SPECULATIVE_ROWS {
            // A few rows (the live tail): ON CONFLICT costs less than the two round
            // trips of a savepoint.
            let mut q = sqlx::query(&tolerant);
            for a in &arrays {
                q = q.bind(a.as_str());
            }
            q.execute(&mut *conn).await?;
            continue;
        }
        // A plain INSERT costs PostgreSQL markedly less than a speculative one, and a
        // key that already exists never happens unless events repeat a fact; so for many
        // rows (catching up, rebuilding) try it first and fall back to ON CONFLICT DO
        // NOTHING only on a unique violation.
        sqlx::query("SAVEPOINT chorus_insert")
            .execute(&mut *conn)
            .await?;
        let mut q = sqlx::query(&plain);
        for a in &arrays {
            q = q.bind(a.as_str());
        }
        match q.execute(&mut *conn).await {
            Ok(_) => {}
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("23505") => {
                sqlx::query("ROLLBACK TO SAVEPOINT chorus_insert")
                    .execute(&mut *conn)
                    .await?;
                let mut q = sqlx::query(&tolerant);
                for a in &arrays {
                    q = q.bind(a.as_str());
                }
                q.execute(&mut *conn).await?;
            }
            Err(e) => return Err(e.into()),
        }
        sqlx::query("RELEASE SAVEPOINT chorus_insert")
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// A PostgreSQL array literal (`{1,NULL,"text with \"quotes\""}`) of one column.
fn pg_array<'a>(values: impl Iterator<Item = Option<&'a Val>>) -> String {
    let mut out = String::from("{");
    for (i, v) in values.enumerate() {
        if i > 0 {
            out.push(',');
        }
        match v {
            Some(Val::Int(n)) | Some(Val::OptInt(Some(n))) => out.push_str(&n.to_string()),
            Some(Val::Text(s)) | Some(Val::OptText(Some(s))) => {
                out.push('"');
                for ch in s.chars() {
                    if ch == '"' || ch == '\\' {
                        out.push('\\');
                    }
                    out.push(ch);
                }
                out.push('"');
            }
            Some(Val::OptInt(None)) | Some(Val::OptText(None)) | None => out.push_str("NULL"),
        }
    }
    out.push('}');
    out
}

/// `INSERT INTO physical (...) VALUES (?, ...), (?, ...) ON CONFLICT DO NOTHING`, in
/// chunks (SQLite).
async fn insert_values(
    conn: &mut AnyConnection,
    table: Table,
    physical: &str,
    rows: Vec<Vec<Val>>,
) -> Result<()> {
    let cols = table.columns();
    let per_chunk = (MAX_PARAMS / cols.len()).clamp(1, MAX_ROWS);
    let names: Vec<&str> = cols.iter().map(|c| c.name).collect();
    let head = format!("INSERT INTO {physical} ({}) VALUES ", names.join(", "));
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<Vec<Val>> = rows.by_ref().take(per_chunk).collect();
        let mut sql = String::with_capacity(head.len() + chunk.len() * cols.len() * 3);
        sql.push_str(&head);
        for r in 0..chunk.len() {
            if r > 0 {
                sql.push_str(", ");
            }
            sql.push('(');
            for c in 0..cols.len() {
                if c > 0 {
                    sql.push_str(", ");
                }
                sql.push('?');
            }
            sql.push(')');
        }
        sql.push_str(" ON CONFLICT DO NOTHING");
        let mut q = sqlx::query(&sql);
        for row in chunk {
            for v in row {
                q = bind(q, v);
            }
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use domain::values::Content;
    use domain::{ChannelId, MessageId, UserId};

    fn recorded(position: u64, e: &ChannelEvent) -> RecordedEvent {
        RecordedEvent {
            stream_id: "channel-7".into(),
            revision: position,
            position,
            event_id: uuid::Uuid::new_v4(),
            event_type: e.event_type().into(),
            version: 1,
            data: e.to_data(),
            metadata: store::Metadata::system("test"),
        }
    }

    fn created(id: u64) -> ChannelEvent {
        ChannelEvent::MessageCreated {
            message_id: MessageId::new(id),
            channel_id: ChannelId::new(7),
            guild_id: None,
            author_id: UserId::new(1),
            content: Content::parse("hi").unwrap(),
            nonce: None,
            tts: false,
            mention_everyone: false,
        }
    }

    #[test]
    fn edits_and_deletions_of_messages_created_in_the_batch_fold_into_their_rows() {
        let events = [
            recorded(1, &created(10)),
            recorded(2, &created(11)),
            recorded(
                3,
                &ChannelEvent::MessageEdited {
                    message_id: MessageId::new(10),
                    content: Content::parse("edited").unwrap(),
                },
            ),
            recorded(
                4,
                &ChannelEvent::MessageDeleted {
                    message_id: MessageId::new(11),
                },
            ),
            recorded(5, &created(12)),
            recorded(
                6,
                &ChannelEvent::MessageDeleted {
                    message_id: MessageId::new(9),
                },
            ),
        ];
        let refs: Vec<&RecordedEvent> = events.iter().collect();
        let plan = Plan::new(&refs);
        assert_eq!(plan.applied, 6);
        assert_eq!(
            plan.ops.len(),
            4,
            "three inserts and one deletion of an older message"
        );
        assert!(
            matches!(&plan.ops[0], Op::Insert(Table::Messages, row) if matches!(&row[MSG_CONTENT], Val::Text(t) if t == "edited"))
        );
        assert!(
            matches!(&plan.ops[1], Op::Insert(Table::Messages, row) if matches!(row[MSG_DELETED_AT], Val::OptInt(Some(_))))
        );
        assert!(matches!(
            plan.ops[3],
            Op::Delete {
                channel_id: 7,
                id: 9,
                ..
            }
        ));
        assert_eq!(plan.last_message.get(&7), Some(&12));
    }

    #[test]
    fn postgres_array_literals_quote_text_and_keep_nulls() {
        let vals = [
            Val::Int(1),
            Val::OptInt(None),
            Val::Text("a \"b\" \\ c, {d}".into()),
            Val::OptText(None),
            Val::OptText(Some("NULL".into())),
        ];
        assert_eq!(
            pg_array(vals.iter().map(Some)),
            r#"{1,NULL,"a \"b\" \\ c, {d}",NULL,"NULL"}"#
        );
    }
}
