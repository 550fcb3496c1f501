//! Logging in: Flight's [`weir_flight::Authenticator`] checks the password
//! and issues the token, which the browser keeps as an HttpOnly,
//! SameSite=Strict cookie. Each session also has a CSRF token that the page
//! holds in memory and sends as `x-weir-csrf` on every state-changing call.
//!
//! With authentication off (or optional), `GET /api/me` opens a session
//! without a login, as Flight lets such callers in without credentials.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, SET_COOKIE};
use hyper::{Request, StatusCode};
use rand::RngCore;
use serde::Deserialize;
use weir_flight::Principal;
use weir_observe::HttpResponse;

use crate::Inner;
use crate::web::{ApiError, cookie, json, read_json};

pub(crate) const COOKIE: &str = "weir_console";
pub(crate) const CSRF_HEADER: &str = "x-weir-csrf";
/// Sessions older than this are forgotten (the token may expire earlier).
const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);
const MAX_SESSIONS: usize = 10_000;

struct Session {
    csrf: String,
    started: Instant,
}

#[derive(Default)]
pub(crate) struct Sessions(Mutex<HashMap<String, Session>>);

impl Sessions {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Session>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn open(&self, token: &str) -> String {
        let csrf = random_token();
        let mut sessions = self.lock();
        if sessions.len() >= MAX_SESSIONS {
            sessions.retain(|_, s| s.started.elapsed() < SESSION_LIFETIME);
            if sessions.len() >= MAX_SESSIONS {
                // Forget the oldest rather than refuse logins.
                if let Some(oldest) = sessions
                    .iter()
                    .min_by_key(|(_, s)| s.started)
                    .map(|(k, _)| k.clone())
                {
                    sessions.remove(&oldest);
                }
            }
        }
        sessions.insert(
            token.to_string(),
            Session {
                csrf: csrf.clone(),
                started: Instant::now(),
            },
        );
        csrf
    }

    fn csrf(&self, token: &str) -> Option<String> {
        self.lock()
            .get(token)
            .filter(|s| s.started.elapsed() < SESSION_LIFETIME)
            .map(|s| s.csrf.clone())
    }
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The session token of this request, if it names a live session.
fn session_token<'a>(inner: &Inner, req: &'a Request<Incoming>) -> Option<&'a str> {
    cookie(req, COOKIE).filter(|token| inner.sessions.csrf(token).is_some())
}

/// Who is calling: the session's user, else whoever Flight lets in without
/// credentials (everyone as admin with authentication off), else 401.
pub(crate) async fn caller(inner: &Inner, req: &Request<Incoming>) -> Result<Principal, ApiError> {
    let header = session_token(inner, req).map(|token| format!("Bearer {token}"));
    inner
        .auth
        .authenticate(header.as_deref())
        .await
        .map_err(|status| ApiError::unauthorized(status.message()))
}

/// The request carries its session's CSRF token (state-changing calls).
pub(crate) fn check_csrf(inner: &Inner, req: &Request<Incoming>) -> Result<(), ApiError> {
    let expected = cookie(req, COOKIE).and_then(|token| inner.sessions.csrf(token));
    let sent = req.headers().get(CSRF_HEADER).and_then(|v| v.to_str().ok());
    match (expected, sent) {
        (Some(expected), Some(sent)) if constant_time_eq(expected.as_bytes(), sent.as_bytes()) => {
            Ok(())
        }
        (None, _) => Err(ApiError::unauthorized(
            "no console session: log in again (reload the page)",
        )),
        _ => Err(ApiError::forbidden(format!(
            "missing or wrong {CSRF_HEADER} header (reload the page)"
        ))),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn who(inner: &Inner, principal: &Principal, csrf: &str) -> serde_json::Value {
    serde_json::json!({
        "user": &*principal.name,
        "role": principal.role.to_string(),
        "auth": !inner.auth.is_open(),
        "csrf": csrf,
        "max_rows": crate::MAX_ROWS,
        "query_timeout_seconds": inner.query_timeout.map(|t| t.as_secs_f64()),
    })
}

/// Opens a session for `principal` and answers with its cookie.
fn start(inner: &Inner, principal: &Principal) -> Result<HttpResponse, ApiError> {
    let token = inner
        .auth
        .issue_token(principal)
        .map_err(|s| ApiError::from_status(&s))?;
    let csrf = inner.sessions.open(&token);
    let mut response = json(StatusCode::OK, &who(inner, principal, &csrf));
    let cookie = format!(
        "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
        SESSION_LIFETIME.as_secs()
    );
    let value = HeaderValue::from_str(&cookie)
        .map_err(|e| ApiError::internal(format!("session cookie: {e}")))?;
    response.headers_mut().insert(SET_COOKIE, value);
    Ok(response)
}

/// `GET /api/me`: the session's user, or a new session when no login is
/// needed, or 401 (the page shows the login form).
pub(crate) async fn me(inner: &Inner, req: &Request<Incoming>) -> Result<HttpResponse, ApiError> {
    let principal = caller(inner, req).await?;
    match session_token(inner, req).and_then(|t| inner.sessions.csrf(t)) {
        Some(csrf) => Ok(json(StatusCode::OK, &who(inner, &principal, &csrf))),
        None => start(inner, &principal),
    }
}

#[derive(Deserialize)]
struct Login {
    user: String,
    password: String,
}

/// `POST /api/login {user, password}`.
pub(crate) async fn login(inner: &Inner, req: Request<Incoming>) -> Result<HttpResponse, ApiError> {
    let login: Login = read_json(req).await?;
    if login.user.is_empty() {
        return Err(ApiError::bad_request("user name is empty"));
    }
    let basic = format!(
        "Basic {}",
        STANDARD.encode(format!("{}:{}", login.user, login.password))
    );
    let principal = inner
        .auth
        .authenticate(Some(&basic))
        .await
        .map_err(|s| ApiError::unauthorized(s.message()))?;
    tracing::info!(user = %principal.name, role = %principal.role, "console login");
    start(inner, &principal)
}

/// `POST /api/logout`: forgets the session and clears the cookie.
pub(crate) fn logout(inner: &Inner, req: &Request<Incoming>) -> Result<HttpResponse, ApiError> {
    if let Some(token) = cookie(req, COOKIE) {
        inner.sessions.lock().remove(token);
    }
    let mut response = json(StatusCode::OK, &serde_json::json!({"ok": true}));
    response.headers_mut().insert(
        SET_COOKIE,
        HeaderValue::from_static("weir_console=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csrf_tokens_compare_whole() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"", b"a"));
    }

    #[test]
    fn sessions_hold_their_csrf_token() {
        let sessions = Sessions::default();
        let csrf = sessions.open("token-1");
        assert_eq!(sessions.csrf("token-1"), Some(csrf.clone()));
        assert_eq!(sessions.csrf("token-2"), None);
        assert_ne!(sessions.open("token-2"), csrf);
    }
}
