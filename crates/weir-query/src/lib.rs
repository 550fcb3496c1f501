//! Weir's query engine: a DataFusion session over the Iceberg catalog.
//!
//! `QueryEngine::sql` is the single entry point used by the Flight SQL server
//! and the sqllogictest runner: DDL runs against the Iceberg catalog at once,
//! queries and `INSERT` come back as unexecuted DataFrames.

mod catalog;
mod ddl;
mod error;
pub mod file_cache;
mod functions;
mod ingest;
pub mod mv;
mod mv_incremental;
mod mv_rewrite;
mod native_scan;
pub mod postgres;
mod table;

use std::sync::Arc;

use datafusion::dataframe::DataFrame;
use datafusion::datasource::provider_as_source;
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{DdlStatement, LogicalPlan, LogicalPlanBuilder, Statement};
use datafusion::prelude::{SessionConfig, SessionContext};
use weir_catalog::{CATALOG_NAME, DEFAULT_NAMESPACE, Lakehouse};

pub use catalog::WeirCatalogProvider;
pub use error::{QueryError, Result};
pub use ingest::{INGEST_ALLOWED_PROPERTY, IfExists, IfMissing, IngestTarget, PIPELINE_SCHEMAS};
pub use postgres::PostgresCatalogSpec;
pub use table::{WeirInsertExec, WeirScanExec, WeirTable};

use crate::ddl::DdlOutcome;
use crate::functions::{TimeTravel, TimeTravelFunction};

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
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            memory_limit: None,
            target_partitions: None,
            mv_rewrite: true,
            postgres_catalogs: Vec::new(),
            file_cache: file_cache::FileCacheOptions::default(),
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
    pub async fn new(lakehouse: Lakehouse, options: EngineOptions) -> Result<Self> {
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
        Ok(QueryEngine {
            catalog: WeirCatalogProvider::new(lakehouse).await?,
            runtime,
            options,
            postgres,
            file_cache,
        })
    }

    pub fn lakehouse(&self) -> &Lakehouse {
        self.catalog.lakehouse()
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
        // Plain Utf8 strings: what Iceberg stores and every Flight client reads.
        config.options_mut().sql_parser.map_string_types_to_utf8view = false;
        config
            .options_mut()
            .execution
            .parquet
            .schema_force_view_types = false;
        let ctx = if self.postgres.is_empty() {
            SessionContext::new_with_config_rt(config, self.runtime.clone())
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
        for (name, kind) in TimeTravel::ALL {
            ctx.register_udtf(
                name,
                Arc::new(TimeTravelFunction {
                    kind,
                    lakehouse: self.lakehouse().clone(),
                }),
            );
        }
        ctx
    }

    /// `REFRESH MATERIALIZED VIEW name` outside a client session (schedules).
    pub async fn refresh_materialized_view(&self, name: &str) -> Result<mv::RefreshReport> {
        self.refresh().await?;
        let ctx = self.new_context();
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

    /// Plans one SQL statement. DDL is executed now and yields a one-row
    /// `count` result; queries and DML are returned unexecuted.
    pub async fn sql(&self, ctx: &SessionContext, sql: &str) -> Result<DataFrame> {
        let sql = sql.trim().trim_end_matches(';');
        if let Some(statement) = mv::parse(sql)? {
            self.refresh().await?;
            let outcome = mv::execute(self.lakehouse(), ctx, statement).await;
            self.refresh().await?;
            outcome?;
            return Ok(ddl_done(ctx)?);
        }
        let (sql, partition) = ddl::split_partition_clause(sql)?;
        self.refresh().await?;
        let plan = ctx.state().create_logical_plan(&sql).await?;
        if !partition.is_empty()
            && !matches!(&plan, LogicalPlan::Ddl(DdlStatement::CreateMemoryTable(_)))
        {
            return Err(QueryError::Invalid(
                "PARTITIONED BY is only valid in CREATE TABLE".into(),
            ));
        }
        match plan {
            LogicalPlan::Ddl(ddl) => {
                let outcome = ddl::execute_ddl(self.lakehouse(), &ddl, &partition).await;
                self.refresh().await?;
                match outcome? {
                    DdlOutcome::Done => Ok(ddl_done(ctx)?),
                    DdlOutcome::InsertInto { table, input } => {
                        // CREATE TABLE ... AS SELECT: the table exists now; fill it.
                        let target = provider_as_source(ctx.table_provider(table.clone()).await?);
                        let insert = LogicalPlanBuilder::insert_into(
                            input.as_ref().clone(),
                            table,
                            target,
                            InsertOp::Append,
                        )?
                        .build()?;
                        Ok(ctx.execute_logical_plan(insert).await?)
                    }
                }
            }
            LogicalPlan::Statement(Statement::Prepare(_)) => Err(QueryError::Unsupported(
                "SQL PREPARE; use Flight SQL prepared statements".into(),
            )),
            plan => self.query_frame(ctx, plan).await,
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

fn mv_rewrite_enabled(ctx: &SessionContext) -> bool {
    ctx.state()
        .config_options()
        .extensions
        .get::<WeirSessionOptions>()
        .is_none_or(|o| o.mv_rewrite)
}

/// The result of a DDL statement: `count = 0`, so clients always get a schema.
fn ddl_done(ctx: &SessionContext) -> datafusion::error::Result<DataFrame> {
    use arrow::array::{RecordBatch, UInt64Array};
    use arrow::datatypes::{DataType, Field, Schema};
    let schema = Arc::new(Schema::new(vec![Field::new(
        "count",
        DataType::UInt64,
        false,
    )]));
    let batch = RecordBatch::try_new(schema, vec![Arc::new(UInt64Array::from(vec![0u64]))])?;
    ctx.read_batch(batch)
}
