//! The hot tier across processes. In production `weir ingest` runs the
//! sources and `weir serve` answers queries; the rows `weir ingest` holds
//! between commits live in its memory. It serves them over Arrow Flight
//! (`DoGet`, ticket = `namespace.table`, [`serve_hot_feed`]) and `weir serve`
//! reads them per query ([`RemoteHotTier`]) as if they were its own hot chunks.
//!
//! Exactly once across processes follows the same rule as in one process
//! (see [`crate::tier`]): the reader takes the remote chunks *before* loading
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

mod remote;
mod server;
mod wire;

pub use remote::{RemoteHotTier, remote_chunks};
pub use server::{HotFeedService, serve_hot_feed};
pub use wire::{OFFSET_COLUMN, PARTITION_COLUMN, SOURCE_COLUMN, STREAM_COLUMN};

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Float64Array, Int64Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;
    use crate::tier::{HotChunk, HotTier};

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
