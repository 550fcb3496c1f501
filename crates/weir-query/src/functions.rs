//! Time travel and snapshot listing as table functions:
//! `iceberg_snapshots('ns.t')`, `iceberg_at_snapshot('ns.t', id)`,
//! `iceberg_at_sequence('ns.t', n)`, `iceberg_as_of('ns.t', '2026-11-23T12:00:00Z')`,
//! plus `weir_watermarks('ns.t')` (committed source positions).
//!
//! Also [`register`]: every function Weir adds to a session.
//!
//! DataFusion's SQL layer has no `FOR SYSTEM_TIME AS OF`/`VERSION AS OF`
//! clause for table providers, so table functions carry time travel.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Int32Array, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::catalog::{TableFunctionImpl, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::datasource::MemTable;
use datafusion::error::{DataFusionError, Result as DFResult};
use datafusion::logical_expr::Expr;
use datafusion::prelude::SessionContext;
use iceberg::table::Table;
use iceberg::{Catalog, NamespaceIdent, TableIdent};
use weir_catalog::watermark::{table_sources, table_watermarks};
use weir_catalog::{DEFAULT_NAMESPACE, Lakehouse};

use crate::QueryError;
use crate::error::to_df;
use crate::table::WeirTable;

/// Registers Weir's functions with a session: the table functions below and
/// the time-series functions of `time_series.rs` (`first`/`last`,
/// `selector_*`, `time_bucket`).
pub(crate) fn register(ctx: &SessionContext, lakehouse: &Lakehouse) {
    crate::time_series::register(ctx);
    crate::utc_date_trunc::register(ctx);
    ctx.register_udtf(
        "alert_rules",
        Arc::new(AlertRulesFunction {
            lakehouse: lakehouse.clone(),
        }),
    );
    for (name, kind) in TimeTravel::ALL {
        ctx.register_udtf(
            name,
            Arc::new(TimeTravelFunction {
                kind,
                lakehouse: lakehouse.clone(),
            }),
        );
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum TimeTravel {
    Snapshots,
    AtSnapshot,
    AtSequence,
    AsOf,
    Watermarks,
}

impl TimeTravel {
    pub(crate) const ALL: [(&'static str, TimeTravel); 5] = [
        ("weir_watermarks", TimeTravel::Watermarks),
        ("iceberg_snapshots", TimeTravel::Snapshots),
        ("iceberg_at_snapshot", TimeTravel::AtSnapshot),
        ("iceberg_at_sequence", TimeTravel::AtSequence),
        ("iceberg_as_of", TimeTravel::AsOf),
    ];
}

#[derive(Debug)]
pub(crate) struct TimeTravelFunction {
    pub kind: TimeTravel,
    pub lakehouse: Lakehouse,
}

impl TableFunctionImpl for TimeTravelFunction {
    fn call(&self, args: &[Expr]) -> DFResult<Arc<dyn TableProvider>> {
        let name = match args.first() {
            Some(e) => literal_string(e)?,
            None => {
                return Err(plan(
                    "the first argument must be a table name, e.g. 'silver.points'",
                ));
            }
        };
        let catalog = self.lakehouse.catalog();
        let table = load_blocking(catalog.clone(), &name)?;
        match self.kind {
            TimeTravel::Snapshots => snapshots_table(&table),
            TimeTravel::Watermarks => watermarks_table(&table),
            TimeTravel::AtSnapshot => {
                let id = int_arg(args, "iceberg_at_snapshot(table, snapshot_id)")?;
                Ok(Arc::new(WeirTable::try_new(
                    self.lakehouse.clone(),
                    table,
                    Some(id),
                )?))
            }
            TimeTravel::AtSequence => {
                let seq = int_arg(args, "iceberg_at_sequence(table, sequence_number)")?;
                let id = table
                    .metadata()
                    .snapshots()
                    .find(|s| s.sequence_number() == seq)
                    .map(|s| s.snapshot_id())
                    .ok_or_else(|| {
                        to_df(QueryError::NotFound(format!(
                            "sequence number {seq} of {name}"
                        )))
                    })?;
                Ok(Arc::new(WeirTable::try_new(
                    self.lakehouse.clone(),
                    table,
                    Some(id),
                )?))
            }
            TimeTravel::AsOf => {
                let text = args
                    .get(1)
                    .map(literal_string)
                    .transpose()?
                    .ok_or_else(|| plan("iceberg_as_of(table, timestamp): timestamp is missing"))?;
                let at = chrono::DateTime::parse_from_rfc3339(&text)
                    .map(|t| t.timestamp_millis())
                    .or_else(|_| {
                        chrono::NaiveDateTime::parse_from_str(&text, "%Y-%m-%d %H:%M:%S%.f")
                            .map(|t| t.and_utc().timestamp_millis())
                    })
                    .map_err(|_| plan(&format!("`{text}` is not an RFC 3339 timestamp")))?;
                let id = table
                    .metadata()
                    .history()
                    .iter()
                    .filter(|log| log.timestamp_ms <= at)
                    .max_by_key(|log| log.timestamp_ms)
                    .map(|log| log.snapshot_id)
                    .ok_or_else(|| {
                        to_df(QueryError::NotFound(format!(
                            "no snapshot of {name} at or before {text}"
                        )))
                    })?;
                Ok(Arc::new(WeirTable::try_new(
                    self.lakehouse.clone(),
                    table,
                    Some(id),
                )?))
            }
        }
    }
}

fn snapshots_table(table: &Table) -> DFResult<Arc<dyn TableProvider>> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("snapshot_id", DataType::Int64, false),
        Field::new("parent_id", DataType::Int64, true),
        Field::new("sequence_number", DataType::Int64, false),
        Field::new(
            "committed_at",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        Field::new("operation", DataType::Utf8, false),
        Field::new("added_records", DataType::Int64, true),
        Field::new("total_records", DataType::Int64, true),
        Field::new("summary", DataType::Utf8, false),
    ]));
    let mut snapshots: Vec<_> = table.metadata().snapshots().collect();
    snapshots.sort_by_key(|s| s.sequence_number());
    let prop = |s: &iceberg::spec::Snapshot, k: &str| {
        s.summary()
            .additional_properties
            .get(k)
            .and_then(|v| v.parse::<i64>().ok())
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(
            snapshots.iter().map(|s| s.snapshot_id()),
        )),
        Arc::new(Int64Array::from_iter(
            snapshots.iter().map(|s| s.parent_snapshot_id()),
        )),
        Arc::new(Int64Array::from_iter_values(
            snapshots.iter().map(|s| s.sequence_number()),
        )),
        Arc::new(
            TimestampMillisecondArray::from_iter_values(snapshots.iter().map(|s| s.timestamp_ms()))
                .with_timezone("UTC"),
        ),
        Arc::new(StringArray::from_iter_values(
            snapshots
                .iter()
                .map(|s| s.summary().operation.as_str().to_string()),
        )),
        Arc::new(Int64Array::from_iter(
            snapshots.iter().map(|s| prop(s, "added-records")),
        )),
        Arc::new(Int64Array::from_iter(
            snapshots.iter().map(|s| prop(s, "total-records")),
        )),
        Arc::new(StringArray::from_iter_values(
            snapshots
                .iter()
                .map(|s| serde_json_map(&s.summary().additional_properties)),
        )),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
}

/// `weir_watermarks('ns.t')`: per source partition, the next offset the
/// table's current snapshot covers (what a restarted writer resumes from).
fn watermarks_table(table: &Table) -> DFResult<Arc<dyn TableProvider>> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("source", DataType::Utf8, false),
        Field::new("stream", DataType::Utf8, false),
        Field::new("partition", DataType::Int32, false),
        Field::new("next_offset", DataType::Int64, false),
    ]));
    let (mut sources, mut streams, mut parts, mut offsets) = (vec![], vec![], vec![], vec![]);
    for source in table_sources(table) {
        let marks = table_watermarks(table, &source);
        for (stream, ps) in marks.streams() {
            for (p, o) in ps {
                sources.push(source.clone());
                streams.push(stream.to_string());
                parts.push(*p);
                offsets.push(*o);
            }
        }
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(sources)),
        Arc::new(StringArray::from(streams)),
        Arc::new(Int32Array::from(parts)),
        Arc::new(Int64Array::from(offsets)),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
}

fn serde_json_map(map: &std::collections::HashMap<String, String>) -> String {
    let mut entries: Vec<_> = map.iter().collect();
    entries.sort();
    let body: Vec<String> = entries
        .iter()
        .map(|(k, v)| format!("{:?}: {:?}", k, v))
        .collect();
    format!("{{{}}}", body.join(", "))
}

/// Resolves `table`, `ns.table` or `weir.ns.table` and loads it.
///
/// Table functions are synchronous in DataFusion; the catalog is async, so
/// this blocks the (multi-threaded) runtime worker for one catalog read.
/// `alert_rules()`: the standing alert rules (`CREATE ALERT`, declared
/// ones included) with their definition.
#[derive(Debug)]
pub(crate) struct AlertRulesFunction {
    pub lakehouse: Lakehouse,
}

impl TableFunctionImpl for AlertRulesFunction {
    fn call(&self, args: &[Expr]) -> DFResult<Arc<dyn TableProvider>> {
        if !args.is_empty() {
            return Err(plan("alert_rules() takes no arguments"));
        }
        let rules = match load_blocking(self.lakehouse.catalog(), "gold.alerts") {
            Ok(table) => crate::alerts::stored_rules(&table),
            Err(_) => Vec::new(),
        };
        let schema = Arc::new(Schema::new(vec![
            Field::new("name", DataType::Utf8, false),
            Field::new("table_name", DataType::Utf8, false),
            Field::new("severity", DataType::Utf8, false),
            Field::new("declared", DataType::Boolean, false),
            Field::new("definition", DataType::Utf8, false),
        ]));
        let column = |f: &dyn Fn(&crate::alerts::AlertRule) -> String| -> ArrayRef {
            Arc::new(StringArray::from_iter_values(
                rules.iter().map(|(r, _)| f(r)),
            ))
        };
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                column(&|r| r.name.clone()),
                column(&|r| r.table.clone()),
                column(&|r| r.severity.clone()),
                Arc::new(arrow::array::BooleanArray::from_iter(
                    rules.iter().map(|(_, d)| Some(*d)),
                )),
                column(&|r| r.to_sql()),
            ],
        )?;
        Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
    }
}

fn load_blocking(catalog: Arc<dyn Catalog>, name: &str) -> DFResult<Table> {
    let parts: Vec<&str> = name.split('.').collect();
    let (ns, table) = match parts.as_slice() {
        [t] => (DEFAULT_NAMESPACE, *t),
        [ns, t] | [_, ns, t] => (*ns, *t),
        _ => return Err(plan(&format!("`{name}` is not a table name"))),
    };
    let ident = TableIdent::new(NamespaceIdent::new(ns.to_string()), table.to_string());
    let handle = tokio::runtime::Handle::try_current()
        .map_err(|_| DataFusionError::Internal("time travel needs a tokio runtime".into()))?;
    tokio::task::block_in_place(|| handle.block_on(catalog.load_table(&ident))).map_err(|e| {
        if e.kind() == iceberg::ErrorKind::TableNotFound {
            to_df(QueryError::NotFound(format!("table {name}")))
        } else {
            to_df(e)
        }
    })
}

fn literal_string(e: &Expr) -> DFResult<String> {
    match e {
        Expr::Literal(
            ScalarValue::Utf8(Some(s))
            | ScalarValue::LargeUtf8(Some(s))
            | ScalarValue::Utf8View(Some(s)),
            _,
        ) => Ok(s.clone()),
        other => Err(plan(&format!("expected a string literal, got {other}"))),
    }
}

fn int_arg(args: &[Expr], usage: &str) -> DFResult<i64> {
    match args.get(1) {
        Some(Expr::Literal(v, _)) => scalar_i64(v),
        _ => None,
    }
    .ok_or_else(|| plan(&format!("{usage}: the second argument must be an integer")))
}

fn scalar_i64(v: &ScalarValue) -> Option<i64> {
    match v {
        ScalarValue::Int64(Some(i)) => Some(*i),
        ScalarValue::Int32(Some(i)) => Some(*i as i64),
        ScalarValue::UInt64(Some(i)) => i64::try_from(*i).ok(),
        _ => None,
    }
}

fn plan(msg: &str) -> DataFusionError {
    DataFusionError::Plan(msg.to_string())
}
