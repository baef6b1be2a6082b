//! User passwords, stored only as Argon2id PHC strings.

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("the password is empty")]
    Empty,
    #[error("the password is longer than 1024 bytes")]
    TooLong,
    #[error("the password contains a control character (a stray line ending?)")]
    Control,
    #[error("hashing failed: {0}")]
    Hash(String),
}

/// Hashes `password` with Argon2id (RFC 9106 second recommended option:
/// m = 19 MiB, t = 2, p = 1, the crate's defaults) and a random salt.
pub fn hash(password: &str) -> Result<String, PasswordError> {
    if password.is_empty() {
        return Err(PasswordError::Empty);
    }
    if password.len() > 1024 {
        return Err(PasswordError::TooLong);
    }
    if password.chars().any(char::is_control) {
        return Err(PasswordError::Control);
    }
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

/// True when `password` matches the stored PHC string. A malformed stored
/// hash never matches.
pub fn verify(phc: &str, password: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_salted_and_verify() {
        let a = hash("correct horse").unwrap();
        let b = hash("correct horse").unwrap();
        assert!(a.starts_with("$argon2id$"), "{a}");
        assert_ne!(a, b, "salts differ");
        assert!(!a.contains("correct horse"));
        assert!(verify(&a, "correct horse"));
        assert!(!verify(&a, "correct horsE"));
        assert!(!verify("not a hash", "correct horse"));
        assert_eq!(hash(""), Err(PasswordError::Empty));
        assert_eq!(hash("pw\n"), Err(PasswordError::Control));
    }
}
