//! `EXPLAIN ANALYZE` shows Weir's own work: the scan's manifest planning
//! (files listed, pruned, scanned, their bytes, the file cache, hot-tier
//! rows) and the insert's writes, next to DataFusion's Parquet metrics.
//! (The sqllogictest harness compares whole lines, and these lines hold
//! timings: the checks are here.)

#![allow(clippy::unwrap_used)] // test helpers: a failure may panic

use std::path::Path;
use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch};
use datafusion::physical_plan::{ExecutionPlan, collect};
use datafusion::prelude::SessionContext;
use weir_catalog::{Lakehouse, LakehouseOptions};
use weir_query::{EngineOptions, QueryEngine, WeirInsertExec, WeirScanExec};

struct Db {
    engine: QueryEngine,
    ctx: SessionContext,
    dir: tempfile::TempDir,
}

async fn db() -> Db {
    let dir = tempfile::tempdir().unwrap();
    let lakehouse = Lakehouse::open(&LakehouseOptions::embedded(dir.path().to_path_buf()))
        .await
        .unwrap();
    let engine = QueryEngine::new(lakehouse, Default::default(), EngineOptions::default())
        .await
        .unwrap();
    let ctx = engine.new_context();
    let db = Db { engine, ctx, dir };
    db.run("SET datafusion.execution.target_partitions = 1")
        .await;
    db.run(
        "CREATE TABLE public.m (ts TIMESTAMP NOT NULL, device_id VARCHAR NOT NULL, value DOUBLE) \
         PARTITIONED BY (day(ts))",
    )
    .await;
    // Three commits, one day each: three data files.
    for day in 1..=3 {
        db.run(&format!(
            "INSERT INTO public.m VALUES ('2026-05-0{day}T01:00:00', 'a', {day}.0), \
             ('2026-05-0{day}T02:00:00', 'b', {day}.5)"
        ))
        .await;
    }
    db
}

impl Db {
    async fn run(&self, sql: &str) -> Vec<RecordBatch> {
        self.engine
            .sql(&self.ctx, sql)
            .await
            .unwrap()
            .collect()
            .await
            .unwrap()
    }

    /// The physical plan of `sql`, executed (DataFusion's planning in the
    /// engine's session: `QueryEngine::sql` runs DML as it plans it).
    async fn executed(&self, sql: &str) -> Arc<dyn ExecutionPlan> {
        let plan = self
            .ctx
            .sql(sql)
            .await
            .unwrap()
            .create_physical_plan()
            .await
            .unwrap();
        collect(plan.clone(), self.ctx.task_ctx()).await.unwrap();
        plan
    }

    /// The `plan` column of `EXPLAIN ANALYZE sql`.
    async fn explain_analyze(&self, sql: &str) -> String {
        let batches = self.run(&format!("EXPLAIN ANALYZE {sql}")).await;
        let mut out = String::new();
        for batch in &batches {
            let plans = batch.column(1).as_string::<i32>();
            for i in 0..batch.num_rows() {
                out.push_str(plans.value(i));
                out.push('\n');
            }
        }
        out
    }

    /// Sizes of the table's Parquet data files on disk, by path.
    fn data_file_sizes(&self, table: &str) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        walk(self.dir.path(), &mut |p: &Path| {
            let s = p.to_string_lossy();
            if s.ends_with(".parquet") && s.contains(&format!("/{table}/data/")) {
                out.push((s.into_owned(), std::fs::metadata(p).unwrap().len()));
            }
        });
        out.sort();
        out
    }
}

fn walk(dir: &Path, f: &mut dyn FnMut(&Path)) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            walk(&path, f);
        } else {
            f(&path);
        }
    }
}

/// The line of `plan` starting (after indentation) with `node`.
fn line<'a>(plan: &'a str, node: &str) -> &'a str {
    plan.lines()
        .find(|l| l.trim_start().starts_with(node))
        .unwrap_or_else(|| panic!("no {node} in\n{plan}"))
}

/// The nodes of type `T` in `plan`, depth first.
fn find<T: 'static>(plan: &Arc<dyn ExecutionPlan>, out: &mut Vec<Arc<dyn ExecutionPlan>>) {
    if plan.as_any().is::<T>() {
        out.push(plan.clone());
    }
    for child in plan.children() {
        find::<T>(child, out);
    }
}

fn metric(plan: &Arc<dyn ExecutionPlan>, name: &str) -> usize {
    plan.metrics()
        .unwrap_or_else(|| panic!("{} has no metrics", plan.name()))
        .sum_by_name(name)
        .unwrap_or_else(|| panic!("{} has no metric {name}", plan.name()))
        .as_usize()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_analyze_shows_manifest_pruning() {
    let db = db().await;
    // A one-day range: the day(ts) partition prunes two of three files.
    let sql = "SELECT sum(value) FROM public.m WHERE ts >= '2026-05-02T00:00:00' AND ts < '2026-05-03T00:00:00'";
    let plan = db.explain_analyze(sql).await;
    let scan = line(&plan, "WeirScan:");
    assert!(
        scan.contains("files_listed=3, files_pruned=2, files_scanned=1"),
        "{plan}"
    );
    assert!(scan.contains("output_rows=2"), "{plan}");
    assert!(scan.contains("planning_time="), "{plan}");
    assert!(
        !scan.contains("file_cache_hits"),
        "no file cache here: {plan}"
    );
    // DataFusion's Parquet metrics stay on the scan below, not on WeirScan.
    let parquet = line(&plan, "DataSourceExec:");
    assert!(
        parquet.contains("row_groups_pruned_statistics=")
            && parquet.contains("bytes_scanned=")
            && parquet.contains("output_rows=2"),
        "{plan}"
    );
    assert!(!scan.contains("row_groups_pruned"), "{plan}");

    // The same numbers from `ExecutionPlan::metrics`, bytes from the files.
    let executed = db.executed(sql).await;
    let mut scans = Vec::new();
    find::<WeirScanExec>(&executed, &mut scans);
    let [scan] = scans.as_slice() else {
        panic!("one WeirScanExec expected: {scans:?}")
    };
    assert_eq!(metric(scan, "files_listed"), 3);
    assert_eq!(metric(scan, "files_pruned"), 2);
    assert_eq!(metric(scan, "files_scanned"), 1);
    assert_eq!(scan.metrics().unwrap().output_rows(), Some(2));
    assert!(metric(scan, "planning_time") > 0);
    let sizes = db.data_file_sizes("m");
    assert_eq!(sizes.len(), 3, "{sizes:?}");
    let day2 = sizes
        .iter()
        .find(|(p, _)| p.contains("2026-05-02"))
        .unwrap_or_else(|| panic!("no day-2 file in {sizes:?}"));
    assert_eq!(metric(scan, "bytes_scanned") as u64, day2.1);

    // Without a filter every file is read.
    let executed = db.executed("SELECT max(value) FROM public.m").await;
    let mut scans = Vec::new();
    find::<WeirScanExec>(&executed, &mut scans);
    assert_eq!(metric(&scans[0], "files_listed"), 3);
    assert_eq!(metric(&scans[0], "files_pruned"), 0);
    assert_eq!(metric(&scans[0], "files_scanned"), 3);
    let total: u64 = sizes.iter().map(|(_, s)| s).sum();
    assert_eq!(metric(&scans[0], "bytes_scanned") as u64, total);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_analyze_shows_insert_writes() {
    let db = db().await;
    let before = db.data_file_sizes("m");
    // Two days: two data files.
    let sql = "INSERT INTO public.m VALUES ('2026-05-04T01:00:00', 'a', 1.0), \
               ('2026-05-04T02:00:00', 'b', 2.0), ('2026-05-05T01:00:00', 'c', 3.0)";
    let plan = db.explain_analyze(sql).await;
    let insert = line(&plan, "WeirInsert:");
    assert!(insert.contains("files_written=2, rows_written=3"), "{plan}");
    assert!(insert.contains("commit_time="), "{plan}");
    assert!(!insert.contains("commit_time=NOT RECORDED"), "{plan}");

    let executed = db
        .executed("INSERT INTO public.m VALUES ('2026-05-06T01:00:00', 'd', 4.0)")
        .await;
    let mut inserts = Vec::new();
    find::<WeirInsertExec>(&executed, &mut inserts);
    let [insert] = inserts.as_slice() else {
        panic!("one WeirInsertExec expected: {inserts:?}")
    };
    assert_eq!(metric(insert, "rows_written"), 1);
    assert_eq!(metric(insert, "files_written"), 1);
    assert!(metric(insert, "commit_time") > 0);
    let after = db.data_file_sizes("m");
    let new: Vec<_> = after
        .iter()
        .filter(|f| !before.contains(f) && f.0.contains("2026-05-06"))
        .collect();
    assert_eq!(new.len(), 1, "{after:?}");
    assert_eq!(metric(insert, "bytes_written") as u64, new[0].1);

    // INSERT OVERWRITE replaces day 6: one file, one row.
    let plan = db
        .explain_analyze("INSERT OVERWRITE public.m VALUES ('2026-05-06T03:00:00', 'e', 5.0)")
        .await;
    let insert = line(&plan, "WeirInsert overwrite:");
    assert!(insert.contains("files_written=1, rows_written=1"), "{plan}");
    assert!(!insert.contains("commit_time=NOT RECORDED"), "{plan}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_analyze_shows_hot_rows() {
    let db = db().await;
    let batch = db
        .run("SELECT CAST('2026-05-09T01:00:00' AS TIMESTAMP) AS ts, 'h' AS device_id, 9.0 AS value UNION ALL SELECT CAST('2026-05-09T02:00:00' AS TIMESTAMP), 'h', 10.0")
        .await;
    let hot = db.engine.hot().local();
    let mut offset = 0;
    for batch in batch {
        let n = batch.num_rows() as i64;
        hot.push(
            "public.m",
            Arc::new(weir_hot::HotChunk {
                source: "test".into(),
                stream: "test".into(),
                partition: 0,
                offsets: (offset..offset + n).collect(),
                batch,
            }),
        );
        offset += n;
    }
    let plan = db
        .explain_analyze("SELECT sum(value) FROM public.m WHERE device_id = 'h'")
        .await;
    let hot_scan = line(&plan, "WeirHotScan:");
    assert!(hot_scan.contains("hot_rows=2"), "{plan}");
    let scan = line(&plan, "WeirScan:");
    assert!(
        scan.contains("files_listed=3, files_pruned=3, files_scanned=0"),
        "{plan}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_analyze_shows_file_cache_hits() {
    let db = db().await;
    // Materialized views keep their files in the file cache.
    db.run(
        "CREATE MATERIALIZED VIEW public.m_day AS \
         SELECT date_bin(INTERVAL '1 day', ts) AS day, device_id, count(*) AS n \
         FROM public.m GROUP BY 1, 2",
    )
    .await;
    let sql = "SELECT sum(n) FROM public.m_day";
    let first = db.explain_analyze(sql).await;
    let scan = line(&first, "WeirScan:");
    assert!(
        scan.contains("file_cache_hits=0, file_cache_misses=1"),
        "{first}"
    );
    let second = db.explain_analyze(sql).await;
    let scan = line(&second, "WeirScan:");
    assert!(
        scan.contains("file_cache_hits=1, file_cache_misses=0"),
        "{second}"
    );
    assert!(
        scan.contains("files_listed=1, files_pruned=0, files_scanned=1"),
        "{second}"
    );
}
