//! Users, roles and password hashes.
//!
//! Passwords are stored as Argon2id PHC strings (`$argon2id$v=19$m=…`), made
//! by `weir hash-password` / [`hash_password`]; plain text is refused. The
//! `argon2` crate (RustCrypto) does the hashing and the constant-time
//! comparison.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, SaltString};
use argon2::{Argon2, PasswordHasher, PasswordVerifier};

use crate::error::FlightServeError;

/// What a caller may do. Ordered: each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Queries and metadata.
    Read,
    /// Also INSERT/UPDATE/DELETE and bulk ingestion.
    Write,
    /// Also DDL (CREATE/DROP/ALTER, materialized views, REFRESH) and every
    /// other statement.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Write => "write",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = FlightServeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "read" => Ok(Role::Read),
            "write" => Ok(Role::Write),
            "admin" => Ok(Role::Admin),
            other => Err(FlightServeError::UnknownRole(other.to_string())),
        }
    }
}

/// One configured user: `name:role:$argon2id$…` (the `--users` /
/// `WEIR_USERS` form; `[[users]]` in weir.toml becomes the same).
#[derive(Clone)]
pub struct UserEntry {
    pub name: String,
    pub role: Role,
    /// Argon2 PHC string, validated when parsed.
    password_hash: String,
}

impl fmt::Debug for UserEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserEntry")
            .field("name", &self.name)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

impl UserEntry {
    pub fn new(name: &str, role: Role, password_hash: &str) -> Result<Self, FlightServeError> {
        if name.is_empty() || name.contains(':') {
            return Err(FlightServeError::InvalidUser(format!(
                "user name `{name}` must be non-empty and contain no `:`"
            )));
        }
        validate_hash(name, password_hash)?;
        Ok(Self {
            name: name.to_string(),
            role,
            password_hash: password_hash.to_string(),
        })
    }
}

impl FromStr for UserEntry {
    type Err = FlightServeError;

    /// `name:role:hash` (the PHC hash contains no `:`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.trim().splitn(3, ':');
        let (Some(name), Some(role), Some(hash)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(FlightServeError::InvalidUser(
                "a user is `name:role:password-hash` (role read, write or admin; \
                 hash from `weir hash-password`)"
                    .into(),
            ));
        };
        UserEntry::new(name, role.parse()?, hash)
    }
}

fn validate_hash(name: &str, hash: &str) -> Result<(), FlightServeError> {
    match PasswordHash::new(hash) {
        Ok(parsed) if parsed.algorithm.as_str().starts_with("argon2") && parsed.hash.is_some() => {
            Ok(())
        }
        _ => Err(FlightServeError::InvalidUser(format!(
            "the password hash of user `{name}` is not an Argon2 PHC string \
             (`$argon2id$v=19$...`); plain-text passwords are not accepted, \
             create the hash with `weir hash-password`"
        ))),
    }
}

/// Hashes a password for the configuration (Argon2id, default parameters,
/// random salt).
pub fn hash_password(password: &str) -> Result<String, FlightServeError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| FlightServeError::Hashing(e.to_string()))
}

/// The configured users, by name.
#[derive(Clone, Default)]
pub(crate) struct Users {
    by_name: Arc<HashMap<String, UserEntry>>,
}

impl Users {
    pub(crate) fn new(entries: Vec<UserEntry>) -> Result<Self, FlightServeError> {
        let mut by_name = HashMap::new();
        for entry in entries {
            if by_name.contains_key(&entry.name) {
                return Err(FlightServeError::InvalidUser(format!(
                    "user `{}` is configured twice",
                    entry.name
                )));
            }
            by_name.insert(entry.name.clone(), entry);
        }
        Ok(Self {
            by_name: Arc::new(by_name),
        })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// The user's role when the password is right; `None` otherwise (unknown
    /// users cost the same as a wrong password). CPU-heavy (~20 ms
    /// optimised): call from a blocking thread.
    pub(crate) fn verify(&self, name: &str, password: &str) -> Option<Role> {
        let argon2 = Argon2::default();
        match self.by_name.get(name) {
            Some(user) => {
                let hash = PasswordHash::new(&user.password_hash).ok()?;
                argon2
                    .verify_password(password.as_bytes(), &hash)
                    .ok()
                    .map(|()| user.role)
            }
            None => {
                // Same work as for a known user, so timing does not reveal names.
                if let Ok(hash) = PasswordHash::new(dummy_hash()) {
                    let _ = argon2.verify_password(password.as_bytes(), &hash);
                }
                None
            }
        }
    }
}

fn dummy_hash() -> &'static str {
    static DUMMY: once_cell::sync::Lazy<String> = once_cell::sync::Lazy::new(|| {
        hash_password("weir-dummy-password").unwrap_or_else(|_| String::new())
    });
    &DUMMY
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_and_parse() {
        assert!(Role::Read < Role::Write && Role::Write < Role::Admin);
        assert_eq!("ADMIN".parse::<Role>().unwrap(), Role::Admin);
        assert!("root".parse::<Role>().is_err());
    }

    #[test]
    fn users_verify_passwords() {
        let hash = hash_password("s3cret").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        let entry: UserEntry = format!("alice:write:{hash}").parse().unwrap();
        assert_eq!(entry.role, Role::Write);
        let users = Users::new(vec![entry]).unwrap();
        assert_eq!(users.verify("alice", "s3cret"), Some(Role::Write));
        assert_eq!(users.verify("alice", "wrong"), None);
        assert_eq!(users.verify("bob", "s3cret"), None);
    }

    #[test]
    fn plain_text_and_malformed_entries_are_refused() {
        let err = "alice:read:s3cret".parse::<UserEntry>().unwrap_err();
        assert!(err.to_string().contains("weir hash-password"), "{err}");
        assert!("alice:read".parse::<UserEntry>().is_err());
        assert!("alice:root:$argon2id$x".parse::<UserEntry>().is_err());
        let hash = hash_password("x").unwrap();
        let twice = vec![
            UserEntry::new("a", Role::Read, &hash).unwrap(),
            UserEntry::new("a", Role::Admin, &hash).unwrap(),
        ];
        assert!(Users::new(twice).is_err());
    }
}
