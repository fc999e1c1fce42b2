//! Credentials: argon2 password hashes and random bearer tokens stored only as SHA-256
//! hashes. A token is `base64url(user id) "." base64url(24 random bytes)`, so the user it
//! belongs to is found without an index, and then checked against that user's hashes.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

use domain::UserId;

/// Hashes a password with argon2id (CPU-heavy: call from a blocking thread).
pub fn hash_password(password: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Checks a password against an argon2 PHC string (CPU-heavy).
pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A new random token for a user.
pub fn mint_token(user: UserId) -> String {
    let mut secret = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(user.to_string()),
        URL_SAFE_NO_PAD.encode(secret)
    )
}

/// The stored form of a token.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The user a token claims to belong to (unverified). Accepts a `Bot ` or `Bearer `
/// prefix, as clients send.
pub fn token_user(token: &str) -> Option<UserId> {
    let token = strip_scheme(token);
    let (head, rest) = token.split_once('.')?;
    if rest.is_empty() || token.len() > 200 {
        return None;
    }
    let raw = URL_SAFE_NO_PAD.decode(head).ok()?;
    std::str::from_utf8(&raw).ok()?.parse().ok()
}

/// The token without an authorization scheme prefix.
pub fn strip_scheme(token: &str) -> &str {
    let t = token.trim();
    t.strip_prefix("Bot ")
        .or_else(|| t.strip_prefix("Bearer "))
        .unwrap_or(t)
        .trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_names_its_user_with_or_without_a_scheme() {
        let t = mint_token(UserId::new(1234));
        assert_eq!(token_user(&t), Some(UserId::new(1234)));
        assert_eq!(token_user(&format!("Bot {t}")), Some(UserId::new(1234)));
        assert_eq!(token_user("garbage"), None);
        assert_eq!(token_user("a.b"), None);
        assert_ne!(mint_token(UserId::new(1)), mint_token(UserId::new(1)));
    }

    #[test]
    fn passwords_verify_only_against_their_hash() {
        let h = hash_password("correct horse").unwrap();
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong horse", &h));
        assert!(!verify_password("x", "not a phc string"));
    }
}
