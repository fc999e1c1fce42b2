//! One method per command.

use domain::channel::{self, ChannelCommand, ChannelEvent, ChannelState};
use domain::guild::{self, ChannelKind, GuildCommand, GuildState};
use domain::invite::{self, InviteCommand, InviteInfo, InviteState};
pub(crate) use domain::timefmt::now_ms;
use domain::user::{self, UserCommand, UserState, UsernameState};
use domain::values::{ChannelName, Content, GuildName, Nonce, Password, Topic, Username};
use domain::{streams, Aggregate, ChannelId, DomainError, GuildId, MessageId, Resource, UserId};
use rand::Rng;
use store::{AppendResult, ExpectedRevision, Position, Revision, StreamAppend};

use crate::cache::Loaded;
use crate::{auth, encode, CommandError, Commands, Context, MAX_ATTEMPTS};

pub(crate) fn expected(revision: Revision) -> ExpectedRevision {
    if revision == 0 {
        ExpectedRevision::NoStream
    } else {
        ExpectedRevision::Exact(revision)
    }
}

/// A new account and its first token.
#[derive(Debug, Clone)]
pub struct Registered {
    pub user_id: UserId,
    pub token: String,
    pub position: Position,
}

/// A message that was sent (or, for a repeated enforced nonce, the one sent before).
#[derive(Debug, Clone, Copy)]
pub struct SentMessage {
    pub message_id: MessageId,
    pub guild_id: Option<GuildId>,
    pub position: Position,
    /// True when an enforced nonce matched an earlier message and nothing was written.
    pub duplicate: bool,
}

/// What a new channel looks like.
#[derive(Debug, Clone)]
pub struct ChannelSpec {
    pub kind: ChannelKind,
    pub name: ChannelName,
    pub parent_id: Option<ChannelId>,
    pub topic: Option<Topic>,
    pub nsfw: bool,
    pub position: Option<i32>,
}

/// What a message command did.
struct ChannelOutcome {
    events: Vec<ChannelEvent>,
    position: Position,
    guild_id: GuildId,
    /// For a send whose enforced nonce was used before: the earlier message.
    repeated: Option<MessageId>,
}

/// Limits of a new invite.
#[derive(Debug, Clone, Copy)]
pub struct InviteSpec {
    pub max_age: u32,
    pub max_uses: u32,
    pub temporary: bool,
}

fn invite_code() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    (0..10)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Waits a random, growing while after losing a race, so that contending writers (on
/// several nodes) spread out instead of colliding again.
pub(crate) async fn backoff(attempt: usize) {
    let cap_ms = (1u64 << attempt.min(6)).min(50);
    let ms = rand::thread_rng().gen_range(0..=cap_ms);
    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, CommandError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| CommandError::Internal(e.to_string()))
}

impl Commands {
    async fn load_username(&self, name: &Username) -> Result<Loaded<UsernameState>, CommandError> {
        let mut loaded = Loaded::<UsernameState>::default();
        loaded
            .catch_up(self.store.as_ref(), &streams::username(name))
            .await?;
        Ok(loaded)
    }

    /// Runs `decide` on one aggregate and appends its events, retrying on conflict.
    pub(crate) async fn execute<A: Aggregate>(
        &self,
        cache: &crate::cache::Cache<A>,
        stream: &str,
        ctx: &Context,
        decide: impl Fn(&A) -> Result<Vec<A::Event>, DomainError>,
    ) -> Result<(Vec<A::Event>, AppendResult), CommandError> {
        let entry = cache.entry(stream);
        let mut loaded = entry.lock().await;
        for attempt in 0..MAX_ATTEMPTS {
            loaded.catch_up(self.store.as_ref(), stream).await?;
            let events = decide(&loaded.state)?;
            if events.is_empty() {
                let position = self.store.head().await?;
                return Ok((
                    events,
                    AppendResult {
                        revision: loaded.revision,
                        position,
                    },
                ));
            }
            let encoded = encode(&events, &ctx.metadata());
            match self
                .store
                .append(stream, expected(loaded.revision), encoded)
                .await
            {
                Ok(result) => {
                    loaded.apply(&events, result.revision);
                    return Ok((events, result));
                }
                Err(e) if e.is_conflict() => backoff(attempt).await,
                Err(e) => return Err(e.into()),
            }
        }
        Err(CommandError::Contention(stream.to_owned()))
    }

    /// Runs `f` on a guild's current state.
    pub(crate) async fn with_guild<T>(
        &self,
        guild_id: GuildId,
        f: impl FnOnce(&GuildState) -> T,
    ) -> Result<T, CommandError> {
        let stream = streams::guild(guild_id);
        let entry = self.guilds.entry(&stream);
        let mut loaded = entry.lock().await;
        loaded.catch_up(self.store.as_ref(), &stream).await?;
        Ok(f(&loaded.state))
    }

    /// The user a token belongs to, checked against the user's current token hashes.
    #[tracing::instrument(skip_all)]
    pub async fn authenticate(&self, token: &str) -> Result<(UserId, bool), CommandError> {
        let user = auth::token_user(token).ok_or(CommandError::Unauthorized)?;
        let hash = auth::token_hash(auth::strip_scheme(token));
        let stream = streams::user(user);
        let entry = self.users.entry(&stream);
        let mut loaded = entry.lock().await;
        loaded.catch_up(self.store.as_ref(), &stream).await?;
        if loaded.state.token_hashes.contains(&hash) {
            Ok((user, loaded.state.bot))
        } else {
            Err(CommandError::Unauthorized)
        }
    }

    /// Registers a human account and returns its first token.
    #[tracing::instrument(skip(self, password, correlation_id))]
    pub async fn register(
        &self,
        username: &str,
        password: &str,
        correlation_id: &str,
    ) -> Result<Registered, CommandError> {
        let username = Username::parse(username)?;
        let password = Password::parse(password)?;
        let user_id = UserId::new(self.ids.next());
        let phc = blocking(move || auth::hash_password(password.as_str()))
            .await?
            .map_err(CommandError::Internal)?;
        let token = auth::mint_token(user_id);
        let ctx = Context::user(user_id, correlation_id);
        let meta = ctx.metadata();
        for attempt in 0..MAX_ATTEMPTS {
            let claim = self.load_username(&username).await?;
            let claimed = user::claim_username(&claim.state, user_id)?;
            let mut user_events = user::decide(
                &UserState::default(),
                UserCommand::Register {
                    user_id,
                    username: username.clone(),
                    password_hash: Some(phc.clone()),
                    bot: false,
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
                        stream_id: streams::username(&username),
                        expected: expected(claim.revision),
                        events: encode(&claimed, &meta),
                    },
                    StreamAppend {
                        stream_id: streams::user(user_id),
                        expected: ExpectedRevision::NoStream,
                        events: encode(&user_events, &meta),
                    },
                ])
                .await;
            match result {
                Ok(results) => {
                    return Ok(Registered {
                        user_id,
                        token,
                        position: results.iter().map(|r| r.position).max().unwrap_or(0),
                    })
                }
                Err(e) if e.is_conflict() => backoff(attempt).await,
                Err(e) => return Err(e.into()),
            }
        }
        Err(CommandError::Contention("register".into()))
    }

    /// Checks a username and password and issues a new token.
    #[tracing::instrument(skip(self, password, correlation_id))]
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        correlation_id: &str,
    ) -> Result<(UserId, String), CommandError> {
        let Ok(username) = Username::parse(username) else {
            return Err(CommandError::Unauthorized);
        };
        let claim = self.load_username(&username).await?;
        let user_id = claim.state.owner.ok_or(CommandError::Unauthorized)?;
        let stream = streams::user(user_id);
        let phc = {
            let entry = self.users.entry(&stream);
            let mut loaded = entry.lock().await;
            loaded.catch_up(self.store.as_ref(), &stream).await?;
            loaded.state.password_hash.clone()
        };
        let phc = phc.ok_or(CommandError::Unauthorized)?;
        let password = password.to_owned();
        if !blocking(move || auth::verify_password(&password, &phc)).await? {
            return Err(CommandError::Unauthorized);
        }
        let token = auth::mint_token(user_id);
        let hash = auth::token_hash(&token);
        let ctx = Context::user(user_id, correlation_id);
        self.execute(&self.users, &stream, &ctx, |s| {
            user::decide(
                s,
                UserCommand::IssueToken {
                    token_hash: hash.clone(),
                },
            )
        })
        .await?;
        Ok((user_id, token))
    }

    /// Creates a guild owned by the actor, with a `general` text channel.
    #[tracing::instrument(skip(self, ctx), fields(actor = %ctx.actor))]
    pub async fn create_guild(
        &self,
        ctx: &Context,
        name: &str,
    ) -> Result<(GuildId, Position), CommandError> {
        let name = GuildName::parse(name)?;
        let guild_id = GuildId::new(self.ids.next());
        let general = ChannelId::new(self.ids.next());
        let events = guild::decide(
            &GuildState::default(),
            GuildCommand::Create {
                guild_id,
                name,
                owner_id: ctx.actor,
                general_channel_id: general,
            },
        )?;
        let opened = [ChannelEvent::ChannelOpened {
            channel_id: general,
            guild_id: Some(guild_id),
        }];
        let meta = ctx.metadata();
        let results = self
            .store
            .append_many(vec![
                StreamAppend {
                    stream_id: streams::guild(guild_id),
                    expected: ExpectedRevision::NoStream,
                    events: encode(&events, &meta),
                },
                StreamAppend {
                    stream_id: streams::channel(general),
                    expected: ExpectedRevision::NoStream,
                    events: encode(&opened, &meta),
                },
            ])
            .await?;
        Ok((
            guild_id,
            results.iter().map(|r| r.position).max().unwrap_or(0),
        ))
    }

    /// Creates a channel in a guild.
    #[tracing::instrument(skip(self, ctx, spec), fields(actor = %ctx.actor))]
    pub async fn create_channel(
        &self,
        ctx: &Context,
        guild_id: GuildId,
        spec: ChannelSpec,
    ) -> Result<(ChannelId, Position), CommandError> {
        let channel_id = ChannelId::new(self.ids.next());
        let stream = streams::guild(guild_id);
        let entry = self.guilds.entry(&stream);
        let mut loaded = entry.lock().await;
        let meta = ctx.metadata();
        for attempt in 0..MAX_ATTEMPTS {
            loaded.catch_up(self.store.as_ref(), &stream).await?;
            let events = guild::decide(
                &loaded.state,
                GuildCommand::CreateChannel {
                    actor: ctx.actor,
                    channel_id,
                    kind: spec.kind,
                    name: spec.name.clone(),
                    parent_id: spec.parent_id,
                    topic: spec.topic.clone(),
                    nsfw: spec.nsfw,
                    position: spec.position,
                },
            )?;
            let opened = [ChannelEvent::ChannelOpened {
                channel_id,
                guild_id: Some(guild_id),
            }];
            let result = self
                .store
                .append_many(vec![
                    StreamAppend {
                        stream_id: stream.clone(),
                        expected: expected(loaded.revision),
                        events: encode(&events, &meta),
                    },
                    StreamAppend {
                        stream_id: streams::channel(channel_id),
                        expected: ExpectedRevision::NoStream,
                        events: encode(&opened, &meta),
                    },
                ])
                .await;
            match result {
                Ok(results) => {
                    loaded.apply(&events, results[0].revision);
                    return Ok((channel_id, results[1].position));
                }
                Err(e) if e.is_conflict() => backoff(attempt).await,
                Err(e) => return Err(e.into()),
            }
        }
        Err(CommandError::Contention(stream))
    }

    /// The guild a channel belongs to, from the channel's own stream.
    pub(crate) async fn channel_guild(
        &self,
        channel_id: ChannelId,
    ) -> Result<GuildId, CommandError> {
        let stream = streams::channel(channel_id);
        let entry = self.channels.entry(&stream);
        let mut loaded = entry.lock().await;
        loaded.catch_up(self.store.as_ref(), &stream).await?;
        loaded
            .state
            .guild_id
            .ok_or(CommandError::Domain(DomainError::Unknown(
                Resource::Channel,
            )))
    }

    /// Creates an invite to a channel's guild.
    #[tracing::instrument(skip(self, ctx), fields(actor = %ctx.actor))]
    pub async fn create_invite(
        &self,
        ctx: &Context,
        channel_id: ChannelId,
        spec: InviteSpec,
    ) -> Result<(InviteInfo, Position), CommandError> {
        let guild_id = self.channel_guild(channel_id).await?;
        let meta = ctx.metadata();
        for attempt in 0..MAX_ATTEMPTS {
            let code = invite_code();
            let events = self
                .with_guild(guild_id, |g| {
                    invite::decide(
                        &InviteState::default(),
                        g,
                        InviteCommand::Create {
                            code: code.clone(),
                            channel_id,
                            inviter_id: ctx.actor,
                            max_age: spec.max_age,
                            max_uses: spec.max_uses,
                            temporary: spec.temporary,
                            now_ms: now_ms(),
                        },
                    )
                })
                .await??;
            let stream = streams::invite(&code);
            match self
                .store
                .append(&stream, ExpectedRevision::NoStream, encode(&events, &meta))
                .await
            {
                Ok(result) => {
                    let state = InviteState::default().tap(&events);
                    let info = state
                        .info
                        .ok_or_else(|| CommandError::Internal("invite not created".into()))?;
                    return Ok((info, result.position));
                }
                // A code collision: draw another code.
                Err(e) if e.is_conflict() => backoff(attempt).await,
                Err(e) => return Err(e.into()),
            }
        }
        Err(CommandError::Contention("invite".into()))
    }

    /// Joins the invite's guild. Joining a guild one is already in changes nothing.
    #[tracing::instrument(skip(self, ctx), fields(actor = %ctx.actor))]
    pub async fn accept_invite(
        &self,
        ctx: &Context,
        code: &str,
    ) -> Result<(GuildId, Position), CommandError> {
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
            if g.state.is_member(ctx.actor) {
                return Ok((info.guild_id, self.store.head().await?));
            }
            let used = invite::decide(
                &inv.state,
                &g.state,
                InviteCommand::Use {
                    user_id: ctx.actor,
                    now_ms: now_ms(),
                },
            )?;
            let joined = guild::decide(
                &g.state,
                GuildCommand::Join {
                    user_id: ctx.actor,
                    invite_code: Some(code.to_owned()),
                },
            )?;
            let result = self
                .store
                .append_many(vec![
                    StreamAppend {
                        stream_id: invite_stream.clone(),
                        expected: expected(inv.revision),
                        events: encode(&used, &meta),
                    },
                    StreamAppend {
                        stream_id: guild_stream,
                        expected: expected(g.revision),
                        events: encode(&joined, &meta),
                    },
                ])
                .await;
            match result {
                Ok(results) => {
                    inv.apply(&used, results[0].revision);
                    g.apply(&joined, results[1].revision);
                    return Ok((info.guild_id, results[1].position));
                }
                Err(e) if e.is_conflict() => backoff(attempt).await,
                Err(e) => return Err(e.into()),
            }
        }
        Err(CommandError::Contention(invite_stream))
    }

    /// Runs a message command on a channel, with its guild's current state.
    ///
    /// The channel and its guild (roles, overwrites, members, bans: everything the
    /// permission check needs) are caught up from the log together, in one read, so the
    /// decision includes every change committed before this call, on any node, and the
    /// permission check adds no round trip to sending a message. The guild's lock is held
    /// only while deciding, so messages to other channels of the guild do not wait for
    /// this append.
    async fn on_channel(
        &self,
        ctx: &Context,
        channel_id: ChannelId,
        command: impl Fn(&ChannelState) -> ChannelCommand,
    ) -> Result<ChannelOutcome, CommandError> {
        let stream = streams::channel(channel_id);
        let entry = self.channels.entry(&stream);
        let mut loaded = entry.lock().await;
        let meta = ctx.metadata();
        for attempt in 0..MAX_ATTEMPTS {
            // A channel's guild never changes: once known, both streams are read at once.
            if loaded.state.guild_id.is_none() {
                loaded.catch_up(self.store.as_ref(), &stream).await?;
            }
            let Some(guild_id) = loaded.state.guild_id else {
                return Err(DomainError::Unknown(Resource::Channel).into());
            };
            let guild_stream = streams::guild(guild_id);
            let guild_entry = self.guilds.entry(&guild_stream);
            let (events, repeated) = {
                let mut guild = guild_entry.lock().await;
                crate::cache::catch_up_both(
                    self.store.as_ref(),
                    (&mut *loaded, &stream),
                    (&mut *guild, &guild_stream),
                )
                .await?;
                let cmd = command(&loaded.state);
                let repeated = match &cmd {
                    ChannelCommand::Send {
                        author_id,
                        nonce: Some(nonce),
                        ..
                    } => loaded.state.message_for_nonce(*author_id, nonce),
                    _ => None,
                };
                let events = channel::decide_at(&loaded.state, &guild.state, cmd, now_ms())?;
                (events, repeated)
            };
            if events.is_empty() {
                return Ok(ChannelOutcome {
                    events,
                    position: self.store.head().await?,
                    guild_id,
                    repeated,
                });
            }
            match self
                .store
                .append(&stream, expected(loaded.revision), encode(&events, &meta))
                .await
            {
                Ok(result) => {
                    loaded.apply(&events, result.revision);
                    return Ok(ChannelOutcome {
                        events,
                        position: result.position,
                        guild_id,
                        repeated: None,
                    });
                }
                Err(e) if e.is_conflict() => backoff(attempt).await,
                Err(e) => return Err(e.into()),
            }
        }
        Err(CommandError::Contention(stream))
    }

    /// Sends a message. Its id is allocated under the channel's current revision, above
    /// the channel's newest id, so ids increase with the channel's order.
    #[tracing::instrument(skip(self, ctx, content), fields(actor = %ctx.actor))]
    pub async fn send_message(
        &self,
        ctx: &Context,
        channel_id: ChannelId,
        content: &str,
        nonce: Option<&str>,
        enforce_nonce: bool,
        tts: bool,
    ) -> Result<SentMessage, CommandError> {
        let content = Content::parse(content)?;
        let nonce = nonce.map(Nonce::parse).transpose()?;
        let outcome = self
            .on_channel(ctx, channel_id, |state| ChannelCommand::Send {
                message_id: MessageId::new(
                    self.ids
                        .next_after(state.last_message_id.map_or(0, MessageId::get)),
                ),
                channel_id,
                author_id: ctx.actor,
                content: content.clone(),
                nonce: nonce.clone(),
                enforce_nonce,
                tts,
            })
            .await?;
        let (message_id, duplicate) = match (outcome.events.first(), outcome.repeated) {
            (Some(ChannelEvent::MessageCreated { message_id, .. }), _) => (*message_id, false),
            (None, Some(existing)) => (existing, true),
            _ => return Err(CommandError::Internal("send decided no message".into())),
        };
        Ok(SentMessage {
            message_id,
            guild_id: Some(outcome.guild_id),
            position: outcome.position,
            duplicate,
        })
    }

    /// Edits a message's content (author only).
    #[tracing::instrument(skip(self, ctx, content), fields(actor = %ctx.actor))]
    pub async fn edit_message(
        &self,
        ctx: &Context,
        channel_id: ChannelId,
        message_id: MessageId,
        content: &str,
    ) -> Result<Position, CommandError> {
        let content = Content::parse(content)?;
        let outcome = self
            .on_channel(ctx, channel_id, |_| ChannelCommand::Edit {
                message_id,
                actor: ctx.actor,
                content: content.clone(),
            })
            .await?;
        Ok(outcome.position)
    }

    /// Deletes a message (its author or the guild owner).
    #[tracing::instrument(skip(self, ctx), fields(actor = %ctx.actor))]
    pub async fn delete_message(
        &self,
        ctx: &Context,
        channel_id: ChannelId,
        message_id: MessageId,
    ) -> Result<Position, CommandError> {
        let outcome = self
            .on_channel(ctx, channel_id, |_| ChannelCommand::Delete {
                message_id,
                actor: ctx.actor,
            })
            .await?;
        Ok(outcome.position)
    }

    /// Pins (`pin` true) or unpins a message (MANAGE_MESSAGES or PIN_MESSAGES; at most
    /// 50 pins per channel); a repeat changes nothing.
    #[tracing::instrument(skip(self, ctx), fields(actor = %ctx.actor))]
    pub async fn pin_message(
        &self,
        ctx: &Context,
        channel_id: ChannelId,
        message_id: MessageId,
        pin: bool,
    ) -> Result<Position, CommandError> {
        let outcome = self
            .on_channel(ctx, channel_id, |_| ChannelCommand::Pin {
                message_id,
                actor: ctx.actor,
                pin,
            })
            .await?;
        Ok(outcome.position)
    }

    /// Deletes 2 to 100 messages of a channel at once (VIEW_CHANNEL and MANAGE_MESSAGES;
    /// none older than two weeks): one `MessagesBulkDeleted` of those still live.
    #[tracing::instrument(skip(self, ctx, message_ids), fields(actor = %ctx.actor, messages = message_ids.len()))]
    pub async fn bulk_delete_messages(
        &self,
        ctx: &Context,
        channel_id: ChannelId,
        message_ids: Vec<MessageId>,
    ) -> Result<Position, CommandError> {
        let outcome = self
            .on_channel(ctx, channel_id, |_| ChannelCommand::BulkDelete {
                message_ids: message_ids.clone(),
                actor: ctx.actor,
            })
            .await?;
        Ok(outcome.position)
    }
}

/// Applies events to a state by value (for freshly decided events).
pub(crate) trait Tap: Aggregate {
    fn tap(mut self, events: &[Self::Event]) -> Self {
        for e in events {
            self.evolve(e);
        }
        self
    }
}
impl<A: Aggregate> Tap for A {}
