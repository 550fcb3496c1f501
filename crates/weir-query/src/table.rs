//! `WeirTable`: one Iceberg table at one snapshot, as a DataFusion table.
//!
//! Reads prune data files from the manifests (partition values and column
//! bounds); `EXPLAIN` shows how many were pruned and UTC timestamps are named
//! "UTC". Writes go through Weir's own append path so SQL
//! inserts, the demo and the streaming writer commit the same way.
//!
//! Files are planned once from the manifests, then read by DataFusion's
//! Parquet scan (`native_scan`), or by the Iceberg reader when delete files
//! are involved.

use std::any::Any;
use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, AsArray, RecordBatch, RecordBatchOptions, UInt64Array, new_null_array,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::Statistics;
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{
    Count, ExecutionPlanMetricsSet, MetricBuilder, MetricType, MetricValue, MetricsSet, Time,
};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::union::UnionExec;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use futures::{StreamExt, TryStreamExt};
use iceberg::arrow::schema_to_arrow_schema;
use iceberg::scan::FileScanTask;
use iceberg::spec::{DataFile, ManifestContentType};
use iceberg::table::Table;
use iceberg_datafusion::IcebergStaticTableProvider;
use iceberg_datafusion::physical_plan::convert_filters_to_predicate;
use weir_catalog::{
    AppendOptions, CatalogError, Lakehouse, append_data_files, write_data_files_parallel,
};
use weir_hot::{HotChunk, HotTier, coalesce_batches, visible_batches};

use crate::error::to_df;
use crate::file_cache::{self, BatchCounts, FileCache};
use crate::native_scan::{
    DeletedRows, FieldIds, natively_readable, natively_readable_deletes, parquet_scan,
    position_deletes,
};

/// A table pinned to one snapshot (the current one unless time-travelling).
#[derive(Clone)]
pub struct WeirTable {
    lakehouse: Lakehouse,
    table: Table,
    snapshot_id: Option<i64>,
    schema: SchemaRef,
    /// `schema` as the file scans produce it: Iceberg `uuid` columns as
    /// their 16 bytes (`schema` shows them as text, see
    /// `weir_catalog::uuid_columns`); otherwise the same.
    file_schema: SchemaRef,
    /// How data files match `file_schema` (by Iceberg field id).
    field_ids: Arc<FieldIds>,
    /// Uncommitted rows from this process's streaming writers (current-snapshot reads only).
    hot: Vec<Arc<HotChunk>>,
    /// Only these data files of the snapshot (a materialized view's delta).
    only_files: Option<Arc<HashSet<String>>>,
    /// Why the scan is restricted, for EXPLAIN.
    label: Option<String>,
    /// Pinned to a snapshot by the caller (time travel), not the current one.
    time_travel: bool,
}

impl fmt::Debug for WeirTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "WeirTable({}@{:?})",
            self.table.identifier(),
            self.snapshot_id
        )
    }
}

impl WeirTable {
    /// `snapshot_id = None` pins the table's current snapshot. A table pinned
    /// to a snapshot reads in that snapshot's schema (time travel, as
    /// PyIceberg's `scan(snapshot_id=…)` does); the current one in the
    /// current schema.
    pub fn try_new(lakehouse: Lakehouse, table: Table, snapshot_id: Option<i64>) -> DFResult<Self> {
        Self::build(lakehouse, table, snapshot_id, false)
    }

    /// The files of `snapshot_id` read in the table's *current* schema: what
    /// a materialized view refresh pins (its query was planned against the
    /// current names, which a rename may have changed since the snapshot).
    pub fn pinned_in_current_schema(
        lakehouse: Lakehouse,
        table: Table,
        snapshot_id: Option<i64>,
    ) -> DFResult<Self> {
        Self::build(lakehouse, table, snapshot_id, true)
    }

    fn build(
        lakehouse: Lakehouse,
        table: Table,
        snapshot_id: Option<i64>,
        current_schema: bool,
    ) -> DFResult<Self> {
        let metadata = table.metadata();
        let time_travel = snapshot_id.is_some();
        let (snapshot_id, iceberg_schema) = match snapshot_id {
            Some(id) => {
                let snapshot = metadata.snapshot_by_id(id).ok_or_else(|| {
                    to_df(crate::QueryError::NotFound(format!(
                        "snapshot {id} of table {}",
                        table.identifier()
                    )))
                })?;
                let schema = if current_schema {
                    metadata.current_schema().clone()
                } else {
                    snapshot.schema(metadata).map_err(to_df)?
                };
                (Some(id), schema)
            }
            None => (
                metadata.current_snapshot_id(),
                metadata.current_schema().clone(),
            ),
        };
        let arrow = schema_to_arrow_schema(&iceberg_schema).map_err(to_df)?;
        let file_schema = client_schema(&arrow);
        let schema = uuid_as_text(&file_schema, &iceberg_schema);
        let field_ids = FieldIds::new(iceberg_schema, &file_schema, metadata);
        Ok(WeirTable {
            lakehouse,
            table,
            snapshot_id,
            schema: Arc::new(schema),
            file_schema: Arc::new(file_schema),
            field_ids: Arc::new(field_ids),
            hot: Vec::new(),
            only_files: None,
            label: None,
            time_travel,
        })
    }

    /// The same snapshot restricted to some of its data files (`None`: all),
    /// with or without the hot tier; `label` says why in EXPLAIN.
    pub(crate) fn restricted(
        &self,
        only_files: Option<Arc<HashSet<String>>>,
        hot: bool,
        label: String,
    ) -> Self {
        WeirTable {
            hot: if hot { self.hot.clone() } else { Vec::new() },
            only_files,
            label: Some(label),
            ..self.clone()
        }
    }

    /// Adds the hot tier's chunks, taken before the table was loaded.
    pub fn with_hot(mut self, hot: Vec<Arc<HotChunk>>) -> Self {
        self.hot = hot;
        self
    }

    /// The hot rows this snapshot does not cover, conformed to `schema`.
    fn hot_plan(
        &self,
        schema: &SchemaRef,
        projection: Option<&Vec<usize>>,
    ) -> DFResult<Option<Arc<dyn ExecutionPlan>>> {
        if self.hot.is_empty() {
            return Ok(None);
        }
        let batches = visible_batches(&self.hot, self.table.metadata(), self.snapshot_id)?;
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        if rows == 0 {
            return Ok(None);
        }
        let full = batches
            .into_iter()
            .map(|b| conform_batch(b, &self.schema))
            .collect::<DFResult<Vec<_>>>()?;
        // Tiny chunks (one per Modbus device and poll) into scan-sized batches.
        let full = coalesce_batches(full, 8192)?;
        let memory =
            MemorySourceConfig::try_new_exec(&[full], self.schema.clone(), projection.cloned())?;
        let (metrics, merged) = hot_metrics();
        Ok(Some(Arc::new(WeirScanExec::new(
            memory,
            schema.clone(),
            self.table.identifier().to_string(),
            ScanKind::Hot { rows, merged },
            metrics,
        ))))
    }

    pub fn table(&self) -> &Table {
        &self.table
    }

    pub(crate) fn lakehouse(&self) -> &Lakehouse {
        &self.lakehouse
    }

    /// Whether this is a restricted view of the snapshot (see `restricted`)
    /// or a snapshot the caller chose (time travel).
    pub(crate) fn is_restricted(&self) -> bool {
        self.only_files.is_some() || self.label.is_some() || self.time_travel
    }

    /// The hot-tier chunks taken with the table.
    pub(crate) fn hot_chunks(&self) -> &[Arc<HotChunk>] {
        &self.hot
    }

    /// Whether hot-tier rows came with the table (they may all be committed).
    pub(crate) fn has_hot(&self) -> bool {
        !self.hot.is_empty()
    }

    /// Whether the table is a materialized view.
    pub fn is_materialized_view(&self) -> bool {
        self.table
            .metadata()
            .properties()
            .contains_key(weir_catalog::MV_DEFINITION_PROPERTY)
    }

    /// The snapshot this table is pinned to (`None`: the table is empty).
    pub fn snapshot_id(&self) -> Option<i64> {
        self.snapshot_id
    }

    /// The schema as data files are read (Iceberg `uuid` columns as bytes).
    pub(crate) fn file_schema(&self) -> SchemaRef {
        self.file_schema.clone()
    }

    /// The Iceberg table behind it.
    pub(crate) fn iceberg_table(&self) -> &Table {
        &self.table
    }

    /// The Iceberg schema of the pinned snapshot (may lack newer columns, or
    /// name a column differently after a rename).
    fn snapshot_schema(&self) -> DFResult<iceberg::spec::SchemaRef> {
        let metadata = self.table.metadata();
        Ok(
            match self.snapshot_id.and_then(|id| metadata.snapshot_by_id(id)) {
                Some(snapshot) => snapshot.schema(metadata).map_err(to_df)?,
                None => metadata.current_schema().clone(),
            },
        )
    }

    /// The filters iceberg-rust may evaluate: it binds them by name to the
    /// snapshot's schema, so only filters on columns with the same name *and*
    /// field id there (never a renamed column, nor the dropped namesake of a
    /// re-added one), and not on promoted columns (see `FieldIds`).
    fn filters_for_snapshot(&self, filters: &[Expr]) -> DFResult<Vec<Expr>> {
        let snapshot = self.snapshot_schema()?;
        Ok(filters
            .iter()
            .filter(|e| {
                !self.on_uuid_text(e)
                    && e.column_refs()
                        .iter()
                        .all(|c| self.field_ids.prunable_in(&c.name, &snapshot))
            })
            .cloned()
            .collect())
    }

    /// Whether `filter` reads an Iceberg `uuid` column, which it compares as
    /// text where files and manifests hold bytes: it cannot prune.
    fn on_uuid_text(&self, filter: &Expr) -> bool {
        filter.column_refs().iter().any(|c| {
            self.schema
                .field_with_name(&c.name)
                .ok()
                .map(|f| f.data_type())
                != self
                    .file_schema
                    .field_with_name(&c.name)
                    .ok()
                    .map(|f| f.data_type())
        })
    }

    /// The data files of the pinned snapshot that survive `filters` (manifest
    /// pruning), and how many files the snapshot has in all.
    async fn plan_files(&self, filters: &[Expr]) -> DFResult<(Vec<FileScanTask>, FileCounts)> {
        let Some(snapshot_id) = self.snapshot_id else {
            return Ok((vec![], FileCounts::default()));
        };
        if self.only_files.as_ref().is_some_and(|f| f.is_empty()) {
            return Ok((vec![], FileCounts::default())); // hot tier only
        }
        let total = self.data_files_in_snapshot(snapshot_id).await?;
        let mut scan = self.table.scan().snapshot_id(snapshot_id).select_empty();
        if let Some(predicate) = convert_filters_to_predicate(filters) {
            scan = scan.with_filter(predicate);
        }
        let mut tasks: Vec<FileScanTask> = scan
            .build()
            .map_err(to_df)?
            .plan_files()
            .await
            .map_err(to_df)?
            .try_collect()
            .await
            .map_err(to_df)?;
        if let Some(only) = &self.only_files {
            tasks.retain(|t| only.contains(&t.data_file_path));
        }
        let counts = FileCounts {
            total: total.unwrap_or(tasks.len()).max(tasks.len()),
            selected: tasks.len(),
            bytes: tasks.iter().map(|t| t.length).sum(),
            ..FileCounts::default()
        };
        Ok((tasks, counts))
    }

    /// How many live data files the snapshot's manifests hold: the
    /// snapshot summary's `total-data-files` (kept by every commit, Weir's
    /// and other engines'), else the data manifests' file counts from the
    /// manifest list; `None` if neither says.
    async fn data_files_in_snapshot(&self, snapshot_id: i64) -> DFResult<Option<usize>> {
        let Some(snapshot) = self.table.metadata().snapshot_by_id(snapshot_id) else {
            return Ok(None);
        };
        let summary = snapshot
            .summary()
            .additional_properties
            .get("total-data-files")
            .and_then(|v| v.parse().ok());
        if summary.is_some() {
            return Ok(summary);
        }
        let list = self
            .table
            .manifest_list_reader(snapshot)
            .load()
            .await
            .map_err(to_df)?;
        let mut files = 0usize;
        for manifest in list.entries() {
            if manifest.content != ManifestContentType::Data {
                continue;
            }
            match (manifest.added_files_count, manifest.existing_files_count) {
                (Some(added), Some(existing)) => files += (added + existing) as usize,
                _ => return Ok(None),
            }
        }
        Ok(Some(files))
    }

    /// The data files of the pinned snapshot that may hold rows matching
    /// `filters` (manifest pruning in the snapshot's names).
    pub(crate) async fn plan_files_for(&self, filters: &[Expr]) -> DFResult<Vec<FileScanTask>> {
        let (tasks, _) = self
            .plan_files(&self.filters_for_snapshot(filters)?)
            .await?;
        Ok(tasks)
    }

    /// The file cache, when this table's files belong in it and the
    /// session has not turned it off (`SET weir.file_cache = false`).
    fn file_cache(&self, state: &dyn Session) -> Option<Arc<FileCache>> {
        let on = state
            .config_options()
            .extensions
            .get::<crate::WeirSessionOptions>()
            .is_none_or(|o| o.file_cache);
        let wanted = on
            && file_cache::table_wants_cache(
                self.table.metadata().properties(),
                self.is_materialized_view(),
            );
        if wanted {
            state.config().get_extension::<FileCache>()
        } else {
            None
        }
    }

    /// Reads the planned files: cached ones from memory (loaded on first
    /// use), the rest with DataFusion's Parquet scan, or everything with the
    /// Iceberg reader when some file needs it (delete files).
    #[allow(clippy::too_many_arguments)]
    async fn scan_files(
        &self,
        state: &dyn Session,
        schema: &SchemaRef,
        tasks: Vec<FileScanTask>,
        mut counts: FileCounts,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DFResult<(Arc<dyn ExecutionPlan>, FileCounts)> {
        let mut decoded = Vec::new();
        let mut rest = tasks;
        if let Some(cache) = self.file_cache(state) {
            // Decide before loading anything: a file the Parquet scan cannot
            // read sends the whole table to the Iceberg reader.
            if !rest.iter().all(|t| natively_readable(state, t)) {
                let plan = self.iceberg_scan(state, schema, filters, limit).await?;
                return Ok((plan, counts));
            }
            let (cached, other): (Vec<_>, Vec<_>) = rest.into_iter().partition(|t| cache.admits(t));
            rest = other;
            let (files, use_counts) = self.decoded_files(state, &cache, &cached).await?;
            decoded = files;
            counts.cache = Some(use_counts);
        }
        let mut parts: Vec<Arc<dyn ExecutionPlan>> = Vec::new();
        if !rest.is_empty() {
            // Bloom filters exist only where the table asks writers for them
            // (Iceberg's property, which Spark and Weir both honour); looking
            // for them in every row group otherwise costs time for nothing.
            let bloom_filters = weir_catalog::parquet_props::declares_bloom_filters(
                self.table.metadata().properties(),
            );
            let deleted = if rest.iter().all(natively_readable_deletes) {
                position_deletes(state, self.table.file_io(), &rest).await?
            } else {
                DeletedRows::default() // the Iceberg reader applies them
            };
            match parquet_scan(
                state,
                self.file_schema.clone(),
                &self.field_ids,
                &rest,
                projection,
                filters,
                limit,
                bloom_filters,
                &deleted,
            )? {
                Some(plan) => parts.push(plan),
                None => {
                    let plan = self.iceberg_scan(state, schema, filters, limit).await?;
                    return Ok((plan, counts));
                }
            }
        }
        if !decoded.is_empty() {
            let table_schema = self.file_schema.clone();
            let (plan, batches) = file_cache::memory_scan(
                state,
                &self.file_schema,
                &decoded,
                projection,
                filters,
                limit,
                |batch| {
                    if batch.schema() == table_schema {
                        Ok(batch)
                    } else {
                        conform_batch(batch, &table_schema)
                    }
                },
            )?;
            counts.memory = Some(batches);
            parts.push(plan);
        }
        let plan = match parts.len() {
            1 => parts.pop().expect("one part"),
            _ => UnionExec::try_new(parts)?,
        };
        Ok((plan, counts))
    }

    /// The `cached` files decoded, as `cache` holds them (read from storage
    /// and kept on first use), with how many it held already.
    async fn decoded_files(
        &self,
        state: &dyn Session,
        cache: &FileCache,
        cached: &[FileScanTask],
    ) -> DFResult<(Vec<Arc<file_cache::DecodedFile>>, CacheCounts)> {
        let mut decoded = Vec::with_capacity(cached.len());
        let mut use_counts = CacheCounts::default();
        for task in cached {
            let read =
                file_cache::read_whole_file(state, self.file_schema.clone(), &self.field_ids, task);
            let schema_id = self.field_ids.schema_id();
            let (file, hit) = cache.get(task, schema_id, read).await?;
            if hit {
                use_counts.hits += 1;
            } else {
                use_counts.misses += 1;
            }
            decoded.push(file);
        }
        Ok((decoded, use_counts))
    }

    /// The Iceberg reader, for what the native Parquet scan does not handle.
    async fn iceberg_scan(
        &self,
        state: &dyn Session,
        schema: &SchemaRef,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        let Some(snapshot_id) = self.snapshot_id else {
            return Ok(Arc::new(EmptyExec::new(schema.clone())));
        };
        // Always pinned: with the current snapshot, iceberg-rust would check
        // the current schema's names against the snapshot's schema.
        let inner_provider = IcebergStaticTableProvider::try_new_from_table_snapshot(
            self.table.clone(),
            snapshot_id,
        )
        .await
        .map_err(to_df)?;
        // iceberg-rust scans read in the *snapshot's* schema (projecting each
        // file by field id): ask it for the snapshot's columns of the ids
        // this table reads, under their names there, then rename them to
        // ours. Columns the snapshot does not have (added, or re-added, since)
        // are filled with nulls in WeirScanExec, as Iceberg specifies.
        let snapshot_schema = self.snapshot_schema()?;
        let inner_schema = inner_provider.schema();
        let mut inner_projection = Vec::new();
        let mut renames: Vec<(Arc<dyn PhysicalExpr>, String)> = Vec::new();
        let mut renamed = false;
        for field in schema.fields() {
            let Some(name) = self.field_ids.name_in(field.name(), &snapshot_schema) else {
                continue;
            };
            let Ok(index) = inner_schema.index_of(name) else {
                continue;
            };
            renamed |= name != field.name().as_str();
            let column = Column::new(name, inner_projection.len());
            inner_projection.push(index);
            renames.push((Arc::new(column), field.name().clone()));
        }
        let inner_filters = self.filters_for_snapshot(filters)?;
        let plan = inner_provider
            .scan(state, Some(&inner_projection), &inner_filters, limit)
            .await?;
        // The provider reads every file of the snapshot; a table restricted
        // to some files (DML, a view refresh) reads only those.
        let plan = match &self.only_files {
            Some(only) => {
                let columns = inner_projection
                    .iter()
                    .map(|i| inner_schema.field(*i).name().clone())
                    .collect();
                crate::iceberg_files::scan(
                    self.table.clone(),
                    snapshot_id,
                    plan.schema(),
                    columns,
                    convert_filters_to_predicate(&inner_filters),
                    only.clone(),
                    limit,
                )?
            }
            None => plan,
        };
        if !renamed {
            return Ok(plan);
        }
        Ok(Arc::new(ProjectionExec::try_new(renames, plan)?))
    }
}

#[async_trait]
impl TableProvider for WeirTable {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// Materialized views (tables holding a `weir.mv.definition`) are
    /// listed as views, e.g. in `information_schema.tables`.
    fn table_type(&self) -> TableType {
        if self.is_materialized_view() {
            TableType::View
        } else {
            TableType::Base
        }
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        let (schema, file_schema) = match projection {
            Some(p) => (
                Arc::new(self.schema.project(p)?),
                Arc::new(self.file_schema.project(p)?),
            ),
            None => (self.schema.clone(), self.file_schema.clone()),
        };
        let planning = Time::new();
        let timer = planning.timer();
        // Manifest pruning may only use filters on columns the snapshot knows.
        let (tasks, counts) = self
            .plan_files(&self.filters_for_snapshot(filters)?)
            .await?;
        let (inner, counts) = if tasks.is_empty() {
            (
                Arc::new(EmptyExec::new(file_schema)) as Arc<dyn ExecutionPlan>,
                counts,
            )
        } else {
            self.scan_files(
                state,
                &file_schema,
                tasks,
                counts,
                projection,
                filters,
                limit,
            )
            .await?
        };
        timer.done();
        let files: Arc<dyn ExecutionPlan> = Arc::new(WeirScanExec::new(
            inner,
            schema.clone(),
            self.table.identifier().to_string(),
            ScanKind::Files(counts, self.label.clone()),
            files_metrics(&counts, &planning),
        ));
        match self.hot_plan(&schema, projection)? {
            Some(hot) => UnionExec::try_new(vec![files, hot]),
            None => Ok(files),
        }
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DFResult<Vec<TableProviderFilterPushDown>> {
        // Inexact: pruning uses them, DataFusion still applies them row by row.
        // Not on `uuid` columns: the files hold bytes where the filter
        // compares text.
        Ok(filters
            .iter()
            .map(|f| {
                if self.on_uuid_text(f) {
                    TableProviderFilterPushDown::Unsupported
                } else {
                    TableProviderFilterPushDown::Inexact
                }
            })
            .collect())
    }

    async fn insert_into(
        &self,
        _state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        if insert_op == InsertOp::Replace {
            return Err(DataFusionError::NotImplemented(
                "REPLACE INTO Iceberg tables; use INSERT OVERWRITE (replaces the partitions the rows fall into)".into(),
            ));
        }
        if self.is_materialized_view() {
            return Err(DataFusionError::Plan(format!(
                "{} is a materialized view: its rows come from its query (REFRESH MATERIALIZED VIEW)",
                self.table.identifier()
            )));
        }
        if self.snapshot_id != self.table.metadata().current_snapshot_id() {
            return Err(DataFusionError::Plan(
                "cannot insert into a table pinned to an older snapshot".into(),
            ));
        }
        Ok(Arc::new(WeirInsertExec::new(
            self.lakehouse.clone(),
            self.table.clone(),
            input,
            insert_op == InsertOp::Overwrite,
        )))
    }
}

/// The schema clients see: UTC timestamps named "UTC", no Parquet field-id
/// metadata (at any depth).
fn client_schema(arrow: &Schema) -> Schema {
    Schema::new(
        arrow
            .fields()
            .iter()
            .map(|f| client_field(f))
            .collect::<Vec<_>>(),
    )
}

/// `file_schema` with its top-level Iceberg `uuid` columns as text.
fn uuid_as_text(file_schema: &Schema, iceberg: &iceberg::spec::Schema) -> Schema {
    Schema::new(
        file_schema
            .fields()
            .iter()
            .zip(iceberg.as_struct().fields())
            .map(|(f, i)| {
                if weir_catalog::uuid_columns::is_iceberg_uuid(i) {
                    Arc::new(Field::new(f.name(), DataType::Utf8, f.is_nullable()))
                } else {
                    f.clone()
                }
            })
            .collect::<Vec<_>>(),
    )
}

fn client_field(f: &Field) -> Field {
    let dt = match f.data_type() {
        DataType::Timestamp(unit, Some(tz)) if is_utc(tz) => {
            DataType::Timestamp(*unit, Some("UTC".into()))
        }
        DataType::List(inner) => DataType::List(Arc::new(client_field(inner))),
        DataType::LargeList(inner) => DataType::LargeList(Arc::new(client_field(inner))),
        DataType::Map(inner, sorted) => DataType::Map(Arc::new(client_field(inner)), *sorted),
        DataType::Struct(fields) => {
            DataType::Struct(fields.iter().map(|f| client_field(f)).collect())
        }
        other => other.clone(),
    };
    Field::new(f.name(), dt, f.is_nullable())
}

fn is_utc(tz: &str) -> bool {
    matches!(tz, "+00:00" | "UTC" | "Z" | "+0000" | "Etc/UTC")
}

#[derive(Debug, Default, Clone, Copy)]
struct FileCounts {
    /// Data files of the pinned snapshot.
    total: usize,
    /// Of those, the files this scan reads.
    selected: usize,
    /// Their bytes, from the manifest entries (`FileScanTask::length`).
    bytes: u64,
    /// What was read from the file cache, if anything.
    memory: Option<BatchCounts>,
    /// Files looked up in the file cache, when the table uses it.
    cache: Option<CacheCounts>,
}

#[derive(Debug, Default, Clone, Copy)]
struct CacheCounts {
    /// Served already decoded.
    hits: usize,
    /// Read from storage into the cache by this scan.
    misses: usize,
}

/// `EXPLAIN ANALYZE` metrics of a scan of committed files, known once the
/// scan is planned: what manifest planning listed and pruned, what is read
/// and how long `WeirTable::scan` took to find out (manifests, position
/// deletes, file-cache loads). The Parquet scan below reports its own
/// (row groups and pages pruned, bytes read).
fn files_metrics(counts: &FileCounts, planning: &Time) -> ExecutionPlanMetricsSet {
    let metrics = ExecutionPlanMetricsSet::new();
    let count = |name: &'static str, value: usize| {
        MetricBuilder::new(&metrics)
            .with_type(MetricType::SUMMARY)
            .global_counter(name)
            .add(value);
    };
    count("files_listed", counts.total);
    count("files_pruned", counts.total.saturating_sub(counts.selected));
    count("files_scanned", counts.selected);
    count(
        "bytes_scanned",
        usize::try_from(counts.bytes).unwrap_or(usize::MAX),
    );
    if let Some(cache) = counts.cache {
        count("file_cache_hits", cache.hits);
        count("file_cache_misses", cache.misses);
    }
    MetricBuilder::new(&metrics)
        .with_type(MetricType::SUMMARY)
        .build(MetricValue::Time {
            name: "planning_time".into(),
            time: planning.clone(),
        });
    metrics
}

/// `EXPLAIN ANALYZE` metrics of a hot-tier scan: `hot_rows` counts the rows
/// it merged into the result (as they are produced).
fn hot_metrics() -> (ExecutionPlanMetricsSet, Count) {
    let metrics = ExecutionPlanMetricsSet::new();
    let rows = MetricBuilder::new(&metrics)
        .with_type(MetricType::SUMMARY)
        .global_counter("hot_rows");
    (metrics, rows)
}

/// Sits on the file scan: reports manifest pruning in EXPLAIN and conforms
/// batches to the client schema by name (time-zone names, columns newer than
/// the snapshot filled with nulls).
#[derive(Debug)]
pub struct WeirScanExec {
    inner: Arc<dyn ExecutionPlan>,
    schema: SchemaRef,
    table: String,
    kind: ScanKind,
    properties: Arc<PlanProperties>,
    /// Shared by the copies `with_new_children` makes.
    metrics: ExecutionPlanMetricsSet,
}

/// What a [`WeirScanExec`] reads: committed data files or hot-tier rows.
#[derive(Debug, Clone)]
enum ScanKind {
    /// Files planned from the manifests; the label says why the scan reads
    /// only some of the snapshot's files (a materialized view's delta).
    Files(FileCounts, Option<String>),
    Hot {
        /// Visible rows when planned (EXPLAIN).
        rows: usize,
        /// Rows produced so far (`hot_rows`).
        merged: Count,
    },
}

impl WeirScanExec {
    fn new(
        inner: Arc<dyn ExecutionPlan>,
        schema: SchemaRef,
        table: String,
        kind: ScanKind,
        metrics: ExecutionPlanMetricsSet,
    ) -> Self {
        let inner_props = inner.properties();
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            inner_props.output_partitioning().clone(),
            inner_props.emission_type,
            inner_props.boundedness,
        ));
        WeirScanExec {
            inner,
            schema,
            table,
            kind,
            properties,
            metrics,
        }
    }
}

/// `, in memory: 1 file, 6 of 6 batches` when the file cache served files.
fn write_memory(f: &mut fmt::Formatter<'_>, counts: &FileCounts) -> fmt::Result {
    match counts.memory {
        Some(m) => write!(
            f,
            ", in memory: {} file{}, {} of {} batches",
            m.files,
            if m.files == 1 { "" } else { "s" },
            m.matched,
            m.total
        ),
        None => Ok(()),
    }
}

impl DisplayAs for WeirScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ScanKind::Files(counts, Some(label)) => {
                write!(
                    f,
                    "WeirScan: table={}, files={} of {} ({label})",
                    self.table, counts.selected, counts.total,
                )?;
                write_memory(f, counts)
            }
            ScanKind::Files(counts, None) => {
                write!(
                    f,
                    "WeirScan: table={}, files={} of {} ({} pruned by manifests)",
                    self.table,
                    counts.selected,
                    counts.total,
                    counts.total.saturating_sub(counts.selected)
                )?;
                write_memory(f, counts)
            }
            ScanKind::Hot { rows, .. } => {
                write!(
                    f,
                    "WeirHotScan: table={}, uncommitted rows={rows}",
                    self.table
                )
            }
        }
    }
}

impl ExecutionPlan for WeirScanExec {
    fn name(&self) -> &str {
        "WeirScanExec"
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.inner]
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        let inner = children
            .pop()
            .ok_or_else(|| DataFusionError::Internal("WeirScanExec needs one child".into()))?;
        Ok(Arc::new(WeirScanExec::new(
            inner,
            self.schema.clone(),
            self.table.clone(),
            self.kind.clone(),
            self.metrics.clone(),
        )))
    }

    /// The inner scan's statistics: row counts from the Iceberg manifests
    /// (exact without filters, so `count(*)` is answered from metadata).
    /// Columns keep only their count; values are re-typed by this node.
    fn partition_statistics(&self, partition: Option<usize>) -> DFResult<Statistics> {
        let inner = self.inner.partition_statistics(partition)?;
        let mut out = Statistics::new_unknown(&self.schema);
        out.num_rows = inner.num_rows;
        out.total_byte_size = inner.total_byte_size;
        Ok(out)
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DFResult<SendableRecordBatchStream> {
        let schema = self.schema.clone();
        let stream = self.inner.execute(partition, context)?;
        let out = schema.clone();
        let output_rows = MetricBuilder::new(&self.metrics)
            .with_type(MetricType::SUMMARY)
            .output_rows(partition);
        let hot_rows = match &self.kind {
            ScanKind::Hot { merged, .. } => Some(merged.clone()),
            ScanKind::Files(..) => None,
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            schema,
            stream.map(move |batch| {
                let batch = conform_batch(batch?, &out)?;
                output_rows.add(batch.num_rows());
                if let Some(hot) = &hot_rows {
                    hot.add(batch.num_rows());
                }
                Ok(batch)
            }),
        )))
    }

    /// Weir's own work (see [`files_metrics`], [`hot_metrics`]) and the rows
    /// produced; the scan below reports DataFusion's.
    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

/// Matches the scan's columns to the client schema by name: casts time zone
/// names, fills columns the snapshot predates with nulls.
pub(crate) fn conform_batch(batch: RecordBatch, schema: &SchemaRef) -> DFResult<RecordBatch> {
    let columns = schema
        .fields()
        .iter()
        .map(|field| match batch.column_by_name(field.name()) {
            Some(col) if col.data_type() == field.data_type() => Ok(col.clone()),
            // An Iceberg `uuid` column, shown as text.
            Some(col)
                if field.data_type() == &DataType::Utf8
                    && col.data_type() == &DataType::FixedSizeBinary(16) =>
            {
                let bytes = col.as_fixed_size_binary_opt().ok_or_else(|| {
                    DataFusionError::Internal("uuid column is not FixedSizeBinary".into())
                })?;
                Ok(weir_catalog::uuid_columns::to_text(bytes))
            }
            Some(col) => cast(col, field.data_type()).map_err(DataFusionError::from),
            None => Ok(new_null_array(field.data_type(), batch.num_rows())),
        })
        .collect::<DFResult<Vec<ArrayRef>>>()?;
    // count(*) scans project no columns: keep the row count explicitly.
    let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    Ok(RecordBatch::try_new_with_options(
        schema.clone(),
        columns,
        &options,
    )?)
}

/// Executes its input and commits the rows as one Iceberg append snapshot.
/// Nothing is committed if the input fails part-way.
///
/// TODO(issue 3): stream into rolling data files instead of collecting the
/// input in memory first.
#[derive(Debug)]
pub struct WeirInsertExec {
    lakehouse: Lakehouse,
    table: Table,
    input: Arc<dyn ExecutionPlan>,
    /// INSERT OVERWRITE: replace the partitions the rows fall into.
    overwrite: bool,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
    written: WriteMetrics,
}

/// What an insert wrote, for `EXPLAIN ANALYZE`: rows, data files and their
/// bytes (from the written files' own metadata), and the time the commit
/// took (catalog commit with its retries; for appends also merging small
/// manifests).
#[derive(Debug, Clone)]
pub(crate) struct WriteMetrics {
    pub rows: Count,
    pub files: Count,
    pub bytes: Count,
    pub commit_time: Time,
}

impl WriteMetrics {
    fn new(metrics: &ExecutionPlanMetricsSet) -> Self {
        let count = |name: &'static str| {
            MetricBuilder::new(metrics)
                .with_type(MetricType::SUMMARY)
                .global_counter(name)
        };
        let commit_time = Time::new();
        MetricBuilder::new(metrics)
            .with_type(MetricType::SUMMARY)
            .build(MetricValue::Time {
                name: "commit_time".into(),
                time: commit_time.clone(),
            });
        WriteMetrics {
            rows: count("rows_written"),
            files: count("files_written"),
            bytes: count("bytes_written"),
            commit_time,
        }
    }

    /// Counts data files written (not yet committed).
    pub(crate) fn record_files(&self, files: &[DataFile]) {
        self.files.add(files.len());
        for file in files {
            self.rows
                .add(usize::try_from(file.record_count()).unwrap_or(usize::MAX));
            self.bytes
                .add(usize::try_from(file.file_size_in_bytes()).unwrap_or(usize::MAX));
        }
    }
}

impl WeirInsertExec {
    fn new(
        lakehouse: Lakehouse,
        table: Table,
        input: Arc<dyn ExecutionPlan>,
        overwrite: bool,
    ) -> Self {
        let schema = count_schema();
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(schema),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            Boundedness::Bounded,
        ));
        let metrics = ExecutionPlanMetricsSet::new();
        let written = WriteMetrics::new(&metrics);
        WeirInsertExec {
            lakehouse,
            table,
            input,
            overwrite,
            properties,
            metrics,
            written,
        }
    }
}

fn count_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(
        "count",
        DataType::UInt64,
        false,
    )]))
}

impl DisplayAs for WeirInsertExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = if self.overwrite { " overwrite" } else { "" };
        write!(f, "WeirInsert{mode}: table={}", self.table.identifier())
    }
}

impl ExecutionPlan for WeirInsertExec {
    fn name(&self) -> &str {
        "WeirInsertExec"
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        let input = children
            .pop()
            .ok_or_else(|| DataFusionError::Internal("WeirInsertExec needs one child".into()))?;
        Ok(Arc::new(WeirInsertExec {
            input,
            properties: self.properties.clone(),
            lakehouse: self.lakehouse.clone(),
            table: self.table.clone(),
            overwrite: self.overwrite,
            metrics: self.metrics.clone(),
            written: self.written.clone(),
        }))
    }

    /// `rows_written`, `files_written`, `bytes_written`, `commit_time`
    /// ([`WriteMetrics`]).
    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DFResult<SendableRecordBatchStream> {
        if partition != 0 {
            return Err(DataFusionError::Internal(format!(
                "WeirInsertExec has one partition, got {partition}"
            )));
        }
        let input = self.input.clone();
        let lakehouse = self.lakehouse.clone();
        let ident = self.table.identifier().clone();
        let overwrite = self.overwrite;
        let hot = context.session_config().get_extension::<HotTier>();
        let written = self.written.clone();
        let stream = futures::stream::once(async move {
            let batches = datafusion::physical_plan::collect(input, context).await?;
            if overwrite {
                let rows = crate::dml::insert_overwrite(&lakehouse, &ident, &batches, &written)
                    .await
                    .map_err(to_df)?;
                let count: ArrayRef = Arc::new(UInt64Array::from(vec![rows]));
                return Ok(RecordBatch::try_new(count_schema(), vec![count])?);
            }
            // Reload: the commit must build on the newest metadata.
            let table = lakehouse
                .catalog()
                .load_table(&ident)
                .await
                .map_err(to_df)?;
            // `append_batches`, in two steps to measure them.
            let rows: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
            if rows == 0 {
                let count: ArrayRef = Arc::new(UInt64Array::from(vec![0u64]));
                return Ok(RecordBatch::try_new(count_schema(), vec![count])?);
            }
            // A large INSERT / bulk ingest encodes on every core.
            let writers = std::thread::available_parallelism().map_or(1, |n| n.get());
            let files = write_data_files_parallel(&table, &batches, None, writers)
                .await
                .map_err(|source| {
                    to_df(CatalogError::Write {
                        table: ident.to_string(),
                        source: Box::new(source),
                    })
                })?;
            written.record_files(&files);
            let started = std::time::Instant::now();
            let outcome = append_data_files(&lakehouse, &table, files, AppendOptions::default())
                .await
                .map_err(to_df)?;
            written.commit_time.add_elapsed(started);
            // Alert rules of this process see inserted rows as they see
            // streamed ones (a no-op without an evaluator; the engine puts
            // its hot tier in every session).
            if let Some(hot) = hot {
                let name = format!("{}.{}", ident.namespace().join("."), ident.name());
                for batch in &batches {
                    hot.publish(&name, batch);
                }
            }
            let count: ArrayRef = Arc::new(UInt64Array::from(vec![outcome.rows]));
            Ok(RecordBatch::try_new(count_schema(), vec![count])?)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            count_schema(),
            stream,
        )))
    }
}
