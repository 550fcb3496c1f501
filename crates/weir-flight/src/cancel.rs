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
use tonic::Status;

use crate::statements::FlightDataStream;

struct Running {
    started: Instant,
    cancel: watch::Sender<bool>,
}

/// One running query, as the `weir.running_queries` action lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct RunningQuery {
    pub handle: String,
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
    pub fn track(&self, handle: String, stream: FlightDataStream) -> FlightDataStream {
        let (cancel, cancelled) = watch::channel(false);
        self.lock().insert(
            handle.clone(),
            Running {
                started: Instant::now(),
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
                        Err(Status::cancelled(format!(
                            "query {} was cancelled by a client request (CancelFlightInfo)",
                            guard.handle
                        ))),
                        None,
                    )),
                    Some(item) => item.map(|i| (i, Some((stream, cancelled, guard)))),
                }
            },
        ))
    }

    /// Signals the query running under `handle` to stop.
    pub fn cancel(&self, handle: &str) -> CancelOutcome {
        match self.lock().get(handle) {
            Some(running) => {
                running.cancel.send_replace(true);
                CancelOutcome::Cancelled
            }
            None => CancelOutcome::NotFound,
        }
    }

    pub fn list(&self) -> Vec<RunningQuery> {
        let mut out: Vec<RunningQuery> = self
            .lock()
            .iter()
            .map(|(handle, r)| RunningQuery {
                handle: handle.clone(),
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

    fn endless() -> FlightDataStream {
        Box::pin(futures::stream::repeat_with(|| Ok(FlightData::default())))
    }

    #[tokio::test]
    async fn cancel_ends_the_stream_and_deregisters() {
        let queries = RunningQueries::default();
        let mut stream = queries.track("h1".into(), endless());
        assert!(stream.next().await.unwrap().is_ok());
        assert_eq!(queries.list().len(), 1);
        assert_eq!(queries.cancel("h1"), CancelOutcome::Cancelled);
        let status = stream.next().await.unwrap().unwrap_err();
        assert_eq!(status.code(), tonic::Code::Cancelled);
        assert!(stream.next().await.is_none());
        assert!(queries.list().is_empty());
        assert_eq!(queries.cancel("h1"), CancelOutcome::NotFound);
    }

    #[tokio::test]
    async fn dropping_the_stream_deregisters() {
        let queries = RunningQueries::default();
        let stream = queries.track("h2".into(), endless());
        assert_eq!(queries.list().len(), 1);
        drop(stream);
        assert!(queries.list().is_empty());
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
