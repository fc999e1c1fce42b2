//! The typed errors a `decide` can return. The gateway maps each to an HTTP status and
//! Discord JSON error code with one exhaustive match.

/// A kind of resource, for "unknown X" errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    User,
    Guild,
    Channel,
    Message,
    Invite,
    Role,
    Member,
    Application,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("unknown {0:?}")]
    Unknown(Resource),
    #[error("{0:?} already exists")]
    AlreadyExists(Resource),
    #[error("the username is already taken")]
    UsernameTaken,
    #[error("invalid value for {field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    /// The actor may not see the resource at all (Discord's 50001 Missing Access).
    #[error("missing access")]
    MissingAccess,
    /// The actor sees the resource but lacks the permission (50013).
    #[error("missing permissions")]
    MissingPermissions,
    /// Only the author may do this (50005 Cannot edit a message authored by another user).
    #[error("cannot edit a message authored by another user")]
    NotAuthor,
    #[error("the invite has expired or been used up")]
    InviteInvalid,
    #[error("the user is banned from this guild")]
    Banned,
    #[error("this action cannot be performed on this channel type")]
    WrongChannelType,
    /// A bulk delete named a message older than two weeks (50034).
    #[error("only messages under 14 days old can be bulk deleted")]
    MessagesTooOld,
    /// The channel already has the most pins it may have (30003).
    #[error("the channel already has the most pinned messages it may have")]
    MaxPins,
}

impl DomainError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        DomainError::Invalid {
            field,
            message: message.into(),
        }
    }
}
