//! Client sessions: options a client sets once (SetSessionOptions, or SQL
//! `SET` on a connection that has a session) and that apply to its later
//! statements.
//!
//! A session is named by the `arrow_flight_session_id` cookie (the name
//! `Flight.proto` suggests): SetSessionOptions without a valid cookie opens a
//! session and answers `set-cookie`. The ADBC driver keeps the cookie when
//! the connection has `adbc.flight.sql.rpc.with_cookie_middleware = true`.
//! Requests without the cookie run with the server's defaults; requests with
//! a cookie of a closed or expired session get NOT_FOUND (their settings
//! would otherwise be silently lost, e.g. after a server restart).
//!
//! Options:
//! - `catalog`, `schema`: the default catalog and schema of unqualified names
//!   (`datafusion.catalog.default_catalog` / `default_schema`);
//! - `statement_timeout`: longest a statement may plan or stream; an integer
//!   is milliseconds (as in PostgreSQL), a string a duration (`30s`, `2m`);
//!   `0` means no limit; an admin's overrides the server's `--query-timeout`,
//!   other users' may only shorten it;
//! - `weir.*` and `datafusion.*` settings, as SQL `SET` takes them, under the
//!   same rules (`weir_query::settings`: who may change which, bounds no
//!   session can lift).
//!
//! A SessionOptionValue without a value unsets the option.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use datafusion::config::ConfigOptions;
use datafusion::prelude::SessionContext;
use tonic::Status;
use tonic::metadata::MetadataMap;
use weir_query::QueryEngine;

use crate::access::Access;
use crate::session_proto::{OptionValue, SessionOptionValue, SetSessionOptionsErrorValue};
use crate::users::Role;

/// The cookie that names a session.
pub(crate) const SESSION_COOKIE: &str = "arrow_flight_session_id";

pub(crate) const CATALOG: &str = "catalog";
pub(crate) const SCHEMA: &str = "schema";
pub(crate) const STATEMENT_TIMEOUT: &str = "statement_timeout";

pub(crate) type Options = BTreeMap<String, SessionOptionValue>;

struct Session {
    options: Options,
    last_used: Instant,
}

/// Open sessions by id.
pub(crate) struct Sessions {
    idle_limit: Duration,
    entries: Mutex<HashMap<String, Session>>,
}

/// The settings a request runs with.
#[derive(Debug, Default, Clone)]
pub(crate) struct Settings {
    /// The session id, if the request named a live session.
    pub id: Option<String>,
    pub options: Options,
}

impl Sessions {
    pub fn new(idle_limit: Duration) -> Self {
        Sessions {
            idle_limit,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        // A panic while holding the lock cannot leave the map inconsistent.
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The settings of the session the request names (defaults without a
    /// cookie; NOT_FOUND for a cookie of a closed or expired session).
    pub fn settings(&self, metadata: &MetadataMap) -> Result<Settings, Status> {
        let Some(id) = session_id(metadata) else {
            return Ok(Settings::default());
        };
        let mut entries = self.lock();
        match entries.get_mut(&id) {
            Some(session) if session.last_used.elapsed() <= self.idle_limit => {
                session.last_used = Instant::now();
                Ok(Settings {
                    id: Some(id),
                    options: session.options.clone(),
                })
            }
            _ => {
                entries.remove(&id);
                Err(unknown_session())
            }
        }
    }

    /// Applies `updates` (already validated) to the request's session,
    /// opening one if the request has none. Returns the session id and
    /// whether it is new (then the client needs the cookie).
    pub fn update(&self, metadata: &MetadataMap, updates: Options) -> (String, bool) {
        let now = Instant::now();
        let mut entries = self.lock();
        entries.retain(|_, s| now.duration_since(s.last_used) <= self.idle_limit);
        let existing = session_id(metadata).filter(|id| entries.contains_key(id));
        let created = existing.is_none();
        let id = existing.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let session = entries.entry(id.clone()).or_insert_with(|| Session {
            options: Options::new(),
            last_used: now,
        });
        session.last_used = now;
        for (name, value) in updates {
            if value.option_value.is_none() {
                session.options.remove(&name);
            } else {
                session.options.insert(name, value);
            }
        }
        (id, created)
    }

    /// Closes the request's session; `false` if it named none that is open.
    pub fn close(&self, metadata: &MetadataMap) -> bool {
        session_id(metadata).is_some_and(|id| self.lock().remove(&id).is_some())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

fn unknown_session() -> Status {
    Status::not_found(format!(
        "session unknown, closed or expired (cookie {SESSION_COOKIE}); reconnect to start a new session"
    ))
}

/// The session id from the request's `cookie` headers.
pub(crate) fn session_id(metadata: &MetadataMap) -> Option<String> {
    metadata
        .get_all("cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|header| header.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.trim_matches('"').to_string())
        .filter(|v| !v.is_empty())
}

/// The `set-cookie` value that hands a client its session id.
pub(crate) fn set_cookie(id: &str) -> String {
    format!("{SESSION_COOKIE}={id}; Path=/; HttpOnly")
}

/// Why an option cannot be set.
pub(crate) type OptionError = (SetSessionOptionsErrorValue, String);

/// Checks one option (name and value) without applying it.
pub(crate) fn validate(
    engine: &QueryEngine,
    role: Role,
    name: &str,
    value: &SessionOptionValue,
) -> Result<(), OptionError> {
    let Some(text) = value.as_text() else {
        return Ok(()); // unset
    };
    match name {
        CATALOG => {
            if engine.catalog_names().contains(&text) {
                Ok(())
            } else {
                Err((
                    SetSessionOptionsErrorValue::InvalidValue,
                    format!("unknown catalog {text}"),
                ))
            }
        }
        SCHEMA => Ok(()), // may be created later; unknown tables fail as NOT_FOUND
        STATEMENT_TIMEOUT => parse_timeout(value)
            .map(|_| ())
            .map_err(|e| (SetSessionOptionsErrorValue::InvalidValue, e)),
        _ => {
            let Some(key) = config_key(name) else {
                return Err((
                    SetSessionOptionsErrorValue::InvalidName,
                    format!("unknown session option {name}"),
                ));
            };
            let needed = weir_query::settings::access(&key.to_ascii_lowercase());
            if needed == Access::Admin && role < Role::Admin {
                return Err((
                    SetSessionOptionsErrorValue::Error,
                    format!("only admins may set {name}"),
                ));
            }
            weir_query::settings::check(&key, &text)
                .map_err(|e| (SetSessionOptionsErrorValue::InvalidValue, e.to_string()))?;
            let mut options = engine
                .new_context()
                .state()
                .config_options()
                .as_ref()
                .clone();
            options.set(&key, &text).map_err(|e| {
                // DataFusion says "Config value \"x\" not found on …" for unknown keys.
                let kind = match &e {
                    datafusion::error::DataFusionError::Configuration(m)
                        if m.contains("not found") =>
                    {
                        SetSessionOptionsErrorValue::InvalidName
                    }
                    _ => SetSessionOptionsErrorValue::InvalidValue,
                };
                (kind, e.to_string())
            })
        }
    }
}

/// The DataFusion configuration key of a session option, if it is one.
fn config_key(name: &str) -> Option<String> {
    match name {
        CATALOG => Some("datafusion.catalog.default_catalog".into()),
        SCHEMA => Some("datafusion.catalog.default_schema".into()),
        _ if name.starts_with("datafusion.") || name.starts_with("weir.") => Some(name.into()),
        _ => None,
    }
}

/// A fresh engine context with the session's options applied.
pub(crate) fn context(engine: &QueryEngine, settings: &Settings) -> Result<SessionContext, Status> {
    let ctx = engine.new_context();
    if settings.options.is_empty() {
        return Ok(ctx);
    }
    {
        let state_ref = ctx.state_ref();
        let mut state = state_ref.write();
        let options: &mut ConfigOptions = state.config_mut().options_mut();
        for (name, value) in &settings.options {
            let (Some(key), Some(text)) = (config_key(name), value.as_text()) else {
                continue;
            };
            options.set(&key, &text).map_err(|e| {
                Status::invalid_argument(format!("session option {name} = {text}: {e}"))
            })?;
        }
    }
    Ok(ctx)
}

/// The statement timeout of a request: an admin's session's, else the
/// shorter of the session's and the server's (a session cannot lift the
/// server's limit for other users), else the server's.
pub(crate) fn timeout(
    settings: &Settings,
    server: Option<Duration>,
    role: Role,
) -> Option<Duration> {
    match settings.options.get(STATEMENT_TIMEOUT).map(parse_timeout) {
        Some(Ok(limit)) if role == Role::Admin => limit,
        Some(Ok(Some(limit))) => Some(server.map_or(limit, |s| s.min(limit))),
        _ => server,
    }
}

/// `statement_timeout`: integers are milliseconds, strings durations; 0 = none.
fn parse_timeout(value: &SessionOptionValue) -> Result<Option<Duration>, String> {
    let limit = match &value.option_value {
        Some(OptionValue::Int64Value(ms)) if *ms >= 0 => Duration::from_millis(*ms as u64),
        Some(OptionValue::DoubleValue(ms)) if *ms >= 0.0 && ms.is_finite() => {
            Duration::from_secs_f64(*ms / 1000.0)
        }
        Some(OptionValue::StringValue(s)) => {
            let s = s.trim();
            match s.parse::<u64>() {
                Ok(ms) => Duration::from_millis(ms),
                Err(_) => humantime::parse_duration(s).map_err(|e| {
                    format!("statement_timeout {s:?} is not a duration (e.g. 30s, 500ms): {e}")
                })?,
            }
        }
        other => {
            return Err(format!(
                "statement_timeout must be milliseconds or a duration string, got {other:?}"
            ));
        }
    };
    Ok((!limit.is_zero()).then_some(limit))
}

/// The options GetSessionOptions reports: the effective catalog, schema and
/// statement timeout, plus everything the session set.
pub(crate) fn report(
    settings: &Settings,
    ctx: &SessionContext,
    server_timeout: Option<Duration>,
) -> HashMap<String, SessionOptionValue> {
    let mut out: HashMap<String, SessionOptionValue> = settings
        .options
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let state = ctx.state();
    let catalog = &state.config_options().catalog;
    out.insert(
        CATALOG.into(),
        SessionOptionValue::string(&catalog.default_catalog),
    );
    out.insert(
        SCHEMA.into(),
        SessionOptionValue::string(&catalog.default_schema),
    );
    out.entry(STATEMENT_TIMEOUT.into()).or_insert_with(|| {
        let limit = server_timeout.unwrap_or_default();
        SessionOptionValue::string(humantime::format_duration(limit).to_string())
    });
    if let Some(weir) = state
        .config_options()
        .extensions
        .get::<weir_query::WeirSessionOptions>()
    {
        out.entry("weir.mv_rewrite".into())
            .or_insert_with(|| SessionOptionValue::bool(weir.mv_rewrite));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::metadata::MetadataValue;

    fn with_cookie(cookie: &str) -> MetadataMap {
        let mut m = MetadataMap::new();
        m.insert("cookie", MetadataValue::try_from(cookie).unwrap());
        m
    }

    #[test]
    fn cookie_is_found_among_others() {
        let m = with_cookie("a=1; arrow_flight_session_id=abc; b=2");
        assert_eq!(session_id(&m).as_deref(), Some("abc"));
        assert_eq!(session_id(&MetadataMap::new()), None);
        assert_eq!(session_id(&with_cookie("arrow_flight_session_id=")), None);
    }

    #[test]
    fn sessions_open_update_close() {
        let sessions = Sessions::new(Duration::from_secs(60));
        let (id, created) = sessions.update(
            &MetadataMap::new(),
            Options::from([("schema".into(), SessionOptionValue::string("plant"))]),
        );
        assert!(created);
        let m = with_cookie(&format!("{SESSION_COOKIE}={id}"));
        let (same, created) = sessions.update(
            &m,
            Options::from([(
                STATEMENT_TIMEOUT.into(),
                SessionOptionValue {
                    option_value: Some(OptionValue::Int64Value(1500)),
                },
            )]),
        );
        assert_eq!((same.as_str(), created), (id.as_str(), false));
        let settings = sessions.settings(&m).unwrap();
        assert_eq!(settings.options.len(), 2);
        assert_eq!(
            timeout(&settings, None, Role::Read),
            Some(Duration::from_millis(1500))
        );
        // Unset.
        sessions.update(
            &m,
            Options::from([(STATEMENT_TIMEOUT.into(), SessionOptionValue::default())]),
        );
        let settings = sessions.settings(&m).unwrap();
        assert_eq!(
            timeout(&settings, Some(Duration::from_secs(9)), Role::Read),
            Some(Duration::from_secs(9))
        );
        assert!(sessions.close(&m));
        assert!(!sessions.close(&m));
        assert_eq!(
            sessions.settings(&m).unwrap_err().code(),
            tonic::Code::NotFound
        );
        assert_eq!(sessions.len(), 0);
    }

    /// Issue 24: a read user set statement_timeout = 0 and ran past the
    /// server's --query-timeout.
    #[test]
    fn only_admins_lift_the_server_timeout() {
        let server = Some(Duration::from_secs(60));
        let with = |v: &str| Settings {
            id: None,
            options: Options::from([(STATEMENT_TIMEOUT.into(), SessionOptionValue::string(v))]),
        };
        assert_eq!(timeout(&with("0"), server, Role::Read), server);
        assert_eq!(timeout(&with("10m"), server, Role::Write), server);
        assert_eq!(
            timeout(&with("5s"), server, Role::Read),
            Some(Duration::from_secs(5))
        );
        assert_eq!(timeout(&with("0"), server, Role::Admin), None);
        assert_eq!(
            timeout(&with("10m"), server, Role::Admin),
            Some(Duration::from_secs(600))
        );
    }

    #[test]
    fn timeouts_parse() {
        let s = |v: &str| parse_timeout(&SessionOptionValue::string(v));
        assert_eq!(s("250").unwrap(), Some(Duration::from_millis(250)));
        assert_eq!(s("2s").unwrap(), Some(Duration::from_secs(2)));
        assert_eq!(s("0").unwrap(), None);
        assert!(s("soon").is_err());
        assert!(parse_timeout(&SessionOptionValue::bool(true)).is_err());
    }
}
