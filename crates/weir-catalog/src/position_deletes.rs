//! Position delete files (Iceberg v2 merge-on-read): `(file_path, pos)`
//! rows naming deleted rows of one data file.
//!
//! iceberg-rust 0.10 writes data and equality delete files but has no
//! position delete writer; this writes them with its Parquet writer, its
//! reserved field ids (`file_path` 2147483546, `pos` 2147483545) and its
//! location generator, in the data file's partition and partition spec (so
//! readers' delete index applies them to that file). One file per data file,
//! `referenced_data_file` set, as Iceberg recommends.

use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use iceberg::arrow::{FieldMatchMode, schema_to_arrow_schema};
use iceberg::metadata_columns::{delete_file_path_field, delete_file_pos_field};
use iceberg::spec::{
    DataContentType, DataFile, DataFileFormat, PartitionKey, PartitionSpec, Schema, Struct,
};
use iceberg::table::Table;
use iceberg::writer::file_writer::ParquetWriterBuilder;
use iceberg::writer::file_writer::location_generator::{
    DefaultFileNameGenerator, DefaultLocationGenerator,
};
use iceberg::writer::file_writer::rolling_writer::RollingFileWriterBuilder;
use iceberg::{Error as IcebergError, ErrorKind};
use uuid::Uuid;

/// Writes the positions `positions` (sorted, 0-based row numbers) of the
/// data file `data_file_path` of `table`, which lies in `partition` of
/// `spec`, as one position delete file (not committed).
pub async fn write_position_deletes(
    table: &Table,
    data_file_path: &str,
    spec: &PartitionSpec,
    partition: &Struct,
    positions: &[i64],
) -> iceberg::Result<DataFile> {
    let metadata = table.metadata();
    let schema = Arc::new(
        Schema::builder()
            .with_fields(vec![
                delete_file_path_field().clone(),
                delete_file_pos_field().clone(),
            ])
            .build()?,
    );
    let arrow_schema = Arc::new(schema_to_arrow_schema(&schema)?);
    let paths: ArrayRef = Arc::new(StringArray::from(vec![data_file_path; positions.len()]));
    let pos: ArrayRef = Arc::new(Int64Array::from(positions.to_vec()));
    let batch = RecordBatch::try_new(arrow_schema, vec![paths, pos])
        .map_err(|e| IcebergError::new(ErrorKind::DataInvalid, e.to_string()))?;
    let props = metadata.table_properties()?;
    let writer_props = crate::parquet_props::writer_properties(metadata.properties(), &props)
        .map_err(|e| IcebergError::new(ErrorKind::DataInvalid, e.to_string()))?;
    let parquet =
        ParquetWriterBuilder::new_with_match_mode(writer_props, schema, FieldMatchMode::Id);
    let rolling = RollingFileWriterBuilder::new(
        parquet,
        usize::MAX,
        table.file_io().clone(),
        DefaultLocationGenerator::new(metadata)?,
        DefaultFileNameGenerator::new(
            format!("deletes-{}", Uuid::now_v7()),
            None,
            DataFileFormat::Parquet,
        ),
    );
    let key = PartitionKey::new(
        spec.clone(),
        metadata.current_schema().clone(),
        partition.clone(),
    );
    let key = (!spec.is_unpartitioned()).then_some(key);
    let mut writer = rolling.build();
    writer.write(&key, &batch).await?;
    let mut built = writer.close().await?;
    let mut file = built
        .pop()
        .ok_or_else(|| IcebergError::new(ErrorKind::Unexpected, "no delete file was written"))?;
    file.content(DataContentType::PositionDeletes)
        .partition(partition.clone())
        .partition_spec_id(spec.spec_id())
        .referenced_data_file(Some(data_file_path.to_string()));
    file.build()
        .map_err(|e| IcebergError::new(ErrorKind::DataInvalid, format!("delete file: {e}")))
}
