//! Moderation commands: roles, member edits (nickname, roles, timeout, voice), kicks,
//! bans, leaving, channel edits, deletions and permission overwrites.
//!
//! Each one runs the Guild aggregate's `decide` through [`Commands::execute`], so its
//! events carry the usual metadata: the actor (user or bot), the time, the request id
//! and the `X-Audit-Log-Reason` (`Context::reason`), which the audit log shows.
//!
//! A ban with `delete_message_seconds` also deletes the banned user's messages of that
//! window: after the ban is recorded, each text channel of the guild gets one
//! `MessageDeleted` event per such message in its own stream (so `MESSAGE_DELETE`
//! dispatches and the read models follow as for any deletion), recorded with the
//! moderator as actor and the same request id and reason. These appends come after the
//! ban's and are not atomic with it; each channel's is retried on conflict.

use domain::channel::{ChannelEvent, ChannelState};
use domain::guild::{self, GuildCommand, GuildEvent, GuildState};
use domain::member::Nickname;
use domain::permissions::{Overwrite, OverwriteTarget, Permissions};
use domain::role::RoleName;
use domain::values::{ChannelName, Topic};
use domain::{streams, ChannelId, DomainError, GuildId, MessageId, RoleId, UserId};
use store::Position;

use crate::handlers::{backoff, expected, now_ms};
use crate::{encode, CommandError, Commands, Context, MAX_ATTEMPTS};

/// A new role. `None` fields take Discord's defaults ("new role", no permissions
/// beyond none, no colour, not hoisted, not mentionable).
#[derive(Debug, Clone, Default)]
pub struct RoleSpec {
    pub name: Option<String>,
    pub permissions: Option<Permissions>,
    pub color: Option<u32>,
    pub hoist: Option<bool>,
    pub mentionable: Option<bool>,
}

/// A role edit; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct RoleEdit {
    pub name: Option<String>,
    pub permissions: Option<Permissions>,
    pub color: Option<u32>,
    pub hoist: Option<bool>,
    pub mentionable: Option<bool>,
}

/// A member edit; `None` leaves a field as it is, `Some(None)` clears `nick` or lifts a
/// timeout.
#[derive(Debug, Clone, Default)]
pub struct MemberEdit {
    pub nick: Option<Option<String>>,
    pub roles: Option<Vec<RoleId>>,
    /// Unix ms.
    pub communication_disabled_until_ms: Option<Option<u64>>,
    pub mute: Option<bool>,
    pub deaf: Option<bool>,
}

/// A channel edit; `None` leaves a field as it is, `Some(None)` clears `topic` or
/// `parent_id`. `lock_permissions` syncs the channel with its (new) category.
#[derive(Debug, Clone, Default)]
pub struct ChannelEdit {
    pub name: Option<String>,
    pub topic: Option<Option<String>>,
    pub nsfw: Option<bool>,
    pub position: Option<i32>,
    pub parent_id: Option<Option<ChannelId>>,
    pub rate_limit_per_user: Option<u32>,
    pub lock_permissions: bool,
}

/// What a ban did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Banned {
    /// The position to wait for before reading (the last append's).
    pub position: Position,
    /// How many of the user's messages were deleted.
    pub deleted_messages: usize,
}

/// A nickname from the wire: empty (or blank) clears it, as on Discord.
fn nickname(raw: Option<String>) -> Result<Option<Nickname>, DomainError> {
    match raw {
        None => Ok(None),
        Some(s) if s.trim().is_empty() => Ok(None),
        Some(s) => Nickname::parse(&s).map(Some),
    }
}

impl Commands {
    /// Runs a guild command decided at the current time and returns the position to wait
    /// for (the head when nothing changed) and the events recorded.
    async fn on_guild(
        &self,
        ctx: &Context,
        guild_id: GuildId,
        command: impl Fn(u64) -> GuildCommand,
    ) -> Result<(Vec<GuildEvent>, Position), CommandError> {
        let stream = streams::guild(guild_id);
        let (events, result) = self
            .execute(&self.guilds, &stream, ctx, |state: &GuildState| {
                if !state.exists() {
                    return Err(DomainError::Unknown(domain::Resource::Guild));
                }
                guild::decide(state, command(now_ms()))
            })
            .await?;
        Ok((events, result.position))
    }

    /// Creates a role at the bottom of the hierarchy (just above @everyone).
    #[tracing::instrument(skip(self, ctx, spec), fields(actor = %ctx.actor))]
    pub async fn create_role(
        &self,
        ctx: &Context,
        guild_id: GuildId,
        spec: RoleSpec,
    ) -> Result<(RoleId, Position), CommandError> {
        let name = RoleName::parse(spec.name.as_deref().unwrap_or("new role"))?;
        let role_id = RoleId::new(self.ids.next());
        let (_, position) = self
            .on_guild(ctx, guild_id, |now_ms| GuildCommand::CreateRole {
                actor: ctx.actor,
                role_id,
                name: name.clone(),
                permissions: spec.permissions.unwrap_or(Permissions::NONE),
                color: spec.color.unwrap_or(0),
                hoist: spec.hoist.unwrap_or(false),
                mentionable: spec.mentionable.unwrap_or(false),
                now_ms,
            })
            .await?;
        Ok((role_id, position))
    }

    /// Edits a role.
    #[tracing::instrument(skip(self, ctx, edit), fields(actor = %ctx.actor))]
    pub async fn edit_role(
        &self,
        ctx: &Context,
        guild_id: GuildId,
        role_id: RoleId,
        edit: RoleEdit,
    ) -> Result<Position, CommandError> {
        let name = edit.name.as_deref().map(RoleName::parse).transpose()?;
        let (_, position) = self
            .on_guild(ctx, guild_id, |now_ms| GuildCommand::EditRole {
                actor: ctx.actor,
                role_id,
                name: name.clone(),
                permissions: edit.permissions,
                color: edit.color,
                hoist: edit.hoist,
                mentionable: edit.mentionable,
                now_ms,
            })
            .await?;
        Ok(position)
    }

    /// Deletes a role.
    #[tracing::instrument(skip(self, ctx), fields(actor = %ctx.actor))]
    pub async fn delete_role(
        &self,
        ctx: &Context,
        guild_id: GuildId,
        role_id: RoleId,
    ) -> Result<Position, CommandError> {
        let (_, position) = self
            .on_guild(ctx, guild_id, |now_ms| GuildCommand::DeleteRole {
                actor: ctx.actor,
                role_id,
                now_ms,
            })
            .await?;
        Ok(position)
    }

    /// Moves roles to the given positions.
    #[tracing::instrument(skip(self, ctx, positions), fields(actor = %ctx.actor))]
    pub async fn reorder_roles(
        &self,
        ctx: &Context,
        guild_id: GuildId,
        positions: Vec<(RoleId, i32)>,
    ) -> Result<Position, CommandError> {
        let (_, position) = self
            .on_guild(ctx, guild_id, |now_ms| GuildCommand::ReorderRoles {
                actor: ctx.actor,
                positions: positions.clone(),
                now_ms,
            })
            .await?;
        Ok(position)
    }

    /// Gives a member a role (`add`) or takes it away.
    #[tracing::instrument(skip(self, ctx), fields(actor = %ctx.actor))]
    pub async fn set_member_role(
        &self,
        ctx: &Context,
        guild_id: GuildId,
        user_id: UserId,
        role_id: RoleId,
        add: bool,
    ) -> Result<Position, CommandError> {
        let (_, position) = self
            .on_guild(ctx, guild_id, |now_ms| {
                if add {
                    GuildCommand::AddMemberRole {
                        actor: ctx.actor,
                        user_id,
                        role_id,
                        now_ms,
                    }
                } else {
                    GuildCommand::RemoveMemberRole {
                        actor: ctx.actor,
                        user_id,
                        role_id,
                        now_ms,
                    }
                }
            })
            .await?;
        Ok(position)
    }

    /// Edits a member (nickname, roles, timeout, mute, deafen).
    #[tracing::instrument(skip(self, ctx, edit), fields(actor = %ctx.actor))]
    pub async fn edit_member(
        &self,
        ctx: &Context,
        guild_id: GuildId,
        user_id: UserId,
        edit: MemberEdit,
    ) -> Result<Position, CommandError> {
        let nick = edit.nick.map(nickname).transpose()?;
        let (_, position) = self
            .on_guild(ctx, guild_id, |now_ms| GuildCommand::EditMember {
                actor: ctx.actor,
                user_id,
                nick: nick.clone(),
                roles: edit.roles.clone(),
                communication_disabled_until_ms: edit.communication_disabled_until_ms,
                mute: edit.mute,
                deaf: edit.deaf,
                now_ms,
            })
            .await?;
        Ok(position)
    }

    /// Kicks a member.
    #[tracing::instrument(skip(self, ctx), fields(actor = %ctx.actor))]
    pub async fn kick_member(
        &self,
        ctx: &Context,
        guild_id: GuildId,
        user_id: UserId,
    ) -> Result<Position, CommandError> {
        let (_, position) = self
            .on_guild(ctx, guild_id, |now_ms| GuildCommand::KickMember {
                actor: ctx.actor,
                user_id,
                now_ms,
            })
            .await?;
        Ok(position)
    }

    /// The actor leaves the guild (not its owner).
    #[tracing::instrument(skip(self, ctx), fields(actor = %ctx.actor))]
    pub async fn leave_guild(
        &self,
        ctx: &Context,
        guild_id: GuildId,
    ) -> Result<Position, CommandError> {
        let (_, position) = self
            .on_guild(ctx, guild_id, |_| GuildCommand::Leave {
                user_id: ctx.actor,
            })
            .await?;
        Ok(position)
    }

    /// Bans a user (member or not) and deletes their messages of the last
    /// `delete_message_seconds` (0-604800) in every text channel of the guild.
    #[tracing::instrument(skip(self, ctx), fields(actor = %ctx.actor))]
    pub async fn ban_member(
        &self,
        ctx: &Context,
        guild_id: GuildId,
        user_id: UserId,
        delete_message_seconds: u32,
    ) -> Result<Banned, CommandError> {
        let started_ms = now_ms();
        let (events, mut position) = self
            .on_guild(ctx, guild_id, |now_ms| GuildCommand::BanMember {
                actor: ctx.actor,
                user_id,
                delete_message_seconds,
                now_ms,
            })
            .await?;
        let mut deleted_messages = 0;
        if delete_message_seconds > 0 && !events.is_empty() {
            let since_ms = started_ms.saturating_sub(u64::from(delete_message_seconds) * 1000);
            let channels: Vec<ChannelId> = self
                .with_guild(guild_id, |g| {
                    g.channels
                        .iter()
                        .filter(|(_, c)| c.kind.is_textual())
                        .map(|(id, _)| *id)
                        .collect()
                })
                .await?;
            for channel_id in channels {
                let (n, p) = self
                    .delete_messages_by(ctx, channel_id, user_id, since_ms)
                    .await?;
                deleted_messages += n;
                position = position.max(p);
            }
        }
        Ok(Banned {
            position,
            deleted_messages,
        })
    }

    /// Deletes `author`'s live messages sent at or after `since_ms` in one channel (one
    /// `MessageDeleted` each, appended together). Returns how many, and the position.
    async fn delete_messages_by(
        &self,
        ctx: &Context,
        channel_id: ChannelId,
        author: UserId,
        since_ms: u64,
    ) -> Result<(usize, Position), CommandError> {
        let stream = streams::channel(channel_id);
        let entry = self.channels.entry(&stream);
        let mut loaded = entry.lock().await;
        let meta = ctx.metadata();
        for attempt in 0..MAX_ATTEMPTS {
            loaded.catch_up(self.store.as_ref(), &stream).await?;
            let mut doomed: Vec<MessageId> = matching(&loaded.state, author, since_ms);
            if doomed.is_empty() {
                return Ok((0, 0));
            }
            doomed.sort();
            let events: Vec<ChannelEvent> = doomed
                .into_iter()
                .map(|message_id| ChannelEvent::MessageDeleted { message_id })
                .collect();
            match self
                .store
                .append(&stream, expected(loaded.revision), encode(&events, &meta))
                .await
            {
                Ok(result) => {
                    loaded.apply(&events, result.revision);
                    return Ok((events.len(), result.position));
                }
                Err(e) if e.is_conflict() => backoff(attempt).await,
                Err(e) => return Err(e.into()),
            }
        }
        Err(CommandError::Contention(stream))
    }

    /// Lifts a ban.
    #[tracing::instrument(skip(self, ctx), fields(actor = %ctx.actor))]
    pub async fn unban_member(
        &self,
        ctx: &Context,
        guild_id: GuildId,
        user_id: UserId,
    ) -> Result<Position, CommandError> {
        let (_, position) = self
            .on_guild(ctx, guild_id, |now_ms| GuildCommand::UnbanMember {
                actor: ctx.actor,
                user_id,
                now_ms,
            })
            .await?;
        Ok(position)
    }

    /// Sets a channel's permission overwrite for a role or member.
    #[tracing::instrument(skip(self, ctx), fields(actor = %ctx.actor))]
    pub async fn set_overwrite(
        &self,
        ctx: &Context,
        channel_id: ChannelId,
        overwrite: Overwrite,
    ) -> Result<(GuildId, Position), CommandError> {
        let guild_id = self.channel_guild(channel_id).await?;
        let (_, position) = self
            .on_guild(ctx, guild_id, |now_ms| GuildCommand::SetOverwrite {
                actor: ctx.actor,
                channel_id,
                overwrite,
                now_ms,
            })
            .await?;
        Ok((guild_id, position))
    }

    /// Removes a channel's permission overwrite (nothing happens if there is none).
    #[tracing::instrument(skip(self, ctx), fields(actor = %ctx.actor))]
    pub async fn delete_overwrite(
        &self,
        ctx: &Context,
        channel_id: ChannelId,
        target: OverwriteTarget,
    ) -> Result<(GuildId, Position), CommandError> {
        let guild_id = self.channel_guild(channel_id).await?;
        let (_, position) = self
            .on_guild(ctx, guild_id, |now_ms| GuildCommand::DeleteOverwrite {
                actor: ctx.actor,
                channel_id,
                target,
                now_ms,
            })
            .await?;
        Ok((guild_id, position))
    }

    /// Edits a guild channel.
    #[tracing::instrument(skip(self, ctx, edit), fields(actor = %ctx.actor))]
    pub async fn edit_channel(
        &self,
        ctx: &Context,
        channel_id: ChannelId,
        edit: ChannelEdit,
    ) -> Result<(GuildId, Position), CommandError> {
        let name = edit.name.as_deref().map(ChannelName::parse).transpose()?;
        let topic = match edit.topic {
            Some(Some(t)) if !t.is_empty() => Some(Some(Topic::parse(&t)?)),
            Some(_) => Some(None),
            None => None,
        };
        let guild_id = self.channel_guild(channel_id).await?;
        let (_, position) = self
            .on_guild(ctx, guild_id, |now_ms| GuildCommand::EditChannel {
                actor: ctx.actor,
                channel_id,
                name: name.clone(),
                topic: topic.clone(),
                nsfw: edit.nsfw,
                position: edit.position,
                parent_id: edit.parent_id,
                rate_limit_per_user: edit.rate_limit_per_user,
                lock_permissions: edit.lock_permissions,
                now_ms,
            })
            .await?;
        Ok((guild_id, position))
    }

    /// Deletes a guild channel (its messages stay in the log).
    #[tracing::instrument(skip(self, ctx), fields(actor = %ctx.actor))]
    pub async fn delete_channel(
        &self,
        ctx: &Context,
        channel_id: ChannelId,
    ) -> Result<(GuildId, Position), CommandError> {
        let guild_id = self.channel_guild(channel_id).await?;
        let (_, position) = self
            .on_guild(ctx, guild_id, |now_ms| GuildCommand::DeleteChannel {
                actor: ctx.actor,
                channel_id,
                now_ms,
            })
            .await?;
        Ok((guild_id, position))
    }
}

/// An author's live messages of a channel sent at or after `since_ms`.
fn matching(state: &ChannelState, author: UserId, since_ms: u64) -> Vec<MessageId> {
    state
        .messages
        .iter()
        .filter(|(id, m)| m.author_id == author && !m.deleted && id.timestamp_ms() >= since_ms)
        .map(|(id, _)| *id)
        .collect()
}
