//! Declared tables are created once and evolve when a definition gains a
//! column: metadata-only schema evolution, no snapshot, no data file rewritten.
//! (That SQL reads the new column as null is tested in weir-query.)

use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use futures::TryStreamExt;
use weir_catalog::spec::TableSpec;
use weir_catalog::{AppendOptions, Lakehouse, LakehouseOptions, append_batches};

const V1: &str = r#"
namespace = "plant"
name = "things"
partition = ["bucket(4, id)"]
[[columns]]
name = "id"
type = "long"
required = true
[[columns]]
name = "name"
type = "string"
"#;

fn v2() -> String {
    format!("{V1}\n[[columns]]\nname = \"site\"\ntype = \"string\"\ndoc = \"added later\"\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_tables_are_created_once_then_evolve() {
    let dir = tempfile::tempdir().unwrap();
    let lakehouse = Lakehouse::open(&LakehouseOptions::embedded(dir.path().to_path_buf()))
        .await
        .unwrap();

    let v1 = TableSpec::from_toml(V1, "v1").unwrap();
    let report = lakehouse
        .ensure_tables(std::slice::from_ref(&v1))
        .await
        .unwrap();
    assert_eq!(report.created, vec!["plant.things"]);
    let again = lakehouse.ensure_tables(&[v1]).await.unwrap();
    assert_eq!(
        again.unchanged,
        vec!["plant.things"],
        "ensure must be idempotent"
    );

    let table = lakehouse.load_table("plant", "things").await.unwrap();
    let batch = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
        ])),
        vec![
            Arc::new(Int64Array::from(vec![1, 2, 3])),
            Arc::new(StringArray::from(vec!["a", "b", "c"])),
        ],
    )
    .unwrap();
    let outcome = append_batches(&lakehouse, &table, &[batch], AppendOptions::default())
        .await
        .unwrap();
    assert_eq!(outcome.rows, 3);
    let files_before = outcome.data_files;

    let v2 = TableSpec::from_toml(&v2(), "v2").unwrap();
    let report = lakehouse.ensure_tables(&[v2]).await.unwrap();
    assert_eq!(
        report.evolved,
        vec![("plant.things".to_string(), vec!["site".to_string()])]
    );

    let table = lakehouse.load_table("plant", "things").await.unwrap();
    let schema = table.metadata().current_schema();
    let site = schema.field_by_name("site").expect("site column added");
    assert!(!site.required);
    assert_eq!(site.doc.as_deref(), Some("added later"));
    assert_eq!(
        table.metadata().snapshots().count(),
        1,
        "evolution adds no snapshot"
    );

    let batches: Vec<RecordBatch> = table
        .scan()
        .select_all()
        .build()
        .unwrap()
        .to_arrow()
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    assert_eq!(rows, 3);
    let tasks: Vec<_> = table
        .scan()
        .build()
        .unwrap()
        .plan_files()
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(tasks.len(), files_before, "no data file rewritten");
}
