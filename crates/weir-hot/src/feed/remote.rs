//! The feed's client: `weir serve --hot-tier-from` reads another process's
//! hot tier per query.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow_flight::{FlightClient, Ticket};
use futures::TryStreamExt;
use tokio::sync::OnceCell;
use tonic::transport::{Channel, Endpoint};

use crate::error::HotError;
use crate::feed::wire::decode_chunks;
use crate::tier::HotChunk;

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
    pub fn new(url: &str, token: Option<String>) -> Result<Self, HotError> {
        let url = match url.split_once("://") {
            Some(("grpc" | "http", rest)) => format!("http://{rest}"),
            Some((scheme, _)) => {
                return Err(HotError::Scheme {
                    url: url.to_string(),
                    scheme: scheme.to_string(),
                });
            }
            None => format!("http://{url}"),
        };
        Endpoint::from_shared(url.clone()).map_err(|source| HotError::Endpoint {
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
    pub async fn chunks(&self, table: &str) -> Result<Vec<Arc<HotChunk>>, HotError> {
        let channel = self
            .channel
            .get_or_try_init(|| async {
                // Lazy: a remote that is down at start is reached once it is up.
                Endpoint::from_shared(self.url.clone())
                    .map(|e| e.connect_timeout(self.timeout).timeout(self.timeout))
                    .map(|e| e.connect_lazy())
                    .map_err(HotError::Connect)
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
                let mut warned = remote
                    .warned
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
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
