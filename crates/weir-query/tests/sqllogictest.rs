//! Runs every `tests/slt/*.slt` file of the repository against a fresh
//! embedded lakehouse (temporary directory, SQLite catalog), through the same
//! `QueryEngine::sql` entry point the Flight SQL server uses.

#![allow(clippy::unwrap_used)] // test helpers: a failure may panic

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, RecordBatch, UInt64Array};
use arrow::datatypes::DataType;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::prelude::SessionContext;
use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType};
use weir_catalog::{Lakehouse, LakehouseOptions, builtin_specs};
use weir_query::{EngineOptions, QueryEngine, QueryError};

struct WeirDb {
    engine: QueryEngine,
    ctx: SessionContext,
    /// Next source offset of `HOT INSERT` rows.
    hot_offset: i64,
    _dir: Arc<tempfile::TempDir>,
}

#[async_trait::async_trait]
impl AsyncDB for WeirDb {
    type Error = QueryError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, QueryError> {
        if let Some(n) = self.hot_statement(sql).await? {
            return Ok(DBOutput::StatementComplete(n));
        }
        let df = self.engine.sql(&self.ctx, sql).await?;
        let batches = df.collect().await?;
        Ok(to_output(&batches))
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "weir"
    }

    async fn sleep(dur: Duration) {
        tokio::time::sleep(dur).await
    }
}

impl WeirDb {
    /// Test-only statements for the hot tier (rows a streaming writer holds
    /// before its commit): `HOT INSERT INTO ns.t <query>` adds the query's
    /// rows (source `slt`, no committed watermark: all visible), `HOT CLEAR
    /// ns.t` drops them.
    async fn hot_statement(&mut self, sql: &str) -> Result<Option<u64>, QueryError> {
        let words: Vec<&str> = sql.split_whitespace().collect();
        match words.as_slice() {
            ["HOT", "INSERT", "INTO", table, ..] => {
                let at = sql.find(table).expect("table name") + table.len();
                let batches = self
                    .engine
                    .sql(&self.ctx, &sql[at..])
                    .await?
                    .collect()
                    .await?;
                let hot = self.engine.hot().local();
                let mut rows = 0;
                for batch in batches {
                    let n = batch.num_rows() as i64;
                    let offsets = (self.hot_offset..self.hot_offset + n).collect();
                    self.hot_offset += n;
                    rows += n as u64;
                    hot.push(
                        table,
                        Arc::new(weir_hot::HotChunk {
                            source: "slt".into(),
                            stream: "slt".into(),
                            partition: 0,
                            offsets,
                            batch,
                        }),
                    );
                }
                Ok(Some(rows))
            }
            ["HOT", "CLEAR", table] => {
                let hot = self.engine.hot().local();
                let rows = hot.rows(table) as u64;
                hot.drop_partition(table, "slt", "slt", 0);
                Ok(Some(rows))
            }
            _ => Ok(None),
        }
    }
}

/// DDL and DML answer a single UInt64 `count`; everything else is rows.
fn to_output(batches: &[RecordBatch]) -> DBOutput<DefaultColumnType> {
    if let Some(first) = batches.first() {
        let schema = first.schema();
        if schema.fields().len() == 1
            && schema.field(0).name() == "count"
            && schema.field(0).data_type() == &DataType::UInt64
        {
            let n = batches
                .iter()
                .filter_map(|b| b.column(0).as_any().downcast_ref::<UInt64Array>())
                .flat_map(|a| a.iter().flatten())
                .sum();
            return DBOutput::StatementComplete(n);
        }
    }
    let options = FormatOptions::default().with_null("NULL");
    let mut rows = Vec::new();
    let mut width = 0;
    for batch in batches {
        width = batch.num_columns();
        let formatters: Vec<_> = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).expect("formattable column"))
            .collect();
        for row in 0..batch.num_rows() {
            let cells: Vec<String> = formatters
                .iter()
                .zip(batch.columns())
                .map(|(f, c)| {
                    let s = stable_plan_text(&f.value(row).to_string());
                    if s.is_empty() && !c.is_null(row) {
                        "(empty)".into()
                    } else {
                        s
                    }
                })
                .collect();
            rows.extend(expand_lines(cells));
        }
    }
    DBOutput::Rows {
        types: vec![DefaultColumnType::Any; width],
        rows,
    }
}

/// File paths in plans hold temp dirs and UUIDs; keep only the counts.
fn stable_plan_text(text: &str) -> String {
    static FILE_GROUPS: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"file_groups=\{(\d+) groups?: [^}]*\}").unwrap()
    });
    FILE_GROUPS
        .replace_all(text, |c: &regex::Captures| {
            let files = c[0].matches(".parquet").count();
            format!("file_groups={{{} groups, {files} files}}", &c[1])
        })
        .into_owned()
}

/// A cell holding several lines (EXPLAIN plans) becomes several rows, one
/// line each, numbered like DataFusion's own sqllogictests.
fn expand_lines(cells: Vec<String>) -> Vec<Vec<String>> {
    if !cells.iter().any(|c| c.contains('\n')) {
        return vec![cells];
    }
    let mut rows = vec![
        cells
            .iter()
            .filter(|c| !c.contains('\n'))
            .cloned()
            .collect::<Vec<_>>(),
    ];
    for cell in cells.iter().filter(|c| c.contains('\n')) {
        for (i, line) in cell.lines().filter(|l| !l.trim().is_empty()).enumerate() {
            let indent = line.len() - line.trim_start().len();
            rows.push(vec![format!(
                "{:02}){}{}",
                i + 1,
                "-".repeat(indent),
                line.trim_start()
            )]);
        }
    }
    rows
}

async fn fresh_db() -> Result<WeirDb, QueryError> {
    let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
    let lakehouse = Lakehouse::open(&LakehouseOptions::embedded(dir.path().to_path_buf())).await?;
    lakehouse.ensure_tables(&builtin_specs()?).await?;
    let engine = QueryEngine::new(lakehouse, Default::default(), EngineOptions::default()).await?;
    let ctx = engine.new_context();
    Ok(WeirDb {
        engine,
        ctx,
        hot_offset: 0,
        _dir: dir,
    })
}

fn slt_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/slt");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/slt exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqllogictests() {
    let filter = std::env::var("SLT_FILTER").ok();
    let files = slt_files();
    assert!(!files.is_empty(), "no .slt files found");
    let mut failures = Vec::new();
    for file in files {
        // By file name: the checkout's path may contain the filter too.
        let name = file.file_name().map(|n| n.to_string_lossy().into_owned());
        if filter
            .as_ref()
            .is_some_and(|f| !name.as_deref().unwrap_or_default().contains(f.as_str()))
        {
            continue;
        }
        // One lakehouse per file: files are independent and order-free.
        let db = fresh_db().await.expect("lakehouse");
        let mut db = Some(db);
        let mut runner = sqllogictest::Runner::new(move || {
            let db = db.take();
            async move { db.map_or_else(second_connection_error, Ok) }
        });
        // SLT_COMPLETE=1 rewrites the expected results in place (review the diff).
        let result = if std::env::var_os("SLT_COMPLETE").is_some() {
            runner
                .update_test_file(
                    &file,
                    " ",
                    sqllogictest::default_validator,
                    sqllogictest::default_normalizer,
                    sqllogictest::default_column_validator,
                )
                .await
                .map_err(|e| e.to_string())
        } else {
            runner
                .run_file_async(&file)
                .await
                .map_err(|e| e.to_string())
        };
        if let Err(e) = result {
            failures.push(format!("{}:\n{e}", file.display()));
        }
    }
    assert!(
        failures.is_empty(),
        "sqllogictest failures:\n{}",
        failures.join("\n\n")
    );
}

fn second_connection_error() -> Result<WeirDb, QueryError> {
    Err(QueryError::Unsupported(
        "one connection per .slt file; `connection` records are not supported".into(),
    ))
}
