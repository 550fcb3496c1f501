//! SQL views (`CREATE [OR REPLACE] VIEW`, `DROP VIEW`) and `SHOW CREATE
//! TABLE|VIEW`.
//!
//! A view is stored as its query text in the catalog database
//! (`weir_catalog::views` says why there) and planned again on every use
//! (DataFusion's `ViewTable`, inlined into the query's plan), so it always
//! reads the current snapshots and schemas of its tables.

use std::sync::Arc;

use arrow::array::{RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::TableProvider;
use datafusion::catalog::view::ViewTable;
use datafusion::common::TableReference;
use datafusion::dataframe::DataFrame;
use datafusion::logical_expr::{CreateView, DropView};
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{ObjectName, ShowCreateObject, Statement};
use iceberg::spec::{PrimitiveType, Transform, Type};
use iceberg::table::Table;
use iceberg::{NamespaceIdent, TableIdent};
use weir_catalog::{CATALOG_NAME, Lakehouse, MV_DEFINITION_PROPERTY, ViewDefinition};

use crate::ddl::ident;
use crate::error::{QueryError, Result};

/// The query of a `CREATE VIEW` as it is stored (sqlparser's rendering of
/// the parsed query), with the schema its unqualified names resolve in.
pub(crate) fn create_view_text(
    ctx: &SessionContext,
    statement: &DfStatement,
) -> Result<Option<ViewDefinition>> {
    let DfStatement::Statement(s) = statement else {
        return Ok(None);
    };
    let Statement::CreateView(view) = s.as_ref() else {
        return Ok(None);
    };
    if view.materialized {
        return Ok(None);
    }
    if view.temporary {
        return Err(QueryError::Unsupported(
            "temporary views (views are stored in the catalog)".into(),
        ));
    }
    if !view.columns.is_empty() {
        return Err(QueryError::Unsupported(
            "a column list in CREATE VIEW; alias the columns in the query".into(),
        ));
    }
    let default_namespace = ctx.state().config_options().catalog.default_schema.clone();
    Ok(Some(ViewDefinition {
        sql: view.query.to_string(),
        default_namespace,
    }))
}

pub(crate) async fn create_view(
    lakehouse: &Lakehouse,
    create: &CreateView,
    definition: &ViewDefinition,
) -> Result<()> {
    if create.temporary {
        return Err(QueryError::Unsupported("temporary views".into()));
    }
    let ident = ident(&create.name)?;
    if reads_itself(
        lakehouse,
        &ident,
        &definition.sql,
        &definition.default_namespace,
    )
    .await?
    {
        return Err(QueryError::Invalid(format!(
            "view {ident} would read itself"
        )));
    }
    lakehouse
        .create_view(&ident, definition, create.or_replace)
        .await?;
    Ok(())
}

/// Whether the view query `sql` reads `view`, directly or through stored
/// views (their stored text, names resolved as they resolve when planned).
/// Views are inlined when a query is planned, so the plan no longer names
/// them; the text does.
async fn reads_itself(
    lakehouse: &Lakehouse,
    view: &TableIdent,
    sql: &str,
    namespace: &str,
) -> Result<bool> {
    use datafusion::sql::sqlparser::ast::visit_relations;
    use datafusion::sql::sqlparser::dialect::GenericDialect;
    use datafusion::sql::sqlparser::parser::Parser;
    let views = lakehouse.list_views().await?;
    let target = (view.namespace().join("."), view.name().to_string());
    let mut stack = vec![(sql.to_string(), namespace.to_string())];
    let mut seen = std::collections::HashSet::new();
    while let Some((sql, namespace)) = stack.pop() {
        let statements = Parser::parse_sql(&GenericDialect {}, &sql)
            .map_err(|e| QueryError::Syntax(e.to_string()))?;
        let mut names = Vec::new();
        let _ = visit_relations(&statements, |name: &ObjectName| {
            let parts: Vec<String> = name
                .0
                .iter()
                .map(|p| match p.as_ident() {
                    Some(i) if i.quote_style.is_none() => i.value.to_lowercase(),
                    Some(i) => i.value.clone(),
                    None => p.to_string(),
                })
                .collect();
            let resolved = match parts.as_slice() {
                [t] => Some((namespace.clone(), t.clone())),
                [s, t] => Some((s.clone(), t.clone())),
                [c, s, t] if c == CATALOG_NAME => Some((s.clone(), t.clone())),
                _ => None,
            };
            names.extend(resolved);
            std::ops::ControlFlow::<()>::Continue(())
        });
        for name in names {
            if name == target {
                return Ok(true);
            }
            if let Some(definition) = views.get(&name.0).and_then(|v| v.get(&name.1))
                && seen.insert(name)
            {
                stack.push((definition.sql.clone(), definition.default_namespace.clone()));
            }
        }
    }
    Ok(false)
}

pub(crate) async fn drop_view(lakehouse: &Lakehouse, drop: &DropView) -> Result<()> {
    let ident = ident(&drop.name)?;
    if lakehouse.drop_view(&ident).await? {
        return Ok(());
    }
    if lakehouse.catalog().table_exists(&ident).await? {
        return Err(QueryError::Invalid(format!(
            "{ident} is a table, not a view; use DROP TABLE (or DROP MATERIALIZED VIEW)"
        )));
    }
    if drop.if_exists {
        Ok(())
    } else {
        Err(QueryError::NotFound(format!("view {ident}")))
    }
}

/// Most views one view may read through (a cycle left by a replaced view
/// stops here instead of recursing without end).
const MAX_VIEW_DEPTH: usize = 16;

/// Plans a stored view for a statement that reads it. `catalog` is the Weir
/// catalog one view level deeper.
pub(crate) async fn view_table(
    catalog: crate::catalog::WeirCatalogProvider,
    namespace: &str,
    name: &str,
    definition: &ViewDefinition,
    depth: usize,
) -> datafusion::error::Result<Arc<dyn TableProvider>> {
    if depth >= MAX_VIEW_DEPTH {
        return Err(datafusion::error::DataFusionError::Plan(format!(
            "view {namespace}.{name} reads views more than {MAX_VIEW_DEPTH} levels deep \
             (does it read itself through another view?)"
        )));
    }
    let mut config = datafusion::prelude::SessionConfig::new()
        .with_create_default_catalog_and_schema(false)
        .with_default_catalog_and_schema(CATALOG_NAME, &definition.default_namespace);
    crate::scan_defaults(&mut config);
    let ctx = SessionContext::new_with_config(config);
    crate::time_series::register(&ctx);
    ctx.register_catalog(CATALOG_NAME, Arc::new(catalog));
    let plan = ctx.state().create_logical_plan(&definition.sql).await?;
    let text = format!(
        "CREATE VIEW {} AS {}",
        qualified(namespace, name),
        definition.sql
    );
    Ok(Arc::new(ViewTable::new(plan, Some(text))))
}

/// `SHOW CREATE TABLE|VIEW name`: `None` for other statements.
pub(crate) async fn show_create(
    ctx: &SessionContext,
    lakehouse: &Lakehouse,
    statement: &DfStatement,
) -> Result<Option<DataFrame>> {
    let DfStatement::Statement(s) = statement else {
        return Ok(None);
    };
    let Statement::ShowCreate { obj_type, obj_name } = s.as_ref() else {
        return Ok(None);
    };
    if !matches!(obj_type, ShowCreateObject::Table | ShowCreateObject::View) {
        return Ok(None);
    }
    let ident = resolve(ctx, obj_name)?;
    let namespace = ident.namespace().join(".");
    let definition = if lakehouse.catalog().table_exists(&ident).await? {
        let table = lakehouse.catalog().load_table(&ident).await?;
        create_table_statement(&table)
    } else if let Some(view) = lakehouse.view(&ident).await? {
        format!(
            "CREATE VIEW {} AS {}",
            qualified(&namespace, ident.name()),
            view.sql
        )
    } else {
        return Err(QueryError::NotFound(format!("table or view {ident}")));
    };
    let schema = Arc::new(Schema::new(
        ["table_catalog", "table_schema", "table_name", "definition"]
            .map(|n| Field::new(n, DataType::Utf8, false))
            .to_vec(),
    ));
    let batch = RecordBatch::try_new(
        schema,
        [CATALOG_NAME, &namespace, ident.name(), &definition]
            .map(|v| Arc::new(StringArray::from(vec![v])) as _)
            .to_vec(),
    )
    .map_err(datafusion::error::DataFusionError::from)?;
    Ok(Some(ctx.read_batch(batch)?))
}

fn resolve(ctx: &SessionContext, name: &ObjectName) -> Result<TableIdent> {
    let normalize = ctx
        .state()
        .config_options()
        .sql_parser
        .enable_ident_normalization;
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|p| match p.as_ident() {
            Some(i) if i.quote_style.is_none() && normalize => i.value.to_lowercase(),
            Some(i) => i.value.clone(),
            None => p.to_string(),
        })
        .collect();
    let reference = match parts.as_slice() {
        [t] => TableReference::bare(t.as_str()),
        [s, t] => TableReference::partial(s.as_str(), t.as_str()),
        [c, s, t] => TableReference::full(c.as_str(), s.as_str(), t.as_str()),
        _ => return Err(QueryError::Invalid(format!("`{name}` is not a table name"))),
    };
    let state = ctx.state();
    let defaults = &state.config_options().catalog;
    let resolved = reference.resolve(&defaults.default_catalog, &defaults.default_schema);
    if resolved.catalog.as_ref() != CATALOG_NAME {
        return Err(QueryError::Unsupported(format!(
            "SHOW CREATE TABLE in catalog {}",
            resolved.catalog
        )));
    }
    Ok(TableIdent::new(
        NamespaceIdent::new(resolved.schema.to_string()),
        resolved.table.to_string(),
    ))
}

fn quote(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if plain {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

fn qualified(namespace: &str, name: &str) -> String {
    format!("{}.{}", quote(namespace), quote(name))
}

/// A `CREATE TABLE` statement Weir accepts back for `table`: its columns
/// (SQL types as CREATE TABLE maps them to the same Iceberg types) and
/// `PARTITIONED BY` transforms of the default spec. A materialized view is
/// shown as its `CREATE MATERIALIZED VIEW`.
pub(crate) fn create_table_statement(table: &Table) -> String {
    let metadata = table.metadata();
    let schema = metadata.current_schema();
    let ident = table.identifier();
    let name = qualified(&ident.namespace().join("."), ident.name());
    let partition: Vec<String> = metadata
        .default_partition_spec()
        .fields()
        .iter()
        .filter_map(|f| {
            let column = quote(schema.name_by_field_id(f.source_id)?);
            Some(match f.transform {
                Transform::Identity => column,
                Transform::Bucket(n) => format!("bucket({n}, {column})"),
                Transform::Truncate(w) => format!("truncate({w}, {column})"),
                Transform::Year => format!("year({column})"),
                Transform::Month => format!("month({column})"),
                Transform::Day => format!("day({column})"),
                Transform::Hour => format!("hour({column})"),
                Transform::Void | Transform::Unknown => return None,
            })
        })
        .collect();
    let partitioned = if partition.is_empty() {
        String::new()
    } else {
        format!(" PARTITIONED BY ({})", partition.join(", "))
    };
    if let Some(query) = metadata.properties().get(MV_DEFINITION_PROPERTY) {
        return format!("CREATE MATERIALIZED VIEW {name}{partitioned} AS {query}");
    }
    let columns: Vec<String> = schema
        .as_struct()
        .fields()
        .iter()
        .map(|f| {
            format!(
                "  {} {}{}",
                quote(&f.name),
                sql_type(&f.field_type),
                if f.required { " NOT NULL" } else { "" }
            )
        })
        .collect();
    format!(
        "CREATE TABLE {name} (\n{}\n){partitioned}",
        columns.join(",\n")
    )
}

fn sql_type(ty: &Type) -> String {
    use PrimitiveType as P;
    match ty {
        Type::Primitive(p) => match p {
            P::Boolean => "BOOLEAN".into(),
            P::Int => "INT".into(),
            P::Long => "BIGINT".into(),
            P::Float => "REAL".into(),
            P::Double => "DOUBLE".into(),
            P::Decimal { precision, scale } => format!("DECIMAL({precision}, {scale})"),
            P::Date => "DATE".into(),
            P::Time => "TIME".into(),
            P::Timestamp | P::TimestampNs => "TIMESTAMP".into(),
            P::Timestamptz | P::TimestamptzNs => "TIMESTAMPTZ".into(),
            P::String => "VARCHAR".into(),
            P::Uuid => "UUID".into(),
            P::Fixed(_) | P::Binary => "BYTEA".into(),
        },
        // Nested types in Iceberg's notation (CREATE TABLE does not take them).
        other => other.to_string().to_uppercase(),
    }
}
