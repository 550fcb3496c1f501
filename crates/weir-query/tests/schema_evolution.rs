//! A declared table gains a column: SQL reads old rows with the new column as
//! NULL (iceberg-rust scans with the snapshot's schema; Weir fills the gap),
//! and new rows carry it.

#![allow(clippy::unwrap_used)] // test helpers: a failure may panic

use arrow::array::RecordBatch;
use arrow::util::pretty::pretty_format_batches;
use weir_catalog::spec::TableSpec;
use weir_catalog::{Lakehouse, LakehouseOptions};
use weir_query::{EngineOptions, QueryEngine};

const V1: &str = "namespace = 'plant'\nname = 'things'\n[[columns]]\nname = 'id'\ntype = 'long'\nrequired = true\n";

async fn run(engine: &QueryEngine, sql: &str) -> String {
    let ctx = engine.new_context();
    let batches: Vec<RecordBatch> = engine
        .sql(&ctx, sql)
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    pretty_format_batches(&batches).unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn added_column_reads_as_null_for_old_rows() {
    let dir = tempfile::tempdir().unwrap();
    let lakehouse = Lakehouse::open(&LakehouseOptions::embedded(dir.path().to_path_buf()))
        .await
        .unwrap();
    lakehouse
        .ensure_tables(&[TableSpec::from_toml(V1, "v1").unwrap()])
        .await
        .unwrap();
    let engine = QueryEngine::new(
        lakehouse.clone(),
        Default::default(),
        EngineOptions::default(),
    )
    .await
    .unwrap();
    run(&engine, "INSERT INTO plant.things VALUES (1), (2)").await;

    let v2 = format!("{V1}[[columns]]\nname = 'site'\ntype = 'string'\n");
    let report = lakehouse
        .ensure_tables(&[TableSpec::from_toml(&v2, "v2").unwrap()])
        .await
        .unwrap();
    assert_eq!(report.evolved.len(), 1);

    let before = run(&engine, "SELECT id, site FROM plant.things ORDER BY id").await;
    assert_eq!(
        before.trim(),
        "+----+------+\n| id | site |\n+----+------+\n| 1  |      |\n| 2  |      |\n+----+------+"
    );
    let nulls = run(
        &engine,
        "SELECT count(*) AS n FROM plant.things WHERE site IS NULL",
    )
    .await;
    assert!(nulls.contains("| 2 |"), "{nulls}");

    run(&engine, "INSERT INTO plant.things VALUES (3, 'north')").await;
    let after = run(
        &engine,
        "SELECT id, site FROM plant.things WHERE site = 'north'",
    )
    .await;
    assert!(after.contains("| 3  | north |"), "{after}");
    let all = run(
        &engine,
        "SELECT count(*) AS n, count(site) AS with_site FROM plant.things",
    )
    .await;
    assert!(all.contains("| 3 | 1         |"), "{all}");
}
