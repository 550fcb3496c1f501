//! The session wiring of datafusion-federation, with one fix.
//!
//! datafusion-federation 0.5.3 (the release for DataFusion 53) replaces each
//! federated subplan with a `FederatedPlanNode` that has no inputs and no
//! predicate barrier. DataFusion's `push_down_filter` then "pushes" a filter
//! above such a node into its (zero) inputs and the predicate is lost: a join
//! of `silver.points` with `pg.public.devices ... WHERE d.enabled` returned
//! the disabled devices too. Weir seals every federated node
//! ([`SealedFederatedNode`]: same plan, every column a push-down barrier) so a
//! filter stays above it and runs in DataFusion.
//!
//! The rule runs twice per optimizer pass. Early (where datafusion-federation
//! puts it, after subqueries become joins) it federates subplans that do work
//! in PostgreSQL (joins, aggregates, filters): DataFusion's later rewrites of
//! those would unparse to SQL PostgreSQL rejects (a projection between an
//! aggregate and a join becomes a derived table whose columns keep the inner
//! aliases). A bare table scan of a mixed plan (a PostgreSQL table joined to
//! an Iceberg one) is left to the late run, after DataFusion has pushed the
//! projection and filters into the scan, so PostgreSQL only sends the rows
//! and columns the join needs.
//! TODO: drop the wrapper once a datafusion-federation release for
//! DataFusion 53+ declares the barrier itself.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::common::DFSchemaRef;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::error::Result;
use datafusion::execution::context::{QueryPlanner, SessionState};
use datafusion::logical_expr::{
    Expr, Extension, LogicalPlan, UserDefinedLogicalNode, UserDefinedLogicalNodeCore,
};
use datafusion::optimizer::optimizer::Optimizer;
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_planner::{DefaultPhysicalPlanner, ExtensionPlanner, PhysicalPlanner};
use datafusion_federation::{FederatedPlanNode, FederatedPlanner, FederationOptimizerRule};

/// A federated subplan that no predicate is pushed into.
#[derive(PartialEq, Eq, Hash, PartialOrd)]
struct SealedFederatedNode {
    inner: FederatedPlanNode,
}

impl fmt::Debug for SealedFederatedNode {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        UserDefinedLogicalNodeCore::fmt_for_explain(self, f)
    }
}

impl UserDefinedLogicalNodeCore for SealedFederatedNode {
    fn name(&self) -> &str {
        // The name datafusion-federation checks to avoid federating twice.
        "Federated"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        Vec::new()
    }

    fn schema(&self) -> &DFSchemaRef {
        self.inner.plan.schema()
    }

    fn expressions(&self) -> Vec<Expr> {
        Vec::new()
    }

    fn prevent_predicate_push_down_columns(&self) -> HashSet<String> {
        self.inner
            .plan
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect()
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "Federated\n {}", self.inner.plan)
    }

    fn with_exprs_and_inputs(&self, _exprs: Vec<Expr>, _inputs: Vec<LogicalPlan>) -> Result<Self> {
        Ok(SealedFederatedNode {
            inner: FederatedPlanNode::new(self.inner.plan.clone(), self.inner.planner.clone()),
        })
    }
}

/// datafusion-federation's rule, with its output sealed.
#[derive(Debug, Default)]
struct SealedFederationRule {
    inner: FederationOptimizerRule,
    /// The early run: leaves bare scans for the late one.
    early: bool,
}

/// A plan that only reads (scan, alias, projection): nothing for PostgreSQL
/// to compute yet.
fn is_bare_scan(plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::TableScan(scan) => scan.filters.is_empty() && scan.fetch.is_none(),
        LogicalPlan::SubqueryAlias(_) | LogicalPlan::Projection(_) => {
            plan.inputs().into_iter().all(is_bare_scan)
        }
        _ => false,
    }
}

impl OptimizerRule for SealedFederationRule {
    fn name(&self) -> &str {
        if self.early {
            "weir_federation_early"
        } else {
            "weir_federation"
        }
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        // datafusion-federation would cut out a whole `INSERT INTO weir_table
        // SELECT … FROM pg.…` (its only scans are PostgreSQL's) and fail to
        // unparse the DML: federate the query under it instead, once
        // DataFusion has merged the projection the insert stacks on it (a
        // projection over a projection unparses to SQL PostgreSQL rejects).
        if matches!(plan, LogicalPlan::Dml(_) | LogicalPlan::Copy(_)) {
            if self.early {
                return Ok(Transformed::no(plan));
            }
            return plan.map_children(|input| self.rewrite(input, config));
        }
        let original = plan.clone();
        let federated = self.inner.rewrite(plan, config)?;
        if !federated.transformed {
            return Ok(federated);
        }
        let sealed = federated.data.transform_up(|node| {
            let LogicalPlan::Extension(Extension { node: ext }) = &node else {
                return Ok(Transformed::no(node));
            };
            match ext.as_any().downcast_ref::<FederatedPlanNode>() {
                Some(fed) if self.early && is_bare_scan(&fed.plan) => {
                    Ok(Transformed::yes(fed.plan.clone()))
                }
                Some(fed) => Ok(Transformed::yes(LogicalPlan::Extension(Extension {
                    node: Arc::new(SealedFederatedNode {
                        inner: FederatedPlanNode::new(fed.plan.clone(), fed.planner.clone()),
                    }),
                }))),
                None => Ok(Transformed::no(node)),
            }
        })?;
        Ok(if sealed.data == original {
            Transformed::no(original)
        } else {
            Transformed::yes(sealed.data)
        })
    }
}

/// Plans a [`SealedFederatedNode`] through its federation provider.
struct SealedFederatedPlanner;

#[async_trait]
impl ExtensionPlanner for SealedFederatedPlanner {
    async fn plan_extension(
        &self,
        _planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        _logical_inputs: &[&LogicalPlan],
        _physical_inputs: &[Arc<dyn ExecutionPlan>],
        session_state: &SessionState,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        match node.as_any().downcast_ref::<SealedFederatedNode>() {
            Some(sealed) => Ok(Some(
                sealed
                    .inner
                    .planner
                    .plan_federation(&sealed.inner, session_state)
                    .await?,
            )),
            None => Ok(None),
        }
    }
}

#[derive(Debug, Default)]
pub(super) struct WeirFederatedQueryPlanner;

#[async_trait]
impl QueryPlanner for WeirFederatedQueryPlanner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session_state: &SessionState,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let mut planners: Vec<Arc<dyn ExtensionPlanner + Send + Sync>> = vec![
            Arc::new(SealedFederatedPlanner),
            Arc::new(FederatedPlanner::new()),
        ];
        planners.extend(crate::gapfill::extension_planners());
        DefaultPhysicalPlanner::with_extension_planners(planners)
            .create_physical_plan(logical_plan, session_state)
            .await
    }
}

/// DataFusion's default rules with the federation rule early (after
/// `scalar_subquery_to_join`) and last.
pub(super) fn optimizer_rules() -> Vec<Arc<dyn OptimizerRule + Send + Sync>> {
    let mut rules = Optimizer::new().rules;
    let early = Arc::new(SealedFederationRule {
        early: true,
        ..Default::default()
    });
    match rules
        .iter()
        .position(|r| r.name() == "scalar_subquery_to_join")
    {
        Some(at) => rules.insert(at + 1, early),
        None => rules.insert(0, early),
    }
    rules.push(Arc::new(SealedFederationRule::default()));
    rules
}
