//! Client sessions: options a client sets once (SetSessionOptions, or SQL
//! `SET` on any statement) and that apply to its later statements.
//!
//! A request's session is named by the `arrow_flight_session_id` cookie (the
//! name `Flight.proto` suggests) when it sends one, else by its connection:
//! - SetSessionOptions opens a session if the request has none and answers
//!   `set-cookie`; clients that keep cookies (ADBC with
//!   `adbc.flight.sql.rpc.with_cookie_middleware = true`, the JDBC driver)
//!   reach it from any connection until it is closed or idle;
//! - SQL `SET` (and SetSessionOptions from a client that drops the cookie)
//!   binds the session to the connection, as in PostgreSQL: every later
//!   statement on that connection sees it, from the first statement on, and
//!   it ends with the connection (unless a cookie was handed out).
//!
//! A session belongs to the user who opened it: another user's requests
//! never see it (a cookie of another user's session is NOT_FOUND, as is a
//! cookie of a closed or expired session — its settings would otherwise be
//! silently lost, e.g. after a server restart).
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
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use datafusion::config::ConfigOptions;
use datafusion::execution::FunctionRegistry;
use datafusion::prelude::SessionContext;
use tonic::Status;
use tonic::metadata::MetadataMap;
use weir_query::QueryEngine;

use crate::access::Access;
use crate::error::{ErrorKind, error_status};
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
    /// The user who opened it: nobody else may use it.
    user: Arc<str>,
    /// The connection it was opened on, while that connection is open.
    connection: Option<ConnectionId>,
    /// Whether the client was handed a cookie naming it (then it outlives
    /// its connection until idle).
    cookie_sent: bool,
}

/// Identifies one client connection (set on every request by
/// `connections.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct ConnectionId(pub u64);

/// What names a request's session: the cookie if it has one, else its
/// connection; always bound to the caller.
#[derive(Debug, Clone)]
pub(crate) struct SessionKey {
    pub cookie: Option<String>,
    pub connection: Option<ConnectionId>,
    pub user: Arc<str>,
}

impl SessionKey {
    pub(crate) fn new(
        metadata: &MetadataMap,
        connection: Option<ConnectionId>,
        user: Arc<str>,
    ) -> Self {
        SessionKey {
            cookie: session_id(metadata),
            connection,
            user,
        }
    }
}

#[derive(Default)]
struct Entries {
    by_id: HashMap<String, Session>,
    by_connection: HashMap<ConnectionId, String>,
}

impl Entries {
    fn remove(&mut self, id: &str) -> Option<Session> {
        let session = self.by_id.remove(id)?;
        if let Some(c) = session.connection {
            self.by_connection.remove(&c);
        }
        Some(session)
    }

    /// The live session `key` names: `Err` for a cookie that names none
    /// (closed, expired, or another user's).
    fn find(&mut self, key: &SessionKey, idle: Duration) -> Result<Option<String>, Status> {
        let now = Instant::now();
        if let Some(id) = &key.cookie {
            return match self.by_id.get(id) {
                Some(s) if now.duration_since(s.last_used) <= idle && s.user == key.user => {
                    Ok(Some(id.clone()))
                }
                Some(s) if s.user != key.user => Err(unknown_session()),
                _ => {
                    self.remove(id);
                    Err(unknown_session())
                }
            };
        }
        let Some(c) = key.connection else {
            return Ok(None);
        };
        let Some(id) = self.by_connection.get(&c).cloned() else {
            return Ok(None);
        };
        match self.by_id.get(&id) {
            Some(s) if now.duration_since(s.last_used) <= idle && s.user == key.user => {
                Ok(Some(id))
            }
            // Expired, or another user on the same connection (a proxy
            // multiplexing clients): not this caller's session.
            Some(s) if s.user != key.user => Ok(None),
            _ => {
                self.remove(&id);
                Ok(None)
            }
        }
    }
}

/// Open sessions by id (and by connection, for clients without cookies).
pub(crate) struct Sessions {
    idle_limit: Duration,
    entries: Mutex<Entries>,
}

/// The settings a request runs with.
#[derive(Debug, Default, Clone)]
pub(crate) struct Settings {
    pub options: Options,
}

impl Sessions {
    pub(crate) fn new(idle_limit: Duration) -> Self {
        Sessions {
            idle_limit,
            entries: Mutex::new(Entries::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        // A panic while holding the lock cannot leave the map inconsistent.
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The settings of the request's session: the cookie's, else its
    /// connection's, else the defaults. NOT_FOUND for a cookie of a closed
    /// or expired session (its settings would otherwise be silently lost,
    /// e.g. after a server restart) or of another user's.
    pub(crate) fn settings(&self, key: &SessionKey) -> Result<Settings, Status> {
        let mut entries = self.lock();
        let Some(id) = entries.find(key, self.idle_limit)? else {
            return Ok(Settings::default());
        };
        let session = entries.by_id.get_mut(&id).expect("found above");
        session.last_used = Instant::now();
        Ok(Settings {
            options: session.options.clone(),
        })
    }

    /// Applies `updates` (already validated) to the request's session,
    /// opening one on its connection if it has none. `for_cookie`: the id
    /// will be handed to the client as a cookie. Returns the session id and
    /// whether the request named it by cookie already.
    pub(crate) fn update(
        &self,
        key: &SessionKey,
        updates: Options,
        for_cookie: bool,
    ) -> Result<(String, bool), Status> {
        let now = Instant::now();
        let mut entries = self.lock();
        let idle = self.idle_limit;
        let expired: Vec<String> = entries
            .by_id
            .iter()
            .filter(|(_, s)| now.duration_since(s.last_used) > idle)
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            entries.remove(&id);
        }
        let found = entries.find(key, idle)?;
        let had_cookie = key.cookie.is_some();
        let id = match found {
            Some(id) => id,
            None => {
                let id = uuid::Uuid::new_v4().to_string();
                // A connection already bound to another user's session
                // (a multiplexing proxy) keeps that binding.
                let connection = key
                    .connection
                    .filter(|c| !entries.by_connection.contains_key(c));
                if let Some(c) = connection {
                    entries.by_connection.insert(c, id.clone());
                }
                entries.by_id.insert(
                    id.clone(),
                    Session {
                        options: Options::new(),
                        last_used: now,
                        user: key.user.clone(),
                        connection,
                        cookie_sent: false,
                    },
                );
                id
            }
        };
        let session = entries.by_id.get_mut(&id).expect("inserted above");
        session.last_used = now;
        session.cookie_sent |= for_cookie;
        for (name, value) in updates {
            if value.option_value.is_none() {
                session.options.remove(&name);
            } else {
                session.options.insert(name, value);
            }
        }
        Ok((id, had_cookie))
    }

    /// Closes the request's session; `false` if it named none that is open.
    pub(crate) fn close(&self, key: &SessionKey) -> bool {
        let mut entries = self.lock();
        match entries.find(key, self.idle_limit) {
            Ok(Some(id)) => entries.remove(&id).is_some(),
            _ => false,
        }
    }

    /// A connection ended: its session goes unless a cookie names it.
    pub(crate) fn connection_closed(&self, connection: ConnectionId) {
        let mut entries = self.lock();
        let Some(id) = entries.by_connection.remove(&connection) else {
            return;
        };
        if let Some(session) = entries.by_id.get_mut(&id) {
            session.connection = None;
            if !session.cookie_sent {
                entries.by_id.remove(&id);
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().by_id.len()
    }
}

fn unknown_session() -> Status {
    error_status(
        ErrorKind::NotFound,
        format!(
            "session unknown, closed or expired (cookie {SESSION_COOKIE}); reconnect to start a new session"
        ),
    )
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
                error_status(
                    ErrorKind::InvalidArgument,
                    format!("session option {name} = {text}: {e}"),
                )
            })?;
        }
        // Functions that read the configuration when built (`now()` takes
        // the time zone) are rebuilt, as DataFusion's own `SET` does.
        let config = state.config().options().clone();
        let updated: Vec<_> = state
            .scalar_functions()
            .values()
            .filter_map(|udf| udf.inner().with_updated_config(&config))
            .collect();
        for udf in updated {
            state
                .register_udf(std::sync::Arc::new(udf))
                .map_err(|e| error_status(ErrorKind::Internal, format!("session options: {e}")))?;
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

    fn key(cookie: Option<&str>, connection: Option<u64>, user: &str) -> SessionKey {
        SessionKey {
            cookie: cookie.map(str::to_string),
            connection: connection.map(ConnectionId),
            user: user.into(),
        }
    }

    #[test]
    fn sessions_open_update_close() {
        let sessions = Sessions::new(Duration::from_secs(60));
        let (id, had_cookie) = sessions
            .update(
                &key(None, Some(1), "ann"),
                Options::from([("schema".into(), SessionOptionValue::string("plant"))]),
                true,
            )
            .unwrap();
        assert!(!had_cookie);
        let m = key(Some(&id), Some(2), "ann");
        let (same, had_cookie) = sessions
            .update(
                &m,
                Options::from([(
                    STATEMENT_TIMEOUT.into(),
                    SessionOptionValue {
                        option_value: Some(OptionValue::Int64Value(1500)),
                    },
                )]),
                false,
            )
            .unwrap();
        assert_eq!((same.as_str(), had_cookie), (id.as_str(), true));
        let settings = sessions.settings(&m).unwrap();
        assert_eq!(settings.options.len(), 2);
        assert_eq!(
            timeout(&settings, None, Role::Read),
            Some(Duration::from_millis(1500))
        );
        // Unset.
        sessions
            .update(
                &m,
                Options::from([(STATEMENT_TIMEOUT.into(), SessionOptionValue::default())]),
                false,
            )
            .unwrap();
        let settings = sessions.settings(&m).unwrap();
        assert_eq!(
            timeout(&settings, Some(Duration::from_secs(9)), Role::Read),
            Some(Duration::from_secs(9))
        );
        // The cookie's session survives its first connection.
        sessions.connection_closed(ConnectionId(1));
        assert_eq!(sessions.settings(&m).unwrap().options.len(), 1);
        assert!(sessions.close(&m));
        assert!(!sessions.close(&m));
        assert_eq!(
            sessions.settings(&m).unwrap_err().code(),
            tonic::Code::NotFound
        );
        assert_eq!(sessions.len(), 0);
    }

    /// Issue 20: a SQL `SET` as the first statement of a connection without
    /// cookies applies to the connection's later statements, and goes with it.
    #[test]
    fn connection_sessions() {
        let sessions = Sessions::new(Duration::from_secs(60));
        let on = |c: u64| key(None, Some(c), "ann");
        assert!(sessions.settings(&on(7)).unwrap().options.is_empty());
        sessions
            .update(
                &on(7),
                Options::from([("schema".into(), SessionOptionValue::string("plant"))]),
                false,
            )
            .unwrap();
        assert_eq!(sessions.settings(&on(7)).unwrap().options.len(), 1);
        // Other connections and other users on the same connection don't see it.
        assert!(sessions.settings(&on(8)).unwrap().options.is_empty());
        assert!(
            sessions
                .settings(&key(None, Some(7), "bob"))
                .unwrap()
                .options
                .is_empty()
        );
        sessions.connection_closed(ConnectionId(7));
        assert_eq!(sessions.len(), 0);
        assert!(sessions.settings(&on(7)).unwrap().options.is_empty());
    }

    /// Issue 24 (known gap): a session's cookie is no use to another user.
    #[test]
    fn sessions_belong_to_their_user() {
        let sessions = Sessions::new(Duration::from_secs(60));
        let (id, _) = sessions
            .update(
                &key(None, None, "boss"),
                Options::from([("schema".into(), SessionOptionValue::string("plant"))]),
                true,
            )
            .unwrap();
        let stolen = key(Some(&id), None, "reader");
        assert_eq!(
            sessions.settings(&stolen).unwrap_err().code(),
            tonic::Code::NotFound
        );
        assert!(sessions.update(&stolen, Options::new(), false).is_err());
        assert!(!sessions.close(&stolen));
        assert_eq!(sessions.len(), 1);
    }

    /// Issue 24: a read user set statement_timeout = 0 and ran past the
    /// server's --query-timeout.
    #[test]
    fn only_admins_lift_the_server_timeout() {
        let server = Some(Duration::from_secs(60));
        let with = |v: &str| Settings {
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
