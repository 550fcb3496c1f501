//! Hostile names: every namespace and table name is checked where Weir
//! creates it, and a table name never puts the table inside another table's
//! location (nor anywhere but its namespace's directory).

#![allow(clippy::unwrap_used)] // test helpers: a failure may panic

use std::path::Path;

use weir_catalog::iceberg::spec::{NestedField, PrimitiveType, Schema, Type};
use weir_catalog::iceberg::{NamespaceIdent, TableCreation};
use weir_catalog::location::is_within;
use weir_catalog::{CatalogError, Lakehouse, LakehouseOptions};

async fn open(dir: &Path) -> Lakehouse {
    Lakehouse::open(&LakehouseOptions::embedded(dir.to_path_buf()))
        .await
        .unwrap()
}

fn creation(name: &str, location: Option<&str>) -> TableCreation {
    let schema = Schema::builder()
        .with_fields(vec![
            NestedField::required(1, "id", Type::Primitive(PrimitiveType::Long)).into(),
        ])
        .build()
        .unwrap();
    match location {
        Some(location) => TableCreation::builder()
            .name(name.to_string())
            .schema(schema)
            .location(location.to_string())
            .build(),
        None => TableCreation::builder()
            .name(name.to_string())
            .schema(schema)
            .build(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_are_checked_before_anything_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let lakehouse = open(dir.path()).await;
    let long = "t".repeat(5000);
    for (namespace, name) in [
        ("public", long.as_str()),
        ("public", "nul\0byte"),
        ("public", "line\nbreak"),
        ("public", ""),
        (long.as_str(), "t"),
    ] {
        let err = lakehouse
            .create_table(namespace, creation(name, None))
            .await
            .unwrap_err();
        assert!(matches!(err, CatalogError::InvalidName { .. }), "{err}");
        assert!(err.to_string().len() < 400, "{err}");
    }
    for namespace in [long.as_str(), "a\u{7}b"] {
        let err = lakehouse.create_namespace(namespace).await.unwrap_err();
        assert!(matches!(err, CatalogError::InvalidName { .. }), "{err}");
        let err = lakehouse.ensure_namespace(namespace).await.unwrap_err();
        assert!(matches!(err, CatalogError::InvalidName { .. }), "{err}");
    }
    // Nothing was created: no row, no directory.
    let listing = lakehouse.list_tables_with_locations().await.unwrap();
    assert!(listing["public"].is_empty(), "{listing:?}");
    assert!(!listing.contains_key(&long));
    // 255 bytes is the limit, and allowed.
    let longest = "l".repeat(weir_catalog::MAX_NAME_BYTES);
    lakehouse
        .create_table("public", creation(&longest, None))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_like_names_never_nest_tables() {
    let dir = tempfile::tempdir().unwrap();
    let lakehouse = open(dir.path()).await;
    let victim = lakehouse
        .create_table("public", creation("victim", None))
        .await
        .unwrap();
    let victim_location = victim.metadata().location().to_string();
    assert_eq!(
        victim_location,
        format!("{}/public/victim", lakehouse.warehouse()),
        "plain names keep the usual location"
    );
    let namespace_dir = format!("{}/public", lakehouse.warehouse());
    for name in [
        "victim/data",
        "victim/metadata",
        "..",
        ".",
        "../public/victim",
        "a%2Fb",
    ] {
        let table = lakehouse
            .create_table("public", creation(name, None))
            .await
            .unwrap();
        let location = table.metadata().location();
        assert!(!is_within(location, &victim_location), "{name}: {location}");
        assert!(!is_within(&victim_location, location), "{name}: {location}");
        assert!(is_within(location, &namespace_dir), "{name}: {location}");
        let rest = &location[namespace_dir.len() + 1..];
        assert!(!rest.contains('/'), "{name}: one component, got {location}");
    }
    // A namespace named like a path stays one directory too.
    lakehouse.create_namespace("public/victim").await.unwrap();
    let table = lakehouse
        .create_table("public/victim", creation("data", None))
        .await
        .unwrap();
    assert!(!is_within(table.metadata().location(), &victim_location));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overlapping_location_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let lakehouse = open(dir.path()).await;
    let victim = lakehouse
        .create_table("public", creation("victim", None))
        .await
        .unwrap();
    let location = victim.metadata().location().to_string();
    for (name, at) in [
        ("inside", format!("{location}/data")),
        ("same", location.clone()),
        ("outside", format!("{}/public", lakehouse.warehouse())),
    ] {
        let err = lakehouse
            .create_table("public", creation(name, Some(&at)))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, CatalogError::LocationOverlap { other, .. } if other == "public.victim"),
            "{name}: {err}"
        );
    }
    // A sibling sharing a name prefix is fine.
    lakehouse
        .create_table("public", creation("vic", Some(&format!("{location}2"))))
        .await
        .unwrap();
    // Tables of nested namespaces count too.
    let ns = NamespaceIdent::from_strs(["deep", "er"]).unwrap();
    lakehouse.ensure_namespace("deep").await.unwrap();
    lakehouse
        .catalog()
        .create_namespace(&ns, Default::default())
        .await
        .unwrap();
    let deep = format!("{}/elsewhere/t", lakehouse.warehouse());
    lakehouse
        .catalog()
        .create_table(&ns, creation("t", Some(&deep)))
        .await
        .unwrap();
    let err = lakehouse
        .create_table(
            "public",
            creation(
                "wrap",
                Some(&format!("{}/elsewhere", lakehouse.warehouse())),
            ),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, CatalogError::LocationOverlap { .. }), "{err}");
}
