//! The index as a table (`last_cache`, the rewrite's scan) and its plan node.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::compute::{concat_batches, take_record_batch};
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableFunctionImpl, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use weir_catalog::Lakehouse;

use weir_hot::HotSource;

use crate::table::WeirTable;

use super::state::State;
use super::*;

/// The last row per series of a table (with its hot rows): what
/// `last_cache('t')` reads, and what the rewrite puts under aggregates.
pub(crate) struct LastValueTable {
    pub(super) table: WeirTable,
    pub(super) decl: Declaration,
    pub(super) indexes: Arc<LastValueIndexes>,
    /// Only one row per distinct combination of these columns is needed
    /// (a listing without filters: `SELECT DISTINCT device_id`).
    pub(super) distinct_on: Option<Vec<usize>>,
}

impl fmt::Debug for LastValueTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LastValueTable({:?})", self.table)
    }
}

#[async_trait]
impl TableProvider for LastValueTable {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn schema(&self) -> SchemaRef {
        TableProvider::schema(&self.table)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        session: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        _limit: Option<usize>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        let lookup = key_lookup(filters, &self.decl, &TableProvider::schema(&self.table));
        let (state, served) = self
            .indexes
            .state_for(
                &self.table,
                &self.decl,
                session,
                super::indexes::Trigger::Query,
            )
            .await?;
        let hot = state.hot_merge(self.table.hot_chunks())?;
        let schema = match projection {
            Some(p) => Arc::new(state.schema.project(p)?),
            None => state.schema.clone(),
        };
        Ok(Arc::new(LastValueExec {
            table: self.table.iceberg_table().identifier().to_string(),
            distinct_on: self.distinct_on.clone(),
            lookup,
            state,
            served,
            hot,
            projection: projection.cloned(),
            properties: Arc::new(PlanProperties::new(
                EquivalenceProperties::new(schema.clone()),
                Partitioning::UnknownPartitioning(1),
                EmissionType::Incremental,
                Boundedness::Bounded,
            )),
            schema,
        }))
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DFResult<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }
}

/// Reads the index rows, with the hot rows merged in.
#[derive(Debug)]
pub struct LastValueExec {
    table: String,
    distinct_on: Option<Vec<usize>>,
    /// A key column and the values the query's filters allow.
    lookup: Option<(usize, Vec<ScalarValue>)>,
    state: Arc<State>,
    served: Served,
    hot: Arc<HotMerge>,
    projection: Option<Vec<usize>>,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
}

impl DisplayAs for LastValueExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hot = self.hot.rows;
        write!(
            f,
            "LastValueIndexExec: table={}, keys=[{}], time={}, series={}, hot rows={hot}",
            self.table,
            self.state.decl.keys.join(", "),
            self.state.decl.time,
            self.state.batch.num_rows(),
        )?;
        if let Some(cols) = &self.distinct_on {
            let names: Vec<&str> = cols
                .iter()
                .map(|&i| self.state.schema.field(i).name().as_str())
                .collect();
            write!(f, ", one row per distinct [{}]", names.join(", "))?;
        }
        if let Some((col, values)) = &self.lookup {
            write!(
                f,
                ", lookup {} in {} value{}",
                self.state.schema.field(*col).name(),
                values.len(),
                if values.len() == 1 { "" } else { "s" }
            )?;
        }
        write!(f, " ({})", self.served)
    }
}

impl ExecutionPlan for LastValueExec {
    fn name(&self) -> &str {
        "LastValueIndexExec"
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        if children.is_empty() {
            Ok(self)
        } else {
            Err(DataFusionError::Internal(
                "LastValueIndexExec has no children".into(),
            ))
        }
    }

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> DFResult<SendableRecordBatchStream> {
        if partition != 0 {
            return Err(DataFusionError::Internal(format!(
                "LastValueIndexExec has one partition, got {partition}"
            )));
        }
        let merged = match &self.distinct_on {
            // Every distinct value is in the representatives or the hot
            // rows' last rows; the aggregate above removes duplicates.
            Some(cols) => {
                let rows = self.state.representatives(cols)?;
                let reps = take_record_batch(&self.state.batch, &rows)?;
                concat_batches(&self.state.schema, [&reps, &self.hot.winners])?
            }
            None => {
                let only = match &self.lookup {
                    Some((col, values)) => self.state.lookup(*col, values)?,
                    None => None,
                };
                self.state.merged(&self.hot, only.as_ref())?
            }
        };
        let batch = match &self.projection {
            Some(p) => merged.project(p)?,
            None => merged,
        };
        let n = batch.num_rows();
        let slices: Vec<DFResult<RecordBatch>> = (0..n.div_ceil(BATCH_ROWS))
            .map(|i| {
                let at = i * BATCH_ROWS;
                Ok(batch.slice(at, BATCH_ROWS.min(n - at)))
            })
            .collect();
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            futures::stream::iter(slices),
        )))
    }
}

/// `last_cache('ns.table')`: the last row per series of a table with a
/// declared index.
#[derive(Debug)]
pub(crate) struct LastCacheFunction {
    pub lakehouse: Lakehouse,
    /// The engine's hot tiers (hot rows first, then the table).
    pub hot: Arc<dyn HotSource>,
    pub indexes: Arc<LastValueIndexes>,
}

impl TableFunctionImpl for LastCacheFunction {
    fn call(&self, args: &[Expr]) -> DFResult<Arc<dyn TableProvider>> {
        let [Expr::Literal(ScalarValue::Utf8(Some(name)), _)] = args else {
            return Err(DataFusionError::Plan(
                "last_cache('ns.table') takes one table name".into(),
            ));
        };
        let table = load_with_hot(&self.lakehouse, self.hot.as_ref(), name)?;
        let decl = Declaration::of(&table).ok_or_else(|| {
            DataFusionError::Plan(format!(
                "{name} has no last-value index: declare one with ALTER TABLE {name} SET TBLPROPERTIES \
                 ('{KEYS_PROPERTY}' = 'key, …', '{TIME_PROPERTY}' = 'ts')"
            ))
        })?;
        Ok(Arc::new(LastValueTable {
            table,
            decl,
            indexes: self.indexes.clone(),
            distinct_on: None,
        }))
    }
}

/// `name` (`t`, `ns.t` or `catalog.ns.t`) as a query sees it: its hot rows
/// taken first, then the table at its current snapshot (see
/// `weir_hot::tier`). Table functions are synchronous; this blocks the
/// (multi-threaded) runtime worker for the catalog read, as the time-travel
/// functions do.
pub(super) fn load_with_hot(
    lakehouse: &Lakehouse,
    hot: &dyn HotSource,
    name: &str,
) -> DFResult<WeirTable> {
    let handle = tokio::runtime::Handle::try_current()
        .map_err(|_| DataFusionError::Internal("last_cache needs a tokio runtime".into()))?;
    tokio::task::block_in_place(|| handle.block_on(load_with_hot_async(lakehouse, hot, name)))
}

/// [`load_with_hot`] from async code.
pub(super) async fn load_with_hot_async(
    lakehouse: &Lakehouse,
    hot: &dyn HotSource,
    name: &str,
) -> DFResult<WeirTable> {
    let parts: Vec<&str> = name.split('.').collect();
    let (ns, table) = match parts.as_slice() {
        [t] => (weir_catalog::DEFAULT_NAMESPACE, *t),
        [ns, t] | [_, ns, t] => (*ns, *t),
        _ => {
            return Err(DataFusionError::Plan(format!(
                "`{name}` is not a table name"
            )));
        }
    };
    let ident = iceberg::TableIdent::new(
        iceberg::NamespaceIdent::new(ns.to_string()),
        table.to_string(),
    );
    let hot = hot.chunks(&ident.to_string()).await;
    let loaded = lakehouse.load_table_cached(&ident).await.map_err(|e| {
        if e.kind() == iceberg::ErrorKind::TableNotFound {
            crate::error::to_df(crate::QueryError::NotFound(format!("table {name}")))
        } else {
            crate::error::to_df(e)
        }
    })?;
    let hot = hot.map_err(crate::error::to_df)?;
    Ok(WeirTable::try_new(lakehouse.clone(), loaded, None)?.with_hot(hot))
}
