//! Weir's query engine: a DataFusion session over the Iceberg catalog.
//!
//! A statement is parsed once ([`WeirStatement::parse`], with the session's
//! dialect; the Flight SQL server checks the caller's role on that parse) and
//! run by [`QueryEngine::execute`]: DDL and writes (INSERT, CTAS, COPY,
//! REFRESH) take effect at once, whether or not the client reads the result;
//! queries come back as unexecuted DataFrames. `QueryEngine::sql` does both
//! (the sqllogictest runner, `weir` commands).

pub mod alerts;
mod alter;
mod asof;
mod asof_subquery;
mod catalog;
mod clustered_agg;
mod clustered_filter;
mod ddl;
mod dml;
mod error;
mod export;
pub mod file_cache;
mod functions;
mod gapfill;
mod iceberg_files;
mod ingest;
pub mod last_value;
mod merge;
pub mod metric_names;
pub mod mv;
mod mv_incremental;
mod mv_ranges;
mod mv_rewrite;
mod native_scan;
mod planning;
pub mod postgres;
pub mod settings;
mod sql_ext;
mod statement;
mod table;
mod time_series;
mod utc_date_trunc;
mod views;

use std::sync::Arc;

use datafusion::common::ParamValues;
use datafusion::dataframe::DataFrame;
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::logical_expr::{DdlStatement, LogicalPlan};
use datafusion::prelude::{SessionConfig, SessionContext};
use weir_catalog::{CATALOG_NAME, DEFAULT_NAMESPACE, Lakehouse};
use weir_hot::HotTiers;

/// Who runs a session's statements (Flight sets it from the authenticated
/// user); recorded by statements that keep an author, such as
/// `ACKNOWLEDGE ALERT`.
#[derive(Debug, Clone)]
pub struct Actor(pub String);

/// Sets the [`Actor`] of `ctx`.
pub fn set_actor(ctx: &SessionContext, name: &str) {
    ctx.state_ref()
        .write()
        .config_mut()
        .set_extension(std::sync::Arc::new(Actor(name.to_string())));
}

fn actor(ctx: &SessionContext) -> String {
    ctx.state()
        .config()
        .get_extension::<Actor>()
        .map_or_else(|| "sql".to_string(), |a| a.0.clone())
}

pub use catalog::WeirCatalogProvider;
pub use error::{QueryError, Result};
pub use ingest::{INGEST_ALLOWED_PROPERTY, IfExists, IfMissing, IngestTarget, PIPELINE_SCHEMAS};
pub use postgres::PostgresCatalogSpec;
pub use statement::{
    Access, MAX_EXPRESSION_DEPTH, MAX_PARSER_RECURSION, MAX_SET_OPERATIONS, WeirStatement,
};
pub use table::{WeirInsertExec, WeirScanExec, WeirTable};

#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Memory for sorts/aggregates before they spill to disk; unbounded if None.
    pub memory_limit: Option<usize>,
    /// Parallelism of a query; the number of cores if None.
    pub target_partitions: Option<usize>,
    /// Answer aggregates from materialized views (the session default of
    /// `weir.mv_rewrite`).
    pub mv_rewrite: bool,
    /// External PostgreSQL databases attached as catalogs.
    pub postgres_catalogs: Vec<PostgresCatalogSpec>,
    /// Decoded data files of small, hot tables kept in memory.
    pub file_cache: file_cache::FileCacheOptions,
    /// The only directory `COPY … TO` may write into (and below); COPY is
    /// refused when None.
    pub export_dir: Option<std::path::PathBuf>,
    /// Memory for all last-value indexes (`last_value/`) together.
    pub last_value_memory: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            memory_limit: None,
            target_partitions: None,
            mv_rewrite: true,
            postgres_catalogs: Vec::new(),
            file_cache: file_cache::FileCacheOptions::default(),
            export_dir: None,
            last_value_memory: last_value::DEFAULT_MEMORY,
        }
    }
}

/// See [`QueryEngine::catalog_state`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogState(weir_catalog::TableListing);

datafusion::common::extensions_options! {
    /// Weir's session settings (`SET weir.<name> = …`).
    pub struct WeirSessionOptions {
        /// Answer aggregates a materialized view can answer from the view
        /// (plus the base rows it does not hold yet).
        pub mv_rewrite: bool, default = true
        /// Read the data files of materialized views (and tables with
        /// `weir.file-cache = true`) from the engine's in-memory file cache.
        pub file_cache: bool, default = true
        /// Answer "last row per series" aggregates and key listings of
        /// tables with a declared last-value index from the index.
        pub last_value_index: bool, default = true
        /// Work once per run of equal string keys: partial aggregates by
        /// one string column take a row equal to the previous row's key
        /// into its group without hashing it (`clustered_agg`), IN lists
        /// and LIKEs on one string column are evaluated once per run
        /// (`clustered_filter`).
        pub clustered_keys: bool, default = true
    }
}

impl datafusion::config::ConfigExtension for WeirSessionOptions {
    const PREFIX: &'static str = "weir";
}

#[derive(Clone)]
pub struct QueryEngine {
    catalog: WeirCatalogProvider,
    runtime: Arc<RuntimeEnv>,
    options: EngineOptions,
    postgres: Vec<Arc<postgres::PostgresCatalog>>,
    file_cache: Option<Arc<file_cache::FileCache>>,
    last_values: Arc<last_value::LastValueIndexes>,
    /// The hot tiers queries read (rows streaming writers have not
    /// committed); SQL inserts are published on the local one's feed.
    hot: HotTiers,
}

impl std::fmt::Debug for QueryEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryEngine")
            .field("options", &self.options)
            .finish()
    }
}

/// DataFusion reads the warehouse's Parquet files through the lakehouse's
/// own object store (the client Iceberg file IO uses), not one of its own.
// TODO(issue 7): register other buckets on first use (tables located outside
// the warehouse bucket are read by the Iceberg reader today).
fn register_warehouse_store(runtime: &RuntimeEnv, lakehouse: &Lakehouse) -> Result<()> {
    let (store, loc) = lakehouse.object_stores().resolve(lakehouse.warehouse())?;
    if loc.bucket.is_some() {
        let url = datafusion::execution::object_store::ObjectStoreUrl::parse(&loc.root)?;
        runtime.register_object_store(url.as_ref(), store);
    }
    Ok(())
}

impl QueryEngine {
    /// An engine over `lakehouse` whose queries also see the uncommitted
    /// rows of `hot` (this process's streaming writers, other processes'
    /// feeds).
    pub async fn new(lakehouse: Lakehouse, hot: HotTiers, options: EngineOptions) -> Result<Self> {
        let mut runtime = RuntimeEnvBuilder::new();
        if let Some(limit) = options.memory_limit {
            runtime = runtime.with_memory_pool(Arc::new(FairSpillPool::new(limit)));
        }
        let runtime = runtime.build_arc()?;
        register_warehouse_store(&runtime, &lakehouse)?;
        let postgres = options
            .postgres_catalogs
            .iter()
            .map(postgres::PostgresCatalog::new)
            .collect::<Result<Vec<_>>>()?;
        let file_cache = file_cache::FileCache::new(options.file_cache).map(Arc::new);
        let last_values = Arc::new(last_value::LastValueIndexes::new(options.last_value_memory));
        Ok(QueryEngine {
            last_values,
            catalog: WeirCatalogProvider::new(lakehouse, Arc::new(hot.clone())).await?,
            hot,
            runtime,
            options,
            postgres,
            file_cache,
        })
    }

    pub fn lakehouse(&self) -> &Lakehouse {
        self.catalog.lakehouse()
    }

    /// The hot tiers this engine's queries read.
    pub fn hot(&self) -> &HotTiers {
        &self.hot
    }

    /// The catalog name clients see (`weir`).
    pub fn catalog_name(&self) -> &'static str {
        CATALOG_NAME
    }

    /// Every catalog clients see: `weir`, then the attached databases.
    pub fn catalog_names(&self) -> Vec<String> {
        std::iter::once(CATALOG_NAME.to_string())
            .chain(self.postgres.iter().map(|p| p.name().to_string()))
            .collect()
    }

    /// A fresh session: `weir` catalog, `public` default schema,
    /// `information_schema`, time-travel functions.
    pub fn new_context(&self) -> SessionContext {
        let weir_options = WeirSessionOptions {
            mv_rewrite: self.options.mv_rewrite,
            file_cache: true,
            last_value_index: true,
            clustered_keys: true,
        };
        let mut config = SessionConfig::new()
            .with_option_extension(weir_options)
            .with_information_schema(true)
            .with_create_default_catalog_and_schema(false)
            .with_default_catalog_and_schema(CATALOG_NAME, DEFAULT_NAMESPACE);
        if let Some(n) = self.options.target_partitions {
            config = config.with_target_partitions(n);
        }
        if let Some(cache) = &self.file_cache {
            config = config.with_extension(cache.clone());
        }
        // Where INSERTs tell this process's evaluators about their rows.
        config = config.with_extension(self.hot.local().clone());
        scan_defaults(&mut config);
        let ctx = if self.postgres.is_empty() {
            let state = datafusion::execution::session_state::SessionStateBuilder::new()
                .with_config(config)
                .with_runtime_env(self.runtime.clone())
                .with_default_features()
                .with_query_planner(Arc::new(WeirQueryPlanner))
                .with_physical_optimizer_rule(Arc::new(clustered_agg::ClusteredKeysRule))
                .build();
            SessionContext::new_with_state(state)
        } else {
            postgres::federated_context(config, self.runtime.clone())
        };
        ctx.register_catalog(CATALOG_NAME, Arc::new(self.catalog.clone()));
        for pg in &self.postgres {
            ctx.register_catalog(
                pg.name(),
                Arc::new(postgres::PostgresCatalogProvider(pg.clone())),
            );
        }
        functions::register(&ctx, self.lakehouse());
        last_value::register(&ctx, self.lakehouse(), &self.hot, &self.last_values);
        ctx
    }

    /// Follows this process's commits until `stop` turns true: the
    /// last-value indexes of the tables committed to are brought up to
    /// date right after each commit (several commits close together are
    /// followed once), so that the first query after a commit does not
    /// pay for it. Commits of other processes are still folded in by the
    /// query that first sees them.
    pub async fn follow_commits(&self, mut stop: tokio::sync::watch::Receiver<bool>) {
        use tokio::sync::broadcast::error::{RecvError, TryRecvError};
        let mut commits = self.hot.local().subscribe_commits();
        loop {
            let first = tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                c = commits.recv() => c,
            };
            let mut tables: Vec<Arc<str>> = Vec::new();
            let mut lagged = false;
            match first {
                Ok(t) => tables.push(t),
                Err(RecvError::Lagged(_)) => lagged = true,
                Err(RecvError::Closed) => return,
            }
            loop {
                match commits.try_recv() {
                    Ok(t) => tables.push(t),
                    Err(TryRecvError::Lagged(_)) => lagged = true,
                    Err(_) => break,
                }
            }
            if lagged {
                tables = last_value::kept_tables(&self.last_values);
            }
            tables.sort();
            tables.dedup();
            let session = self.new_context().state();
            last_value::follow_commits(
                &self.last_values,
                self.lakehouse(),
                &self.hot,
                &tables,
                &session,
            )
            .await;
        }
    }

    /// `REFRESH MATERIALIZED VIEW name` outside a client session (schedules),
    /// on one core: the scheduler runs one job at a time so that maintenance
    /// never takes more than one core from ingest and queries, and
    /// compaction's merge is one stream already. A refresh's aggregation on
    /// every core held the dashboard query and ingest back 8–21 s in the
    /// 45-minute soak (`benches/summaries/2026-12-05-soak-2.md`). A client's
    /// `REFRESH MATERIALIZED VIEW` runs with its session's settings.
    pub async fn refresh_materialized_view(&self, name: &str) -> Result<mv::RefreshReport> {
        self.refresh().await?;
        let ctx = self.new_context();
        ctx.state_ref()
            .write()
            .config_mut()
            .options_mut()
            .execution
            .target_partitions = 1;
        mv::refresh(self.lakehouse(), &ctx, name).await
    }

    /// Every table's name and metadata location as of the last `refresh`:
    /// equal states mean no table was committed to, created or dropped in
    /// between (each commit writes a new metadata file).
    pub fn catalog_state(&self) -> CatalogState {
        CatalogState(self.catalog.listing())
    }

    /// Re-reads table names from the catalog (tables created by other processes).
    pub async fn refresh(&self) -> Result<()> {
        for pg in &self.postgres {
            pg.refresh().await;
        }
        self.catalog.refresh().await
    }

    /// Parses and runs one SQL statement (see [`QueryEngine::execute`]).
    pub async fn sql(&self, ctx: &SessionContext, sql: &str) -> Result<DataFrame> {
        let statement = WeirStatement::parse(ctx, sql)?;
        self.execute(ctx, &statement).await
    }

    /// Runs a parsed statement. DDL and writes (INSERT, CTAS, COPY,
    /// REFRESH) take effect now and yield their one-row `count` result;
    /// queries are returned unexecuted.
    pub async fn execute(
        &self,
        ctx: &SessionContext,
        statement: &WeirStatement,
    ) -> Result<DataFrame> {
        let planned = self.plan(ctx, statement).await?;
        if planned.writes {
            run_write(ctx, planned.frame).await
        } else {
            Ok(planned.frame)
        }
    }

    /// Plans a parsed statement. DDL (and CTAS, and REFRESH) runs now; a
    /// write (INSERT, COPY …) comes back unexecuted with `writes` set, so
    /// that prepared statements can bind parameters to it first — callers
    /// must run it at once ([`run_write`]) whether or not a client reads it.
    pub async fn plan(&self, ctx: &SessionContext, statement: &WeirStatement) -> Result<Planned> {
        self.plan_bound(ctx, statement, None).await
    }

    /// [`QueryEngine::plan`] with parameter values bound into the logical
    /// plan before anything runs: DDL runs while it is planned, so a
    /// prepared `CREATE TABLE … AS SELECT … WHERE x < $1` needs its values
    /// here, not on the resulting frame.
    pub async fn plan_bound(
        &self,
        ctx: &SessionContext,
        statement: &WeirStatement,
        params: Option<ParamValues>,
    ) -> Result<Planned> {
        let classified = statement.access();
        let (statement, partition, column_types, overwrite_filter) = match &statement.parsed {
            statement::Parsed::View(view) => return self.run_view(ctx, view).await,
            statement::Parsed::Alert(alert) => return self.run_alert(ctx, alert).await,
            statement::Parsed::Alter(alter) => return self.run_alter(ctx, alter).await,
            statement::Parsed::Merge(merge) => return self.run_merge(ctx, merge).await,
            statement::Parsed::Sql {
                statement,
                partition,
                column_types,
                overwrite_filter,
            } => (
                statement.as_ref().clone(),
                partition,
                column_types,
                overwrite_filter,
            ),
        };
        self.refresh().await?;
        if let Some(frame) = views::show_create(ctx, self.lakehouse(), &statement).await? {
            return Ok(Planned::query(frame));
        }
        if let Some((ident, job)) = explain_merge(ctx, &statement)? {
            let weir = dml::explain(ctx, self.lakehouse(), &ident, &job).await?;
            return Ok(Planned::query(explain_frame(ctx, None, weir)?));
        }
        let view = views::create_view_text(ctx, &statement)?;
        let plan = plan_statement(ctx, statement).await?;
        let plan = match params {
            Some(values) => plan.with_param_values(values)?,
            None => plan,
        };
        let extras = !partition.is_empty() || !column_types.is_empty();
        if extras && !matches!(&plan, LogicalPlan::Ddl(DdlStatement::CreateMemoryTable(_))) {
            return Err(QueryError::Invalid(
                "PARTITIONED BY is only valid in CREATE TABLE".into(),
            ));
        }
        if let Some(filter) = overwrite_filter {
            let LogicalPlan::Dml(dml) = plan else {
                return Err(QueryError::Internal(
                    "INSERT OVERWRITE … PARTITION did not plan as an insert".into(),
                ));
            };
            let rows = self.overwrite_partition(ctx, dml, filter).await?;
            return Ok(Planned::done(count_done(ctx, rows)?));
        }
        let ddl_extras = planning::DdlExtras {
            partition,
            column_types,
            view: view.as_ref(),
        };
        self.run_plan(ctx, plan, ddl_extras, classified).await
    }

    /// `INSERT OVERWRITE t PARTITION (filter) query`: the query's rows must
    /// all satisfy `filter`; the table's rows matching it are deleted and
    /// the new rows added in one snapshot (copy-on-write or merge-on-read by
    /// `write.delete.mode`).
    async fn overwrite_partition(
        &self,
        ctx: &SessionContext,
        dml: datafusion::logical_expr::DmlStatement,
        filter: &str,
    ) -> Result<u64> {
        let ident = iceberg_ident(ctx, &dml.table_name, "INSERT OVERWRITE")?;
        let schema = datafusion::common::DFSchema::try_from(dml.target.schema().as_ref().clone())?;
        let predicate = ctx.parse_sql_expr(filter, &schema)?;
        let rows = ctx.execute_logical_plan(dml.input.as_ref().clone()).await?;
        let outside = rows
            .clone()
            .filter(predicate.clone().is_not_true())?
            .count()
            .await?;
        if outside > 0 {
            return Err(QueryError::Invalid(format!(
                "INSERT OVERWRITE … PARTITION ({filter}): {outside} of the new rows are outside it"
            )));
        }
        let batches = rows.collect().await?;
        let count: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
        let job = dml::Job::RowLevel(dml::RowLevel {
            table: dml.table_name.clone(),
            predicate: Some(predicate),
            change: dml::Change::Delete,
            append: batches,
        });
        let outcome = dml::execute(ctx, self.lakehouse(), &ident, &job).await;
        self.refresh().await?;
        outcome?;
        Ok(count)
    }

    /// DataFusion's logical plan of a parsed statement, without running
    /// anything (prepared statements learn their kind, schema and
    /// parameters from it); None for Weir's own statements (materialized
    /// views), which plan only when they run.
    pub async fn logical_plan(
        &self,
        ctx: &SessionContext,
        statement: &WeirStatement,
    ) -> Result<Option<LogicalPlan>> {
        match &statement.parsed {
            statement::Parsed::View(_)
            | statement::Parsed::Alter(_)
            | statement::Parsed::Alert(_)
            | statement::Parsed::Merge(_) => Ok(None),
            statement::Parsed::Sql { statement, .. } => {
                // SHOW CREATE TABLE is answered from the catalog, not by
                // DataFusion's `information_schema.views` query.
                if let Some(frame) = views::show_create(ctx, self.lakehouse(), statement).await? {
                    return Ok(Some(frame.into_unoptimized_plan()));
                }
                Ok(Some(plan_statement(ctx, statement.as_ref().clone()).await?))
            }
        }
    }

    /// A query's logical plan (from `ctx`'s SQL planner) as the DataFrame
    /// `sql` would return for it: rewritten to materialized views when they
    /// answer it. For callers that planned the SQL already (Flight SQL
    /// prepared statements), so it is not parsed and planned twice.
    pub async fn query_frame(&self, ctx: &SessionContext, plan: LogicalPlan) -> Result<DataFrame> {
        let plan = if mv_rewrite_enabled(ctx) {
            mv_rewrite::rewrite(ctx, plan).await?
        } else {
            plan
        };
        Ok(ctx.execute_logical_plan(plan).await?)
    }
}

/// DataFusion's logical plan of a parsed statement. A CREATE TABLE is
/// planned with a time zone (UTC unless the session set one): DataFusion
/// types `TIMESTAMP WITH TIME ZONE` with the session's zone, and without one
/// the column would silently become a timestamp without zone.
pub(crate) async fn plan_statement(
    ctx: &SessionContext,
    statement: datafusion::sql::parser::Statement,
) -> Result<LogicalPlan> {
    let mut state = ctx.state();
    let creates = matches!(
        &statement,
        datafusion::sql::parser::Statement::Statement(s)
            if matches!(s.as_ref(), datafusion::sql::sqlparser::ast::Statement::CreateTable(_))
    );
    if creates && state.config_options().execution.time_zone.is_none() {
        state.config_mut().options_mut().execution.time_zone = Some("+00:00".into());
    }
    Ok(state.statement_to_plan(statement).await?)
}

/// A planned statement: see [`QueryEngine::plan`].
pub struct Planned {
    pub frame: DataFrame,
    /// The frame changes data when it runs (run it with [`run_write`]).
    pub writes: bool,
}

impl Planned {
    fn query(frame: DataFrame) -> Self {
        Planned {
            frame,
            writes: false,
        }
    }

    fn write(frame: DataFrame) -> Self {
        Planned {
            frame,
            writes: true,
        }
    }

    /// Already done (DDL, CTAS): `frame` holds its result.
    fn done(frame: DataFrame) -> Self {
        Planned::query(frame)
    }
}

/// Runs a write now; the result is its one-row `count`, ready to be read
/// (or not) by the client.
pub async fn run_write(ctx: &SessionContext, frame: DataFrame) -> Result<DataFrame> {
    use arrow::array::{Array, RecordBatch, UInt64Array};
    let batches = frame.collect().await?;
    let mut count = 0u64;
    for batch in &batches {
        if let Some(column) = batch.column_by_name("count")
            && let Some(values) = column.as_any().downcast_ref::<UInt64Array>()
        {
            count += values.iter().flatten().sum::<u64>();
        }
    }
    let batch = RecordBatch::try_new(
        count_schema(),
        vec![Arc::new(UInt64Array::from(vec![count])) as Arc<dyn Array>],
    )
    .map_err(datafusion::error::DataFusionError::from)?;
    Ok(ctx.read_batch(batch)?)
}

fn mv_rewrite_enabled(ctx: &SessionContext) -> bool {
    ctx.state()
        .config_options()
        .extensions
        .get::<WeirSessionOptions>()
        .is_none_or(|o| o.mv_rewrite)
}

/// The result of a DDL statement: `count = 0`, so clients always get a schema.
fn ddl_done(ctx: &SessionContext) -> datafusion::error::Result<DataFrame> {
    count_done(ctx, 0)
}

/// A DELETE/UPDATE/TRUNCATE from its logical plan, with the table it
/// changes. Type coercion (the analyzer) applied, not the optimizer: see
/// dml.rs.
fn row_level_job(
    ctx: &SessionContext,
    dml: datafusion::logical_expr::DmlStatement,
) -> Result<(iceberg::TableIdent, dml::Job)> {
    let state = ctx.state();
    let analyzed = state.analyzer().execute_and_check(
        LogicalPlan::Dml(dml),
        state.config_options(),
        |_, _| {},
    )?;
    let LogicalPlan::Dml(dml) = analyzed else {
        return Err(QueryError::Internal(
            "the analyzer changed a DML plan".into(),
        ));
    };
    let Some(statement) = dml::RowLevel::from_plan(&dml)? else {
        return Err(QueryError::Internal(format!(
            "{} is not a row-level statement",
            dml.op
        )));
    };
    let ident = iceberg_ident(ctx, &statement.table, "DELETE/UPDATE/TRUNCATE")?;
    Ok((ident, dml::Job::RowLevel(statement)))
}

/// `EXPLAIN MERGE …` (DataFusion plans no MERGE, so no EXPLAIN of it
/// either): the MERGE and its table. EXPLAIN ANALYZE is not taken here.
fn explain_merge(
    ctx: &SessionContext,
    statement: &datafusion::sql::parser::Statement,
) -> Result<Option<(iceberg::TableIdent, dml::Job)>> {
    use datafusion::sql::parser::Statement as DfStatement;
    let DfStatement::Explain(explain) = statement else {
        return Ok(None);
    };
    let DfStatement::Statement(inner) = explain.statement.as_ref() else {
        return Ok(None);
    };
    let datafusion::sql::sqlparser::ast::Statement::Merge(merge) = inner.as_ref() else {
        return Ok(None);
    };
    if explain.analyze {
        return Err(QueryError::Unsupported(
            "EXPLAIN ANALYZE MERGE; EXPLAIN MERGE shows the plan".into(),
        ));
    }
    let lowercase = ctx
        .state()
        .config_options()
        .sql_parser
        .enable_ident_normalization;
    let merge = merge::Merge::from_ast(merge, lowercase)?;
    let ident = iceberg_ident(ctx, &merge.target, "MERGE")?;
    Ok(Some((ident, dml::Job::Merge(merge))))
}

/// EXPLAIN's answer (`plan_type`, `plan`) for statements Weir runs itself.
fn explain_frame(ctx: &SessionContext, logical: Option<String>, weir: String) -> Result<DataFrame> {
    use arrow::array::{RecordBatch, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    let mut types = Vec::new();
    let mut plans = Vec::new();
    if let Some(l) = logical {
        types.push("logical_plan".to_string());
        plans.push(l);
    }
    types.push("weir_plan".to_string());
    plans.push(weir);
    let schema = Arc::new(Schema::new(vec![
        Field::new("plan_type", DataType::Utf8, false),
        Field::new("plan", DataType::Utf8, false),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(types)),
            Arc::new(StringArray::from(plans)),
        ],
    )
    .map_err(datafusion::error::DataFusionError::from)?;
    Ok(ctx.read_batch(batch)?)
}

/// The Iceberg table a row-level statement changes: `table` resolved in
/// the session's default catalog and schema; only Weir's catalog.
fn iceberg_ident(
    ctx: &SessionContext,
    table: &datafusion::common::TableReference,
    what: &str,
) -> Result<iceberg::TableIdent> {
    let resolved = {
        let state = ctx.state();
        let defaults = &state.config_options().catalog;
        table
            .clone()
            .resolve(&defaults.default_catalog, &defaults.default_schema)
    };
    if resolved.catalog.as_ref() != CATALOG_NAME {
        return Err(QueryError::Unsupported(format!(
            "{what} on catalog {}: only Iceberg tables (catalog {CATALOG_NAME}) can be changed",
            resolved.catalog
        )));
    }
    Ok(iceberg::TableIdent::new(
        iceberg::NamespaceIdent::new(resolved.schema.to_string()),
        resolved.table.to_string(),
    ))
}

/// The `count` result of a statement that already ran.
fn count_done(ctx: &SessionContext, rows: u64) -> datafusion::error::Result<DataFrame> {
    use arrow::array::{RecordBatch, UInt64Array};
    let batch = RecordBatch::try_new(
        count_schema(),
        vec![Arc::new(UInt64Array::from(vec![rows]))],
    )?;
    ctx.read_batch(batch)
}

/// `count: UInt64`, the result schema of DDL and writes.
fn count_schema() -> arrow::datatypes::SchemaRef {
    use arrow::datatypes::{DataType, Field, Schema};
    Arc::new(Schema::new(vec![Field::new(
        "count",
        DataType::UInt64,
        false,
    )]))
}

/// DataFusion's planner with Weir's extension nodes (`gapfill`); the
/// federated planner (`postgres::federation`) adds the same.
#[derive(Debug)]
struct WeirQueryPlanner;

#[async_trait::async_trait]
impl datafusion::execution::context::QueryPlanner for WeirQueryPlanner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session_state: &datafusion::execution::context::SessionState,
    ) -> datafusion::error::Result<Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
        use datafusion::physical_planner::PhysicalPlanner;
        datafusion::physical_planner::DefaultPhysicalPlanner::with_extension_planners(
            gapfill::extension_planners(),
        )
        .create_physical_plan(logical_plan, session_state)
        .await
    }
}

/// Weir's scan settings for every session that reads its tables.
pub(crate) fn scan_defaults(config: &mut SessionConfig) {
    // Plain Utf8 strings: what Iceberg stores and every Flight client reads.
    config.options_mut().sql_parser.map_string_types_to_utf8view = false;
    let parquet = &mut config.options_mut().execution.parquet;
    parquet.schema_force_view_types = false;
    // Filters are not evaluated while decoding (DataFusion's default): the
    // scan prunes row groups and pages with them and the filter above it
    // evaluates them once. With pushdown the row filter evaluated them a
    // second time (the filters stay Inexact: hot rows and the Iceberg reader
    // need the filter above), and the split IN lists that make "these 100
    // sensors" prunable (native_scan.rs) cost a hash lookup per list per
    // row: "100 tags x 1 day" 1,291 -> 825 ms, "hourly fleet avg" 5.0 ->
    // 4.2 s (benches/generic.py, 2,000 sensors). `SET
    // datafusion.execution.parquet.pushdown_filters = true` turns late
    // materialisation on for a session (selective filters on unsorted
    // columns of wide tables).
    parquet.pushdown_filters = false;
    parquet.reorder_filters = true;
}
