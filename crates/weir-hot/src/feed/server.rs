//! The feed's server: `weir ingest --hot-listen` serves its hot tier
//! (`DoGet`, ticket = `namespace.table`).

use std::pin::Pin;
use std::sync::Arc;

use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaResult, Ticket,
};
use futures::{Stream, TryStreamExt, stream};
use tonic::{Request, Response, Status, Streaming};

use crate::error::HotError;
use crate::feed::wire::encode_chunk;
use crate::tier::{HotTier, coalesce_batches};

/// Serves a process's hot tier (`DoGet` only; every other call is UNIMPLEMENTED).
#[derive(Debug, Clone)]
pub struct HotFeedService {
    hot: Arc<HotTier>,
}

impl HotFeedService {
    pub fn new(hot: Arc<HotTier>) -> Self {
        HotFeedService { hot }
    }
}

type Boxed<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

fn unsupported<T>(what: &str) -> Result<T, Status> {
    Err(Status::unimplemented(format!(
        "the hot-tier feed answers DoGet only, not {what}"
    )))
}

#[tonic::async_trait]
impl FlightService for HotFeedService {
    type HandshakeStream = Boxed<HandshakeResponse>;
    type ListFlightsStream = Boxed<FlightInfo>;
    type DoGetStream = Boxed<FlightData>;
    type DoPutStream = Boxed<PutResult>;
    type DoActionStream = Boxed<arrow_flight::Result>;
    type ListActionsStream = Boxed<ActionType>;
    type DoExchangeStream = Boxed<FlightData>;

    async fn do_get(
        &self,
        request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        let table = std::str::from_utf8(&request.get_ref().ticket)
            .map_err(|_| Status::invalid_argument("ticket must be a table name (UTF-8)"))?
            .to_string();
        let chunks = self.hot.chunks(&table);
        let batches = chunks
            .iter()
            .map(|c| encode_chunk(c))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Status::internal(format!("encoding hot rows of {table}: {e}")))?;
        if let Some(first) = batches.first()
            && batches.iter().any(|b| b.schema() != first.schema())
        {
            return Err(Status::failed_precondition(format!(
                "the hot tier of {table} holds rows of two schemas until the next commit"
            )));
        }
        let batches = coalesce_batches(batches, 8192)
            .map_err(|e| Status::internal(format!("encoding hot rows of {table}: {e}")))?;
        let input = stream::iter(batches.into_iter().map(Ok::<_, FlightError>));
        let out = FlightDataEncoderBuilder::new()
            .build(input)
            .map_err(|e| Status::internal(e.to_string()));
        Ok(Response::new(Box::pin(out)))
    }

    async fn handshake(
        &self,
        _: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        unsupported("Handshake")
    }
    async fn list_flights(
        &self,
        _: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        unsupported("ListFlights")
    }
    async fn get_flight_info(
        &self,
        _: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        unsupported("GetFlightInfo")
    }
    async fn poll_flight_info(
        &self,
        _: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        unsupported("PollFlightInfo")
    }
    async fn get_schema(
        &self,
        _: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        unsupported("GetSchema")
    }
    async fn do_put(
        &self,
        _: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        unsupported("DoPut")
    }
    async fn do_action(
        &self,
        _: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        unsupported("DoAction")
    }
    async fn list_actions(
        &self,
        _: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        unsupported("ListActions")
    }
    async fn do_exchange(
        &self,
        _: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        unsupported("DoExchange")
    }
}

/// Serves `hot` on `listener` until `shutdown` completes (stop it after the
/// sources' final commit: then the feed is empty and readers lose nothing).
/// With `token`, every call must carry `authorization: Bearer <token>`
/// (UNAUTHENTICATED otherwise); `weir ingest` requires one when the feed
/// listens beyond loopback.
pub async fn serve_hot_feed(
    hot: Arc<HotTier>,
    listener: tokio::net::TcpListener,
    token: Option<String>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), HotError> {
    let expected = token.map(|t| format!("Bearer {t}"));
    let check = move |request: Request<()>| -> Result<Request<()>, Status> {
        let Some(expected) = &expected else {
            return Ok(request);
        };
        let given = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        if given == Some(expected.as_str()) {
            Ok(request)
        } else {
            Err(Status::unauthenticated(
                "the hot-tier feed needs `authorization: Bearer <--hot-feed-token>`",
            ))
        }
    };
    tonic::transport::Server::builder()
        .add_service(FlightServiceServer::with_interceptor(
            HotFeedService::new(hot),
            check,
        ))
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener),
            shutdown,
        )
        .await
        .map_err(HotError::Serve)
}
