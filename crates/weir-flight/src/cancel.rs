//! Running queries and their cancellation.
//!
//! A query's results stream is registered under its statement handle while
//! it runs. It ends when the client has read everything, when the client
//! goes away (ADBC `adbc_cancel` cancels the call: the stream is dropped), or
//! when CancelFlightInfo / the legacy CancelQuery action names its ticket:
//! the stream then ends with CANCELLED. Dropping the stream drops the
//! DataFusion execution, which stops its tasks and frees its memory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arrow_flight::FlightInfo;
use arrow_flight::sql::{Any, Command, TicketStatementQuery};
use futures::StreamExt;
use prost::Message;
use tokio::sync::watch;

use crate::auth::Principal;
use crate::error::{ErrorKind, error_status};
use crate::statements::FlightDataStream;

struct Running {
    started: Instant,
    owner: Arc<str>,
    cancel: watch::Sender<bool>,
}

/// One running query, as the `weir.running_queries` action lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct RunningQuery {
    pub handle: String,
    pub user: String,
    pub seconds: f64,
}

/// Queries whose results are being streamed, by statement handle.
#[derive(Clone, Default)]
pub(crate) struct RunningQueries {
    entries: Arc<Mutex<HashMap<String, Running>>>,
}

/// What a cancel request found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CancelOutcome {
    Cancelled,
    NotFound,
}

impl RunningQueries {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Running>> {
        // A panic while holding the lock cannot leave the map inconsistent.
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers `stream` under `handle` until it ends or is dropped; a
    /// cancel request ends it with CANCELLED.
    pub(crate) fn track(
        &self,
        handle: String,
        owner: &Arc<str>,
        stream: FlightDataStream,
    ) -> FlightDataStream {
        let (cancel, cancelled) = watch::channel(false);
        self.lock().insert(
            handle.clone(),
            Running {
                started: Instant::now(),
                owner: owner.clone(),
                cancel,
            },
        );
        let guard = Deregister {
            queries: self.clone(),
            handle,
        };
        Box::pin(futures::stream::unfold(
            Some((stream, cancelled, guard)),
            |state| async move {
                let (mut stream, mut cancelled, guard) = state?;
                let next = {
                    let cancel = async {
                        if cancelled.wait_for(|c| *c).await.is_err() {
                            std::future::pending::<()>().await;
                        }
                    };
                    tokio::select! {
                        biased;
                        () = cancel => None,
                        item = stream.next() => Some(item),
                    }
                };
                match next {
                    None => Some((
                        Err(error_status(
                            ErrorKind::Cancelled,
                            format!(
                                "query {} was cancelled by a client request (CancelFlightInfo)",
                                guard.handle
                            ),
                        )),
                        None,
                    )),
                    Some(item) => item.map(|i| (i, Some((stream, cancelled, guard)))),
                }
            },
        ))
    }

    /// Signals the query running under `handle` to stop, if `caller` started
    /// it (or is an admin); others' queries are NotFound to them.
    pub(crate) fn cancel(&self, handle: &str, caller: &Principal) -> CancelOutcome {
        match self.lock().get(handle) {
            Some(running) if caller.may_act_for(&running.owner) => {
                running.cancel.send_replace(true);
                CancelOutcome::Cancelled
            }
            _ => CancelOutcome::NotFound,
        }
    }

    /// The running queries `caller` may see: their own, or all for admins.
    pub(crate) fn list(&self, caller: &Principal) -> Vec<RunningQuery> {
        let mut out: Vec<RunningQuery> = self
            .lock()
            .iter()
            .filter(|(_, r)| caller.may_act_for(&r.owner))
            .map(|(handle, r)| RunningQuery {
                handle: handle.clone(),
                user: r.owner.to_string(),
                seconds: r.started.elapsed().as_secs_f64(),
            })
            .collect();
        out.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
        out
    }
}

/// Removes the entry when the stream ends or is dropped.
struct Deregister {
    queries: RunningQueries,
    handle: String,
}

impl Drop for Deregister {
    fn drop(&mut self) {
        self.queries.lock().remove(&self.handle);
    }
}

/// The statement handles in a FlightInfo's tickets (Weir's tickets are
/// `TicketStatementQuery` messages; others are ignored).
pub(crate) fn statement_handles(info: &FlightInfo) -> Vec<String> {
    info.endpoint
        .iter()
        .filter_map(|e| e.ticket.as_ref())
        .filter_map(|t| Any::decode(t.ticket.clone()).ok())
        .filter_map(|any| match Command::try_from(any) {
            Ok(Command::TicketStatementQuery(TicketStatementQuery { statement_handle })) => {
                String::from_utf8(statement_handle.to_vec()).ok()
            }
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_flight::sql::ProstMessageExt;
    use arrow_flight::{FlightData, FlightEndpoint, Ticket};

    use crate::users::Role;

    fn endless() -> FlightDataStream {
        Box::pin(futures::stream::repeat_with(|| Ok(FlightData::default())))
    }

    fn who(name: &str, role: Role) -> Principal {
        Principal {
            name: name.into(),
            role,
        }
    }

    #[tokio::test]
    async fn cancel_ends_the_stream_and_deregisters() {
        let queries = RunningQueries::default();
        let boss = who("boss", Role::Admin);
        let mut stream = queries.track("h1".into(), &boss.name, endless());
        assert!(stream.next().await.unwrap().is_ok());
        assert_eq!(queries.list(&boss).len(), 1);
        assert_eq!(queries.cancel("h1", &boss), CancelOutcome::Cancelled);
        let status = stream.next().await.unwrap().unwrap_err();
        assert_eq!(status.code(), tonic::Code::Cancelled);
        assert!(stream.next().await.is_none());
        assert!(queries.list(&boss).is_empty());
        assert_eq!(queries.cancel("h1", &boss), CancelOutcome::NotFound);
    }

    #[tokio::test]
    async fn dropping_the_stream_deregisters() {
        let queries = RunningQueries::default();
        let boss = who("boss", Role::Admin);
        let stream = queries.track("h2".into(), &boss.name, endless());
        assert_eq!(queries.list(&boss).len(), 1);
        drop(stream);
        assert!(queries.list(&boss).is_empty());
    }

    /// Issue 24: a read user listed and cancelled an admin's query.
    #[tokio::test]
    async fn only_owners_and_admins_see_and_cancel() {
        let queries = RunningQueries::default();
        let boss = who("boss", Role::Admin);
        let reader = who("reader", Role::Read);
        let mut mine = queries.track("boss-q".into(), &boss.name, endless());
        let _theirs = queries.track("reader-q".into(), &reader.name, endless());
        let listed: Vec<String> = queries
            .list(&reader)
            .into_iter()
            .map(|q| q.handle)
            .collect();
        assert_eq!(listed, vec!["reader-q".to_string()]);
        assert_eq!(queries.list(&boss).len(), 2);
        assert_eq!(queries.cancel("boss-q", &reader), CancelOutcome::NotFound);
        assert!(mine.next().await.unwrap().is_ok(), "still running");
        assert_eq!(queries.cancel("reader-q", &boss), CancelOutcome::Cancelled);
    }

    #[test]
    fn handles_come_from_statement_tickets() {
        let ticket = TicketStatementQuery {
            statement_handle: "abc".into(),
        };
        let info = FlightInfo::new()
            .with_endpoint(
                FlightEndpoint::new().with_ticket(Ticket::new(ticket.as_any().encode_to_vec())),
            )
            .with_endpoint(FlightEndpoint::new().with_ticket(Ticket::new(vec![1, 2, 3])));
        assert_eq!(statement_handles(&info), vec!["abc".to_string()]);
    }
}
