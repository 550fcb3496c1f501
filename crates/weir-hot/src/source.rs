//! What readers ask of a hot tier: the chunks of a table that are not
//! committed yet. [`HotSource`] is answered by this process's tier
//! ([`HotTier`]), by another process's feed ([`RemoteHotTier`]) and by
//! both together ([`HotTiers`], what the query engine reads).
//!
//! Every reader follows one rule (see [`crate::tier`]): take the chunks
//! *before* loading the table, then keep only the rows at or past the
//! loaded snapshot's watermark ([`crate::visible_batches`]).

use std::sync::Arc;

use async_trait::async_trait;

use crate::error::HotError;
use crate::feed::{RemoteHotTier, remote_chunks};
use crate::tier::{HotChunk, HotTier};

/// A hot tier a query can read.
#[async_trait]
pub trait HotSource: Send + Sync + std::fmt::Debug {
    /// The table's (`namespace.table`) uncommitted chunks right now; take
    /// them *before* loading the table.
    async fn chunks(&self, table: &str) -> Result<Vec<Arc<HotChunk>>, HotError>;
}

#[async_trait]
impl HotSource for HotTier {
    async fn chunks(&self, table: &str) -> Result<Vec<Arc<HotChunk>>, HotError> {
        Ok(HotTier::chunks(self, table))
    }
}

#[async_trait]
impl HotSource for RemoteHotTier {
    async fn chunks(&self, table: &str) -> Result<Vec<Arc<HotChunk>>, HotError> {
        RemoteHotTier::chunks(self, table).await
    }
}

/// This process's hot tier (its streaming writers push to it; evaluators
/// subscribe to it) and the feeds of other processes (`weir ingest
/// --hot-listen`) its queries read as well. Cheap to clone; clones share
/// both.
#[derive(Debug, Clone, Default)]
pub struct HotTiers {
    local: Arc<HotTier>,
    remotes: Arc<Vec<RemoteHotTier>>,
}

impl HotTiers {
    /// Reads `local` only.
    pub fn new(local: Arc<HotTier>) -> Self {
        HotTiers {
            local,
            remotes: Arc::default(),
        }
    }

    /// Reads the hot tiers of other processes (`grpc://host:port` of
    /// `weir ingest --hot-listen`, with its `--hot-feed-token`) too.
    pub fn with_feeds(mut self, urls: &[String], token: Option<&str>) -> Result<Self, HotError> {
        self.remotes = Arc::new(
            urls.iter()
                .map(|u| RemoteHotTier::new(u, token.map(str::to_string)))
                .collect::<Result<Vec<_>, _>>()?,
        );
        Ok(self)
    }

    /// This process's hot tier: writers push and evict, evaluators subscribe.
    pub fn local(&self) -> &Arc<HotTier> {
        &self.local
    }

    /// The table's hot chunks, this process's and the remotes': take them
    /// *before* loading the table. An unreachable remote adds none (logged).
    pub async fn visible_chunks(&self, table: &str) -> Vec<Arc<HotChunk>> {
        let mut chunks = self.local.chunks(table);
        if !self.remotes.is_empty() {
            chunks.extend(remote_chunks(&self.remotes, table).await);
        }
        chunks
    }
}

#[async_trait]
impl HotSource for HotTiers {
    /// Never fails: an unreachable remote adds nothing.
    async fn chunks(&self, table: &str) -> Result<Vec<Arc<HotChunk>>, HotError> {
        Ok(self.visible_chunks(table).await)
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Float64Array, Int64Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn chunk() -> Arc<HotChunk> {
        let batch = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("v", DataType::Float64, true)])),
            vec![Arc::new(Float64Array::from(vec![1.0, 2.0]))],
        )
        .unwrap();
        Arc::new(HotChunk {
            source: "kafka".into(),
            stream: "t".into(),
            partition: 0,
            offsets: Int64Array::from(vec![1, 2]),
            batch,
        })
    }

    #[tokio::test]
    async fn every_tier_answers_and_an_unreachable_feed_adds_nothing_to_the_whole() {
        let local = Arc::new(HotTier::default());
        local.push("silver.points", chunk());
        // A port nobody listens on.
        let addr = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let url = format!("grpc://{addr}");
        let tiers = HotTiers::new(local.clone())
            .with_feeds(std::slice::from_ref(&url), None)
            .unwrap();
        assert!(Arc::ptr_eq(tiers.local(), &local));
        let sources: [Arc<dyn HotSource>; 2] = [local.clone(), Arc::new(tiers)];
        for source in &sources {
            let chunks = source.chunks("silver.points").await.unwrap();
            assert_eq!(chunks.len(), 1, "{source:?}");
            assert!(source.chunks("silver.other").await.unwrap().is_empty());
        }
        // The feed alone says it cannot be reached.
        let feed: Arc<dyn HotSource> = Arc::new(RemoteHotTier::new(&url, None).unwrap());
        assert!(feed.chunks("silver.points").await.is_err());
        let err = HotTiers::default()
            .with_feeds(&["ftp://x".to_string()], None)
            .unwrap_err();
        assert!(err.to_string().contains("unsupported scheme"), "{err}");
    }
}
