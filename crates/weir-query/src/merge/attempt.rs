//! One try of a MERGE (see `merge.rs` and `dml::attempt_once`): the source
//! read once, each target file that may match joined to it and rewritten
//! (or given a position delete file) when a clause changes a row, the
//! unmatched source rows inserted, all of it in one snapshot.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{Array, AsArray, BooleanArray, RecordBatch};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{DataType, Int32Type, Int64Type, SchemaRef};
use datafusion::common::{Column, JoinType, TableReference};
use datafusion::datasource::MemTable;
use datafusion::functions_window::expr_fn::row_number;
use datafusion::logical_expr::{Expr, col, lit};
use datafusion::prelude::{DataFrame, SessionContext};
use iceberg::TableIdent;

use super::{
    ACTION, Action, Kind, Merge, ROW, SOURCE_PRESENT, action_case, source_ranges, unmatched_rows,
    updated_columns,
};
use crate::dml::{self, FileChanges, FileRef, Outcome};
use crate::error::{QueryError, Result};

/// One try (see `dml::attempt_once`).
pub(crate) async fn merge_once(
    ctx: &SessionContext,
    target: &dml::Target,
    ident: &TableIdent,
    merge: &Merge,
) -> Result<std::result::Result<Outcome, dml::LostRace>> {
    let schema = datafusion::catalog::TableProvider::schema(&target.base);
    // The source, read once (in the caller's session: its options and
    // catalog) and held in memory for the per-file joins.
    let source_frame = ctx.sql(&merge.source_sql).await?;
    let source_schema = Arc::new(source_frame.schema().as_arrow().clone());
    let source_batches = source_frame.collect().await?;
    let source_rows: usize = source_batches.iter().map(|b| b.num_rows()).sum();
    let source_table = Arc::new(MemTable::try_new(source_schema, vec![source_batches])?);
    let run = MergeRun {
        ctx,
        target,
        ident,
        merge,
        schema,
        source_table,
        deletes: merge
            .clauses
            .iter()
            .enumerate()
            .filter(|(_, c)| matches!(c.action, Action::Delete))
            .map(|(i, _)| i as i32 + 1)
            .collect(),
        mode: dml::Mode::from_property(&target.table, "write.merge.mode"),
    };

    let mut outcome = Outcome::default();
    let mut changes = FileChanges::default();
    for file in run.target_files(source_rows).await? {
        outcome.rows += run.change_file(&file, &mut changes).await?;
    }
    outcome.files_removed = changes.removed.len();
    outcome.delete_files = changes.deletes.len();

    if merge.has(Kind::NotMatched) && source_rows > 0 {
        outcome.rows += run.insert_unmatched(&mut changes).await?;
    }
    outcome.files_added = changes.added.len();
    if changes.is_empty() {
        return Ok(Ok(outcome));
    }
    let properties = dml::summary("merge", outcome.rows, run.mode);
    Ok(changes
        .commit(target, ident, properties)
        .await?
        .map(|()| outcome))
}

/// What one MERGE attempt applies to each target file.
struct MergeRun<'a> {
    /// The caller's session (the source, the clauses' expressions).
    ctx: &'a SessionContext,
    target: &'a dml::Target,
    ident: &'a TableIdent,
    merge: &'a Merge,
    /// The target's columns.
    schema: SchemaRef,
    /// The source's rows, held in memory.
    source_table: Arc<MemTable>,
    /// The clause numbers (1-based) that delete.
    deletes: HashSet<i32>,
    mode: dml::Mode,
}

impl MergeRun<'_> {
    /// The source, with a `SOURCE_PRESENT` flag, under its alias.
    fn source(&self) -> Result<DataFrame> {
        Ok(self
            .target
            .ctx
            .read_table(self.source_table.clone())?
            .with_column(SOURCE_PRESENT, lit(true))?
            .alias(&self.merge.source_alias)?)
    }

    /// A target column, qualified by the target's alias.
    fn target_col(&self, name: &str) -> Expr {
        col(Column::new(
            Some(TableReference::bare(self.merge.target_alias.clone())),
            name,
        ))
    }

    /// The target's data files the clauses may change: all of them with a
    /// NOT MATCHED BY SOURCE clause, else those that may hold a row matching
    /// a source row (none without MATCHED clauses or source rows).
    async fn target_files(&self, source_rows: usize) -> Result<Vec<FileRef>> {
        let merge = self.merge;
        let base = &self.target.base;
        let rewrites = merge.has(Kind::Matched) || merge.has(Kind::NotMatchedBySource);
        if merge.has(Kind::NotMatchedBySource) {
            dml::file_paths(base, &[]).await
        } else if rewrites && source_rows > 0 {
            let filters =
                source_ranges(self.ctx, &self.target.ctx, merge, base, &self.source_table).await?;
            dml::file_paths(base, &filters).await
        } else {
            Ok(Vec::new())
        }
    }

    /// Joins `file` to the source and applies each row's clause, recording
    /// the file's changes in `changes`; the rows changed (none: the file
    /// stays).
    async fn change_file(&self, file: &FileRef, changes: &mut FileChanges) -> Result<u64> {
        let (ctx, merge) = (self.ctx, self.merge);
        let dml::Target {
            table,
            base,
            ctx: one_ctx,
            ..
        } = self.target;
        let path = file.path.clone();
        let numbered = one_ctx
            .read_table(Arc::new(file.table(base, "MERGE")))?
            .window(vec![row_number().alias(ROW)])?
            .alias(&merge.target_alias)?;
        let joined_schema = numbered.schema().join(self.source()?.schema())?;
        let on = ctx.parse_sql_expr(&merge.on, &joined_schema)?;
        let joined = numbered.join_on(self.source()?, JoinType::Left, [on])?;
        let source_present = col(Column::new(
            Some(TableReference::bare(merge.source_alias.clone())),
            SOURCE_PRESENT,
        ));
        let action = action_case(
            ctx,
            merge,
            &joined_schema,
            &[
                (Kind::Matched, source_present.clone().is_not_null()),
                (Kind::NotMatchedBySource, source_present.is_null()),
            ],
        )?;
        let joined = joined.with_column(ACTION, action)?;
        let target_col = |name: &str| self.target_col(name);
        let mut exprs = updated_columns(ctx, merge, &self.schema, &joined_schema, &target_col)?;
        exprs.push(col(ACTION));
        exprs.push(target_col(ROW).alias(ROW));
        let batches = joined
            .select(exprs)?
            .sort(vec![col(ROW).sort(true, false)])?
            .collect()
            .await?;
        let positional = file.positional(self.mode);
        let Some(change) = apply_actions(
            batches,
            &self.deletes,
            merge.has(Kind::Matched),
            positional.is_some(),
            &path,
        )?
        else {
            return Ok(0);
        };
        dml::check_required(&self.schema, &change.rows, self.ident)?;
        changes
            .remove_rows(table, file, positional, &change.positions, self.ident)
            .await?;
        if !change.rows.is_empty() {
            changes.write(table, &change.rows, self.ident).await?;
        }
        Ok(change.changed)
    }

    /// Writes the rows the NOT MATCHED clauses insert; how many.
    async fn insert_unmatched(&self, changes: &mut FileChanges) -> Result<u64> {
        let (schema, ident) = (&self.schema, self.ident);
        let source = || self.source();
        let inserted = unmatched_rows(
            self.ctx,
            &self.target.ctx,
            self.merge,
            &self.target.base,
            schema,
            ident,
            &source,
        )
        .await?;
        let count: u64 = inserted.iter().map(|b| b.num_rows() as u64).sum();
        if count > 0 {
            dml::check_required(schema, &inserted, ident)?;
            changes.write(&self.target.table, &inserted, ident).await?;
        }
        Ok(count)
    }
}

/// What the clauses do to one file.
struct FileChange {
    /// Copy-on-write: the file's new rows (in order). Merge-on-read: the
    /// updated rows only.
    rows: Vec<RecordBatch>,
    /// Merge-on-read: positions (0-based) of the rows updated or deleted.
    positions: Vec<i64>,
    /// Rows updated or deleted.
    changed: u64,
}

/// The rows of one joined file, sorted by their row number, with each row's
/// clause: `None` when no clause changes the file.
fn apply_actions(
    batches: Vec<RecordBatch>,
    deletes: &HashSet<i32>,
    has_matched: bool,
    positional: bool,
    path: &str,
) -> Result<Option<FileChange>> {
    let mut changed = 0u64;
    let mut positions = Vec::new();
    let mut previous: Option<i64> = None;
    let mut out = Vec::with_capacity(batches.len());
    for batch in batches {
        let n = batch.num_columns();
        let rows = arrow::compute::cast(batch.column(n - 1), &DataType::Int64)
            .map_err(|e| QueryError::from(datafusion::error::DataFusionError::from(e)))?;
        let rows = rows.as_primitive::<Int64Type>();
        let actions = batch
            .column(n - 2)
            .as_primitive_opt::<Int32Type>()
            .ok_or_else(|| QueryError::Internal("MERGE actions are not Int32".into()))?
            .clone();
        let mut keep = Vec::with_capacity(batch.num_rows());
        for i in 0..batch.num_rows() {
            let row = rows.value(i);
            let action = if actions.is_null(i) {
                0
            } else {
                actions.value(i)
            };
            let repeated = previous == Some(row);
            previous = Some(row);
            if repeated {
                // A second source row matched this target row.
                if has_matched {
                    return Err(QueryError::Invalid(format!(
                        "MERGE: a target row (row {row} of {path}) matches more than one source row; \
                         make the ON condition unique per target row"
                    )));
                }
                keep.push(false);
                continue;
            }
            if action != 0 {
                changed += 1;
                if positional {
                    // row_number() counts from 1.
                    positions.push(row - 1);
                }
            }
            let kept = !deletes.contains(&action);
            keep.push(if positional {
                kept && action != 0
            } else {
                kept
            });
        }
        let mut rows_only = filter_record_batch(&batch, &BooleanArray::from(keep))
            .map_err(|e| QueryError::from(datafusion::error::DataFusionError::from(e)))?;
        rows_only.remove_column(n - 1);
        rows_only.remove_column(n - 2);
        if rows_only.num_rows() > 0 {
            out.push(rows_only);
        }
    }
    Ok((changed > 0).then_some(FileChange {
        rows: out,
        positions,
        changed,
    }))
}
