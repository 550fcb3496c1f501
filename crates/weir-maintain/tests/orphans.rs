//! Orphan cleanup deletes only the table's own unreferenced files: never the
//! files of another table whose location is nested in (or holds) this one's,
//! as lakehouses made before table names were kept one path component have
//! (`public."victim/data"` stored under `public.victim`'s `victim/data/`).

#![allow(clippy::too_many_lines)] // tests and benchmarks: long tables of cases are fine
#![allow(clippy::unwrap_used)] // test helpers: a failure may panic

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Int64Array, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use futures::TryStreamExt;
use weir_catalog::iceberg::spec::{NestedField, PrimitiveType, Schema as IcebergSchema, Type};
use weir_catalog::iceberg::table::Table;
use weir_catalog::iceberg::{NamespaceIdent, TableCreation, TableIdent};
use weir_catalog::{AppendOptions, Lakehouse, LakehouseOptions, append_batches};
use weir_maintain::{OrphanOptions, remove_orphans};

async fn open(dir: &Path) -> Lakehouse {
    Lakehouse::open(&LakehouseOptions::embedded(dir.to_path_buf()))
        .await
        .unwrap()
}

fn creation(name: &str, location: Option<String>) -> TableCreation {
    let schema = IcebergSchema::builder()
        .with_fields(vec![
            NestedField::required(1, "id", Type::Primitive(PrimitiveType::Long)).into(),
        ])
        .build()
        .unwrap();
    match location {
        Some(location) => TableCreation::builder()
            .name(name.to_string())
            .schema(schema)
            .location(location)
            .build(),
        None => TableCreation::builder()
            .name(name.to_string())
            .schema(schema)
            .build(),
    }
}

async fn append(lakehouse: &Lakehouse, table: &Table, ids: Vec<i64>) {
    let batch = RecordBatch::try_new(
        Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)])),
        vec![Arc::new(Int64Array::from(ids))],
    )
    .unwrap();
    append_batches(lakehouse, table, &[batch], AppendOptions::default())
        .await
        .unwrap();
}

fn ident(name: &str) -> TableIdent {
    TableIdent::new(NamespaceIdent::new("public".into()), name.into())
}

async fn rows(lakehouse: &Lakehouse, name: &str) -> usize {
    let table = lakehouse.catalog().load_table(&ident(name)).await.unwrap();
    let batches: Vec<RecordBatch> = table
        .scan()
        .build()
        .unwrap()
        .to_arrow()
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    batches.iter().map(|b| b.num_rows()).sum()
}

fn local(location: &str) -> PathBuf {
    PathBuf::from(location.strip_prefix("file://").unwrap())
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn now() -> OrphanOptions {
    OrphanOptions {
        older_than: Duration::ZERO,
        dry_run: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_never_deletes_a_nested_tables_files() {
    let dir = tempfile::tempdir().unwrap();
    let lakehouse = open(dir.path()).await;
    let ns = NamespaceIdent::new("public".into());
    let victim = lakehouse
        .create_table("public", creation("victim", None))
        .await
        .unwrap();
    let victim_dir = local(victim.metadata().location());
    // As an older Weir (the SQL catalog's `<namespace>/<name>`) placed it:
    // inside victim's directory. Weir itself refuses that location now.
    let nested_location = format!("{}/data", victim.metadata().location());
    assert!(
        lakehouse
            .create_table(
                "public",
                creation("victim/data", Some(nested_location.clone()))
            )
            .await
            .is_err()
    );
    let nested = lakehouse
        .catalog()
        .create_table(&ns, creation("victim/data", Some(nested_location)))
        .await
        .unwrap();
    // A sibling whose name extends victim's: not inside it.
    let sibling = lakehouse
        .create_table("public", creation("victim2", None))
        .await
        .unwrap();
    append(&lakehouse, &victim, vec![1, 2, 3]).await;
    append(&lakehouse, &nested, vec![1, 2]).await;
    append(&lakehouse, &sibling, vec![1]).await;
    // True orphans: in victim's own directory, in the nested table's, and
    // where both tables keep files (`victim/data/`: the deepest table
    // location holding a file is the one whose cleanup collects it).
    let victim_orphan = victim_dir.join("metadata").join("lost-victim.avro");
    let nested_orphan = victim_dir.join("data/data").join("lost-nested.parquet");
    let shared_orphan = victim_dir.join("data").join("lost-shared.parquet");
    for orphan in [&victim_orphan, &nested_orphan, &shared_orphan] {
        std::fs::write(orphan, b"x").unwrap();
    }
    let nested_files: Vec<PathBuf> = files_under(&victim_dir.join("data/data"))
        .into_iter()
        .chain(files_under(&victim_dir.join("data/metadata")))
        .filter(|p| *p != nested_orphan)
        .collect();
    assert!(nested_files.len() >= 3, "{nested_files:?}");

    let report = remove_orphans(&lakehouse, &ident("victim"), &now())
        .await
        .unwrap();
    assert_eq!(report.orphans_deleted, 1, "{report:?}");
    assert!(!victim_orphan.exists());
    assert!(
        nested_orphan.exists(),
        "the nested table's files are its own"
    );
    assert!(shared_orphan.exists());
    for file in &nested_files {
        assert!(file.exists(), "{} was deleted", file.display());
    }
    assert!(
        report.other_tables_files >= nested_files.len(),
        "{report:?}"
    );

    // The nested table's cleanup sees victim's data files (they lie in
    // `victim/data/`, its location) but leaves them: victim references them.
    let victim_data: Vec<PathBuf> = std::fs::read_dir(victim_dir.join("data"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && *p != shared_orphan)
        .collect();
    assert!(!victim_data.is_empty());
    let report = remove_orphans(&lakehouse, &ident("victim/data"), &now())
        .await
        .unwrap();
    assert_eq!(report.orphans_deleted, 2, "{report:?}");
    assert!(!nested_orphan.exists());
    assert!(!shared_orphan.exists());
    for file in &victim_data {
        assert!(file.exists(), "{} was deleted", file.display());
    }

    assert_eq!(rows(&lakehouse, "victim").await, 3);
    assert_eq!(rows(&lakehouse, "victim/data").await, 2);
    assert_eq!(rows(&lakehouse, "victim2").await, 1);
    let report = remove_orphans(&lakehouse, &ident("victim2"), &now())
        .await
        .unwrap();
    assert_eq!(report.orphans_deleted, 0, "{report:?}");
    assert_eq!(rows(&lakehouse, "victim").await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_outer_table_stops_the_cleanup() {
    let dir = tempfile::tempdir().unwrap();
    let lakehouse = open(dir.path()).await;
    let ns = NamespaceIdent::new("public".into());
    let outer = lakehouse
        .create_table("public", creation("outer", None))
        .await
        .unwrap();
    append(&lakehouse, &outer, vec![1]).await;
    let inner = lakehouse
        .catalog()
        .create_table(
            &ns,
            creation(
                "inner",
                Some(format!("{}/data", outer.metadata().location())),
            ),
        )
        .await
        .unwrap();
    append(&lakehouse, &inner, vec![1]).await;
    // The outer table's metadata is gone: which files in `outer/data/` are
    // its data files cannot be told, so nothing there is deleted.
    let outer_dir = local(outer.metadata().location());
    std::fs::remove_dir_all(outer_dir.join("metadata")).unwrap();
    let before = files_under(&outer_dir.join("data"));
    let err = remove_orphans(&lakehouse, &ident("inner"), &now())
        .await
        .unwrap_err();
    assert!(
        matches!(err, weir_maintain::MaintainError::OverlappingTable { .. }),
        "{err}"
    );
    assert_eq!(files_under(&outer_dir.join("data")), before);
}
