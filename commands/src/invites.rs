//! Invite revocation (`DELETE /invites/{code}`) and guild renaming (`PATCH /guilds/{id}`).

use domain::invite::{self, InviteCommand, InviteInfo};
use domain::{streams, DomainError, Resource};
use store::Position;

use crate::handlers::{backoff, expected, now_ms};
use crate::{encode, CommandError, Commands, Context, MAX_ATTEMPTS};

impl Commands {
    /// Revokes an invite: the actor needs MANAGE_CHANNELS in its channel or
    /// MANAGE_GUILD. Returns the invite as it was and the position of the revocation.
    /// Unknown or already revoked codes are Unknown Invite.
    #[tracing::instrument(skip(self, ctx), fields(actor = %ctx.actor))]
    pub async fn delete_invite(
        &self,
        ctx: &Context,
        code: &str,
    ) -> Result<(InviteInfo, Position), CommandError> {
        if !invite::valid_code(code) {
            return Err(DomainError::Unknown(Resource::Invite).into());
        }
        let invite_stream = streams::invite(code);
        let invite_entry = self.invites.entry(&invite_stream);
        let mut inv = invite_entry.lock().await;
        let meta = ctx.metadata();
        for attempt in 0..MAX_ATTEMPTS {
            inv.catch_up(self.store.as_ref(), &invite_stream).await?;
            let info = inv
                .state
                .info
                .clone()
                .ok_or(DomainError::Unknown(Resource::Invite))?;
            let guild_stream = streams::guild(info.guild_id);
            let guild_entry = self.guilds.entry(&guild_stream);
            let mut g = guild_entry.lock().await;
            g.catch_up(self.store.as_ref(), &guild_stream).await?;
            let events = invite::decide(
                &inv.state,
                &g.state,
                InviteCommand::Delete {
                    user_id: ctx.actor,
                    now_ms: now_ms(),
                },
            )?;
            drop(g);
            match self
                .store
                .append(
                    &invite_stream,
                    expected(inv.revision),
                    encode(&events, &meta),
                )
                .await
            {
                Ok(result) => {
                    inv.apply(&events, result.revision);
                    return Ok((info, result.position));
                }
                Err(e) if e.is_conflict() => backoff(attempt).await,
                Err(e) => return Err(e.into()),
            }
        }
        Err(CommandError::Contention(invite_stream))
    }
}

impl Commands {
    /// Renames a guild (MANAGE_GUILD). Returns the position to wait for (the head when
    /// the name is unchanged).
    #[tracing::instrument(skip(self, ctx), fields(actor = %ctx.actor))]
    pub async fn rename_guild(
        &self,
        ctx: &Context,
        guild_id: domain::GuildId,
        name: domain::values::GuildName,
    ) -> Result<Position, CommandError> {
        let stream = streams::guild(guild_id);
        let (_, result) = self
            .execute(&self.guilds, &stream, ctx, |g| {
                domain::guild::decide(
                    g,
                    domain::guild::GuildCommand::Rename {
                        actor: ctx.actor,
                        name: name.clone(),
                        now_ms: now_ms(),
                    },
                )
            })
            .await?;
        Ok(result.position)
    }
}
