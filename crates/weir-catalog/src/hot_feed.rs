//! The hot tier across processes. In production `weir ingest` runs the
//! sources and `weir serve` answers queries; the rows `weir ingest` holds
//! between commits live in its memory. It serves them over Arrow Flight
//! (`DoGet`, ticket = `namespace.table`, [`serve_hot_feed`]) and `weir serve`
//! reads them per query ([`RemoteHotTier`]) as if they were its own hot chunks.
//!
//! Exactly once across processes follows the same rule as in one process
//! (see [`crate::hot`]): the reader takes the remote chunks *before* loading
//! the table, each row carries its source coordinates, and only rows at or
//! past the loaded snapshot's watermark are kept; the writer evicts chunks
//! only after the commit covering them. A remote that cannot be reached adds
//! nothing (the query sees committed rows, never a row twice) and is logged.
//!
//! Wire format: one record batch per chunk (split further only by gRPC size
//! limits), the table's columns followed by [`SOURCE_COLUMN`],
//! [`STREAM_COLUMN`], [`PARTITION_COLUMN`] and [`OFFSET_COLUMN`]. A Flight
//! stream has one schema, so chunks of two table schemas (a schema change
//! not yet committed) are refused with FAILED_PRECONDITION until the commit.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, Int32Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightClient, FlightData, FlightDescriptor, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaResult, Ticket,
};
use futures::stream;
use futures::{Stream, TryStreamExt};
use tokio::sync::OnceCell;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status, Streaming};

use crate::hot::{HotChunk, HotTier};

pub const SOURCE_COLUMN: &str = "__weir_source";
pub const STREAM_COLUMN: &str = "__weir_stream";
pub const PARTITION_COLUMN: &str = "__weir_partition";
pub const OFFSET_COLUMN: &str = "__weir_offset";

/// The chunk as one batch: its rows plus their source coordinates.
fn encode_chunk(chunk: &HotChunk) -> Result<RecordBatch, arrow::error::ArrowError> {
    let rows = chunk.batch.num_rows();
    let mut fields: Vec<Arc<Field>> = chunk.batch.schema().fields().iter().cloned().collect();
    fields.push(Arc::new(Field::new(SOURCE_COLUMN, DataType::Utf8, false)));
    fields.push(Arc::new(Field::new(STREAM_COLUMN, DataType::Utf8, false)));
    fields.push(Arc::new(Field::new(
        PARTITION_COLUMN,
        DataType::Int32,
        false,
    )));
    fields.push(Arc::new(Field::new(OFFSET_COLUMN, DataType::Int64, false)));
    let mut columns = chunk.batch.columns().to_vec();
    columns.push(Arc::new(StringArray::from(vec![&*chunk.source; rows])));
    columns.push(Arc::new(StringArray::from(vec![&*chunk.stream; rows])));
    columns.push(Arc::new(Int32Array::from(vec![chunk.partition; rows])));
    columns.push(Arc::new(chunk.offsets.clone()));
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
}

/// Why another process's hot tier cannot be read (logged; queries then see
/// committed rows only) or configured.
#[derive(Debug, thiserror::Error)]
pub enum HotFeedError {
    #[error("hot tier {url}: unsupported scheme {scheme}")]
    Scheme { url: String, scheme: String },
    #[error("hot tier {url}: {source}")]
    Endpoint {
        url: String,
        source: tonic::transport::Error,
    },
    #[error(transparent)]
    Connect(tonic::transport::Error),
    #[error(transparent)]
    Flight(#[from] FlightError),
    /// A batch that is not in the feed's layout.
    #[error("{0}")]
    Malformed(String),
    #[error(transparent)]
    Arrow(#[from] arrow::error::ArrowError),
}

/// A received batch back into chunks: one per run of rows with the same
/// source, stream and partition (the server concatenates chunks in order).
fn decode_chunks(batch: &RecordBatch) -> Result<Vec<HotChunk>, HotFeedError> {
    let malformed = |m: &str| HotFeedError::Malformed(m.to_string());
    let n = batch.num_columns();
    if n < 4 || batch.schema().field(n - 1).name() != OFFSET_COLUMN {
        return Err(malformed("hot feed batch without source coordinates"));
    }
    let text = |i: usize| {
        batch
            .column(i)
            .as_any()
            .downcast_ref::<StringArray>()
            .filter(|a| a.null_count() == 0)
            .ok_or_else(|| malformed(&format!("hot feed column {i} is not text")))
    };
    let sources = text(n - 4)?;
    let streams = text(n - 3)?;
    let partitions = batch
        .column(n - 2)
        .as_any()
        .downcast_ref::<Int32Array>()
        .filter(|a| a.null_count() == 0)
        .ok_or_else(|| malformed("hot feed partition is not int32"))?;
    let offsets = batch
        .column(n - 1)
        .as_any()
        .downcast_ref::<Int64Array>()
        .ok_or_else(|| malformed("hot feed offsets are not int64"))?;
    let rows = batch.project(&(0..n - 4).collect::<Vec<_>>())?;
    let same = |a: usize, b: usize| {
        partitions.value(a) == partitions.value(b)
            && streams.value(a) == streams.value(b)
            && sources.value(a) == sources.value(b)
    };
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..=batch.num_rows() {
        // A run is also cut where offsets fall back: readers take a chunk's
        // first and last offsets as its bounds.
        if i < batch.num_rows() && same(start, i) && offsets.value(i) > offsets.value(i - 1) {
            continue;
        }
        out.push(HotChunk {
            source: Arc::from(sources.value(start)),
            stream: Arc::from(streams.value(start)),
            partition: partitions.value(start),
            offsets: offsets.slice(start, i - start),
            batch: rows.slice(start, i - start),
        });
        start = i;
    }
    Ok(out)
}

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
        let batches = crate::hot::coalesce_batches(batches, 8192)
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
) -> Result<(), tonic::transport::Error> {
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
}

/// Another process's hot tier, read per query.
#[derive(Debug)]
pub struct RemoteHotTier {
    url: String,
    channel: OnceCell<Channel>,
    timeout: Duration,
    /// When the last "not reachable" warning was logged (one per 30 s).
    warned: std::sync::Mutex<Option<std::time::Instant>>,
    /// Sent as `authorization: Bearer <token>`.
    token: Option<String>,
}

impl RemoteHotTier {
    /// `url`: `http://host:port` or `grpc://host:port` of a `weir ingest --hot-listen`.
    pub fn new(url: &str, token: Option<String>) -> Result<Self, HotFeedError> {
        let url = match url.split_once("://") {
            Some(("grpc" | "http", rest)) => format!("http://{rest}"),
            Some((scheme, _)) => {
                return Err(HotFeedError::Scheme {
                    url: url.to_string(),
                    scheme: scheme.to_string(),
                });
            }
            None => format!("http://{url}"),
        };
        Endpoint::from_shared(url.clone()).map_err(|source| HotFeedError::Endpoint {
            url: url.clone(),
            source,
        })?;
        Ok(RemoteHotTier {
            url,
            channel: OnceCell::new(),
            timeout: Duration::from_secs(2),
            warned: std::sync::Mutex::new(None),
            token,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The remote's chunks of `table` right now (take them before loading the table).
    pub async fn chunks(&self, table: &str) -> Result<Vec<Arc<HotChunk>>, HotFeedError> {
        let channel = self
            .channel
            .get_or_try_init(|| async {
                // Lazy: a remote that is down at start is reached once it is up.
                Endpoint::from_shared(self.url.clone())
                    .map(|e| e.connect_timeout(self.timeout).timeout(self.timeout))
                    .map(|e| e.connect_lazy())
                    .map_err(HotFeedError::Connect)
            })
            .await?
            .clone();
        let mut client = FlightClient::new(channel);
        if let Some(token) = &self.token {
            client.add_header("authorization", &format!("Bearer {token}"))?;
        }
        let batches: Vec<RecordBatch> = client
            .do_get(Ticket::new(table.to_string()))
            .await?
            .try_collect()
            .await?;
        let mut out = Vec::with_capacity(batches.len());
        for batch in &batches {
            out.extend(decode_chunks(batch)?.into_iter().map(Arc::new));
        }
        Ok(out)
    }
}

/// Every remote's chunks of `table`; an unreachable remote adds none (logged).
pub async fn remote_chunks(remotes: &[RemoteHotTier], table: &str) -> Vec<Arc<HotChunk>> {
    let fetched = futures::future::join_all(remotes.iter().map(|r| r.chunks(table))).await;
    let mut out = Vec::new();
    for (remote, result) in remotes.iter().zip(fetched) {
        match result {
            Ok(chunks) => out.extend(chunks),
            Err(e) => {
                let mut warned = remote.warned.lock().expect("warn lock");
                if warned.is_none_or(|at| at.elapsed() > Duration::from_secs(30)) {
                    *warned = Some(std::time::Instant::now());
                    tracing::warn!(
                        remote = remote.url(),
                        table,
                        error = %e,
                        "hot tier not reachable: queries see committed rows only (logged every 30 s)"
                    );
                }
            }
        }
    }
    out
}

impl crate::Lakehouse {
    /// Reads the hot tiers of other processes (`weir ingest --hot-listen`) too.
    pub fn with_remote_hot_tiers(
        mut self,
        urls: &[String],
        token: Option<&str>,
    ) -> Result<Self, HotFeedError> {
        self.remote_hot = Arc::new(
            urls.iter()
                .map(|u| RemoteHotTier::new(u, token.map(str::to_string)))
                .collect::<Result<Vec<_>, _>>()?,
        );
        Ok(self)
    }

    /// The table's hot chunks, this process's and the remotes': take them
    /// *before* loading the table (see [`crate::hot`]).
    pub async fn hot_chunks(&self, table: &str) -> Vec<Arc<HotChunk>> {
        let mut chunks = self.hot().chunks(table);
        if !self.remote_hot.is_empty() {
            chunks.extend(remote_chunks(&self.remote_hot, table).await);
        }
        chunks
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Float64Array;

    #[test]
    fn chunks_round_trip_through_the_wire_format() {
        let batch = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("v", DataType::Float64, true)])),
            vec![Arc::new(Float64Array::from(vec![1.0, 2.0]))],
        )
        .unwrap();
        let chunk = HotChunk {
            source: "kafka".into(),
            stream: "t".into(),
            partition: 3,
            offsets: Int64Array::from(vec![10, 11]),
            batch: batch.clone(),
        };
        let other = HotChunk {
            partition: 4,
            offsets: Int64Array::from(vec![7]),
            batch: batch.slice(0, 1),
            ..chunk_like(&chunk)
        };
        let wire = [&chunk, &chunk, &other]
            .map(|c| encode_chunk(c).unwrap())
            .to_vec();
        assert_eq!(wire[0].num_columns(), 5);
        // Three chunks in one batch come back as three runs: the second
        // repeats offsets (a run must be ascending), the third is another partition.
        let merged = crate::hot::coalesce_batches(wire, 8192).unwrap();
        assert_eq!(merged.len(), 1);
        let back = decode_chunks(&merged[0]).unwrap();
        assert_eq!(back.len(), 3);
        assert_eq!(
            (&*back[0].source, &*back[0].stream, back[0].partition),
            ("kafka", "t", 3)
        );
        assert_eq!(back[0].offsets, chunk.offsets);
        assert_eq!(back[1].batch, batch);
        assert_eq!((back[2].partition, back[2].offsets.value(0)), (4, 7));
        assert_eq!(back[2].batch, batch.slice(0, 1));
        assert!(decode_chunks(&batch).is_err());
    }

    fn chunk_like(c: &HotChunk) -> HotChunk {
        HotChunk {
            source: c.source.clone(),
            stream: c.stream.clone(),
            partition: c.partition,
            offsets: c.offsets.clone(),
            batch: c.batch.clone(),
        }
    }

    #[tokio::test]
    async fn a_served_hot_tier_is_read_remotely_and_an_absent_one_adds_nothing() {
        let hot = Arc::new(HotTier::default());
        let batch = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("v", DataType::Float64, true)])),
            vec![Arc::new(Float64Array::from(vec![1.0, 2.0, 3.0]))],
        )
        .unwrap();
        hot.push(
            "silver.points",
            Arc::new(HotChunk {
                source: "kafka".into(),
                stream: "t".into(),
                partition: 0,
                offsets: Int64Array::from(vec![5, 6, 7]),
                batch,
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_hot_feed(
            hot.clone(),
            listener,
            Some("s3cret".into()),
            async {
                let _ = stopped.await;
            },
        ));
        let stranger = RemoteHotTier::new(&format!("grpc://{addr}"), None).unwrap();
        let err = stranger
            .chunks("silver.points")
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("hot-feed-token"), "{err}");
        let remote = RemoteHotTier::new(&format!("grpc://{addr}"), Some("s3cret".into())).unwrap();
        let chunks = remote_chunks(std::slice::from_ref(&remote), "silver.points").await;
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].offsets, Int64Array::from(vec![5, 6, 7]));
        assert!(remote.chunks("silver.other").await.unwrap().is_empty());
        let _ = stop.send(());
        server.await.unwrap().unwrap();
        // The server is gone: nothing, not an error, for the query.
        assert!(remote_chunks(&[remote], "silver.points").await.is_empty());
    }
}
