//! Compaction in bounded memory: files already in the table's sort order
//! are merged as streams; a file out of order sends its group to the sort,
//! which spills to disk past its memory limit. Either way every row
//! survives once and the output is in the sort order.

#![allow(clippy::unwrap_used)] // test helpers: a failure may panic

use std::path::Path;
use std::sync::Arc;

use arrow::array::{Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use futures::TryStreamExt;
use weir_catalog::iceberg::spec::{
    NestedField, NullOrder, PrimitiveType, Schema as IcebergSchema, SortDirection, SortField,
    SortOrder, Transform, Type,
};
use weir_catalog::iceberg::table::Table;
use weir_catalog::iceberg::{NamespaceIdent, TableCreation, TableIdent};
use weir_catalog::{
    AppendOptions, Lakehouse, LakehouseOptions, append_batches, append_data_files,
    write_data_files_named,
};
use weir_maintain::{CompactOptions, compact_table};

async fn open(dir: &Path) -> Lakehouse {
    Lakehouse::open(&LakehouseOptions::embedded(dir.to_path_buf()))
        .await
        .unwrap()
}

async fn create(lakehouse: &Lakehouse, name: &str) -> (TableIdent, Table) {
    let schema = IcebergSchema::builder()
        .with_fields(vec![
            NestedField::required(1, "dev", Type::Primitive(PrimitiveType::String)).into(),
            NestedField::required(2, "ts", Type::Primitive(PrimitiveType::Long)).into(),
            NestedField::optional(3, "v", Type::Primitive(PrimitiveType::Double)).into(),
        ])
        .build()
        .unwrap();
    let field = |id| SortField {
        source_id: id,
        transform: Transform::Identity,
        direction: SortDirection::Ascending,
        null_order: NullOrder::First,
    };
    let order = SortOrder::builder()
        .with_order_id(1)
        .with_sort_field(field(1))
        .with_sort_field(field(2))
        .build(&schema)
        .unwrap();
    let ns = NamespaceIdent::new("public".into());
    let catalog = lakehouse.catalog();
    if !catalog.namespace_exists(&ns).await.unwrap() {
        catalog
            .create_namespace(&ns, Default::default())
            .await
            .unwrap();
    }
    let table = catalog
        .create_table(
            &ns,
            TableCreation::builder()
                .name(name.to_string())
                .schema(schema)
                .sort_order(order)
                .build(),
        )
        .await
        .unwrap();
    (TableIdent::new(ns, name.to_string()), table)
}

/// Rows `(dev, ts, v)` of file `k`: devices interleaved across files, so a
/// merged file differs from any concatenation of the inputs.
fn rows(k: i64) -> RecordBatch {
    rows_n(k, 3000)
}

fn rows_n(k: i64, n: i64) -> RecordBatch {
    let dev: Vec<String> = (0..n)
        .map(|i| format!("d{:03}", (i * 7 + k) % 50))
        .collect();
    let ts: Vec<i64> = (0..n).map(|i| i * 10 + k).collect();
    let v: Vec<f64> = (0..n).map(|i| (i + k * n) as f64).collect();
    RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("dev", DataType::Utf8, false),
            Field::new("ts", DataType::Int64, false),
            Field::new("v", DataType::Float64, true),
        ])),
        vec![
            Arc::new(StringArray::from(dev)),
            Arc::new(Int64Array::from(ts)),
            Arc::new(Float64Array::from(v)),
        ],
    )
    .unwrap()
}

/// All rows of the table in file order: (dev, ts, v).
async fn read_all(lakehouse: &Lakehouse, ident: &TableIdent) -> (usize, Vec<(String, i64, f64)>) {
    let table = lakehouse.catalog().load_table(ident).await.unwrap();
    let files = table
        .scan()
        .select_all()
        .build()
        .unwrap()
        .plan_files()
        .await
        .unwrap()
        .try_collect::<Vec<_>>()
        .await
        .unwrap()
        .len();
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
    let mut out = Vec::new();
    for b in batches {
        let dev = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
        let ts = b.column(1).as_any().downcast_ref::<Int64Array>().unwrap();
        let v = b.column(2).as_any().downcast_ref::<Float64Array>().unwrap();
        for i in 0..b.num_rows() {
            out.push((dev.value(i).to_string(), ts.value(i), v.value(i)));
        }
    }
    (files, out)
}

fn sorted_copy(rows: &[(String, i64, f64)]) -> Vec<(String, i64, f64)> {
    let mut s = rows.to_vec();
    s.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sorted_files_are_merged_as_streams() {
    let dir = tempfile::tempdir().unwrap();
    let lakehouse = open(dir.path()).await;
    let (ident, mut table) = create(&lakehouse, "merged").await;
    for k in 0..5 {
        // Appends write each file in the table's sort order.
        append_batches(&lakehouse, &table, &[rows(k)], AppendOptions::default())
            .await
            .unwrap();
        table = lakehouse.catalog().load_table(&ident).await.unwrap();
    }
    let (files_before, before) = read_all(&lakehouse, &ident).await;
    assert_eq!(files_before, 5);
    let report = compact_table(&lakehouse, &ident, &CompactOptions::default(), &|_| {})
        .await
        .unwrap();
    assert_eq!(
        (report.groups_committed, report.groups_merged),
        (1, 1),
        "{report:?}"
    );
    assert_eq!(report.rows, 15_000);
    let (files_after, after) = read_all(&lakehouse, &ident).await;
    assert_eq!(files_after, 1);
    // The one file is in (dev, ts) order and holds every row once.
    assert_eq!(after, sorted_copy(&after));
    assert_eq!(after, sorted_copy(&before));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_out_of_order_sends_the_group_to_the_sort() {
    let dir = tempfile::tempdir().unwrap();
    let lakehouse = open(dir.path()).await;
    let (ident, mut table) = create(&lakehouse, "unsorted").await;
    for k in 0..3 {
        append_batches(&lakehouse, &table, &[rows(k)], AppendOptions::default())
            .await
            .unwrap();
        table = lakehouse.catalog().load_table(&ident).await.unwrap();
    }
    // Another engine's file (or ingest's): rows as given (by ts, devices
    // interleaved).
    let foreign = write_data_files_named(&table, &[rows(9)], None, "")
        .await
        .unwrap();
    append_data_files(&lakehouse, &table, foreign, AppendOptions::default())
        .await
        .unwrap();
    let (_, before) = read_all(&lakehouse, &ident).await;
    let report = compact_table(&lakehouse, &ident, &CompactOptions::default(), &|_| {})
        .await
        .unwrap();
    assert_eq!(
        (
            report.groups_committed,
            report.groups_merged,
            report.groups_sorted
        ),
        (1, 0, 1),
        "{report:?}"
    );
    assert_eq!(report.bytes_spilled, 0, "a small group fits the memory");
    let (files_after, after) = read_all(&lakehouse, &ident).await;
    assert_eq!(files_after, 1);
    assert_eq!(after, sorted_copy(&after));
    assert_eq!(after, sorted_copy(&before));
    // The merge attempt's files were removed: the data directory holds the
    // live file and the four compacted inputs only (expiry removes those).
    let parquet = walk(dir.path())
        .into_iter()
        .filter(|p| p.ends_with(".parquet"))
        .count();
    assert_eq!(parquet, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_larger_than_the_sort_memory_spills_and_stays_exact() {
    let dir = tempfile::tempdir().unwrap();
    let lakehouse = open(dir.path()).await;
    let (ident, mut table) = create(&lakehouse, "spilled").await;
    // Unsorted files, as ingest writes them: 3 x 200,000 rows, ~10 MiB
    // as Arrow, sorted under 2 MiB.
    for k in 0..3 {
        let files = write_data_files_named(&table, &[rows_n(k, 200_000)], None, "")
            .await
            .unwrap();
        append_data_files(&lakehouse, &table, files, AppendOptions::default())
            .await
            .unwrap();
        table = lakehouse.catalog().load_table(&ident).await.unwrap();
    }
    let (_, before) = read_all(&lakehouse, &ident).await;
    let opts = CompactOptions {
        sort_memory_bytes: 2 << 20,
        ..Default::default()
    };
    let report = compact_table(&lakehouse, &ident, &opts, &|_| {})
        .await
        .unwrap();
    assert_eq!(
        (report.groups_committed, report.groups_sorted),
        (1, 1),
        "{report:?}"
    );
    assert!(report.bytes_spilled > 0, "{report:?}");
    assert_eq!(report.rows, 600_000);
    let (_, after) = read_all(&lakehouse, &ident).await;
    assert_eq!(after.len(), 600_000);
    assert_eq!(after, sorted_copy(&after));
    assert_eq!(after, sorted_copy(&before));
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path.to_string_lossy().into_owned());
        }
    }
    out
}
