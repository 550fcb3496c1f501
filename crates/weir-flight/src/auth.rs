//! Authentication: who is calling.
//!
//! Every call (the handshake included) passes [`crate::gate::AuthGate`],
//! which runs [`Authenticator::authenticate`] on the `authorization` header
//! and hands the resulting [`Principal`] to the service in the request
//! extensions. Accepted credentials:
//!
//! - `Basic base64(user:password)`, checked against the configured users
//!   (Argon2 hashes) — normally only on the handshake, which answers with a
//!   Bearer token (response header `authorization` and payload);
//! - `Bearer <token>`: a token from a handshake, until it expires.
//!
//! Tokens are 256 random bits kept in memory with their expiry (not signed
//! tokens): nothing to keep secret or rotate, and they end with the process.
//! A restart or a second server replica therefore needs a new handshake
//! (TODO(issue 7): signed tokens to share sessions between replicas).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD};
use rand::RngCore;
use tonic::Status;

use crate::error::{ErrorKind, FlightServeError, error_status};
use crate::users::{Role, UserEntry, Users};

pub(crate) const AUTHORIZATION: &str = "authorization";

/// Expired tokens are remembered this long, to tell their holders so.
const EXPIRED_REMEMBERED: Duration = Duration::from_secs(600);
/// Most live tokens held at once (a bound on memory, ~200 bytes each).
const MAX_TOKENS: usize = 100_000;
/// Password verifications running at once: a flood of Basic headers then
/// queues instead of taking every core from the queries.
const MAX_CONCURRENT_VERIFICATIONS: usize = 2;

/// Standard base64 with or without `=` padding: the Go Flight client (ADBC)
/// sends Basic credentials unpadded.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// `--auth`: whether callers must authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// Every call needs valid credentials (needs configured users).
    Required,
    /// Credentials are checked when sent; callers without any are anonymous
    /// (admin while no users are configured, read once users exist).
    Optional,
    /// Nobody is checked: every caller is admin, users are ignored.
    Off,
}

impl FromStr for AuthMode {
    type Err = FlightServeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "required" => Ok(AuthMode::Required),
            "optional" => Ok(AuthMode::Optional),
            "off" => Ok(AuthMode::Off),
            other => Err(FlightServeError::UnknownAuthMode(other.to_string())),
        }
    }
}

/// Authentication settings of the server.
#[derive(Debug, Clone)]
pub struct AuthOptions {
    /// `None`: required when users are configured or the listen address is
    /// not loopback, otherwise open (loopback, no users: everyone is admin).
    pub mode: Option<AuthMode>,
    pub users: Vec<UserEntry>,
    /// Lifetime of the Bearer tokens the handshake issues.
    pub token_ttl: Duration,
}

impl Default for AuthOptions {
    fn default() -> Self {
        Self {
            mode: None,
            users: Vec::new(),
            token_ttl: Duration::from_secs(3600),
        }
    }
}

/// An authenticated (or anonymous) caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// User name; `anonymous` for callers without credentials.
    pub name: Arc<str>,
    pub role: Role,
}

impl Principal {
    /// May this caller see or cancel what `owner` started? Admins may act
    /// for anyone, others for themselves.
    pub(crate) fn may_act_for(&self, owner: &str) -> bool {
        self.role == Role::Admin || *self.name == *owner
    }

    fn anonymous(role: Role) -> Self {
        Self {
            name: "anonymous".into(),
            role,
        }
    }
}

/// The mode in force once the defaults are applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effective {
    /// No checks; everyone is admin.
    Open,
    /// Credentials checked; callers without any get `anonymous` (or are refused).
    Checked { anonymous: Option<Role> },
}

/// Decides the mode from the flag, the users and the listen address.
fn resolve(
    mode: Option<AuthMode>,
    has_users: bool,
    listen: SocketAddr,
) -> Result<Effective, FlightServeError> {
    let loopback = listen.ip().is_loopback();
    let no_users = |why: &str| {
        FlightServeError::AuthSetup(format!(
            "{why} but no users are configured: add users ([[users]] in weir.toml \
             or WEIR_USERS=name:role:hash, hashes from `weir hash-password`), \
             or pass --auth off to serve {listen} without authentication"
        ))
    };
    Ok(match mode {
        Some(AuthMode::Off) => {
            if has_users {
                tracing::warn!("--auth off: the configured users are ignored");
            }
            if !loopback {
                tracing::warn!(%listen, "--auth off on a non-loopback address: anyone who can reach it is admin");
            }
            Effective::Open
        }
        Some(AuthMode::Required) if !has_users => {
            return Err(no_users("--auth required is set"));
        }
        Some(AuthMode::Required) => Effective::Checked { anonymous: None },
        Some(AuthMode::Optional) if has_users => Effective::Checked {
            anonymous: Some(Role::Read),
        },
        Some(AuthMode::Optional) | None if !has_users => {
            if !loopback {
                return Err(no_users(&format!(
                    "{listen} is not a loopback address, so authentication is required,"
                )));
            }
            Effective::Open
        }
        _ => Effective::Checked { anonymous: None },
    })
}

/// Credentials found in an `authorization` header.
enum Credentials<'a> {
    None,
    Basic { user: String, password: String },
    Bearer(&'a str),
}

fn parse_header(value: Option<&str>) -> Result<Credentials<'_>, Status> {
    let Some(value) = value else {
        return Ok(Credentials::None);
    };
    if let Some(token) = strip_scheme(value, "Bearer") {
        return Ok(Credentials::Bearer(token.trim()));
    }
    let Some(encoded) = strip_scheme(value, "Basic") else {
        return Err(error_status(
            ErrorKind::Unauthenticated,
            "unsupported authorization scheme (use Basic or Bearer)",
        ));
    };
    let decoded = BASE64
        .decode(encoded.trim())
        .ok()
        .and_then(|d| String::from_utf8(d).ok())
        .ok_or_else(|| {
            error_status(
                ErrorKind::Unauthenticated,
                "authorization: Basic credentials are not base64 UTF-8",
            )
        })?;
    let (user, password) = decoded.split_once(':').unwrap_or((decoded.as_str(), ""));
    Ok(Credentials::Basic {
        user: user.to_string(),
        password: password.to_string(),
    })
}

/// `"<scheme> <rest>"` → `rest` (scheme compared case-insensitively).
fn strip_scheme<'a>(value: &'a str, scheme: &str) -> Option<&'a str> {
    let (s, rest) = value.trim().split_once(' ')?;
    s.eq_ignore_ascii_case(scheme).then_some(rest)
}

struct Session {
    principal: Principal,
    expires: Instant,
}

/// Checks credentials and issues tokens.
pub struct Authenticator {
    effective: Effective,
    users: Users,
    token_ttl: Duration,
    tokens: Mutex<HashMap<String, Session>>,
    verifications: tokio::sync::Semaphore,
}

impl Authenticator {
    pub fn new(options: &AuthOptions, listen: SocketAddr) -> Result<Self, FlightServeError> {
        let users = Users::new(options.users.clone())?;
        let effective = resolve(options.mode, !users.is_empty(), listen)?;
        Ok(Self {
            effective,
            users,
            token_ttl: options.token_ttl,
            tokens: Mutex::new(HashMap::new()),
            verifications: tokio::sync::Semaphore::new(MAX_CONCURRENT_VERIFICATIONS),
        })
    }

    /// Everyone admin, no checks.
    #[cfg(test)]
    pub fn open() -> Self {
        Self {
            effective: Effective::Open,
            users: Users::default(),
            token_ttl: Duration::from_secs(3600),
            tokens: Mutex::new(HashMap::new()),
            verifications: tokio::sync::Semaphore::new(MAX_CONCURRENT_VERIFICATIONS),
        }
    }

    /// Authentication is off: every caller is admin, nothing is checked.
    pub fn is_open(&self) -> bool {
        self.effective == Effective::Open
    }

    /// One line for the start-up log.
    pub fn describe(&self) -> String {
        match self.effective {
            Effective::Open => "off (every caller is admin)".into(),
            Effective::Checked { anonymous: None } => "required".into(),
            Effective::Checked {
                anonymous: Some(role),
            } => format!("optional (callers without credentials: {role})"),
        }
    }

    /// The caller of a request with this `authorization` header. Basic
    /// credentials are verified on a blocking thread (Argon2 is slow on
    /// purpose).
    pub async fn authenticate(self: &Arc<Self>, header: Option<&str>) -> Result<Principal, Status> {
        if self.effective == Effective::Open {
            return Ok(Principal::anonymous(Role::Admin));
        }
        match parse_header(header)? {
            Credentials::Basic { user, password } => {
                let _permit =
                    self.verifications.acquire().await.map_err(|_| {
                        error_status(ErrorKind::Unavailable, "server is shutting down")
                    })?;
                let this = self.clone();
                tokio::task::spawn_blocking(move || this.verify_basic(&user, &password))
                    .await
                    .map_err(|e| {
                        error_status(ErrorKind::Internal, format!("password check failed: {e}"))
                    })?
            }
            other => self.check_cheap(other),
        }
    }

    /// As [`Self::authenticate`], verifying Basic credentials on this thread.
    pub fn authenticate_blocking(&self, header: Option<&str>) -> Result<Principal, Status> {
        if self.effective == Effective::Open {
            return Ok(Principal::anonymous(Role::Admin));
        }
        match parse_header(header)? {
            Credentials::Basic { user, password } => self.verify_basic(&user, &password),
            other => self.check_cheap(other),
        }
    }

    fn check_cheap(&self, credentials: Credentials<'_>) -> Result<Principal, Status> {
        match credentials {
            Credentials::None => match self.effective {
                Effective::Checked {
                    anonymous: Some(role),
                } => Ok(Principal::anonymous(role)),
                _ => Err(error_status(
                    ErrorKind::Unauthenticated,
                    "authentication required: handshake with Basic credentials \
                     (user name and password) or send a Bearer token",
                )),
            },
            Credentials::Bearer(token) => self.lookup(token),
            Credentials::Basic { user, password } => self.verify_basic(&user, &password),
        }
    }

    fn verify_basic(&self, user: &str, password: &str) -> Result<Principal, Status> {
        match self.users.verify(user, password) {
            Some(role) => Ok(Principal {
                name: user.into(),
                role,
            }),
            None => {
                tracing::info!(user, "Flight SQL: rejected credentials");
                Err(error_status(
                    ErrorKind::Unauthenticated,
                    "invalid user name or password",
                ))
            }
        }
    }

    fn lookup(&self, token: &str) -> Result<Principal, Status> {
        let tokens = lock(&self.tokens);
        let Some(session) = tokens.get(token) else {
            return Err(error_status(
                ErrorKind::Unauthenticated,
                "unknown bearer token: authenticate again (handshake)",
            ));
        };
        let now = Instant::now();
        if now >= session.expires {
            return Err(error_status(
                ErrorKind::Unauthenticated,
                format!(
                    "bearer token expired {}s ago: authenticate again (handshake)",
                    now.duration_since(session.expires).as_secs()
                ),
            ));
        }
        Ok(session.principal.clone())
    }

    /// A token for `principal`, valid for the token TTL. With authentication
    /// off the token is not recorded (nothing checks it).
    pub fn issue_token(&self, principal: &Principal) -> Result<String, Status> {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let token = URL_SAFE_NO_PAD.encode(bytes);
        if self.effective == Effective::Open {
            return Ok(token);
        }
        let now = Instant::now();
        let mut tokens = lock(&self.tokens);
        if tokens.len() >= MAX_TOKENS / 2 {
            tokens.retain(|_, s| s.expires + EXPIRED_REMEMBERED > now);
        }
        if tokens.len() >= MAX_TOKENS {
            tokens.retain(|_, s| s.expires > now);
            if tokens.len() >= MAX_TOKENS {
                return Err(error_status(
                    ErrorKind::ResourcesExhausted,
                    "too many open sessions; try again later",
                ));
            }
        }
        tokens.insert(
            token.clone(),
            Session {
                principal: principal.clone(),
                expires: now + self.token_ttl,
            },
        );
        Ok(token)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The map stays consistent even if a holder panicked.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::users::hash_password;
    use tonic::Code;

    fn loopback() -> SocketAddr {
        "127.0.0.1:0".parse().unwrap()
    }

    fn public() -> SocketAddr {
        "0.0.0.0:50051".parse().unwrap()
    }

    fn with_users(mode: Option<AuthMode>, ttl: Duration) -> Arc<Authenticator> {
        let hash = hash_password("pw").unwrap();
        let options = AuthOptions {
            mode,
            users: vec![
                UserEntry::new("reader", Role::Read, &hash).unwrap(),
                UserEntry::new("boss", Role::Admin, &hash).unwrap(),
            ],
            token_ttl: ttl,
        };
        Arc::new(Authenticator::new(&options, loopback()).unwrap())
    }

    fn basic(user: &str, password: &str) -> String {
        format!("Basic {}", BASE64.encode(format!("{user}:{password}")))
    }

    #[test]
    fn defaults_follow_the_listen_address_and_users() {
        assert_eq!(resolve(None, false, loopback()).unwrap(), Effective::Open);
        let err = resolve(None, false, public()).unwrap_err().to_string();
        assert!(err.contains("not a loopback address"), "{err}");
        assert!(err.contains("weir hash-password"), "{err}");
        assert_eq!(
            resolve(None, true, loopback()).unwrap(),
            Effective::Checked { anonymous: None }
        );
        assert!(resolve(Some(AuthMode::Required), false, loopback()).is_err());
        assert!(resolve(Some(AuthMode::Optional), false, public()).is_err());
        assert_eq!(
            resolve(Some(AuthMode::Optional), true, public()).unwrap(),
            Effective::Checked {
                anonymous: Some(Role::Read)
            }
        );
        assert_eq!(
            resolve(Some(AuthMode::Off), true, public()).unwrap(),
            Effective::Open
        );
        assert!("sometimes".parse::<AuthMode>().is_err());
    }

    #[tokio::test]
    async fn basic_then_bearer() {
        let auth = with_users(None, Duration::from_secs(60));
        let p = auth
            .authenticate(Some(&basic("reader", "pw")))
            .await
            .unwrap();
        assert_eq!((&*p.name, p.role), ("reader", Role::Read));
        // Unpadded base64 of `boss:pw` (how the Go client sends it).
        let p2 = auth.authenticate(Some("Basic Ym9zczpwdw")).await.unwrap();
        assert_eq!(p2.role, Role::Admin);
        let wrong = auth.authenticate(Some(&basic("reader", "nope"))).await;
        assert_eq!(wrong.unwrap_err().code(), Code::Unauthenticated);
        let none = auth.authenticate(None).await.unwrap_err();
        assert_eq!(none.code(), Code::Unauthenticated);
        assert!(none.message().contains("authentication required"));

        let token = auth.issue_token(&p).unwrap();
        assert_eq!(token.len(), 43);
        let again = auth
            .authenticate(Some(&format!("Bearer {token}")))
            .await
            .unwrap();
        assert_eq!(again, p);
        let bogus = auth.authenticate(Some("Bearer abc")).await.unwrap_err();
        assert!(bogus.message().contains("unknown bearer token"));
        let scheme = auth.authenticate(Some("Digest x")).await.unwrap_err();
        assert_eq!(scheme.code(), Code::Unauthenticated);
    }

    #[tokio::test]
    async fn tokens_expire() {
        let auth = with_users(None, Duration::ZERO);
        let p = auth
            .authenticate_blocking(Some(&basic("boss", "pw")))
            .unwrap();
        let token = auth.issue_token(&p).unwrap();
        let err = auth
            .authenticate(Some(&format!("Bearer {token}")))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Unauthenticated);
        assert!(err.message().contains("expired"), "{}", err.message());
    }

    #[tokio::test]
    async fn optional_with_users_makes_anonymous_a_reader() {
        let auth = with_users(Some(AuthMode::Optional), Duration::from_secs(60));
        let p = auth.authenticate(None).await.unwrap();
        assert_eq!((&*p.name, p.role), ("anonymous", Role::Read));
        assert!(auth.authenticate(Some(&basic("boss", "x"))).await.is_err());
    }

    #[tokio::test]
    async fn open_mode_accepts_anything() {
        let auth = Arc::new(Authenticator::open());
        for header in [None, Some("Bearer whatever"), Some("Basic !!!")] {
            assert_eq!(auth.authenticate(header).await.unwrap().role, Role::Admin);
        }
    }
}
