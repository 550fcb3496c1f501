//! DDL on Iceberg: CREATE/DROP TABLE, CREATE/DROP SCHEMA.
//!
//! DataFusion plans these statements; Weir executes them against the Iceberg
//! catalog instead of DataFusion's in-memory catalog.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::common::{SchemaReference, TableReference};
use datafusion::logical_expr::{
    CreateCatalogSchema, CreateMemoryTable, DdlStatement, DropCatalogSchema, DropTable, LogicalPlan,
};
use iceberg::arrow::arrow_schema_to_schema_auto_assign_ids;
use iceberg::{NamespaceIdent, TableCreation, TableIdent};
use weir_catalog::spec::build_partition_spec;
use weir_catalog::{CATALOG_NAME, DEFAULT_NAMESPACE, Lakehouse};

use crate::error::{QueryError, Result};

/// Outcome of a DDL statement: whether CTAS rows still need inserting.
pub(crate) enum DdlOutcome {
    Done,
    InsertInto {
        table: TableReference,
        input: Arc<LogicalPlan>,
    },
}

pub(crate) async fn execute_ddl(
    lakehouse: &Lakehouse,
    ddl: &DdlStatement,
    partition: &[String],
    column_types: &[(String, DataType)],
    view: Option<&weir_catalog::ViewDefinition>,
) -> Result<DdlOutcome> {
    match ddl {
        DdlStatement::CreateView(create) => {
            let view = view
                .ok_or_else(|| QueryError::Internal("CREATE VIEW without its query text".into()))?;
            crate::views::create_view(lakehouse, create, view)
                .await
                .map(|_| DdlOutcome::Done)
        }
        DdlStatement::DropView(drop) => crate::views::drop_view(lakehouse, drop)
            .await
            .map(|_| DdlOutcome::Done),
        DdlStatement::CreateMemoryTable(create) => {
            create_table(lakehouse, create, partition, column_types).await
        }
        DdlStatement::DropTable(drop) => {
            drop_table(lakehouse, drop).await.map(|_| DdlOutcome::Done)
        }
        DdlStatement::CreateCatalogSchema(create) => create_schema(lakehouse, create)
            .await
            .map(|_| DdlOutcome::Done),
        DdlStatement::DropCatalogSchema(drop) => {
            drop_schema(lakehouse, drop).await.map(|_| DdlOutcome::Done)
        }
        other => Err(QueryError::Unsupported(format!(
            "{} is not supported on the Iceberg catalog",
            other.name()
        ))),
    }
}

pub(crate) fn ident(table: &TableReference) -> Result<TableIdent> {
    if let Some(catalog) = table.catalog()
        && catalog != CATALOG_NAME
    {
        return Err(QueryError::NotFound(format!("catalog {catalog}")));
    }
    let ns = table.schema().unwrap_or(DEFAULT_NAMESPACE);
    Ok(TableIdent::new(
        NamespaceIdent::new(ns.to_string()),
        table.table().to_string(),
    ))
}

async fn create_table(
    lakehouse: &Lakehouse,
    create: &CreateMemoryTable,
    partition: &[String],
    column_types: &[(String, DataType)],
) -> Result<DdlOutcome> {
    if create.temporary {
        return Err(QueryError::Unsupported("temporary tables".into()));
    }
    let ident = ident(&create.name)?;
    let catalog = lakehouse.catalog();
    if catalog.table_exists(&ident).await? && leftover_of_ctas(lakehouse, &ident).await? {
        tracing::warn!(table = %ident, "dropping the table of a CREATE TABLE AS that did not finish");
        catalog.drop_table(&ident).await?;
    }
    if lakehouse.view(&ident).await?.is_some() {
        return Err(QueryError::AlreadyExists(format!(
            "{ident} is a view; DROP VIEW it first"
        )));
    }
    if catalog.table_exists(&ident).await? {
        if create.if_not_exists {
            return Ok(DdlOutcome::Done);
        }
        if !create.or_replace {
            return Err(QueryError::AlreadyExists(format!("table {ident}")));
        }
        catalog.drop_table(&ident).await?;
    }
    let is_ctas =
        !matches!(create.input.as_ref(), LogicalPlan::EmptyRelation(e) if !e.produce_one_row);
    let mut properties = std::collections::HashMap::new();
    if is_ctas {
        properties.insert(CTAS_PENDING.to_string(), "true".to_string());
    }
    let mut arrow = create.input.schema().as_arrow().clone();
    if !column_types.is_empty() {
        let fields: Vec<Field> = arrow
            .fields()
            .iter()
            .map(|f| match column_types.iter().find(|(c, _)| c == f.name()) {
                // Only a declared UUID comes as 16 fixed bytes.
                Some((_, DataType::FixedSizeBinary(16))) => {
                    weir_catalog::uuid_columns::uuid_field(f.name(), f.is_nullable())
                }
                Some((_, t)) => Field::new(f.name(), t.clone(), f.is_nullable()),
                None => f.as_ref().clone(),
            })
            .collect();
        arrow = Schema::new(fields);
    }
    let creation = table_creation(&ident, &arrow, partition, properties)?;
    lakehouse
        .create_table(&ident.namespace().to_url_string(), creation)
        .await?;
    Ok(if is_ctas {
        DdlOutcome::InsertInto {
            table: create.name.clone(),
            input: create.input.clone(),
        }
    } else {
        DdlOutcome::Done
    })
}

/// Table property of a table whose CREATE TABLE AS has not finished: the
/// table exists before its rows are committed (iceberg-rust creates a table
/// and appends to it in two commits). A failed CTAS drops its table; one cut
/// short (kill -9) leaves the marker, and the next CREATE TABLE of that name
/// drops the leftover instead of failing with ALREADY_EXISTS.
pub(crate) const CTAS_PENDING: &str = "weir.ctas.pending";

async fn leftover_of_ctas(lakehouse: &Lakehouse, ident: &TableIdent) -> Result<bool> {
    let table = lakehouse.catalog().load_table(ident).await?;
    Ok(table.metadata().properties().contains_key(CTAS_PENDING))
}

/// Ends a CREATE TABLE AS: on success the pending marker goes (a metadata
/// commit after the rows' append), on failure the table goes.
pub(crate) async fn finish_ctas(
    lakehouse: &Lakehouse,
    table: &TableReference,
    filled: bool,
) -> Result<()> {
    let ident = ident(table)?;
    if !filled {
        tracing::info!(table = %ident, "CREATE TABLE AS failed; dropping its table");
        lakehouse.catalog().drop_table(&ident).await?;
        return Ok(());
    }
    let name = ident.to_string();
    weir_catalog::commit_metadata(lakehouse, &ident, |t| {
        if !t.metadata().properties().contains_key(CTAS_PENDING) {
            return Ok(None);
        }
        let metadata = t
            .metadata()
            .clone()
            .into_builder(t.metadata_location().map(str::to_string))
            .remove_properties(&[CTAS_PENDING.to_string()])
            .and_then(|b| b.build())
            .map_err(|e| weir_catalog::CatalogError::iceberg(&name, e))?
            .metadata;
        Ok(Some(metadata))
    })
    .await?;
    Ok(())
}

/// An Iceberg table for rows of `arrow` (types mapped to what Iceberg v2
/// stores), partitioned by `partition` transforms.
pub(crate) fn table_creation(
    ident: &TableIdent,
    arrow: &Schema,
    partition: &[String],
    mut properties: std::collections::HashMap<String, String>,
) -> Result<TableCreation> {
    let uuids: Vec<String> = arrow
        .fields()
        .iter()
        .filter(|f| weir_catalog::uuid_columns::is_arrow_uuid(f))
        .map(|f| f.name().clone())
        .collect();
    let (compatible, zones) = iceberg_compatible(arrow);
    let schema = arrow_schema_to_schema_auto_assign_ids(&compatible)
        .and_then(|s| weir_catalog::uuid_columns::with_uuid_columns(s, &uuids))
        .map_err(|e| QueryError::Invalid(format!("column types: {e}")))?;
    for (column, zone) in zones {
        properties.insert(format!("{SOURCE_TIME_ZONE}{column}"), zone);
    }
    let spec = build_partition_spec(&schema, partition)?;
    Ok(TableCreation::builder()
        .name(ident.name().to_string())
        .schema(schema)
        .partition_spec(spec)
        .properties(properties)
        .build())
}

/// Table property prefix naming the time zone a `timestamptz` column's
/// values came in (`weir.source-time-zone.<column>` = `Europe/Berlin`): the
/// column stores UTC instants, as Iceberg's `timestamptz` does.
pub(crate) const SOURCE_TIME_ZONE: &str = "weir.source-time-zone.";

/// Maps Arrow types Iceberg v2 cannot store to the nearest ones it can
/// (SQL `TIMESTAMP` is nanoseconds in DataFusion; Iceberg v2 stores micros;
/// a timestamp with any time zone is an instant: `timestamptz`, UTC). Also
/// returns the zones other than UTC that columns came with.
pub(crate) fn iceberg_compatible(schema: &Schema) -> (Schema, Vec<(String, String)>) {
    let mut zones = Vec::new();
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| {
            let dt = match f.data_type() {
                DataType::Timestamp(_, None) => DataType::Timestamp(TimeUnit::Microsecond, None),
                DataType::Timestamp(_, Some(tz)) => {
                    if !is_utc(tz) {
                        zones.push((f.name().clone(), tz.to_string()));
                    }
                    DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into()))
                }
                DataType::Time32(_) | DataType::Time64(_) => {
                    DataType::Time64(TimeUnit::Microsecond)
                }
                DataType::Utf8View | DataType::LargeUtf8 => DataType::Utf8,
                DataType::BinaryView | DataType::LargeBinary => DataType::Binary,
                DataType::Int8 | DataType::Int16 | DataType::UInt8 | DataType::UInt16 => {
                    DataType::Int32
                }
                DataType::UInt32 => DataType::Int64,
                DataType::Float16 => DataType::Float32,
                DataType::Null => DataType::Utf8,
                other => other.clone(),
            };
            Field::new(f.name(), dt, f.is_nullable())
        })
        .collect();
    (Schema::new(fields), zones)
}

/// The zone name Iceberg's Arrow mapping reads as `timestamptz`.
const UTC: &str = "+00:00";

fn is_utc(tz: &str) -> bool {
    matches!(
        tz.to_ascii_uppercase().as_str(),
        "UTC" | "+00:00" | "Z" | "+00" | "+0000" | "ETC/UTC" | "GMT"
    )
}

async fn drop_table(lakehouse: &Lakehouse, drop: &DropTable) -> Result<()> {
    let ident = ident(&drop.name)?;
    let catalog = lakehouse.catalog();
    if !catalog.table_exists(&ident).await? {
        if lakehouse.view(&ident).await?.is_some() {
            return Err(QueryError::Invalid(format!(
                "{ident} is a view; use DROP VIEW"
            )));
        }
        return if drop.if_exists {
            Ok(())
        } else {
            Err(QueryError::NotFound(format!("table {ident}")))
        };
    }
    // The catalog entry goes now; data files are left to orphan cleanup,
    // since readers may still be scanning the last snapshot.
    catalog.drop_table(&ident).await?;
    Ok(())
}

fn namespace_of(name: &str) -> Result<NamespaceIdent> {
    let parts: Vec<&str> = name.split('.').collect();
    match parts.as_slice() {
        [ns] => Ok(NamespaceIdent::new(ns.to_string())),
        [catalog, ns] if *catalog == CATALOG_NAME => Ok(NamespaceIdent::new(ns.to_string())),
        [catalog, _] => Err(QueryError::NotFound(format!("catalog {catalog}"))),
        _ => Err(QueryError::Invalid(format!(
            "`{name}` is not a schema name"
        ))),
    }
}

async fn create_schema(lakehouse: &Lakehouse, create: &CreateCatalogSchema) -> Result<()> {
    let ns = namespace_of(&create.schema_name)?;
    let catalog = lakehouse.catalog();
    if catalog.namespace_exists(&ns).await? {
        return if create.if_not_exists {
            Ok(())
        } else {
            Err(QueryError::AlreadyExists(format!(
                "schema {}",
                ns.to_url_string()
            )))
        };
    }
    lakehouse.create_namespace(&ns.to_url_string()).await?;
    Ok(())
}

async fn drop_schema(lakehouse: &Lakehouse, drop: &DropCatalogSchema) -> Result<()> {
    let name = match &drop.name {
        SchemaReference::Bare { schema } => schema.to_string(),
        SchemaReference::Full { schema, catalog } => format!("{catalog}.{schema}"),
    };
    let ns = namespace_of(&name)?;
    let catalog = lakehouse.catalog();
    if !catalog.namespace_exists(&ns).await? {
        return if drop.if_exists {
            Ok(())
        } else {
            Err(QueryError::NotFound(format!("schema {name}")))
        };
    }
    let tables = catalog.list_tables(&ns).await?;
    if !tables.is_empty() && !drop.cascade {
        return Err(QueryError::Invalid(format!(
            "schema {name} is not empty ({} tables); use DROP SCHEMA ... CASCADE",
            tables.len()
        )));
    }
    let views = lakehouse
        .list_views()
        .await?
        .remove(&ns.join("."))
        .unwrap_or_default();
    if tables.is_empty() && !views.is_empty() && !drop.cascade {
        return Err(QueryError::Invalid(format!(
            "schema {name} is not empty ({} views); use DROP SCHEMA ... CASCADE",
            views.len()
        )));
    }
    for t in &tables {
        catalog.drop_table(t).await?;
    }
    lakehouse.drop_views_in(&ns).await?;
    catalog.drop_namespace(&ns).await?;
    Ok(())
}

/// CREATE TABLE columns of types DataFusion 53's SQL planner does not know
/// (`MAP(K, V)`; sqlparser reads only this parenthesised form, not Spark's
/// `MAP<K, V>`; `UUID`, returned as `FixedSizeBinary(16)`, an Iceberg
/// `uuid`): each becomes VARCHAR in the statement, and
/// its Arrow type is returned to be put in the table's schema. The key and
/// value types are planned by DataFusion itself (`CAST(NULL AS type)`).
pub(crate) fn take_declared_columns(
    ctx: &datafusion::prelude::SessionContext,
    statement: &mut datafusion::sql::parser::Statement,
    lowercase: bool,
) -> Result<Vec<(String, DataType)>> {
    use datafusion::sql::sqlparser::ast::{DataType as SqlType, Statement};
    let datafusion::sql::parser::Statement::Statement(s) = statement else {
        return Ok(Vec::new());
    };
    let Statement::CreateTable(create) = s.as_mut() else {
        return Ok(Vec::new());
    };
    let mut found = Vec::new();
    for column in &mut create.columns {
        let arrow = match &column.data_type {
            SqlType::Map(..) => arrow_type_of(ctx, &column.data_type)?,
            SqlType::Uuid => DataType::FixedSizeBinary(16),
            _ => continue,
        };
        let name = if column.name.quote_style.is_none() && lowercase {
            column.name.value.to_lowercase()
        } else {
            column.name.value.clone()
        };
        found.push((name, arrow));
        column.data_type = SqlType::Varchar(None);
    }
    if !found.is_empty() && create.query.is_some() {
        return Err(QueryError::Unsupported(
            "MAP or UUID columns declared in CREATE TABLE … AS; the query's types decide them"
                .into(),
        ));
    }
    Ok(found)
}

/// The Arrow type of an SQL type, MAP included (entries named as Arrow and
/// Iceberg's mapping expect: `key` required, `value` optional).
fn arrow_type_of(
    ctx: &datafusion::prelude::SessionContext,
    sql: &datafusion::sql::sqlparser::ast::DataType,
) -> Result<DataType> {
    use datafusion::common::DFSchema;
    use datafusion::logical_expr::ExprSchemable;
    use datafusion::sql::sqlparser::ast::DataType as SqlType;
    if let SqlType::Map(key, value) = sql {
        let entries = Field::new(
            "key_value",
            DataType::Struct(
                vec![
                    Field::new("key", arrow_type_of(ctx, key)?, false),
                    Field::new("value", arrow_type_of(ctx, value)?, true),
                ]
                .into(),
            ),
            false,
        );
        return Ok(DataType::Map(std::sync::Arc::new(entries), false));
    }
    let empty = DFSchema::empty();
    let expr = ctx
        .state()
        .create_logical_expr(&format!("CAST(NULL AS {sql})"), &empty)?;
    let data_type = expr.get_type(&empty)?;
    Ok(match data_type {
        DataType::Utf8View | DataType::LargeUtf8 => DataType::Utf8,
        other => other,
    })
}
