//! The steps of [`QueryEngine::plan_bound`] that run a statement while it
//! is planned: Weir's own statements (materialized views, alerts, ALTER
//! TABLE, MERGE), and DataFusion's plan by its kind (DDL and CTAS, `SET`,
//! COPY, row-level DML).

use datafusion::datasource::provider_as_source;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{
    DdlStatement, DmlStatement, Explain, LogicalPlan, LogicalPlanBuilder, SetVariable, Statement,
    WriteOp,
};
use datafusion::prelude::SessionContext;

use crate::ddl::{self, DdlOutcome};
use crate::error::{QueryError, Result};
use crate::statement::Access;
use crate::{
    Planned, QueryEngine, actor, alerts, alter, count_done, ddl_done, dml, explain_frame, export,
    iceberg_ident, merge, mv, row_level_job, run_write, settings,
};

/// What a DDL statement carries besides DataFusion's plan of it.
pub(crate) struct DdlExtras<'a> {
    /// `PARTITIONED BY` of a CREATE TABLE.
    pub partition: &'a [String],
    /// CREATE TABLE columns of types DataFusion's SQL planner has none
    /// for (MAP), planned as VARCHAR.
    pub column_types: &'a [(String, arrow::datatypes::DataType)],
    /// The definition a CREATE VIEW stores.
    pub view: Option<&'a weir_catalog::ViewDefinition>,
}

impl QueryEngine {
    /// `CREATE`/`REFRESH`/`DROP MATERIALIZED VIEW`, run now; table names
    /// re-read from the catalog before and after.
    pub(crate) async fn run_view(
        &self,
        ctx: &SessionContext,
        view: &mv::MvStatement,
    ) -> Result<Planned> {
        self.refresh().await?;
        let outcome = mv::execute(self.lakehouse(), ctx, view.clone()).await;
        self.refresh().await?;
        outcome?;
        Ok(Planned::done(ddl_done(ctx)?))
    }

    /// An alert statement, run now: its row count when it writes, else the
    /// DDL result.
    pub(crate) async fn run_alert(
        &self,
        ctx: &SessionContext,
        alert: &alerts::AlertStatement,
    ) -> Result<Planned> {
        self.refresh().await?;
        let outcome = alerts::execute(self.lakehouse(), ctx, alert, &actor(ctx)).await;
        self.refresh().await?;
        let rows = outcome?;
        Ok(Planned::done(if alert.is_write() {
            count_done(ctx, rows)?
        } else {
            ddl_done(ctx)?
        }))
    }

    /// `ALTER TABLE`, run now.
    pub(crate) async fn run_alter(
        &self,
        ctx: &SessionContext,
        alter: &alter::AlterTable,
    ) -> Result<Planned> {
        self.refresh().await?;
        let outcome = alter::execute(ctx, self.lakehouse(), alter).await;
        self.refresh().await?;
        outcome?;
        Ok(Planned::done(ddl_done(ctx)?))
    }

    /// `MERGE INTO`, run now: the rows it changed.
    pub(crate) async fn run_merge(
        &self,
        ctx: &SessionContext,
        merge: &merge::Merge,
    ) -> Result<Planned> {
        self.refresh().await?;
        let ident = iceberg_ident(ctx, &merge.target, "MERGE")?;
        let job = dml::Job::Merge(merge.clone());
        let outcome = dml::execute(ctx, self.lakehouse(), &ident, &job).await;
        self.refresh().await?;
        let outcome = outcome?;
        tracing::info!(table = %ident, rows = outcome.rows, files_removed = outcome.files_removed,
            files_added = outcome.files_added, attempts = outcome.attempts, "MERGE committed");
        Ok(Planned::done(count_done(ctx, outcome.rows)?))
    }

    /// Runs or returns DataFusion's plan of a statement by its kind: DDL
    /// (with `ddl_extras`), SET, COPY and row-level DML run now (or, for
    /// COPY and INSERT, come back as writes); queries come back unexecuted.
    pub(crate) async fn run_plan(
        &self,
        ctx: &SessionContext,
        plan: LogicalPlan,
        ddl_extras: DdlExtras<'_>,
        classified: Access,
    ) -> Result<Planned> {
        match plan {
            LogicalPlan::Ddl(ddl) => self.run_ddl(ctx, &ddl, ddl_extras).await,
            LogicalPlan::Statement(Statement::Prepare(_)) => Err(QueryError::Unsupported(
                "SQL PREPARE; use Flight SQL prepared statements".into(),
            )),
            LogicalPlan::Statement(Statement::SetVariable(set)) => {
                set_variable(ctx, set, classified).await
            }
            LogicalPlan::Copy(mut copy) => {
                copy.output_url = export::check_copy_target(
                    self.options.export_dir.as_deref(),
                    &copy.output_url,
                )?;
                Ok(Planned::write(
                    ctx.execute_logical_plan(LogicalPlan::Copy(copy)).await?,
                ))
            }
            LogicalPlan::Explain(explain)
                if matches!(explain.plan.as_ref(), LogicalPlan::Dml(d)
                if matches!(d.op, WriteOp::Delete | WriteOp::Update | WriteOp::Truncate)) =>
            {
                self.explain_row_level(ctx, &explain).await
            }
            LogicalPlan::Dml(dml)
                if matches!(
                    dml.op,
                    WriteOp::Delete | WriteOp::Update | WriteOp::Truncate
                ) =>
            {
                self.run_row_level(ctx, dml).await
            }
            LogicalPlan::Dml(dml) => Ok(Planned::write(
                ctx.execute_logical_plan(LogicalPlan::Dml(dml)).await?,
            )),
            plan => Ok(Planned::query(self.query_frame(ctx, plan).await?)),
        }
    }

    /// A DDL statement, run now; a CREATE TABLE … AS SELECT also fills its
    /// table ([`QueryEngine::fill_ctas`]).
    pub(crate) async fn run_ddl(
        &self,
        ctx: &SessionContext,
        ddl: &DdlStatement,
        extras: DdlExtras<'_>,
    ) -> Result<Planned> {
        let outcome = ddl::execute_ddl(
            self.lakehouse(),
            ddl,
            extras.partition,
            extras.column_types,
            extras.view,
        )
        .await;
        self.refresh().await?;
        match outcome? {
            DdlOutcome::Done => Ok(Planned::done(ddl_done(ctx)?)),
            DdlOutcome::InsertInto { table, input } => self.fill_ctas(ctx, table, &input).await,
        }
    }

    /// CREATE TABLE ... AS SELECT: the table exists now (marked pending);
    /// fill it, or drop it on failure.
    async fn fill_ctas(
        &self,
        ctx: &SessionContext,
        table: datafusion::common::TableReference,
        input: &LogicalPlan,
    ) -> Result<Planned> {
        let filled = async {
            let target = provider_as_source(ctx.table_provider(table.clone()).await?);
            let insert = LogicalPlanBuilder::insert_into(
                input.clone(),
                table.clone(),
                target,
                InsertOp::Append,
            )?
            .build()?;
            let frame = ctx.execute_logical_plan(insert).await?;
            run_write(ctx, frame).await
        }
        .await;
        let done = ddl::finish_ctas(self.lakehouse(), &table, filled.is_ok()).await;
        self.refresh().await?;
        let frame = filled?;
        done?;
        Ok(Planned::done(frame))
    }

    /// EXPLAIN of a DELETE/UPDATE/TRUNCATE: DataFusion's logical plan and
    /// how Weir runs it.
    pub(crate) async fn explain_row_level(
        &self,
        ctx: &SessionContext,
        explain: &Explain,
    ) -> Result<Planned> {
        let LogicalPlan::Dml(dml) = explain.plan.as_ref().clone() else {
            return Err(QueryError::Internal("EXPLAIN of DML lost its plan".into()));
        };
        let logical = format!("{}", explain.plan.display_indent());
        let (ident, job) = row_level_job(ctx, dml)?;
        let weir = dml::explain(ctx, self.lakehouse(), &ident, &job).await?;
        Ok(Planned::query(explain_frame(ctx, Some(logical), weir)?))
    }

    /// A DELETE/UPDATE/TRUNCATE, run now: the rows it changed.
    pub(crate) async fn run_row_level(
        &self,
        ctx: &SessionContext,
        dml: DmlStatement,
    ) -> Result<Planned> {
        let (ident, job) = row_level_job(ctx, dml)?;
        let outcome = dml::execute(ctx, self.lakehouse(), &ident, &job).await;
        self.refresh().await?;
        let outcome = outcome?;
        tracing::info!(table = %ident, rows = outcome.rows, files_removed = outcome.files_removed,
            files_added = outcome.files_added, attempts = outcome.attempts, "row-level DML committed");
        Ok(Planned::done(count_done(ctx, outcome.rows)?))
    }
}

/// `SET name = value`, checked against Weir's settings and the access the
/// statement was classified with when parsed.
pub(crate) async fn set_variable(
    ctx: &SessionContext,
    set: SetVariable,
    classified: Access,
) -> Result<Planned> {
    settings::check(&set.variable, &set.value)?;
    // The role check saw the name from the parse; the planner's
    // name must not need more.
    if settings::access(&set.variable) > classified {
        return Err(QueryError::Internal(format!(
            "SET {} was classified differently from its plan",
            set.variable
        )));
    }
    Ok(Planned::query(
        ctx.execute_logical_plan(LogicalPlan::Statement(Statement::SetVariable(set)))
            .await?,
    ))
}
