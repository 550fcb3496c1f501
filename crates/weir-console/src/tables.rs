//! The Tables page: every namespace and table (one catalog round trip, sizes
//! from the table gauges the server refreshes), and one table's details
//! from its metadata (sizes, small files, partitioning, snapshots, the
//! console's maintenance jobs on it, a view's last refresh).

use std::collections::HashMap;

use hyper::Request;
use hyper::body::Incoming;
use weir_catalog::iceberg::spec::TableMetadata;
use weir_catalog::iceberg::{NamespaceIdent, TableIdent};
use weir_observe::HttpResponse;

use crate::Inner;
use crate::pipeline::parse;
use crate::web::{ApiError, ok, query_param};

/// Average data file below this (with more than [`SMALL_FILES_MIN`] files)
/// is worth a compaction.
const SMALL_FILE_BYTES: f64 = 16.0 * 1024.0 * 1024.0;
const SMALL_FILES_MIN: f64 = 10.0;
/// Snapshots shown in a table's timeline (the newest).
const TIMELINE: usize = 100;

/// `GET /api/tables`.
pub(crate) async fn list(inner: &Inner) -> Result<HttpResponse, ApiError> {
    let listing = inner
        .engine
        .lakehouse()
        .list_tables_with_locations()
        .await
        .map_err(|e| ApiError::internal(format!("listing tables: {e}")))?;
    let mut gauges: HashMap<String, serde_json::Map<String, serde_json::Value>> = HashMap::new();
    for sample in parse(&(inner.metrics)()) {
        let field = match sample.name.as_str() {
            "weir_table_rows" => "rows",
            "weir_table_data_bytes" => "bytes",
            "weir_table_data_files" => "files",
            "weir_table_snapshots" => "snapshots",
            _ => continue,
        };
        if let Some(table) = sample.labels.get("table") {
            gauges
                .entry(table.clone())
                .or_default()
                .insert(field.into(), sample.value.into());
        }
    }
    let namespaces: Vec<serde_json::Value> = listing
        .into_iter()
        .map(|(namespace, tables)| {
            let tables: Vec<serde_json::Value> = tables
                .into_keys()
                .map(|name| {
                    let mut fields = gauges
                        .remove(&format!("{namespace}.{name}"))
                        .unwrap_or_default();
                    fields.insert("name".into(), name.into());
                    serde_json::Value::Object(fields)
                })
                .collect();
            serde_json::json!({ "name": namespace, "tables": tables })
        })
        .collect();
    ok(serde_json::json!({ "namespaces": namespaces }))
}

/// `namespace` and `table` query parameters as an identifier.
pub(crate) fn ident_of(namespace: &str, table: &str) -> Result<TableIdent, ApiError> {
    if namespace.is_empty() || table.is_empty() {
        return Err(ApiError::bad_request(
            "give the table as namespace and table",
        ));
    }
    Ok(TableIdent::new(
        NamespaceIdent::new(namespace.to_string()),
        table.to_string(),
    ))
}

/// `GET /api/table?namespace=…&table=…`.
pub(crate) async fn detail(
    inner: &Inner,
    req: &Request<Incoming>,
) -> Result<HttpResponse, ApiError> {
    let namespace = query_param(req, "namespace").unwrap_or_default();
    let name = query_param(req, "table").unwrap_or_default();
    let ident = ident_of(&namespace, &name)?;
    let table = inner
        .engine
        .lakehouse()
        .load_table_cached(&ident)
        .await
        .map_err(|e| match e.kind() {
            weir_catalog::iceberg::ErrorKind::TableNotFound => {
                ApiError::not_found(format!("no table {ident}"))
            }
            _ => ApiError::internal(format!("loading {ident}: {e}")),
        })?;
    let metadata = table.metadata();
    let summary = metadata
        .current_snapshot()
        .map(|s| s.summary().additional_properties.clone())
        .unwrap_or_default();
    let total = |key: &str| -> f64 {
        summary
            .get(key)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let (rows, bytes, files) = (
        total("total-records"),
        total("total-files-size"),
        total("total-data-files"),
    );
    let average = if files > 0.0 { bytes / files } else { 0.0 };
    let small_files = files > SMALL_FILES_MIN && average < SMALL_FILE_BYTES;
    let (count, timeline) = snapshot_timeline(metadata);
    let schema = metadata.current_schema();
    let partitioning = partitioning(metadata);
    let properties = metadata.properties();
    let view = properties.get(weir_catalog::MV_DEFINITION_PROPERTY);
    let last_commit_ms = metadata.current_snapshot().map(|s| s.timestamp_ms());
    let staleness = match view {
        Some(_) => Some(view_staleness(inner, metadata).await),
        None => None,
    };
    let qualified = ident.to_string();
    let partitions = match partition_count(inner, &table).await {
        Ok(n) => serde_json::Value::from(n),
        Err(e) => serde_json::Value::from(format!("unknown: {e}")),
    };
    ok(serde_json::json!({
        "partitions": partitions,
        "namespace": namespace,
        "table": name,
        "rows": rows,
        "bytes": bytes,
        "files": files,
        "delete_files": total("total-delete-files"),
        "average_file_bytes": average,
        "small_files": small_files,
        "partitioning": partitioning,
        "partitions_changed_last": summary.get("changed-partition-count"),
        "snapshot_count": count,
        "snapshots": timeline,
        "last_commit_ms": last_commit_ms,
        "materialized_view": view,
        "view_bases": staleness,
        "columns": schema.as_struct().fields().iter().map(|f| serde_json::json!({
            "name": f.name, "type": f.field_type.to_string(),
        })).collect::<Vec<_>>(),
        "jobs": inner.jobs.for_table(&qualified),
        "scheduled": inner.schedule.as_ref().map(|s| s.table(&qualified)),
        "policy": properties.iter()
            .filter(|(k, _)| k.starts_with("weir.maintenance") || k.starts_with("weir.cluster"))
            .map(|(k, v)| (k.clone(), serde_json::Value::from(v.clone())))
            .collect::<serde_json::Map<_, _>>(),
    }))
}

/// The number of snapshots and the last [`TIMELINE`] of them, oldest first.
fn snapshot_timeline(metadata: &TableMetadata) -> (usize, Vec<serde_json::Value>) {
    let mut snapshots: Vec<_> = metadata.snapshots().collect();
    snapshots.sort_by_key(|s| s.timestamp_ms());
    let count = snapshots.len();
    let timeline = snapshots
        .iter()
        .skip(count.saturating_sub(TIMELINE))
        .map(|s| {
            let p = &s.summary().additional_properties;
            serde_json::json!({
                "id": s.snapshot_id().to_string(),
                "timestamp_ms": s.timestamp_ms(),
                "operation": s.summary().operation.as_str(),
                "added_records": p.get("added-records"),
                "added_files": p.get("added-data-files"),
                "removed_files": p.get("deleted-data-files"),
                "total_records": p.get("total-records"),
            })
        })
        .collect();
    (count, timeline)
}

/// The default partition spec as `transform(column)` texts.
fn partitioning(metadata: &TableMetadata) -> Vec<String> {
    let schema = metadata.current_schema();
    metadata
        .default_partition_spec()
        .fields()
        .iter()
        .map(|f| {
            let source = schema
                .field_by_id(f.source_id)
                .map(|c| c.name.clone())
                .unwrap_or_else(|| f.source_id.to_string());
            format!("{}({source})", f.transform)
        })
        .collect()
}

/// Per base table of a materialized view: the snapshot the view reflects,
/// the base's current one, and since when the view lags it (the commit time
/// of the oldest base snapshot it does not reflect; `null`: up to date).
async fn view_staleness(
    inner: &Inner,
    metadata: &weir_catalog::iceberg::spec::TableMetadata,
) -> Vec<serde_json::Value> {
    const PREFIX: &str = "weir.mv.base-sequence.";
    let mut out = Vec::new();
    // What the view reflects: its newest refresh (compactions of the view
    // since record nothing of it).
    let Some(refreshed) = weir_catalog::mv_last_refresh(metadata) else {
        return out;
    };
    for (key, sequence) in &refreshed.summary().additional_properties {
        let Some(base) = key.strip_prefix(PREFIX) else {
            continue;
        };
        let reflected: i64 = sequence.parse().unwrap_or(-1);
        let Some((namespace, table)) = base.split_once('.') else {
            continue;
        };
        let Ok(ident) = ident_of(namespace, table) else {
            continue;
        };
        let stale_since_ms = match inner.engine.lakehouse().load_table_cached(&ident).await {
            Ok(base_table) => base_table
                .metadata()
                .snapshots()
                .filter(|s| s.sequence_number() > reflected)
                .map(|s| s.timestamp_ms())
                .min(),
            Err(e) => {
                out.push(serde_json::json!({"base": base, "error": e.to_string()}));
                continue;
            }
        };
        out.push(serde_json::json!({
            "base": base,
            "reflected_sequence": reflected,
            "stale_since_ms": stale_since_ms,
        }));
    }
    out
}

/// Partitions holding live data files in the current snapshot (reads every
/// data manifest once per snapshot; the count is cached by snapshot id).
async fn partition_count(
    inner: &Inner,
    table: &weir_catalog::iceberg::table::Table,
) -> Result<usize, weir_catalog::iceberg::Error> {
    let Some(snapshot) = table.metadata().current_snapshot() else {
        return Ok(0);
    };
    let name = table.identifier().to_string();
    let id = snapshot.snapshot_id();
    if let Some(n) = inner.partitions.get(&name, id) {
        return Ok(n);
    }
    let list = table.manifest_list_reader(snapshot).load().await?;
    let mut seen = std::collections::HashSet::new();
    for manifest in list.entries() {
        if manifest.content != weir_catalog::iceberg::spec::ManifestContentType::Data {
            continue;
        }
        let loaded = manifest.load_manifest(table.file_io()).await?;
        for entry in loaded.entries().iter().filter(|e| e.is_alive()) {
            seen.insert((
                manifest.partition_spec_id,
                format!("{:?}", entry.data_file().partition()),
            ));
        }
    }
    inner.partitions.put(name, id, seen.len());
    Ok(seen.len())
}

/// Partition counts by table, for the snapshot they were counted at.
#[derive(Default)]
pub(crate) struct PartitionCounts(std::sync::Mutex<HashMap<String, (i64, usize)>>);

impl PartitionCounts {
    fn get(&self, table: &str, snapshot: i64) -> Option<usize> {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.get(table)
            .filter(|(s, _)| *s == snapshot)
            .map(|(_, n)| *n)
    }

    fn put(&self, table: String, snapshot: i64, count: usize) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 10_000 {
            map.clear();
        }
        map.insert(table, (snapshot, count));
    }
}
