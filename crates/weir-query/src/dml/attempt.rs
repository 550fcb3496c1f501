//! One try of a DELETE/UPDATE/TRUNCATE (see `dml.rs`): each data file that
//! may hold a matching row read with a per-row match flag, rewritten (or
//! given a position delete file) when a row matched, and all of it
//! committed in one snapshot.

use std::sync::Arc;

use arrow::array::{BooleanArray, RecordBatch};
use arrow::compute::{filter_record_batch, not};
use arrow::datatypes::SchemaRef;
use datafusion::common::Column;
use datafusion::logical_expr::{Expr, cast, col, lit, when};
use iceberg::TableIdent;

use super::{
    Change, FileChanges, FileRef, LostRace, MATCHED, Mode, Outcome, POSITION, RowLevel, Target,
    arrow_err, check_required, file_paths, simplified, summary,
};
use crate::error::{QueryError, Result};

/// One try of a DELETE/UPDATE/TRUNCATE: `Ok(Err(LostRace))` when another
/// writer rewrote a file this one was rewriting (plan again).
pub(super) async fn attempt_once(
    target: &Target,
    ident: &TableIdent,
    statement: &RowLevel,
) -> Result<std::result::Result<Outcome, LostRace>> {
    let Target { table, base, .. } = target;
    let predicate = match &statement.predicate {
        Some(p) => Some(simplified(base, p.clone())?),
        None => None,
    };
    let filters: Vec<Expr> = predicate.iter().cloned().collect();
    let matched = match &predicate {
        // NULL is not a match (SQL: the row is kept / not updated).
        Some(p) => p.clone().is_true(),
        None => lit(true),
    };
    let mut outcome = Outcome::default();
    // Written file by file: memory holds one file's rows, not every
    // rewritten file's.
    let mut changes = FileChanges::default();
    let paths = file_paths(base, &filters).await?;
    let rewrite = Rewrite {
        target,
        ident,
        statement,
        matched,
        schema: datafusion::catalog::TableProvider::schema(base),
        mode: Mode::of(table, &statement.change),
    };
    for file in paths {
        outcome.rows += rewrite.change_file(&file, &mut changes).await?;
    }
    if !statement.append.is_empty() {
        check_required(&rewrite.schema, &statement.append, ident)?;
        changes.write(table, &statement.append, ident).await?;
    }
    if changes.is_empty() {
        return Ok(Ok(outcome));
    }
    outcome.files_removed = changes.removed.len();
    outcome.files_added = changes.added.len();
    outcome.delete_files = changes.deletes.len();
    let operation = match statement.change {
        Change::Delete if !statement.append.is_empty() => "insert-overwrite",
        Change::Delete => "delete",
        Change::Update(_) => "update",
    };
    let properties = summary(operation, outcome.rows, rewrite.mode);
    Ok(changes
        .commit(target, ident, properties)
        .await?
        .map(|()| outcome))
}

/// What one attempt applies to each data file.
struct Rewrite<'a> {
    target: &'a Target,
    ident: &'a TableIdent,
    statement: &'a RowLevel,
    /// The predicate as a per-row flag (NULL is not a match).
    matched: Expr,
    /// The table's columns.
    schema: SchemaRef,
    mode: Mode,
}

impl Rewrite<'_> {
    /// Applies the statement to `file`, recording its changes in `changes`;
    /// the rows it matched (none: the file stays).
    async fn change_file(&self, file: &FileRef, changes: &mut FileChanges) -> Result<u64> {
        let Target {
            table, base, ctx, ..
        } = self.target;
        let one = file.table(base, "DML");
        let positional = file.positional(self.mode);
        let mut exprs = self.new_values()?;
        let mut frame = ctx.read_table(Arc::new(one))?;
        if positional.is_some() {
            frame = frame.window(vec![
                datafusion::functions_window::expr_fn::row_number().alias(POSITION),
            ])?;
            exprs.push(col(POSITION));
        }
        exprs.push(self.matched.clone().alias(MATCHED));
        let batches = frame.select(exprs)?.collect().await?;
        let rows = self.split_rows(batches, positional.is_some())?;
        if rows.hits == 0 {
            return Ok(0);
        }
        if matches!(self.statement.change, Change::Update(_)) {
            check_required(&self.schema, &rows.kept, self.ident)?;
        }
        changes
            .remove_rows(table, file, positional, &rows.positions, self.ident)
            .await?;
        if !rows.kept.is_empty() {
            changes.write(table, &rows.kept, self.ident).await?;
        }
        Ok(rows.hits)
    }

    /// Each column's value after the statement: an UPDATE's new value where
    /// the row matches, the current one otherwise.
    fn new_values(&self) -> Result<Vec<Expr>> {
        let mut exprs: Vec<Expr> = Vec::with_capacity(self.schema.fields().len() + 2);
        for field in self.schema.fields() {
            let name = field.name();
            let current = col(Column::new_unqualified(name.clone()));
            let value = match &self.statement.change {
                Change::Update(assignments) => assignments
                    .iter()
                    .find(|(c, _)| c == name)
                    .map(|(_, e)| {
                        when(
                            self.matched.clone(),
                            cast(e.clone(), field.data_type().clone()),
                        )
                        .otherwise(current.clone())
                    })
                    .transpose()?
                    .unwrap_or(current),
                Change::Delete => current,
            };
            exprs.push(value.alias(name));
        }
        Ok(exprs)
    }

    /// A file's rows as read (values, then the position when `positional`,
    /// then the match flag) split into what the statement keeps or writes
    /// and what it matched.
    fn split_rows(&self, batches: Vec<RecordBatch>, positional: bool) -> Result<FileRows> {
        let mut hits = 0u64;
        let mut kept = Vec::with_capacity(batches.len());
        let mut positions: Vec<i64> = Vec::new();
        for batch in batches {
            let flags = batch
                .column(batch.num_columns() - 1)
                .as_any()
                .downcast_ref::<BooleanArray>()
                .ok_or_else(|| QueryError::Internal("DML match flag is not boolean".into()))?
                .clone();
            hits += flags.true_count() as u64;
            let mut rows = batch.clone();
            rows.remove_column(rows.num_columns() - 1);
            if positional {
                // row_number() counts from 1; Iceberg positions from 0.
                let numbers = arrow::compute::cast(
                    rows.column(rows.num_columns() - 1),
                    &arrow::datatypes::DataType::Int64,
                )
                .map_err(arrow_err)?;
                let numbers = numbers
                    .as_any()
                    .downcast_ref::<arrow::array::Int64Array>()
                    .ok_or_else(|| QueryError::Internal("row numbers are not Int64".into()))?;
                positions.extend(
                    (0..rows.num_rows())
                        .filter(|&i| arrow::array::Array::is_valid(&flags, i) && flags.value(i))
                        .map(|i| numbers.value(i) - 1),
                );
                rows.remove_column(rows.num_columns() - 1);
                // Only the changed rows are written again (UPDATE).
                rows = filter_record_batch(&rows, &flags).map_err(arrow_err)?;
                if matches!(self.statement.change, Change::Delete) {
                    continue;
                }
            } else {
                rows = match self.statement.change {
                    Change::Delete => filter_record_batch(&rows, &not(&flags).map_err(arrow_err)?)
                        .map_err(arrow_err)?,
                    Change::Update(_) => rows,
                };
            }
            if rows.num_rows() > 0 {
                kept.push(rows);
            }
        }
        Ok(FileRows {
            hits,
            kept,
            positions,
        })
    }
}

/// What a statement does to one file's rows.
struct FileRows {
    /// Rows the predicate matched.
    hits: u64,
    /// Rows written again: copy-on-write, the file's rows after the change;
    /// merge-on-read, the updated rows only.
    kept: Vec<RecordBatch>,
    /// Merge-on-read: positions (from 0) of the matched rows.
    positions: Vec<i64>,
}
