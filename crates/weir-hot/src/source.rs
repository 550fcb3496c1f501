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
