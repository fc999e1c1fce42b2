//! The permission cache.
//!
//! Effective permissions are computed from pieces that the Guild aggregate already folds:
//! its roles, members (with their roles and timeouts), channels (with overwrites and
//! category sync) and owner. The command cache holds one `GuildState` per guild in this
//! process, updated incrementally event by event, and every use first catches it up from
//! the log (one indexed read of the guild stream after the cached revision). So a check
//! is `domain::permissions` arithmetic on memory, and it is never stale: a ban, role
//! change or overwrite that has returned success is in the log, and the next check on
//! any node reads it. The gateway, which learns of guild events from the bus, names the
//! guild revision it needs ([`Commands::guild_view`]) and reads the log only when the
//! cache is older than that.

use std::collections::HashSet;

use domain::guild::GuildState;
use domain::permissions::Permissions;
use domain::{streams, ChannelId, DomainError, GuildId, Resource, UserId};
use store::Revision;

use crate::cache::catch_up_both;
use crate::handlers::now_ms;
use crate::{CommandError, Commands};

impl Commands {
    /// Runs `f` on a guild's state as of at least `revision` of its stream: from memory
    /// when the cached state is that new, otherwise after catching up from the log.
    /// `revision` 0 asks for the newest state (it always reads the log).
    pub async fn guild_view<T>(
        &self,
        guild_id: GuildId,
        revision: Revision,
        f: impl FnOnce(&GuildState) -> T,
    ) -> Result<T, CommandError> {
        let stream = streams::guild(guild_id);
        let entry = self.guilds.entry(&stream);
        let mut loaded = entry.lock().await;
        if loaded.revision < revision || revision == 0 {
            loaded.catch_up(self.store.as_ref(), &stream).await?;
        }
        Ok(f(&loaded.state))
    }

    /// What `user` may do in `channel_id` now, with the channel's guild: Unknown Channel
    /// when there is no such guild channel, Missing Access when the user cannot view it
    /// (a non-member sees no channel of the guild). Channel and guild are read from the
    /// log together, in one round trip.
    pub async fn channel_access(
        &self,
        user: UserId,
        channel_id: ChannelId,
    ) -> Result<(GuildId, Permissions), CommandError> {
        let stream = streams::channel(channel_id);
        let entry = self.channels.entry(&stream);
        let mut channel = entry.lock().await;
        if channel.state.guild_id.is_none() {
            channel.catch_up(self.store.as_ref(), &stream).await?;
        }
        let guild_id = channel
            .state
            .guild_id
            .ok_or(DomainError::Unknown(Resource::Channel))?;
        let guild_stream = streams::guild(guild_id);
        let guild_entry = self.guilds.entry(&guild_stream);
        let mut guild = guild_entry.lock().await;
        catch_up_both(
            self.store.as_ref(),
            (&mut *channel, &stream),
            (&mut *guild, &guild_stream),
        )
        .await?;
        drop(channel);
        let state = &guild.state;
        if !state.channels.contains_key(&channel_id) {
            return Err(DomainError::Unknown(Resource::Channel).into());
        }
        let perms = state.channel_permissions(user, channel_id, now_ms());
        if !perms.contains(Permissions::VIEW_CHANNEL) {
            return Err(DomainError::MissingAccess.into());
        }
        Ok((guild_id, perms))
    }

    /// Checks that `user` may show that they are typing in `channel_id` now (see
    /// [`GuildState::require_typing`]); the channel's guild. Typing is never recorded.
    pub async fn typing(
        &self,
        user: UserId,
        channel_id: ChannelId,
    ) -> Result<GuildId, CommandError> {
        let (guild_id, _) = self.channel_access(user, channel_id).await?;
        // `channel_access` has just caught the guild up: revision 1 reads from memory.
        self.guild_view(guild_id, 1, |g| {
            g.require_typing(user, channel_id, now_ms())
        })
        .await??;
        Ok(guild_id)
    }

    /// The channels of a guild that `user` can view now; Unknown Guild when there is no
    /// such guild, Missing Access when `user` is not a member.
    pub async fn visible_channels(
        &self,
        user: UserId,
        guild_id: GuildId,
    ) -> Result<HashSet<ChannelId>, CommandError> {
        self.guild_view(guild_id, 0, |g| {
            if !g.exists() {
                return Err(DomainError::Unknown(Resource::Guild).into());
            }
            if !g.is_member(user) {
                return Err(DomainError::MissingAccess.into());
            }
            let now = now_ms();
            Ok(g.channels
                .keys()
                .copied()
                .filter(|c| {
                    g.channel_permissions(user, *c, now)
                        .contains(Permissions::VIEW_CHANNEL)
                })
                .collect())
        })
        .await?
    }

    /// A member's guild-level permissions now; Unknown Guild when there is no such guild,
    /// Missing Access when `user` is not a member.
    pub async fn guild_access(
        &self,
        user: UserId,
        guild_id: GuildId,
    ) -> Result<Permissions, CommandError> {
        self.guild_view(guild_id, 0, |g| {
            if !g.exists() {
                return Err(DomainError::Unknown(Resource::Guild).into());
            }
            if !g.is_member(user) {
                return Err(DomainError::MissingAccess.into());
            }
            Ok(g.guild_permissions(user, now_ms()))
        })
        .await?
    }
}
