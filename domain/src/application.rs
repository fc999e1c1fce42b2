//! The Application aggregate (`application-{id}`): a developer's application and its bot.
//!
//! A bot is a user (its `user-{id}` stream, registered with `bot: true` and no password)
//! whose id equals its application's id, as on Discord. Its token is an ordinary token of
//! that user; resetting it revokes the earlier ones in the user's stream
//! ([`crate::user::UserCommand::ResetToken`]) and is recorded here as `BotTokenReset`.
//! Adding the bot to a guild is the guild's decision
//! ([`crate::guild::GuildCommand::AddBot`]); the application records it as
//! `BotAuthorized`, with the managed role that carries the granted permissions.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::id::ApplicationId;
use crate::permissions::Permissions;
use crate::{domain_event, Aggregate, DomainError, GuildId, Resource, RoleId, UserId};

/// The longest application description (Discord's limit).
pub const MAX_DESCRIPTION: usize = 400;

/// An application name: 2-32 characters after trimming, without control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ApplicationName(String);

impl ApplicationName {
    pub fn parse(raw: &str) -> Result<Self, DomainError> {
        let s = raw.trim();
        let n = s.chars().count();
        if !(2..=32).contains(&n) {
            return Err(DomainError::invalid(
                "name",
                "Must be between 2 and 32 in length.",
            ));
        }
        if s.chars().any(char::is_control) {
            return Err(DomainError::invalid(
                "name",
                "Must not contain control characters.",
            ));
        }
        Ok(ApplicationName(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for ApplicationName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks a description: at most [`MAX_DESCRIPTION`] characters.
pub fn check_description(raw: &str) -> Result<String, DomainError> {
    if raw.chars().count() > MAX_DESCRIPTION {
        return Err(DomainError::invalid(
            "description",
            format!("Must be between 0 and {MAX_DESCRIPTION} in length."),
        ));
    }
    Ok(raw.to_owned())
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum ApplicationEvent {
    /// An application is created by its owner. `verify_key` is the hex public key
    /// Discord shows for interaction signatures (random here: nothing signs yet).
    ApplicationCreated {
        application_id: ApplicationId,
        owner_id: UserId,
        name: ApplicationName,
        description: String,
        verify_key: String,
    },
    /// The application's bot user was registered (its id is the application's).
    BotCreated { bot_id: UserId },
    /// The bot's token was reset: the earlier tokens no longer work.
    BotTokenReset { bot_id: UserId },
    /// The bot was added to a guild by `authorized_by`, with the managed role `role_id`
    /// carrying `permissions`.
    BotAuthorized {
        guild_id: GuildId,
        role_id: RoleId,
        authorized_by: UserId,
        permissions: Permissions,
    },
}
domain_event!(ApplicationEvent {
    ApplicationCreated,
    BotCreated,
    BotTokenReset,
    BotAuthorized,
});

/// Where the bot was authorized, per guild: its managed role there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BotInGuild {
    pub role_id: RoleId,
    pub permissions: Permissions,
}

#[derive(Debug, Clone, Default)]
pub struct ApplicationState {
    pub id: Option<ApplicationId>,
    pub owner_id: Option<UserId>,
    pub name: Option<ApplicationName>,
    pub description: String,
    pub verify_key: String,
    pub bot_id: Option<UserId>,
    /// Anyone who may manage a guild may add the bot (Discord's default); otherwise only
    /// the owner. Always true until applications can be edited.
    pub bot_public: bool,
    pub guilds: BTreeMap<GuildId, BotInGuild>,
}

impl ApplicationState {
    pub fn exists(&self) -> bool {
        self.id.is_some()
    }

    /// The application as `actor` may see it: only its owner sees it at all.
    fn owned_by(&self, actor: UserId) -> Result<(), DomainError> {
        if self.exists() && self.owner_id == Some(actor) {
            Ok(())
        } else {
            Err(DomainError::Unknown(Resource::Application))
        }
    }
}

impl Aggregate for ApplicationState {
    type Event = ApplicationEvent;
    fn evolve(&mut self, event: &ApplicationEvent) {
        match event {
            ApplicationEvent::ApplicationCreated {
                application_id,
                owner_id,
                name,
                description,
                verify_key,
            } => {
                self.id = Some(*application_id);
                self.owner_id = Some(*owner_id);
                self.name = Some(name.clone());
                self.description = description.clone();
                self.verify_key = verify_key.clone();
                self.bot_public = true;
            }
            ApplicationEvent::BotCreated { bot_id } => self.bot_id = Some(*bot_id),
            ApplicationEvent::BotTokenReset { .. } => {}
            ApplicationEvent::BotAuthorized {
                guild_id,
                role_id,
                permissions,
                ..
            } => {
                self.guilds.insert(
                    *guild_id,
                    BotInGuild {
                        role_id: *role_id,
                        permissions: *permissions,
                    },
                );
            }
        }
    }
}

#[derive(Debug, Clone)]
pub enum ApplicationCommand {
    /// Creates an application owned by `owner_id`.
    Create {
        application_id: ApplicationId,
        owner_id: UserId,
        name: ApplicationName,
        description: String,
        verify_key: String,
    },
    /// Gives the application its bot (owner only; once).
    CreateBot { actor: UserId },
    /// Resets the bot's token (owner only; the application must have a bot).
    ResetBotToken { actor: UserId },
    /// Records that `actor` added the bot to a guild with its managed role (the guild
    /// decides whether they may; here: the application has a bot, and a private bot is
    /// added only by its owner). Recording the same role again changes nothing.
    Authorize {
        actor: UserId,
        guild_id: GuildId,
        role_id: RoleId,
        permissions: Permissions,
    },
}

pub fn decide(
    state: &ApplicationState,
    command: ApplicationCommand,
) -> Result<Vec<ApplicationEvent>, DomainError> {
    match command {
        ApplicationCommand::Create {
            application_id,
            owner_id,
            name,
            description,
            verify_key,
        } => {
            if state.exists() {
                return Err(DomainError::AlreadyExists(Resource::Application));
            }
            let description = check_description(&description)?;
            if verify_key.len() != 64 || !verify_key.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(DomainError::invalid(
                    "verify_key",
                    "Expected 32 bytes in hex.",
                ));
            }
            Ok(vec![ApplicationEvent::ApplicationCreated {
                application_id,
                owner_id,
                name,
                description,
                verify_key,
            }])
        }
        ApplicationCommand::CreateBot { actor } => {
            state.owned_by(actor)?;
            if state.bot_id.is_some() {
                return Err(DomainError::invalid(
                    "bot",
                    "This application already has a bot.",
                ));
            }
            let bot_id = state.id.map(|id| UserId::new(id.get()));
            Ok(bot_id
                .map(|bot_id| ApplicationEvent::BotCreated { bot_id })
                .into_iter()
                .collect())
        }
        ApplicationCommand::ResetBotToken { actor } => {
            state.owned_by(actor)?;
            let bot_id = state.bot_id.ok_or(DomainError::Unknown(Resource::User))?;
            Ok(vec![ApplicationEvent::BotTokenReset { bot_id }])
        }
        ApplicationCommand::Authorize {
            actor,
            guild_id,
            role_id,
            permissions,
        } => {
            if !state.exists() || state.bot_id.is_none() {
                return Err(DomainError::Unknown(Resource::Application));
            }
            if !state.bot_public && state.owner_id != Some(actor) {
                return Err(DomainError::MissingPermissions);
            }
            if state.guilds.get(&guild_id).map(|g| g.role_id) == Some(role_id) {
                return Ok(vec![]);
            }
            Ok(vec![ApplicationEvent::BotAuthorized {
                guild_id,
                role_id,
                authorized_by: actor,
                permissions,
            }])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::DomainEvent;
    use crate::testing::given;

    const APP: ApplicationId = ApplicationId::new(500);
    const BOT: UserId = UserId::new(500);
    const OWNER: UserId = UserId::new(1);
    const STRANGER: UserId = UserId::new(2);
    const GUILD: GuildId = GuildId::new(100);
    const ROLE: RoleId = RoleId::new(600);

    fn created() -> ApplicationEvent {
        ApplicationEvent::ApplicationCreated {
            application_id: APP,
            owner_id: OWNER,
            name: ApplicationName::parse("Helper").unwrap(),
            description: String::new(),
            verify_key: "ab".repeat(32),
        }
    }

    fn with_bot() -> Vec<ApplicationEvent> {
        vec![created(), ApplicationEvent::BotCreated { bot_id: BOT }]
    }

    fn create(verify_key: String, description: &str) -> ApplicationCommand {
        ApplicationCommand::Create {
            application_id: APP,
            owner_id: OWNER,
            name: ApplicationName::parse("Helper").unwrap(),
            description: description.into(),
            verify_key,
        }
    }

    #[test]
    fn creating_an_application_records_its_owner_and_name() {
        let events = decide(&given(&[]), create("ab".repeat(32), "")).unwrap();
        assert_eq!(events, vec![created()]);
        let state: ApplicationState = given(&events);
        assert_eq!(state.owner_id, Some(OWNER));
        assert!(state.bot_public);
        assert_eq!(state.bot_id, None);
    }

    #[test]
    fn creating_an_application_twice_or_with_bad_fields_is_rejected() {
        assert_eq!(
            decide(&given(&[created()]), create("ab".repeat(32), "")).unwrap_err(),
            DomainError::AlreadyExists(Resource::Application)
        );
        assert!(matches!(
            decide(&given(&[]), create("ab".repeat(32), &"d".repeat(401))).unwrap_err(),
            DomainError::Invalid {
                field: "description",
                ..
            }
        ));
        assert!(decide(&given(&[]), create("zz".into(), "")).is_err());
    }

    #[test]
    fn application_names_are_two_to_thirty_two_characters() {
        assert_eq!(
            ApplicationName::parse(" My Bot ").unwrap().as_str(),
            "My Bot"
        );
        assert!(ApplicationName::parse("a").is_err());
        assert!(ApplicationName::parse(&"a".repeat(33)).is_err());
        assert!(ApplicationName::parse("a\u{0}b").is_err());
    }

    #[test]
    fn the_owner_creates_the_bot_once_and_its_id_is_the_applications() {
        let events = decide(
            &given(&[created()]),
            ApplicationCommand::CreateBot { actor: OWNER },
        )
        .unwrap();
        assert_eq!(events, vec![ApplicationEvent::BotCreated { bot_id: BOT }]);
        let err = decide(
            &given(&with_bot()),
            ApplicationCommand::CreateBot { actor: OWNER },
        )
        .unwrap_err();
        assert!(matches!(err, DomainError::Invalid { field: "bot", .. }));
    }

    #[test]
    fn only_the_owner_sees_or_changes_the_application() {
        for cmd in [
            ApplicationCommand::CreateBot { actor: STRANGER },
            ApplicationCommand::ResetBotToken { actor: STRANGER },
        ] {
            assert_eq!(
                decide(&given(&with_bot()), cmd).unwrap_err(),
                DomainError::Unknown(Resource::Application)
            );
        }
        assert_eq!(
            decide(&given(&[]), ApplicationCommand::CreateBot { actor: OWNER }).unwrap_err(),
            DomainError::Unknown(Resource::Application)
        );
    }

    #[test]
    fn resetting_the_token_needs_a_bot() {
        assert_eq!(
            decide(
                &given(&[created()]),
                ApplicationCommand::ResetBotToken { actor: OWNER }
            )
            .unwrap_err(),
            DomainError::Unknown(Resource::User)
        );
        assert_eq!(
            decide(
                &given(&with_bot()),
                ApplicationCommand::ResetBotToken { actor: OWNER }
            )
            .unwrap(),
            vec![ApplicationEvent::BotTokenReset { bot_id: BOT }]
        );
    }

    #[test]
    fn authorizing_records_the_guild_once_and_needs_a_bot() {
        let authorize = || ApplicationCommand::Authorize {
            actor: STRANGER,
            guild_id: GUILD,
            role_id: ROLE,
            permissions: Permissions::SEND_MESSAGES,
        };
        assert_eq!(
            decide(&given(&[created()]), authorize()).unwrap_err(),
            DomainError::Unknown(Resource::Application)
        );
        let events = decide(&given(&with_bot()), authorize()).unwrap();
        assert_eq!(
            events,
            vec![ApplicationEvent::BotAuthorized {
                guild_id: GUILD,
                role_id: ROLE,
                authorized_by: STRANGER,
                permissions: Permissions::SEND_MESSAGES,
            }]
        );
        let state: ApplicationState = given(&[with_bot(), events].concat());
        assert_eq!(state.guilds[&GUILD].role_id, ROLE);
        assert_eq!(decide(&state, authorize()).unwrap(), vec![]);
    }

    #[test]
    fn a_private_bot_is_added_only_by_its_owner() {
        let mut state: ApplicationState = given(&with_bot());
        state.bot_public = false;
        let cmd = |actor| ApplicationCommand::Authorize {
            actor,
            guild_id: GUILD,
            role_id: ROLE,
            permissions: Permissions::NONE,
        };
        assert_eq!(
            decide(&state, cmd(STRANGER)).unwrap_err(),
            DomainError::MissingPermissions
        );
        assert_eq!(decide(&state, cmd(OWNER)).unwrap().len(), 1);
    }

    #[test]
    fn application_events_round_trip_through_their_stored_form() {
        for e in [
            created(),
            ApplicationEvent::BotCreated { bot_id: BOT },
            ApplicationEvent::BotTokenReset { bot_id: BOT },
            ApplicationEvent::BotAuthorized {
                guild_id: GUILD,
                role_id: ROLE,
                authorized_by: OWNER,
                permissions: Permissions::ADMINISTRATOR,
            },
        ] {
            let back =
                ApplicationEvent::from_stored(e.event_type(), e.version(), e.to_data()).unwrap();
            assert_eq!(back, e);
        }
    }
}
