//! `MERGE INTO target USING source ON … WHEN [NOT] MATCHED [BY SOURCE] …`
//! by copy-on-write (issue 20), on the same lease, retry loop and replace
//! commit as DELETE/UPDATE (`dml.rs`).
//!
//! DataFusion 53 plans no MERGE, so Weir runs it as joins of its own:
//! - the source is read once per attempt and held in memory;
//! - each data file of the target that may hold a matching row is read in
//!   its row order, numbered, left-joined to the source on the `ON`
//!   condition, and every row gets the first `WHEN MATCHED` (or, without a
//!   match, `WHEN NOT MATCHED BY SOURCE`) clause whose condition holds; the
//!   file is rewritten (updated values, deleted rows dropped, row order
//!   kept) when any row's clause changes it, and stays otherwise;
//! - source rows without a match (`source LEFT ANTI JOIN target`, over the
//!   same snapshot) get the first `WHEN NOT MATCHED` clause that holds and
//!   are written as new files;
//! - all of it is one snapshot (`overwrite`, or `append` when only rows were
//!   inserted).
//!
//! A target row matched by more than one source row is an error when a
//! `WHEN MATCHED` clause exists (SQL's cardinality rule, as in Spark and
//! Trino): which source row's values would win is undefined.

use std::sync::Arc;

use arrow::array::RecordBatch;
use datafusion::common::{Column, DFSchema, JoinType, TableReference};
use datafusion::datasource::MemTable;
use datafusion::logical_expr::{Expr, cast, col, lit, when};
use datafusion::prelude::{DataFrame, SessionContext};
use datafusion::sql::sqlparser::ast::{
    self as ast, AssignmentTarget, MergeAction, MergeClauseKind, MergeInsertKind, TableFactor,
};
use iceberg::TableIdent;

use crate::error::{QueryError, Result};

mod attempt;
pub(crate) use attempt::merge_once;

/// Helper columns while the joins run.
const ROW: &str = "__weir_merge_row";
const SOURCE_PRESENT: &str = "__weir_merge_source";
const ACTION: &str = "__weir_merge_action";

/// A MERGE statement, taken from sqlparser's AST when it is parsed.
#[derive(Debug, Clone)]
pub(crate) struct Merge {
    /// The target table as written.
    pub target: TableReference,
    /// What the statement calls the target (its alias, else its name).
    target_alias: String,
    /// `SELECT * FROM <source>` (a table or a subquery, with its alias).
    source_sql: String,
    source_alias: String,
    on: String,
    clauses: Vec<Clause>,
}

#[derive(Debug, Clone)]
struct Clause {
    kind: Kind,
    /// `WHEN … AND <condition>`.
    condition: Option<String>,
    action: Action,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Matched,
    NotMatched,
    NotMatchedBySource,
}

#[derive(Debug, Clone)]
enum Action {
    /// Column (by name) ← expression.
    Update(Vec<(String, String)>),
    Delete,
    /// Column names (empty: all, in table order) and their values.
    Insert(Vec<String>, Vec<String>),
}

fn unsupported(what: &str) -> QueryError {
    QueryError::Unsupported(format!("MERGE with {what}"))
}

/// An identifier as the planner will see it (unquoted names lower-cased
/// when the session normalizes identifiers).
fn normalized(ident: &ast::Ident, lowercase: bool) -> String {
    if ident.quote_style.is_none() && lowercase {
        ident.value.to_lowercase()
    } else {
        ident.value.clone()
    }
}

fn column_name(name: &ast::ObjectName, lowercase: bool) -> Result<String> {
    // `SET t.v = …` names the target's column with its qualifier.
    let last = name
        .0
        .last()
        .and_then(|p| p.as_ident())
        .ok_or_else(|| QueryError::Invalid(format!("not a column name: {name}")))?;
    Ok(normalized(last, lowercase))
}

/// What the statement calls its source: its alias, else a table's name (a
/// subquery needs an alias).
fn source_alias(source: &TableFactor, lowercase: bool) -> Result<String> {
    Ok(match source {
        TableFactor::Table { alias: Some(a), .. } | TableFactor::Derived { alias: Some(a), .. } => {
            normalized(&a.name, lowercase)
        }
        TableFactor::Table {
            name, alias: None, ..
        } => TableReference::parse_str(&name.to_string())
            .table()
            .to_string(),
        TableFactor::Derived { alias: None, .. } => {
            return Err(QueryError::Invalid(
                "MERGE … USING (subquery) needs an alias: USING (SELECT …) AS s".into(),
            ));
        }
        other => return Err(unsupported(&format!("the source {other}"))),
    })
}

impl Clause {
    /// One `WHEN … THEN …` clause of sqlparser's AST; an error when its
    /// action does not fit its kind.
    fn from_ast(clause: &ast::MergeClause, lowercase: bool) -> Result<Self> {
        let kind = match clause.clause_kind {
            MergeClauseKind::Matched => Kind::Matched,
            MergeClauseKind::NotMatched | MergeClauseKind::NotMatchedByTarget => Kind::NotMatched,
            MergeClauseKind::NotMatchedBySource => Kind::NotMatchedBySource,
        };
        let action = match &clause.action {
            MergeAction::Delete { .. } if kind != Kind::NotMatched => Action::Delete,
            MergeAction::Update(update) if kind != Kind::NotMatched => {
                Action::update_from_ast(update, lowercase)?
            }
            MergeAction::Insert(insert) if kind == Kind::NotMatched => {
                Action::insert_from_ast(insert, lowercase)?
            }
            other => {
                return Err(QueryError::Invalid(format!(
                    "WHEN {} THEN {other}: {}",
                    clause.clause_kind,
                    if kind == Kind::NotMatched {
                        "a source row without a target row can only be inserted"
                    } else {
                        "a target row can only be updated or deleted"
                    }
                )));
            }
        };
        Ok(Clause {
            kind,
            condition: clause.predicate.as_ref().map(|p| p.to_string()),
            action,
        })
    }
}

impl Action {
    /// `UPDATE SET column = value, …`.
    fn update_from_ast(update: &ast::MergeUpdateExpr, lowercase: bool) -> Result<Self> {
        if update.update_predicate.is_some() || update.delete_predicate.is_some() {
            return Err(unsupported("UPDATE … WHERE / DELETE WHERE (Oracle forms)"));
        }
        let mut assignments = Vec::with_capacity(update.assignments.len());
        for a in &update.assignments {
            let AssignmentTarget::ColumnName(name) = &a.target else {
                return Err(unsupported("tuple assignments"));
            };
            assignments.push((column_name(name, lowercase)?, a.value.to_string()));
        }
        Ok(Action::Update(assignments))
    }

    /// `INSERT [(columns)] VALUES (one row)`.
    fn insert_from_ast(insert: &ast::MergeInsertExpr, lowercase: bool) -> Result<Self> {
        if insert.insert_predicate.is_some() {
            return Err(unsupported("INSERT … WHERE"));
        }
        let MergeInsertKind::Values(values) = &insert.kind else {
            return Err(unsupported("INSERT ROW"));
        };
        let [row] = values.rows.as_slice() else {
            return Err(QueryError::Invalid(
                "MERGE … INSERT takes one row of VALUES".into(),
            ));
        };
        let columns = insert
            .columns
            .iter()
            .map(|c| column_name(c, lowercase))
            .collect::<Result<Vec<_>>>()?;
        if !columns.is_empty() && columns.len() != row.len() {
            return Err(QueryError::Invalid(format!(
                "MERGE … INSERT names {} columns but gives {} values",
                columns.len(),
                row.len()
            )));
        }
        Ok(Action::Insert(
            columns,
            row.iter().map(|e| e.to_string()).collect(),
        ))
    }
}

impl Merge {
    pub(crate) fn from_ast(merge: &ast::Merge, lowercase: bool) -> Result<Self> {
        if merge.output.is_some() {
            return Err(unsupported("an OUTPUT clause"));
        }
        let TableFactor::Table { name, alias, .. } = &merge.table else {
            return Err(QueryError::Invalid(format!(
                "MERGE INTO needs a table, not {}",
                merge.table
            )));
        };
        let target = TableReference::parse_str(&name.to_string());
        let target_alias = match alias {
            Some(a) => normalized(&a.name, lowercase),
            None => target.table().to_string(),
        };
        let source_alias = source_alias(&merge.source, lowercase)?;
        if source_alias == target_alias {
            return Err(QueryError::Invalid(format!(
                "MERGE: target and source are both called {target_alias}; give one an alias"
            )));
        }
        let clauses = merge
            .clauses
            .iter()
            .map(|clause| Clause::from_ast(clause, lowercase))
            .collect::<Result<Vec<_>>>()?;
        Ok(Merge {
            target,
            target_alias,
            source_sql: format!("SELECT * FROM {}", merge.source),
            source_alias,
            on: merge.on.to_string(),
            clauses,
        })
    }

    /// The statement's parts, one per line (EXPLAIN).
    pub(crate) fn describe(&self) -> String {
        let mut out = format!(
            "  target: {} AS {}\n  source: {}\n  on: {}\n",
            self.target,
            self.target_alias,
            self.source_sql.trim_start_matches("SELECT * FROM "),
            self.on
        );
        for clause in &self.clauses {
            let kind = match clause.kind {
                Kind::Matched => "MATCHED",
                Kind::NotMatched => "NOT MATCHED",
                Kind::NotMatchedBySource => "NOT MATCHED BY SOURCE",
            };
            let condition = clause
                .condition
                .as_ref()
                .map(|c| format!(" AND {c}"))
                .unwrap_or_default();
            let action = match &clause.action {
                Action::Delete => "DELETE".to_string(),
                Action::Update(a) => format!(
                    "UPDATE SET {}",
                    a.iter()
                        .map(|(c, e)| format!("{c} = {e}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                Action::Insert(columns, values) => format!(
                    "INSERT ({}) VALUES ({})",
                    columns.join(", "),
                    values.join(", ")
                ),
            };
            out.push_str(&format!("  when {kind}{condition}: {action}\n"));
        }
        out
    }

    fn has(&self, kind: Kind) -> bool {
        self.clauses.iter().any(|c| c.kind == kind)
    }
}

/// The `CASE` that numbers, per row, the first clause of `kind` whose
/// condition holds (1-based index into the clauses; 0: none).
fn action_case(
    ctx: &SessionContext,
    merge: &Merge,
    schema: &DFSchema,
    applies: &[(Kind, Expr)],
) -> Result<Expr> {
    let mut branches: Option<datafusion::logical_expr::conditional_expressions::CaseBuilder> = None;
    for (i, clause) in merge.clauses.iter().enumerate() {
        let Some((_, base)) = applies.iter().find(|(k, _)| *k == clause.kind) else {
            continue;
        };
        let condition = match &clause.condition {
            Some(c) => base.clone().and(ctx.parse_sql_expr(c, schema)?.is_true()),
            None => base.clone(),
        };
        let index = lit(i as i32 + 1);
        branches = Some(match branches {
            None => when(condition, index),
            Some(mut b) => b.when(condition, index),
        });
    }
    Ok(match branches {
        Some(mut b) => b.otherwise(lit(0i32))?,
        None => lit(0i32),
    })
}

/// Each target column's value after the UPDATE clauses: `CASE action WHEN
/// <clause> THEN <its assignment> … ELSE <the target's value> END`.
fn updated_columns(
    ctx: &SessionContext,
    merge: &Merge,
    schema: &arrow::datatypes::Schema,
    joined_schema: &datafusion::common::DFSchema,
    target_col: &(dyn Fn(&str) -> Expr + Sync),
) -> Result<Vec<Expr>> {
    let mut exprs = Vec::with_capacity(schema.fields().len() + 2);
    for field in schema.fields() {
        let name = field.name();
        let mut values = Vec::new();
        for (i, clause) in merge.clauses.iter().enumerate() {
            let Action::Update(assignments) = &clause.action else {
                continue;
            };
            let Some((_, e)) = assignments.iter().find(|(c, _)| c == name) else {
                continue;
            };
            let e = cast(
                ctx.parse_sql_expr(e, joined_schema)?,
                field.data_type().clone(),
            );
            values.push((i, e));
        }
        exprs.push(by_clause(values, target_col(name))?.alias(name));
    }
    Ok(exprs)
}

/// `CASE WHEN action = <clause i + 1> THEN <value> … ELSE <otherwise> END`
/// over `(clause index, value)` pairs; `otherwise` alone without any.
fn by_clause(values: Vec<(usize, Expr)>, otherwise: Expr) -> Result<Expr> {
    let mut case: Option<datafusion::logical_expr::conditional_expressions::CaseBuilder> = None;
    for (i, e) in values {
        let test = col(ACTION).eq(lit(i as i32 + 1));
        case = Some(match case {
            None => when(test, e),
            Some(mut b) => b.when(test, e),
        });
    }
    Ok(match case {
        Some(mut b) => b.otherwise(otherwise)?,
        None => otherwise,
    })
}

/// The rows the NOT MATCHED clauses insert: source rows without a target
/// row, with the values of the first clause that takes them.
async fn unmatched_rows(
    ctx: &SessionContext,
    one_ctx: &SessionContext,
    merge: &Merge,
    base: &crate::table::WeirTable,
    schema: &arrow::datatypes::Schema,
    ident: &TableIdent,
    source: &(dyn Fn() -> Result<DataFrame> + Sync),
) -> Result<Vec<RecordBatch>> {
    let target_all = one_ctx
        .read_table(Arc::new(base.restricted(None, false, "MERGE".into())))?
        .alias(&merge.target_alias)?;
    let joined_schema = source()?.schema().join(target_all.schema())?;
    let on = ctx.parse_sql_expr(&merge.on, &joined_schema)?;
    let unmatched = source()?.join_on(target_all, JoinType::LeftAnti, [on])?;
    let source_schema = unmatched.schema().clone();
    let action = action_case(ctx, merge, &source_schema, &[(Kind::NotMatched, lit(true))])?;
    let unmatched = unmatched.with_column(ACTION, action)?;
    let mut exprs = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        let name = field.name();
        let mut inserted = Vec::new();
        for (i, clause) in merge.clauses.iter().enumerate() {
            let Action::Insert(columns, values) = &clause.action else {
                continue;
            };
            let position = if columns.is_empty() {
                let index = schema
                    .index_of(name)
                    .map_err(|e| QueryError::Internal(e.to_string()))?;
                if values.len() != schema.fields().len() {
                    return Err(QueryError::Invalid(format!(
                        "MERGE … INSERT VALUES gives {} values; {} has {} columns (or name them)",
                        values.len(),
                        ident,
                        schema.fields().len()
                    )));
                }
                Some(index)
            } else {
                columns.iter().position(|c| c == name)
            };
            let Some(position) = position else { continue };
            let e = cast(
                ctx.parse_sql_expr(&values[position], &source_schema)?,
                field.data_type().clone(),
            );
            inserted.push((i, e));
        }
        let null = cast(
            lit(datafusion::scalar::ScalarValue::Null),
            field.data_type().clone(),
        );
        exprs.push(by_clause(inserted, null)?.alias(name));
    }
    Ok(unmatched
        .filter(col(ACTION).not_eq(lit(0i32)))?
        .select(exprs)?
        .collect()
        .await?)
}

/// Filters on the target that only files which may match a source row pass:
/// for each `target.a = source.b` of the ON condition, `a` between the
/// least and greatest `b` of the source (a day's corrections rewrite that
/// day's files, not the table's).
async fn source_ranges(
    ctx: &SessionContext,
    one_ctx: &SessionContext,
    merge: &Merge,
    base: &crate::table::WeirTable,
    source_table: &Arc<MemTable>,
) -> Result<Vec<Expr>> {
    use datafusion::functions_aggregate::expr_fn::{max, min};
    use datafusion::logical_expr::{BinaryExpr, Operator, utils::split_conjunction};
    let target = one_ctx
        .read_table(Arc::new(base.restricted(None, false, "MERGE".into())))?
        .alias(&merge.target_alias)?;
    let source = one_ctx
        .read_table(source_table.clone())?
        .alias(&merge.source_alias)?;
    let schema = target.schema().join(source.schema())?;
    let on = ctx.parse_sql_expr(&merge.on, &schema)?;
    let is = |c: &Column, alias: &str| c.relation.as_ref().is_some_and(|r| r.table() == alias);
    let mut filters = Vec::new();
    for conjunct in split_conjunction(&on) {
        let Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Eq,
            right,
        }) = conjunct
        else {
            continue;
        };
        let (Expr::Column(l), Expr::Column(r)) = (left.as_ref(), right.as_ref()) else {
            continue;
        };
        let (t, s) = if is(l, &merge.target_alias) && is(r, &merge.source_alias) {
            (l, r)
        } else if is(r, &merge.target_alias) && is(l, &merge.source_alias) {
            (r, l)
        } else {
            continue;
        };
        let Ok(field) = target.schema().field_with_unqualified_name(&t.name) else {
            continue;
        };
        let bounds = one_ctx
            .read_table(source_table.clone())?
            .aggregate(
                vec![],
                vec![
                    min(col(Column::new_unqualified(&s.name))),
                    max(col(Column::new_unqualified(&s.name))),
                ],
            )?
            .collect()
            .await?;
        let Some(batch) = bounds.first().filter(|b| b.num_rows() == 1) else {
            continue;
        };
        let low = datafusion::scalar::ScalarValue::try_from_array(batch.column(0), 0)?;
        let high = datafusion::scalar::ScalarValue::try_from_array(batch.column(1), 0)?;
        if low.is_null() || high.is_null() {
            continue;
        }
        let column = col(Column::new_unqualified(&t.name));
        let data_type = field.data_type().clone();
        filters.push(
            column
                .clone()
                .gt_eq(cast(lit(low), data_type.clone()))
                .and(column.lt_eq(cast(lit(high), data_type))),
        );
    }
    Ok(filters)
}
