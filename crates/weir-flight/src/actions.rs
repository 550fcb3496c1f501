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

use crate::auth::Principal;
use crate::cancel::{CancelOutcome, statement_handles};
use crate::error::{ErrorKind, error_status, internal};
use crate::service::WeirFlightSqlService;
use crate::session_proto::{
    CANCEL_FLIGHT_INFO, CLOSE_SESSION, CloseSessionRequest, CloseSessionResult, CloseSessionStatus,
    GET_SESSION_OPTIONS, GetSessionOptionsRequest, GetSessionOptionsResult, SET_SESSION_OPTIONS,
    SessionOptionValue, SetSessionOptionsError, SetSessionOptionsRequest, SetSessionOptionsResult,
};
use crate::sessions::{self, SessionKey};

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
    M::decode(action.body.clone()).map_err(|e| {
        error_status(
            ErrorKind::InvalidArgument,
            format!("{what}: invalid request body: {e}"),
        )
    })
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
            let settings = service
                .sessions()
                .settings(&service.session_key(&request)?)?;
            let ctx = sessions::context(service.engine(), &settings)?;
            let result = GetSessionOptionsResult {
                session_options: sessions::report(&settings, &ctx, service.server_timeout()),
            };
            Ok(Response::new(one_result(result.encode_to_vec())))
        }
        CLOSE_SESSION => {
            let _: CloseSessionRequest = decode(request.get_ref(), CLOSE_SESSION)?;
            let closed = service.sessions().close(&service.session_key(&request)?);
            tracing::debug!(closed, "CloseSession");
            let result = CloseSessionResult {
                status: CloseSessionStatus::Closed as i32,
            };
            Ok(Response::new(one_result(result.encode_to_vec())))
        }
        CANCEL_FLIGHT_INFO => {
            let cancel: CancelFlightInfoRequest = decode(request.get_ref(), CANCEL_FLIGHT_INFO)?;
            let info = cancel.info.ok_or_else(|| {
                error_status(
                    ErrorKind::InvalidArgument,
                    "CancelFlightInfo: no FlightInfo",
                )
            })?;
            cancel_info(service, &info, &service.caller(&request)?)?;
            let result = CancelFlightInfoResult::new(CancelStatus::Cancelled);
            Ok(Response::new(one_result(result.encode_to_vec())))
        }
        RUNNING_QUERIES => {
            let caller = service.caller(&request)?;
            let results = service
                .running()
                .list(&caller)
                .into_iter()
                .map(|q| {
                    serde_json::to_vec(&q)
                        .map(|body| arrow_flight::Result { body: body.into() })
                        .map_err(|e| internal("encoding a running query", e))
                })
                .collect::<Vec<_>>();
            Ok(Response::new(Box::pin(futures::stream::iter(results))))
        }
        other => Err(error_status(
            ErrorKind::Unsupported,
            format!("action {other:?} is not supported by Weir"),
        )),
    }
}

fn set_session_options(service: &WeirFlightSqlService, request: Request<Action>) -> ActionResponse {
    let set: SetSessionOptionsRequest = decode(request.get_ref(), SET_SESSION_OPTIONS)?;
    let mut result = SetSessionOptionsResult::default();
    let mut accepted = BTreeMap::new();
    let role = service.caller(&request)?.role;
    for (name, value) in set.session_options {
        match sessions::validate(service.engine(), role, &name, &value) {
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
    let (id, had_cookie) =
        service
            .sessions()
            .update(&service.session_key(&request)?, accepted, true)?;
    let mut response = Response::new(one_result(result.encode_to_vec()));
    if !had_cookie {
        let cookie = MetadataValue::try_from(sessions::set_cookie(&id))
            .map_err(|e| internal("building the session cookie", e))?;
        response.metadata_mut().insert("set-cookie", cookie);
    }
    Ok(response)
}

/// Cancels the statements a FlightInfo's tickets name: planned ones are
/// dropped, running ones stopped. NOT_FOUND if none is known.
fn cancel_info(
    service: &WeirFlightSqlService,
    info: &FlightInfo,
    caller: &Principal,
) -> Result<(), Status> {
    let handles = statement_handles(info);
    if handles.is_empty() {
        return Err(error_status(
            ErrorKind::InvalidArgument,
            "the FlightInfo names no Weir statement ticket",
        ));
    }
    let mut found = false;
    for handle in &handles {
        if service.statements().take(handle, caller).is_some()
            || service.running().cancel(handle, caller) == CancelOutcome::Cancelled
        {
            tracing::debug!(%handle, "query cancelled");
            found = true;
        }
    }
    if found {
        Ok(())
    } else {
        Err(error_status(
            ErrorKind::NotFound,
            "the query is not running: it finished, was cancelled or expired",
        ))
    }
}

/// The legacy Flight SQL CancelQuery action.
pub(crate) fn cancel_legacy(
    service: &WeirFlightSqlService,
    info: &FlightInfo,
    caller: &Principal,
) -> Result<ActionCancelQueryResult, Status> {
    cancel_info(service, info, caller)?;
    Ok(ActionCancelQueryResult {
        result: CANCEL_RESULT_CANCELLED,
    })
}

/// After a successful SQL `SET name = value`, keeps the setting in the
/// request's session (opening one on its connection if it has none) so the
/// connection's later statements see it (the name and value come from the
/// statement's parse, as the engine applied them).
pub(crate) fn remember_set(
    service: &WeirFlightSqlService,
    session: &SessionKey,
    statement: &weir_query::WeirStatement,
) {
    let Some((name, value)) = statement.set_variable() else {
        return;
    };
    tracing::debug!(%name, %value, "SET kept in the session");
    if let Err(e) = service.sessions().update(
        session,
        BTreeMap::from([(name, SessionOptionValue::string(value))]),
        false,
    ) {
        // Its cookie named no session: the statement itself already failed
        // with that NOT_FOUND before it ran.
        tracing::debug!(error = %e, "SET not kept");
    }
}

#[cfg(test)]
mod tests {
    use weir_query::WeirStatement;

    #[test]
    fn set_statements_parse() {
        let ctx = datafusion::prelude::SessionContext::new();
        let set = |sql: &str| WeirStatement::parse(&ctx, sql).unwrap().set_variable();
        assert_eq!(
            set("SET weir.mv_rewrite = false;"),
            Some(("weir.mv_rewrite".into(), "false".into()))
        );
        assert_eq!(
            set("set datafusion.catalog.default_schema TO 'plant'"),
            Some(("datafusion.catalog.default_schema".into(), "plant".into()))
        );
        assert_eq!(
            set("SET TimeZone = 'Europe/Berlin'"),
            Some((
                "datafusion.execution.time_zone".into(),
                "Europe/Berlin".into()
            ))
        );
        assert_eq!(set("SELECT 1"), None);
    }
}
