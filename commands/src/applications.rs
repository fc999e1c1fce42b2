//! Applications and their bots: create an application, give it a bot user and token,
//! reset the token, and add the bot to a guild (OAuth2 `scope=bot`).
//!
//! A bot's user id equals its application's id. Its token has the same form as every
//! other token and is stored only as a hash in the bot user's stream; a reset appends a
//! `TokenIssued { revokes_others: true }` there, so the old token fails on the very next
//! request (authentication catches up on the user's stream first).

use domain::application::{self, ApplicationCommand, ApplicationName, ApplicationState};
use domain::guild::{self, AddBot, GuildCommand};
use domain::id::ApplicationId;
use domain::permissions::Permissions;
use domain::role::RoleName;
use domain::user::{self, UserCommand, UserState, UsernameState};
use domain::values::Username;
use domain::{streams, DomainError, GuildId, RoleId, UserId};
use rand::RngCore;
use store::{ExpectedRevision, Position, StreamAppend};

use crate::cache::Loaded;
use crate::handlers::{backoff, expected, now_ms, Tap};
use crate::{auth, encode, CommandError, Commands, Context, MAX_ATTEMPTS};

/// A bot's token, as `POST /applications/{id}/bot` and its reset return it.
#[derive(Debug, Clone)]
pub struct BotToken {
    pub bot_id: UserId,
    pub token: String,
    pub position: Position,
}

/// The usernames a bot of an application named `name` tries, in order: the name made
/// into a valid username, then that name shortened with the bot's id appended.
fn bot_usernames(name: &str, id: u64) -> Vec<Username> {
    let mut base = String::new();
    for c in name.trim().to_lowercase().chars() {
        let c = if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.' {
            c
        } else {
            '_'
        };
        if c == '.' && base.ends_with('.') {
            continue;
        }
        base.push(c);
    }
    let base: String = base.chars().take(32).collect();
    let suffix = format!("_{id}");
    let short: String = base.chars().take(32 - suffix.len().min(32)).collect();
    [base, format!("{short}{suffix}"), format!("bot{suffix}")]
        .iter()
        .filter_map(|n| Username::parse(n).ok())
        .collect()
}

fn verify_key() -> String {
    let mut key = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut key);
    hex::encode(key)
}

impl Commands {
    async fn load_application(
        &self,
        id: ApplicationId,
    ) -> Result<Loaded<ApplicationState>, CommandError> {
        let mut loaded = Loaded::<ApplicationState>::default();
        loaded
            .catch_up(self.store.as_ref(), &streams::application(id))
            .await?;
        Ok(loaded)
    }

    /// An application's current state, read from its stream (`None` if there is none).
    /// A bot's application has the bot's id.
    pub async fn application(
        &self,
        id: ApplicationId,
    ) -> Result<Option<ApplicationState>, CommandError> {
        let loaded = self.load_application(id).await?;
        Ok(loaded.state.exists().then_some(loaded.state))
    }

    /// Creates an application owned by the actor.
    #[tracing::instrument(skip(self, ctx), fields(actor = %ctx.actor))]
    pub async fn create_application(
        &self,
        ctx: &Context,
        name: &str,
        description: Option<&str>,
    ) -> Result<(ApplicationId, Position), CommandError> {
        let name = ApplicationName::parse(name)?;
        let application_id = ApplicationId::new(self.ids.next());
        let events = application::decide(
            &ApplicationState::default(),
            ApplicationCommand::Create {
                application_id,
                owner_id: ctx.actor,
                name,
                description: description.unwrap_or_default().to_owned(),
                verify_key: verify_key(),
            },
        )?;
        let result = self
            .store
            .append(
                &streams::application(application_id),
                ExpectedRevision::NoStream,
                encode(&events, &ctx.metadata()),
            )
            .await?;
        Ok((application_id, result.position))
    }

    /// Gives an application its bot user and returns the bot's first token (owner only;
    /// once). The bot's username is the application's name made valid, or, if taken,
    /// that name with the bot's id.
    #[tracing::instrument(skip(self, ctx), fields(actor = %ctx.actor))]
    pub async fn create_bot(
        &self,
        ctx: &Context,
        application_id: ApplicationId,
    ) -> Result<BotToken, CommandError> {
        let meta = ctx.metadata();
        let bot_id = UserId::new(application_id.get());
        let token = auth::mint_token(bot_id);
        let mut attempt = 0;
        let mut names_tried = 0;
        while attempt < MAX_ATTEMPTS {
            let app = self.load_application(application_id).await?;
            let created = application::decide(
                &app.state,
                ApplicationCommand::CreateBot { actor: ctx.actor },
            )?;
            let name = app
                .state
                .name
                .as_ref()
                .map(ApplicationName::as_str)
                .unwrap_or("bot");
            let candidates = bot_usernames(name, bot_id.get());
            let username = candidates
                .get(names_tried)
                .cloned()
                .ok_or(DomainError::UsernameTaken)?;
            let mut claim = Loaded::<UsernameState>::default();
            claim
                .catch_up(self.store.as_ref(), &streams::username(&username))
                .await?;
            let claimed = match user::claim_username(&claim.state, bot_id) {
                Ok(events) => events,
                Err(DomainError::UsernameTaken) => {
                    names_tried += 1;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let mut user_events = user::decide(
                &UserState::default(),
                UserCommand::Register {
                    user_id: bot_id,
                    username: username.clone(),
                    password_hash: None,
                    bot: true,
                },
            )?;
            user_events.extend(user::decide(
                &UserState::default().tap(&user_events),
                UserCommand::IssueToken {
                    token_hash: auth::token_hash(&token),
                },
            )?);
            let result = self
                .store
                .append_many(vec![
                    StreamAppend {
                        stream_id: streams::application(application_id),
                        expected: expected(app.revision),
                        events: encode(&created, &meta),
                    },
                    StreamAppend {
                        stream_id: streams::username(&username),
                        expected: expected(claim.revision),
                        events: encode(&claimed, &meta),
                    },
                    StreamAppend {
                        stream_id: streams::user(bot_id),
                        expected: ExpectedRevision::NoStream,
                        events: encode(&user_events, &meta),
                    },
                ])
                .await;
            match result {
                Ok(results) => {
                    return Ok(BotToken {
                        bot_id,
                        token,
                        position: results.iter().map(|r| r.position).max().unwrap_or(0),
                    })
                }
                Err(e) if e.is_conflict() => backoff(attempt).await,
                Err(e) => return Err(e.into()),
            }
            attempt += 1;
        }
        Err(CommandError::Contention(streams::application(
            application_id,
        )))
    }

    /// Issues the bot a new token and revokes every earlier one (owner only).
    #[tracing::instrument(skip(self, ctx), fields(actor = %ctx.actor))]
    pub async fn reset_bot_token(
        &self,
        ctx: &Context,
        application_id: ApplicationId,
    ) -> Result<BotToken, CommandError> {
        let meta = ctx.metadata();
        let app_stream = streams::application(application_id);
        for attempt in 0..MAX_ATTEMPTS {
            let app = self.load_application(application_id).await?;
            let reset = application::decide(
                &app.state,
                ApplicationCommand::ResetBotToken { actor: ctx.actor },
            )?;
            let bot_id = app
                .state
                .bot_id
                .ok_or(DomainError::Unknown(domain::Resource::User))?;
            let token = auth::mint_token(bot_id);
            let user_stream = streams::user(bot_id);
            let entry = self.users.entry(&user_stream);
            let mut bot = entry.lock().await;
            bot.catch_up(self.store.as_ref(), &user_stream).await?;
            let issued = user::decide(
                &bot.state,
                UserCommand::ResetToken {
                    token_hash: auth::token_hash(&token),
                },
            )?;
            let result = self
                .store
                .append_many(vec![
                    StreamAppend {
                        stream_id: app_stream.clone(),
                        expected: expected(app.revision),
                        events: encode(&reset, &meta),
                    },
                    StreamAppend {
                        stream_id: user_stream,
                        expected: expected(bot.revision),
                        events: encode(&issued, &meta),
                    },
                ])
                .await;
            match result {
                Ok(results) => {
                    bot.apply(&issued, results[1].revision);
                    return Ok(BotToken {
                        bot_id,
                        token,
                        position: results.iter().map(|r| r.position).max().unwrap_or(0),
                    });
                }
                Err(e) if e.is_conflict() => backoff(attempt).await,
                Err(e) => return Err(e.into()),
            }
        }
        Err(CommandError::Contention(app_stream))
    }

    /// Adds an application's bot to a guild (OAuth2 `scope=bot`): the actor needs
    /// MANAGE_GUILD there and every permission granted; the bot joins with a managed
    /// role named after the application. Returns the bot's id and the position to wait
    /// for; authorizing a bot that is already a member changes nothing.
    #[tracing::instrument(skip(self, ctx), fields(actor = %ctx.actor))]
    pub async fn authorize_bot(
        &self,
        ctx: &Context,
        application_id: ApplicationId,
        guild_id: GuildId,
        permissions: Permissions,
    ) -> Result<(UserId, Position), CommandError> {
        let meta = ctx.metadata();
        let guild_stream = streams::guild(guild_id);
        let app_stream = streams::application(application_id);
        let role_id = RoleId::new(self.ids.next());
        for attempt in 0..MAX_ATTEMPTS {
            let app = self.load_application(application_id).await?;
            let (Some(bot_id), Some(name)) = (app.state.bot_id, app.state.name.as_ref()) else {
                return Err(DomainError::Unknown(domain::Resource::Application).into());
            };
            let entry = self.guilds.entry(&guild_stream);
            let mut g = entry.lock().await;
            g.catch_up(self.store.as_ref(), &guild_stream).await?;
            let added = guild::decide(
                &g.state,
                GuildCommand::AddBot(AddBot {
                    actor: ctx.actor,
                    bot_id,
                    role_id,
                    role_name: RoleName::parse(name.as_str())?,
                    permissions,
                    now_ms: now_ms(),
                }),
            )?;
            if added.is_empty() {
                return Ok((bot_id, self.store.head().await?));
            }
            let authorized = application::decide(
                &app.state,
                ApplicationCommand::Authorize {
                    actor: ctx.actor,
                    guild_id,
                    role_id,
                    permissions,
                },
            )?;
            // The application's record comes first, so the bot's role tag is in the
            // read models before the role is.
            let result = self
                .store
                .append_many(vec![
                    StreamAppend {
                        stream_id: app_stream.clone(),
                        expected: expected(app.revision),
                        events: encode(&authorized, &meta),
                    },
                    StreamAppend {
                        stream_id: guild_stream.clone(),
                        expected: expected(g.revision),
                        events: encode(&added, &meta),
                    },
                ])
                .await;
            match result {
                Ok(results) => {
                    g.apply(&added, results[1].revision);
                    return Ok((
                        bot_id,
                        results.iter().map(|r| r.position).max().unwrap_or(0),
                    ));
                }
                Err(e) if e.is_conflict() => backoff(attempt).await,
                Err(e) => return Err(e.into()),
            }
        }
        Err(CommandError::Contention(guild_stream))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bot_usernames_are_valid_and_fall_back_to_the_id() {
        let names: Vec<String> = bot_usernames("My Cool Bot!", 1234)
            .into_iter()
            .map(Username::into_string)
            .collect();
        assert_eq!(names, ["my_cool_bot_", "my_cool_bot__1234", "bot_1234"]);
        let long = bot_usernames(&"x".repeat(40), 1_234_567_890_123_456_789);
        assert_eq!(long[0].as_str().len(), 32);
        assert_eq!(long[1].as_str(), "xxxxxxxxxxxx_1234567890123456789");
        assert_eq!(long[1].as_str().len(), 32);
        assert_eq!(bot_usernames("a..b", 7)[0].as_str(), "a.b");
    }
}
