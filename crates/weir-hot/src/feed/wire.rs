//! The feed's wire format: one record batch per chunk (split further only
//! by gRPC size limits), the table's columns followed by [`SOURCE_COLUMN`],
//! [`STREAM_COLUMN`], [`PARTITION_COLUMN`] and [`OFFSET_COLUMN`].

use std::sync::Arc;

use arrow::array::{Array, Int32Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};

use crate::error::HotError;
use crate::tier::HotChunk;

pub const SOURCE_COLUMN: &str = "__weir_source";
pub const STREAM_COLUMN: &str = "__weir_stream";
pub const PARTITION_COLUMN: &str = "__weir_partition";
pub const OFFSET_COLUMN: &str = "__weir_offset";

/// The chunk as one batch: its rows plus their source coordinates.
pub(crate) fn encode_chunk(chunk: &HotChunk) -> Result<RecordBatch, arrow::error::ArrowError> {
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

/// A received batch back into chunks: one per run of rows with the same
/// source, stream and partition (the server concatenates chunks in order).
pub(crate) fn decode_chunks(batch: &RecordBatch) -> Result<Vec<HotChunk>, HotError> {
    let malformed = |m: &str| HotError::Malformed(m.to_string());
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
        let merged = crate::tier::coalesce_batches(wire, 8192).unwrap();
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
}
