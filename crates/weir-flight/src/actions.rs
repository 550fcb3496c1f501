//! Flight actions beyond the Flight SQL ones: the session actions
//! (SetSessionOptions, GetSessionOptions, CloseSession), CancelFlightInfo,
//! and Weir's `weir.running_queries` (one JSON result per running query:
//! `{"handle": …, "seconds": …}`), plus the legacy CancelQuery and SQL `SET`
//! persistence into a session.

use std::collections::BTreeMap;
use std::pin::Pin;

use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::ActionCancelQueryResult;
use arrow_flight::{
    Action, ActionType, CancelFlightInfoRequest, CancelFlightInfoResult, CancelStatus, FlightInfo,
};
use futures::Stream;
use prost::Message;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status};

use crate::cancel::{CancelOutcome, statement_handles};
use crate::error::internal;
use crate::service::WeirFlightSqlService;
use crate::session_proto::{
    CANCEL_FLIGHT_INFO, CLOSE_SESSION, CloseSessionRequest, CloseSessionResult, CloseSessionStatus,
    GET_SESSION_OPTIONS, GetSessionOptionsRequest, GetSessionOptionsResult, SET_SESSION_OPTIONS,
    SessionOptionValue, SetSessionOptionsError, SetSessionOptionsRequest, SetSessionOptionsResult,
};
use crate::sessions;

/// Lists the queries whose results are streaming.
pub(crate) const RUNNING_QUERIES: &str = "weir.running_queries";

type ActionStream = Pin<Box<dyn Stream<Item = Result<arrow_flight::Result, Status>> + Send>>;
type ActionResponse =
    Result<Response<<WeirFlightSqlService as FlightService>::DoActionStream>, Status>;

/// `ActionCancelQueryResult.CancelResult.CANCEL_RESULT_CANCELLED`.
const CANCEL_RESULT_CANCELLED: i32 = 1;

pub(crate) fn is_weir_action(kind: &str) -> bool {
    [
        SET_SESSION_OPTIONS,
        GET_SESSION_OPTIONS,
        CLOSE_SESSION,
        CANCEL_FLIGHT_INFO,
        RUNNING_QUERIES,
    ]
    .contains(&kind)
}

pub(crate) fn action_types() -> Vec<Result<ActionType, Status>> {
    [
        (SET_SESSION_OPTIONS, "Sets session options (catalog, schema, statement_timeout, weir.*, datafusion.*); opens a session (cookie arrow_flight_session_id)"),
        (GET_SESSION_OPTIONS, "Returns the session's options"),
        (CLOSE_SESSION, "Closes the session"),
        (CANCEL_FLIGHT_INFO, "Cancels the query of a FlightInfo"),
        (RUNNING_QUERIES, "Lists running queries, one JSON object per result"),
    ]
    .into_iter()
    .map(|(kind, description)| {
        Ok(ActionType {
            r#type: kind.to_string(),
            description: description.to_string(),
        })
    })
    .collect()
}

fn one_result(body: Vec<u8>) -> ActionStream {
    Box::pin(futures::stream::iter([Ok(arrow_flight::Result {
        body: body.into(),
    })]))
}

fn decode<M: Message + Default>(action: &Action, what: &str) -> Result<M, Status> {
    M::decode(action.body.clone())
        .map_err(|e| Status::invalid_argument(format!("{what}: invalid request body: {e}")))
}

pub(crate) async fn do_action(
    service: &WeirFlightSqlService,
    request: Request<Action>,
) -> ActionResponse {
    let kind = request.get_ref().r#type.clone();
    tracing::debug!(action = %kind, "DoAction");
    match kind.as_str() {
        SET_SESSION_OPTIONS => set_session_options(service, request),
        GET_SESSION_OPTIONS => {
            let _: GetSessionOptionsRequest = decode(request.get_ref(), GET_SESSION_OPTIONS)?;
            let settings = service.sessions().settings(request.metadata())?;
            let ctx = sessions::context(service.engine(), &settings)?;
            let result = GetSessionOptionsResult {
                session_options: sessions::report(&settings, &ctx, service.server_timeout()),
            };
            Ok(Response::new(one_result(result.encode_to_vec())))
        }
        CLOSE_SESSION => {
            let _: CloseSessionRequest = decode(request.get_ref(), CLOSE_SESSION)?;
            let closed = service.sessions().close(request.metadata());
            tracing::debug!(closed, "CloseSession");
            let result = CloseSessionResult {
                status: CloseSessionStatus::Closed as i32,
            };
            Ok(Response::new(one_result(result.encode_to_vec())))
        }
        CANCEL_FLIGHT_INFO => {
            let cancel: CancelFlightInfoRequest = decode(request.get_ref(), CANCEL_FLIGHT_INFO)?;
            let info = cancel
                .info
                .ok_or_else(|| Status::invalid_argument("CancelFlightInfo: no FlightInfo"))?;
            cancel_info(service, &info)?;
            let result = CancelFlightInfoResult::new(CancelStatus::Cancelled);
            Ok(Response::new(one_result(result.encode_to_vec())))
        }
        RUNNING_QUERIES => {
            let results = service
                .running()
                .list()
                .into_iter()
                .map(|q| {
                    serde_json::to_vec(&q)
                        .map(|body| arrow_flight::Result { body: body.into() })
                        .map_err(|e| internal("encoding a running query", e))
                })
                .collect::<Vec<_>>();
            Ok(Response::new(Box::pin(futures::stream::iter(results))))
        }
        other => Err(Status::unimplemented(format!(
            "action {other:?} is not supported by Weir"
        ))),
    }
}

fn set_session_options(service: &WeirFlightSqlService, request: Request<Action>) -> ActionResponse {
    let set: SetSessionOptionsRequest = decode(request.get_ref(), SET_SESSION_OPTIONS)?;
    let mut result = SetSessionOptionsResult::default();
    let mut accepted = BTreeMap::new();
    for (name, value) in set.session_options {
        match sessions::validate(service.engine(), &name, &value) {
            Ok(()) => {
                accepted.insert(name, value);
            }
            Err((kind, why)) => {
                tracing::debug!(option = %name, %why, "session option refused");
                result
                    .errors
                    .insert(name, SetSessionOptionsError { value: kind as i32 });
            }
        }
    }
    let (id, created) = service.sessions().update(request.metadata(), accepted);
    let mut response = Response::new(one_result(result.encode_to_vec()));
    if created {
        let cookie = MetadataValue::try_from(sessions::set_cookie(&id))
            .map_err(|e| internal("building the session cookie", e))?;
        response.metadata_mut().insert("set-cookie", cookie);
    }
    Ok(response)
}

/// Cancels the statements a FlightInfo's tickets name: planned ones are
/// dropped, running ones stopped. NOT_FOUND if none is known.
fn cancel_info(service: &WeirFlightSqlService, info: &FlightInfo) -> Result<(), Status> {
    let handles = statement_handles(info);
    if handles.is_empty() {
        return Err(Status::invalid_argument(
            "the FlightInfo names no Weir statement ticket",
        ));
    }
    let mut found = false;
    for handle in &handles {
        if service.statements().take(handle).is_some()
            || service.running().cancel(handle) == CancelOutcome::Cancelled
        {
            tracing::debug!(%handle, "query cancelled");
            found = true;
        }
    }
    if found {
        Ok(())
    } else {
        Err(Status::not_found(
            "the query is not running: it finished, was cancelled or expired",
        ))
    }
}

/// The legacy Flight SQL CancelQuery action.
pub(crate) fn cancel_legacy(
    service: &WeirFlightSqlService,
    info: &FlightInfo,
) -> Result<ActionCancelQueryResult, Status> {
    cancel_info(service, info)?;
    Ok(ActionCancelQueryResult {
        result: CANCEL_RESULT_CANCELLED,
    })
}

/// After a successful SQL `SET name = value` from a client with a session,
/// keeps the setting in the session so later statements see it.
pub(crate) fn remember_set(
    service: &WeirFlightSqlService,
    metadata: &tonic::metadata::MetadataMap,
    sql: &str,
) {
    let Some((name, value)) = parse_set(sql) else {
        return;
    };
    match service.sessions().settings(metadata) {
        Ok(settings) if settings.id.is_some() => {
            tracing::debug!(%name, %value, "SET kept in the session");
            service.sessions().update(
                metadata,
                BTreeMap::from([(name, SessionOptionValue::string(value))]),
            );
        }
        _ => {}
    }
}

/// `SET name = value` / `SET name TO value` (name lower-cased, quotes off).
fn parse_set(sql: &str) -> Option<(String, String)> {
    let text = sql.trim().trim_end_matches(';').trim();
    let head = text.get(..4)?;
    if !head.eq_ignore_ascii_case("set ") {
        return None;
    }
    let rest = text[4..].trim();
    let (name, value) = match rest.split_once('=') {
        Some(split) => split,
        None => {
            let lower = rest.to_ascii_lowercase();
            let at = lower.find(" to ")?;
            (&rest[..at], &rest[at + 4..])
        }
    };
    let name = name.trim();
    if name.is_empty() || name.contains(char::is_whitespace) {
        return None;
    }
    let value = value.trim();
    let value = value
        .strip_prefix('\'')
        .and_then(|v| v.strip_suffix('\''))
        .unwrap_or(value);
    Some((name.to_ascii_lowercase(), value.to_string()))
}

#[cfg(test)]
mod tests {
    use super::parse_set;

    #[test]
    fn set_statements_parse() {
        assert_eq!(
            parse_set("SET weir.mv_rewrite = false;"),
            Some(("weir.mv_rewrite".into(), "false".into()))
        );
        assert_eq!(
            parse_set("set datafusion.catalog.default_schema TO 'plant'"),
            Some(("datafusion.catalog.default_schema".into(), "plant".into()))
        );
        assert_eq!(parse_set("SELECT 1"), None);
        assert_eq!(parse_set("SET TIME ZONE 'UTC'"), None);
    }
}
