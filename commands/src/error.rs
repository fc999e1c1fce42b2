use domain::DomainError;
use store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The command broke a rule: the client's fault.
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// No valid credentials.
    #[error("unauthorized")]
    Unauthorized,
    /// The stream kept changing under the command; nothing was written.
    #[error("too much contention on {0}; nothing was written, try again")]
    Contention(String),
    /// The event log failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored event could not be read, or another internal failure.
    #[error("internal: {0}")]
    Internal(String),
}

impl From<domain::EventDecodeError> for CommandError {
    fn from(e: domain::EventDecodeError) -> Self {
        CommandError::Internal(e.to_string())
    }
}
