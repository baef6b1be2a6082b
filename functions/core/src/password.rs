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
    #[error("the password is shorter than {0} characters")]
    TooShort(usize),
    #[error("the password is one of the thousand most common ones; choose another")]
    Common,
    #[error("hashing failed: {0}")]
    Hash(String),
}

/// How many characters a new password needs unless configured otherwise
/// (`STRATUS_PASSWORD_MIN_LENGTH`).
pub const DEFAULT_MIN_LENGTH: usize = 10;

/// The thousand most frequent passwords of the public Xato 10-million
/// password corpus (2015), lower-cased, most frequent first, one per line:
/// the list credential-stuffing tools try first.
const COMMON: &str = include_str!("../data/common-passwords.txt");

/// Whether a person may choose `password` as a new password: at least
/// `min_length` characters and not a common password (compared without
/// regard to case). Checks what [`hash`] checks too. Existing passwords
/// are never re-checked: a stricter policy applies at the next change.
pub fn check_new(password: &str, min_length: usize) -> Result<(), PasswordError> {
    check_form(password)?;
    if password.chars().count() < min_length {
        return Err(PasswordError::TooShort(min_length));
    }
    let lower = password.to_lowercase();
    if COMMON.lines().any(|common| common == lower) {
        return Err(PasswordError::Common);
    }
    Ok(())
}

fn check_form(password: &str) -> Result<(), PasswordError> {
    if password.is_empty() {
        return Err(PasswordError::Empty);
    }
    if password.len() > 1024 {
        return Err(PasswordError::TooLong);
    }
    if password.chars().any(char::is_control) {
        return Err(PasswordError::Control);
    }
    Ok(())
}

/// Hashes `password` with Argon2id (RFC 9106 second recommended option:
/// m = 19 MiB, t = 2, p = 1, the crate's defaults) and a random salt.
pub fn hash(password: &str) -> Result<String, PasswordError> {
    check_form(password)?;
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

/// Checks passwords in one Argon2 memory area, reused from check to check.
/// Each check needs 19 MiB; allocated afresh every time, the allocator
/// keeps the freed areas of every thread that ever ran one, and a server
/// that has seen many logins holds many of them for good.
#[derive(Default)]
pub struct Verifier {
    memory: Vec<argon2::Block>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("blocks", &self.memory.len())
            .finish()
    }
}

impl Verifier {
    /// Frees the memory area (the next check allocates it again).
    pub fn release(&mut self) {
        self.memory = Vec::new();
    }

    /// Whether the memory area is allocated.
    pub fn holds_memory(&self) -> bool {
        self.memory.capacity() > 0
    }

    /// As [`verify`], in this verifier's memory.
    pub fn verify(&mut self, phc: &str, password: &str) -> bool {
        let Ok(parsed) = PasswordHash::new(phc) else {
            return false;
        };
        let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else {
            return false;
        };
        let Ok(algorithm) = argon2::Algorithm::new(parsed.algorithm.as_str()) else {
            return false;
        };
        let version = match parsed.version.map(argon2::Version::try_from) {
            None => argon2::Version::default(),
            Some(Ok(v)) => v,
            Some(Err(_)) => return false,
        };
        let Ok(params) = argon2::Params::try_from(&parsed) else {
            return false;
        };
        let blocks = params.block_count();
        if self.memory.len() < blocks {
            self.memory.resize(blocks, argon2::Block::default());
        }
        let mut out = vec![0u8; expected.len()];
        let hashed = Argon2::new(algorithm, version, params).hash_password_into_with_memory(
            password.as_bytes(),
            salt,
            &mut out,
            &mut self.memory[..blocks],
        );
        // Output's comparison takes the same time whatever differs.
        hashed.is_ok()
            && argon2::password_hash::phc::Output::new(&out).is_ok_and(|o| &o == expected)
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
        let mut verifier = Verifier::default();
        assert!(verifier.verify(&a, "correct horse"));
        assert!(!verifier.verify(&a, "correct horsE"));
        assert!(verifier.verify(&b, "correct horse"), "memory reused");
        assert!(verifier.holds_memory());
        verifier.release();
        assert!(!verifier.holds_memory());
        assert!(
            verifier.verify(&b, "correct horse"),
            "memory allocated again"
        );
        assert!(!verifier.verify("$argon2id$v=19$m=19456,t=2,p=1$bad", "correct horse"));
        assert!(!verify("not a hash", "correct horse"));
        assert_eq!(hash(""), Err(PasswordError::Empty));
        assert_eq!(hash("pw\n"), Err(PasswordError::Control));
    }

    #[test]
    fn new_passwords_are_long_enough_and_not_common() {
        assert_eq!(check_new("short", 10), Err(PasswordError::TooShort(10)));
        // Characters, not bytes: ten umlauts are twenty bytes.
        assert_eq!(check_new("äöüäöüäöü", 10), Err(PasswordError::TooShort(10)));
        assert_eq!(check_new("äöüäöüäöüä", 10), Ok(()));
        assert_eq!(check_new("1234567890", 10), Err(PasswordError::Common));
        assert_eq!(check_new("QwertyUIOP", 10), Err(PasswordError::Common));
        assert_eq!(check_new("password", 6), Err(PasswordError::Common));
        assert_eq!(
            check_new("123456", 1),
            Err(PasswordError::Common),
            "the first line"
        );
        assert_eq!(check_new("a long passphrase", 10), Ok(()));
        assert_eq!(check_new("tiger lily", 10), Ok(()));
        assert_eq!(check_new("", 0), Err(PasswordError::Empty));
        assert_eq!(check_new("ten chars\r", 5), Err(PasswordError::Control));
        assert_eq!(COMMON.lines().count(), 1000);
        assert!(
            COMMON
                .lines()
                .all(|l| !l.is_empty() && l == l.to_lowercase())
        );
    }
}
