//! The User aggregate (`user-{id}`) and the Username claim (`username-{name}`), which makes
//! usernames unique without a lock: claiming appends to a stream that must not exist.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::values::Username;
use crate::{domain_event, Aggregate, DomainError, Resource, UserId};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum UserEvent {
    UserRegistered {
        user_id: UserId,
        username: Username,
        /// Argon2 PHC string; `None` for bots, which only have tokens.
        password_hash: Option<String>,
        bot: bool,
    },
    /// A login token was issued; only its SHA-256 hash is stored. With
    /// `revokes_others` (a bot token reset) every token issued before it stops working.
    TokenIssued {
        token_hash: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        revokes_others: bool,
    },
}
domain_event!(UserEvent {
    UserRegistered,
    TokenIssued
});

#[derive(Debug, Clone, Default)]
pub struct UserState {
    pub id: Option<UserId>,
    pub username: Option<Username>,
    pub password_hash: Option<String>,
    pub bot: bool,
    pub token_hashes: HashSet<String>,
}

impl Aggregate for UserState {
    type Event = UserEvent;
    fn evolve(&mut self, event: &UserEvent) {
        match event {
            UserEvent::UserRegistered {
                user_id,
                username,
                password_hash,
                bot,
            } => {
                self.id = Some(*user_id);
                self.username = Some(username.clone());
                self.password_hash = password_hash.clone();
                self.bot = *bot;
            }
            UserEvent::TokenIssued {
                token_hash,
                revokes_others,
            } => {
                if *revokes_others {
                    self.token_hashes.clear();
                }
                self.token_hashes.insert(token_hash.clone());
            }
        }
    }
}

#[derive(Debug, Clone)]
pub enum UserCommand {
    Register {
        user_id: UserId,
        username: Username,
        password_hash: Option<String>,
        bot: bool,
    },
    IssueToken {
        token_hash: String,
    },
    /// Issues a token and revokes every earlier one (a bot token reset).
    ResetToken {
        token_hash: String,
    },
}

pub fn decide(state: &UserState, command: UserCommand) -> Result<Vec<UserEvent>, DomainError> {
    match command {
        UserCommand::Register {
            user_id,
            username,
            password_hash,
            bot,
        } => {
            if state.id.is_some() {
                return Err(DomainError::AlreadyExists(Resource::User));
            }
            if password_hash.is_none() && !bot {
                return Err(DomainError::invalid("password", "A password is required."));
            }
            Ok(vec![UserEvent::UserRegistered {
                user_id,
                username,
                password_hash,
                bot,
            }])
        }
        UserCommand::IssueToken { token_hash } => {
            check_token_hash(state, &token_hash)?;
            if state.token_hashes.contains(&token_hash) {
                return Ok(vec![]);
            }
            Ok(vec![UserEvent::TokenIssued {
                token_hash,
                revokes_others: false,
            }])
        }
        UserCommand::ResetToken { token_hash } => {
            check_token_hash(state, &token_hash)?;
            Ok(vec![UserEvent::TokenIssued {
                token_hash,
                revokes_others: true,
            }])
        }
    }
}

/// A token hash for a known user: a SHA-256 hex digest.
fn check_token_hash(state: &UserState, token_hash: &str) -> Result<(), DomainError> {
    if state.id.is_none() {
        return Err(DomainError::Unknown(Resource::User));
    }
    if token_hash.len() != 64 || !token_hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(DomainError::invalid(
            "token",
            "Expected a SHA-256 hex digest.",
        ));
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum UsernameEvent {
    UsernameClaimed { user_id: UserId },
}
domain_event!(UsernameEvent { UsernameClaimed });

#[derive(Debug, Clone, Default)]
pub struct UsernameState {
    pub owner: Option<UserId>,
}

impl Aggregate for UsernameState {
    type Event = UsernameEvent;
    fn evolve(&mut self, event: &UsernameEvent) {
        let UsernameEvent::UsernameClaimed { user_id } = event;
        self.owner = Some(*user_id);
    }
}

/// Claims a username for a user; claiming one's own name again changes nothing.
pub fn claim_username(
    state: &UsernameState,
    user_id: UserId,
) -> Result<Vec<UsernameEvent>, DomainError> {
    match state.owner {
        Some(owner) if owner == user_id => Ok(vec![]),
        Some(_) => Err(DomainError::UsernameTaken),
        None => Ok(vec![UsernameEvent::UsernameClaimed { user_id }]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::DomainEvent;
    use crate::testing::given;

    fn registered() -> UserEvent {
        UserEvent::UserRegistered {
            user_id: UserId::new(10),
            username: Username::parse("alice").unwrap(),
            password_hash: Some("$argon2id$...".into()),
            bot: false,
        }
    }

    fn bot_registered() -> UserEvent {
        UserEvent::UserRegistered {
            user_id: UserId::new(11),
            username: Username::parse("helper_bot").unwrap(),
            password_hash: None,
            bot: true,
        }
    }

    #[test]
    fn registering_a_new_user_records_it() {
        let events = decide(
            &given::<UserState>(&[]),
            UserCommand::Register {
                user_id: UserId::new(10),
                username: Username::parse("alice").unwrap(),
                password_hash: Some("$argon2id$...".into()),
                bot: false,
            },
        )
        .unwrap();
        assert_eq!(events, vec![registered()]);
    }

    #[test]
    fn registering_twice_is_rejected() {
        let err = decide(
            &given::<UserState>(&[registered()]),
            UserCommand::Register {
                user_id: UserId::new(10),
                username: Username::parse("alice").unwrap(),
                password_hash: Some("x".into()),
                bot: false,
            },
        )
        .unwrap_err();
        assert_eq!(err, DomainError::AlreadyExists(Resource::User));
    }

    #[test]
    fn a_human_without_a_password_is_rejected() {
        let err = decide(
            &UserState::default(),
            UserCommand::Register {
                user_id: UserId::new(10),
                username: Username::parse("alice").unwrap(),
                password_hash: None,
                bot: false,
            },
        )
        .unwrap_err();
        assert!(matches!(
            err,
            DomainError::Invalid {
                field: "password",
                ..
            }
        ));
    }

    #[test]
    fn issuing_a_token_records_its_hash_once() {
        let hash = "a".repeat(64);
        let state = given::<UserState>(&[registered()]);
        let events = decide(
            &state,
            UserCommand::IssueToken {
                token_hash: hash.clone(),
            },
        )
        .unwrap();
        assert_eq!(
            events,
            vec![UserEvent::TokenIssued {
                token_hash: hash.clone(),
                revokes_others: false,
            }]
        );
        let state = given::<UserState>(&[registered(), events[0].clone()]);
        assert!(state.token_hashes.contains(&hash));
        assert_eq!(
            decide(&state, UserCommand::IssueToken { token_hash: hash }).unwrap(),
            vec![]
        );
    }

    #[test]
    fn tokens_for_unknown_users_and_malformed_hashes_are_rejected() {
        let err = decide(
            &UserState::default(),
            UserCommand::IssueToken {
                token_hash: "a".repeat(64),
            },
        );
        assert_eq!(err.unwrap_err(), DomainError::Unknown(Resource::User));
        let err = decide(
            &given::<UserState>(&[registered()]),
            UserCommand::IssueToken {
                token_hash: "zz".into(),
            },
        );
        assert!(matches!(err.unwrap_err(), DomainError::Invalid { .. }));
    }

    #[test]
    fn resetting_a_token_revokes_every_earlier_one() {
        let old = "a".repeat(64);
        let new = "b".repeat(64);
        let history = vec![
            bot_registered(),
            UserEvent::TokenIssued {
                token_hash: old.clone(),
                revokes_others: false,
            },
        ];
        let events = decide(
            &given::<UserState>(&history),
            UserCommand::ResetToken {
                token_hash: new.clone(),
            },
        )
        .unwrap();
        assert_eq!(
            events,
            vec![UserEvent::TokenIssued {
                token_hash: new.clone(),
                revokes_others: true,
            }]
        );
        let state = given::<UserState>(&[history, events].concat());
        assert!(state.bot);
        assert!(state.password_hash.is_none());
        assert!(!state.token_hashes.contains(&old));
        assert!(state.token_hashes.contains(&new));
    }

    #[test]
    fn a_bot_is_registered_without_a_password() {
        let events = decide(
            &UserState::default(),
            UserCommand::Register {
                user_id: UserId::new(11),
                username: Username::parse("helper_bot").unwrap(),
                password_hash: None,
                bot: true,
            },
        )
        .unwrap();
        assert_eq!(events, vec![bot_registered()]);
        let err = decide(
            &UserState::default(),
            UserCommand::ResetToken {
                token_hash: "b".repeat(64),
            },
        );
        assert_eq!(err.unwrap_err(), DomainError::Unknown(Resource::User));
    }

    #[test]
    fn token_events_stored_before_resets_existed_still_read() {
        let stored = serde_json::json!({ "token_hash": "a".repeat(64) });
        let e = UserEvent::from_stored("TokenIssued", 1, stored.clone()).unwrap();
        assert_eq!(
            e,
            UserEvent::TokenIssued {
                token_hash: "a".repeat(64),
                revokes_others: false,
            }
        );
        // An ordinary token is still stored in its original form.
        assert_eq!(e.to_data(), stored);
    }

    #[test]
    fn a_username_is_claimed_once() {
        let state = given::<UsernameState>(&[]);
        let events = claim_username(&state, UserId::new(1)).unwrap();
        assert_eq!(
            events,
            vec![UsernameEvent::UsernameClaimed {
                user_id: UserId::new(1)
            }]
        );
        let state = given::<UsernameState>(&events);
        assert_eq!(
            claim_username(&state, UserId::new(2)).unwrap_err(),
            DomainError::UsernameTaken
        );
        assert_eq!(claim_username(&state, UserId::new(1)).unwrap(), vec![]);
    }

    #[test]
    fn user_events_round_trip_through_their_stored_form() {
        let e = registered();
        assert_eq!(e.event_type(), "UserRegistered");
        let back = UserEvent::from_stored(e.event_type(), e.version(), e.to_data()).unwrap();
        assert_eq!(back, e);
        assert!(UserEvent::from_stored("UserRegistered", 2, e.to_data()).is_err());
        assert!(UserEvent::from_stored("Nope", 1, e.to_data()).is_err());
    }
}
