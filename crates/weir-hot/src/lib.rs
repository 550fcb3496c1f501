//! Weir's hot tier: rows streaming writers have decoded but not committed,
//! readable by queries at once (see README.md).
//!
//! - [`tier`]: this process's hot tier ([`HotTier`], [`HotChunk`]) and the
//!   feed of sealed batches and partition ownership evaluators subscribe to
//!   ([`FeedEvent`]);
//! - [`feed`]: the hot tier across processes over Arrow Flight (server and
//!   client);
//! - [`HotSource`]: what readers ask of either, [`HotTiers`] both at once.

mod error;
pub mod feed;
pub mod metric_names;
mod source;
pub mod tier;

pub use error::HotError;
pub use feed::{RemoteHotTier, serve_hot_feed};
pub use source::{HotSource, HotTiers};
pub use tier::{
    FEED_CAPACITY, FeedBatch, FeedEvent, HotChunk, HotTier, Origin, coalesce_batches,
    visible_batches,
};
