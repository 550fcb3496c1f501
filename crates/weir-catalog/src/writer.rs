//! The append path shared by SQL `INSERT`, the demo simulator and (later) the
//! streaming writer: conform batches to the table schema, write Parquet data
//! files to unique paths, then commit one `append` snapshot.
//!
//! Rules from the design notes (docs/design.md, "Exactly-once and concurrent
//! commits"): files are written before the commit and never deleted when the
//! commit state is unknown (orphan cleanup removes them by age); each commit
//! carries a `weir.commit-id` so an unknown outcome can be resolved by
//! reloading the table and looking for it.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, new_null_array};
use arrow::compute::cast;
use arrow::datatypes::{DataType, SchemaRef as ArrowSchemaRef};
use iceberg::arrow::{FieldMatchMode, schema_to_arrow_schema};
use iceberg::spec::{DataFile, DataFileFormat};
use iceberg::table::Table;
use iceberg::transaction::{ApplyTransactionAction, Transaction};
use iceberg::writer::base_writer::data_file_writer::DataFileWriterBuilder;
use iceberg::writer::file_writer::ParquetWriterBuilder;
use iceberg::writer::file_writer::location_generator::{
    DefaultFileNameGenerator, DefaultLocationGenerator,
};
use iceberg::writer::file_writer::rolling_writer::RollingFileWriterBuilder;
use iceberg::writer::partitioning::PartitioningWriter;
use iceberg::writer::partitioning::fanout_writer::FanoutWriter;
use iceberg::writer::partitioning::unpartitioned_writer::UnpartitionedWriter;
use iceberg::{Catalog, Error as IcebergError, ErrorKind};
use tracing::Instrument;
use uuid::Uuid;

use crate::error::{CatalogError, Result};
use crate::fence::{FenceCheck, FencedCatalog};
use crate::lakehouse::Lakehouse;
use crate::manifests::merge_manifests_if_needed;
use crate::partition_split::PartitionSplitter;
use crate::retry::{Backoff, Retry};

/// Snapshot summary key holding the writer's commit id.
pub const COMMIT_ID_KEY: &str = "weir.commit-id";

#[derive(Clone, Default)]
pub struct AppendOptions {
    /// Extra snapshot summary properties (source watermarks, writer epoch, ...).
    pub snapshot_properties: HashMap<String, String>,
    /// Commit id; a fresh UUIDv7 when absent.
    pub commit_id: Option<Uuid>,
    /// Checked against the exact table state the commit replaces (see `fence`);
    /// a refusal fails the append with [`CatalogError::Fenced`].
    pub fence: Option<FenceCheck>,
}

impl std::fmt::Debug for AppendOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppendOptions")
            .field("snapshot_properties", &self.snapshot_properties)
            .field("commit_id", &self.commit_id)
            .field("fence", &self.fence.is_some())
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct AppendOutcome {
    pub table: Table,
    /// `None` when there was nothing to write (no snapshot is created for 0 rows).
    pub snapshot_id: Option<i64>,
    pub data_files: usize,
    pub rows: u64,
}

/// Appends `batches` to `table` in one snapshot, then merges the table's
/// small manifests when its policy says so (see [`crate::manifests`]; a
/// failed merge is logged, never fails the append that already landed).
pub async fn append_batches(
    lakehouse: &Lakehouse,
    table: &Table,
    batches: &[RecordBatch],
    opts: AppendOptions,
) -> Result<AppendOutcome> {
    let name = table.identifier().to_string();
    let rows: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
    if rows == 0 {
        return Ok(AppendOutcome {
            table: table.clone(),
            snapshot_id: None,
            data_files: 0,
            rows: 0,
        });
    }
    let files = write_data_files(table, batches, None)
        .await
        .map_err(|source| CatalogError::Write {
            table: name.clone(),
            source: Box::new(source),
        })?;
    append_data_files(lakehouse, table, files, opts).await
}

/// Commits data files already written for `table` (e.g. by
/// [`write_data_files`]) as one `append` snapshot, then merges small
/// manifests as [`append_batches`] does.
///
/// TODO(issue 19): one commit/retry loop for every commit kind (this,
/// `replace.rs`, `swap.rs` and the sources' loops).
pub async fn append_data_files(
    lakehouse: &Lakehouse,
    table: &Table,
    files: Vec<DataFile>,
    opts: AppendOptions,
) -> Result<AppendOutcome> {
    let catalog = lakehouse.catalog();
    let catalog = catalog.as_ref();
    let name = table.identifier().to_string();
    let rows: u64 = files.iter().map(|f| f.record_count()).sum();
    if files.is_empty() {
        return Ok(AppendOutcome {
            table: table.clone(),
            snapshot_id: None,
            data_files: 0,
            rows: 0,
        });
    }
    let data_files = files.len();
    let commit_id = opts.commit_id.unwrap_or_else(Uuid::now_v7);
    let mut props = opts.snapshot_properties;
    props.insert(COMMIT_ID_KEY.to_string(), commit_id.to_string());

    let span =
        tracing::debug_span!("commit", table = %name, operation = "append", rows, data_files);
    let started = std::time::Instant::now();
    let committed = AppendCommit {
        catalog,
        table,
        name: &name,
        files,
        props,
        commit_id,
        fence: opts.fence,
        span: &span,
        started,
    }
    .commit()
    .await?;
    crate::obs::record_commit(&name, "append", started, "ok");
    span.in_scope(|| {
        tracing::debug!(
            seconds = started.elapsed().as_secs_f64(),
            snapshot_id = find_commit(&committed, &commit_id),
            "append committed"
        )
    });
    crate::obs::record_rows(&name, rows);
    crate::obs::record_table(&committed);
    let snapshot_id = find_commit(&committed, &commit_id);
    merge_small_manifests(lakehouse, &committed, &name).await;
    Ok(AppendOutcome {
        table: committed,
        snapshot_id,
        data_files,
        rows,
    })
}

/// One `append` commit of [`append_data_files`]: what it adds to which
/// table, and how it is traced.
struct AppendCommit<'a> {
    catalog: &'a dyn Catalog,
    table: &'a Table,
    name: &'a str,
    files: Vec<DataFile>,
    /// Snapshot summary properties, the commit id included.
    props: HashMap<String, String>,
    commit_id: Uuid,
    fence: Option<FenceCheck>,
    span: &'a tracing::Span,
    started: std::time::Instant,
}

impl AppendCommit<'_> {
    /// Commits the append, retrying on conflicts and resolving an unknown
    /// outcome by the commit id; the table as committed.
    async fn commit(self) -> Result<Table> {
        let (catalog, table, name) = (self.catalog, self.table, self.name);
        let mut retry = Retry::new("append", name, Backoff::APPEND);
        retry.follow_table(table.metadata().properties());
        loop {
            let tx = Transaction::new(table);
            let action = tx
                .fast_append()
                .set_commit_uuid(self.commit_id)
                .set_snapshot_properties(self.props.clone())
                .add_data_files(self.files.clone());
            let tx = action
                .apply(tx)
                .map_err(|e| CatalogError::iceberg(name, e))?;
            // Transaction::commit reloads and retries on conflicts (appends
            // commute) a few times (`commit.retry.num-retries`); a fence runs
            // again on every attempt.
            let fenced = self
                .fence
                .clone()
                .map(|check| FencedCatalog::new(catalog, check));
            let result = match &fenced {
                Some(f) => tx.commit(f).instrument(self.span.clone()).await,
                None => tx.commit(catalog).instrument(self.span.clone()).await,
            };
            let e = match result {
                Ok(t) => return Ok(t),
                Err(e) => e,
            };
            if let Some(reason) = fenced.as_ref().and_then(|f| f.refused.lock().ok()?.take()) {
                crate::obs::record_commit(name, "append", self.started, "fenced");
                return Err(CatalogError::Fenced {
                    table: name.to_string(),
                    reason,
                });
            }
            // Unknown outcome (e.g. the catalog update ran but the reply was
            // lost): the commit id in the snapshot summary tells.
            let reloaded = catalog.load_table(table.identifier()).await.ok();
            if let Some(t) = reloaded.filter(|t| find_commit(t, &self.commit_id).is_some()) {
                return Ok(t);
            }
            // Busy tables (a streaming writer, DML, compaction and SQL
            // appends at once) can outrun iceberg-rust's few retries:
            // appends commute, so try again after a jittered backoff.
            if e.kind() == ErrorKind::CatalogCommitConflicts && retry.again(&e).await {
                continue;
            }
            crate::obs::record_commit(name, "append", self.started, "error");
            return Err(CatalogError::iceberg(name, e));
        }
    }
}

/// Merges the small manifests of a table just appended to when its policy
/// says so; a failure is logged, the append stands.
async fn merge_small_manifests(lakehouse: &Lakehouse, committed: &Table, name: &str) {
    match merge_manifests_if_needed(lakehouse, committed).await {
        Ok(Some(merged)) => {
            tracing::debug!(table = %name, snapshot = merged.snapshot_id, "merged small manifests")
        }
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(table = %name, error = %e, "merging small manifests failed; the append stands")
        }
    }
}

/// The snapshot committed with `commit_id`, if any (newest first).
pub fn find_commit(table: &Table, commit_id: &Uuid) -> Option<i64> {
    let id = commit_id.to_string();
    let mut snapshots: Vec<_> = table.metadata().snapshots().collect();
    snapshots.sort_by_key(|s| std::cmp::Reverse(s.sequence_number()));
    snapshots
        .into_iter()
        .find(|s| s.summary().additional_properties.get(COMMIT_ID_KEY) == Some(&id))
        .map(|s| s.snapshot_id())
}

/// Writes `batches` as Parquet data files of `table` (partitioned by its
/// default spec, rolled at `target_file_bytes` or the table's
/// `write.target-file-size-bytes`, rows in the table's sort order), without
/// committing them.
pub async fn write_data_files(
    table: &Table,
    batches: &[RecordBatch],
    target_file_bytes: Option<usize>,
) -> iceberg::Result<Vec<DataFile>> {
    write_files(table, batches, target_file_bytes, "", true).await
}

/// [`write_data_files`] with file names starting with `name_prefix` (e.g.
/// `z-` for files written in Z-order, so later runs can tell them apart),
/// rows in the order given (the caller chose the layout).
pub async fn write_data_files_named(
    table: &Table,
    batches: &[RecordBatch],
    target_file_bytes: Option<usize>,
    name_prefix: &str,
) -> iceberg::Result<Vec<DataFile>> {
    write_files(table, batches, target_file_bytes, name_prefix, false).await
}

async fn write_files(
    table: &Table,
    batches: &[RecordBatch],
    target_file_bytes: Option<usize>,
    name_prefix: &str,
    sort: bool,
) -> iceberg::Result<Vec<DataFile>> {
    let mut sink = DataFileSink::new(table, target_file_bytes, name_prefix)?;
    let rows = prepare(table, &sink.arrow_schema, &sink.schema, batches, sort).await?;
    for batch in &rows {
        sink.write_conformed(batch).await?;
    }
    sink.close().await
}

/// Rows below which a write stays on one core: cutting smaller writes would
/// only make more, smaller files.
const ROWS_PER_WRITER: usize = 2_000_000;

/// [`write_data_files`] encoding on up to `writers` cores (Parquet encoding
/// is single-threaded per file): the sorted rows are cut into contiguous
/// runs of at least [`ROWS_PER_WRITER`] rows, each written to files of its
/// own on a task of its own. Runs of a sorted table stay sorted and do not
/// overlap, so pruning loses nothing; a partition may get one file per run.
pub async fn write_data_files_parallel(
    table: &Table,
    batches: &[RecordBatch],
    target_file_bytes: Option<usize>,
    writers: usize,
) -> iceberg::Result<Vec<DataFile>> {
    write_parallel(table, batches, target_file_bytes, writers, ROWS_PER_WRITER).await
}

async fn write_parallel(
    table: &Table,
    batches: &[RecordBatch],
    target_file_bytes: Option<usize>,
    writers: usize,
    rows_per_writer: usize,
) -> iceberg::Result<Vec<DataFile>> {
    let total: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let writers = writers.min(total / rows_per_writer.max(1)).max(1);
    if writers == 1 {
        return write_data_files(table, batches, target_file_bytes).await;
    }
    let (arrow_schema, schema) = {
        let probe = DataFileSink::new(table, target_file_bytes, "")?;
        (probe.arrow_schema, probe.schema)
    };
    let rows = prepare(table, &arrow_schema, &schema, batches, true).await?;
    let tasks: Vec<_> = cut(&rows, writers)
        .into_iter()
        .map(|run| {
            let table = table.clone();
            tokio::spawn(async move {
                let mut sink = DataFileSink::new(&table, target_file_bytes, "")?;
                for batch in &run {
                    sink.write_conformed(batch).await?;
                }
                sink.close().await
            })
        })
        .collect();
    let mut files = Vec::new();
    for task in tasks {
        let written = task.await.map_err(|e| {
            IcebergError::new(ErrorKind::Unexpected, format!("write task failed: {e}"))
        })??;
        files.extend(written);
    }
    Ok(files)
}

/// `rows` cut into `parts` contiguous runs of about equal row counts
/// (zero-copy slices).
fn cut(rows: &[RecordBatch], parts: usize) -> Vec<Vec<RecordBatch>> {
    let total: usize = rows.iter().map(RecordBatch::num_rows).sum();
    let per = total.div_ceil(parts.max(1)).max(1);
    let mut runs: Vec<Vec<RecordBatch>> = vec![Vec::new()];
    let mut room = per;
    for batch in rows {
        let mut offset = 0;
        while offset < batch.num_rows() {
            if room == 0 {
                runs.push(Vec::new());
                room = per;
            }
            let take = room.min(batch.num_rows() - offset);
            if let Some(run) = runs.last_mut() {
                run.push(batch.slice(offset, take));
            }
            offset += take;
            room -= take;
        }
    }
    runs
}

/// `batches` conformed to the table's schema (empty ones dropped) and, with
/// `sort`, in the table's sort order.
async fn prepare(
    table: &Table,
    arrow_schema: &ArrowSchemaRef,
    schema: &iceberg::spec::Schema,
    batches: &[RecordBatch],
    sort: bool,
) -> iceberg::Result<Vec<RecordBatch>> {
    let conformed = batches
        .iter()
        .filter(|b| b.num_rows() > 0)
        .map(|b| conform(b, arrow_schema, schema))
        .collect::<iceberg::Result<Vec<_>>>()?;
    // The partition splitter keeps row order, so one sort serves every
    // partition's files.
    let keys = crate::sort::sort_keys(table);
    if !sort || keys.is_empty() || conformed.is_empty() {
        return Ok(conformed);
    }
    // CPU-bound (a bulk import sorts millions of rows): off the async
    // workers.
    tokio::task::spawn_blocking(move || crate::sort::sort_batches(&conformed, &keys))
        .await
        .map_err(|e| IcebergError::new(ErrorKind::Unexpected, format!("sort task failed: {e}")))?
        .map_err(|e| IcebergError::new(ErrorKind::DataInvalid, format!("sorting rows: {e}")))
}

type FileBuilder =
    DataFileWriterBuilder<ParquetWriterBuilder, DefaultLocationGenerator, DefaultFileNameGenerator>;

enum SinkWriter {
    Unpartitioned(Box<UnpartitionedWriter<FileBuilder>>),
    Partitioned(Box<(PartitionSplitter, FanoutWriter<FileBuilder>)>),
}

/// Data files of a table written batch by batch, without committing them:
/// the rows in the order given, split by the table's partition spec, files
/// rolled at `target_file_bytes` (of buffered, uncompressed rows). Only the
/// open row group of each open file is held in memory, so a caller can
/// stream any number of rows through it (compaction's merge does).
pub struct DataFileSink {
    writer: SinkWriter,
    schema: iceberg::spec::SchemaRef,
    arrow_schema: ArrowSchemaRef,
}

impl DataFileSink {
    pub fn new(
        table: &Table,
        target_file_bytes: Option<usize>,
        name_prefix: &str,
    ) -> iceberg::Result<Self> {
        let metadata = table.metadata();
        let schema = metadata.current_schema().clone();
        let arrow_schema: ArrowSchemaRef = Arc::new(schema_to_arrow_schema(&schema)?);
        let props = metadata.table_properties()?;
        let writer_props =
            crate::parquet_props::data_file_properties(metadata.properties(), &props, &schema)
                .map_err(|e| IcebergError::new(ErrorKind::DataInvalid, e.to_string()))?;
        let parquet = ParquetWriterBuilder::new_with_match_mode(
            writer_props,
            schema.clone(),
            FieldMatchMode::Id,
        );
        let rolling = RollingFileWriterBuilder::new(
            parquet,
            target_file_bytes.unwrap_or(props.write_target_file_size_bytes),
            table.file_io().clone(),
            DefaultLocationGenerator::new(metadata)?,
            DefaultFileNameGenerator::new(
                format!("{name_prefix}{}", Uuid::now_v7()),
                None,
                DataFileFormat::Parquet,
            ),
        );
        let builder = DataFileWriterBuilder::new(rolling);
        let spec = metadata.default_partition_spec().clone();
        let writer = if spec.is_unpartitioned() {
            SinkWriter::Unpartitioned(Box::new(UnpartitionedWriter::new(builder)))
        } else {
            SinkWriter::Partitioned(Box::new((
                PartitionSplitter::try_new(schema.clone(), spec)?,
                FanoutWriter::new(builder),
            )))
        };
        Ok(DataFileSink {
            writer,
            schema,
            arrow_schema,
        })
    }

    /// The table's columns as Arrow (what `write` conforms batches to).
    pub fn arrow_schema(&self) -> &ArrowSchemaRef {
        &self.arrow_schema
    }

    /// Writes `batch` (columns by name; absent optional columns are null).
    pub async fn write(&mut self, batch: &RecordBatch) -> iceberg::Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let conformed = conform(batch, &self.arrow_schema, &self.schema)?;
        self.write_conformed(&conformed).await
    }

    async fn write_conformed(&mut self, batch: &RecordBatch) -> iceberg::Result<()> {
        match &mut self.writer {
            SinkWriter::Unpartitioned(w) => w.write(batch.clone()).await,
            SinkWriter::Partitioned(parts) => {
                let (splitter, w) = &mut **parts;
                for (key, part) in splitter.split(batch)? {
                    w.write(key, part).await?;
                }
                Ok(())
            }
        }
    }

    /// Closes the open files; the data files written.
    pub async fn close(self) -> iceberg::Result<Vec<DataFile>> {
        match self.writer {
            SinkWriter::Unpartitioned(w) => w.close().await,
            SinkWriter::Partitioned(parts) => parts.1.close().await,
        }
    }
}

/// Rearranges a batch into the table's column order and types (by name),
/// filling absent optional columns with nulls.
/// Text in an Iceberg `uuid` column (how Weir's SQL shows it) is parsed
/// back to its 16 bytes.
fn conform(
    batch: &RecordBatch,
    target: &ArrowSchemaRef,
    schema: &iceberg::spec::Schema,
) -> iceberg::Result<RecordBatch> {
    let columns = target
        .fields()
        .iter()
        .zip(schema.as_struct().fields())
        .map(|(field, iceberg_field)| {
            let idx = batch.schema().index_of(field.name()).ok();
            let column: ArrayRef = match idx {
                Some(i) => {
                    let col = batch.column(i);
                    if col.data_type() == field.data_type() {
                        col.clone()
                    } else if crate::uuid_columns::is_iceberg_uuid(iceberg_field)
                        && matches!(
                            col.data_type(),
                            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
                        )
                    {
                        Arc::new(crate::uuid_columns::from_text(col).map_err(|e| {
                            IcebergError::new(
                                ErrorKind::DataInvalid,
                                format!("column `{}`: {e}", field.name()),
                            )
                        })?)
                    } else {
                        cast(col, field.data_type()).map_err(|e| {
                            IcebergError::new(
                                ErrorKind::DataInvalid,
                                format!(
                                    "column `{}`: cannot cast {} to {}: {e}",
                                    field.name(),
                                    col.data_type(),
                                    field.data_type()
                                ),
                            )
                        })?
                    }
                }
                None if field.is_nullable() => new_null_array(field.data_type(), batch.num_rows()),
                None => {
                    return Err(IcebergError::new(
                        ErrorKind::DataInvalid,
                        format!("required column `{}` is missing", field.name()),
                    ));
                }
            };
            if !field.is_nullable() && column.null_count() > 0 {
                return Err(IcebergError::new(
                    ErrorKind::DataInvalid,
                    format!(
                        "column `{}` is NOT NULL but {} values are null",
                        field.name(),
                        column.null_count()
                    ),
                ));
            }
            Ok(column)
        })
        .collect::<iceberg::Result<Vec<_>>>()?;
    RecordBatch::try_new(target.clone(), columns)
        .map_err(|e| IcebergError::new(ErrorKind::DataInvalid, format!("cannot build batch: {e}")))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{AsArray, Int64Array};
    use arrow::datatypes::{Field, Int64Type, Schema};

    use super::*;

    #[test]
    fn cut_keeps_every_row_in_order() {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let batch = |from: i64, to: i64| {
            RecordBatch::try_new(
                schema.clone(),
                vec![Arc::new(Int64Array::from_iter_values(from..to))],
            )
            .unwrap()
        };
        let rows = vec![batch(0, 7), batch(7, 8), batch(8, 20)];
        for parts in 1..=5 {
            let runs = cut(&rows, parts);
            assert!(runs.len() <= parts);
            let sizes: Vec<usize> = runs
                .iter()
                .map(|r| r.iter().map(RecordBatch::num_rows).sum())
                .collect();
            assert!(
                sizes
                    .iter()
                    .all(|&n| n > 0 && n <= 20_usize.div_ceil(parts))
            );
            let all: Vec<i64> = runs
                .iter()
                .flatten()
                .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
                .collect();
            assert_eq!(all, (0..20).collect::<Vec<_>>());
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn parallel_writers_keep_rows_sorted_and_apart() {
        use iceberg::TableCreation;
        use iceberg::spec::{
            NestedField, NullOrder, PrimitiveType, Schema as IcebergSchema, SortDirection,
            SortField, SortOrder, Transform, Type,
        };
        let dir = tempfile::tempdir().unwrap();
        let lakehouse =
            Lakehouse::open(&crate::LakehouseOptions::embedded(dir.path().to_path_buf()))
                .await
                .unwrap();
        let schema = IcebergSchema::builder()
            .with_fields(vec![
                NestedField::required(1, "n", Type::Primitive(PrimitiveType::Long)).into(),
            ])
            .build()
            .unwrap();
        let order = SortOrder::builder()
            .with_order_id(1)
            .with_sort_field(SortField {
                source_id: 1,
                transform: Transform::Identity,
                direction: SortDirection::Ascending,
                null_order: NullOrder::First,
            })
            .build(&schema)
            .unwrap();
        let creation = TableCreation::builder()
            .name("t".into())
            .schema(schema)
            .sort_order(order)
            .build();
        let table = lakehouse.create_table("public", creation).await.unwrap();
        let arrow = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        // 1,000 rows in reverse: the writers get the sorted rows.
        let batches: Vec<RecordBatch> = (0..10)
            .map(|i| {
                let values = (0..100).map(|j| 999 - (i * 100 + j));
                RecordBatch::try_new(
                    arrow.clone(),
                    vec![Arc::new(Int64Array::from_iter_values(values))],
                )
                .unwrap()
            })
            .collect();
        let files = write_parallel(&table, &batches, None, 3, 100)
            .await
            .unwrap();
        assert_eq!(files.len(), 3);
        assert_eq!(files.iter().map(|f| f.record_count()).sum::<u64>(), 1000);
        let mut bounds: Vec<(i64, i64)> = files
            .iter()
            .map(|f| {
                let long = |d: &iceberg::spec::Datum| match d.literal() {
                    iceberg::spec::PrimitiveLiteral::Long(v) => *v,
                    other => panic!("{other:?}"),
                };
                (long(&f.lower_bounds()[&1]), long(&f.upper_bounds()[&1]))
            })
            .collect();
        bounds.sort();
        assert_eq!(bounds, vec![(0, 333), (334, 667), (668, 999)]);
        // Below the rows per writer: one writer.
        let files = write_parallel(&table, &batches, None, 3, 600)
            .await
            .unwrap();
        assert_eq!(files.len(), 1);
    }
}
