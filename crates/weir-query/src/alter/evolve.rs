//! What one `ALTER TABLE` does to the table's metadata: [`apply`] runs the
//! statement's operations, in order, on a [`Draft`] of the schema,
//! properties, partition spec and sort order, and builds the next metadata
//! from what changed (Iceberg's evolution rules, see the module above).

use std::collections::HashMap;
use std::sync::Arc;

use iceberg::spec::{
    FormatVersion, NestedField, NestedFieldRef, NullOrder, PrimitiveType, Schema, SortDirection,
    SortField, SortOrder, TableMetadata, TableMetadataBuilder, Transform, Type,
    UnboundPartitionField, UnboundPartitionSpec,
};
use weir_catalog::spec::{build_partition_spec, parse_partition_expr};

use super::{AlterOp, SortKey, internal_property};
use crate::ddl::{CTAS_PENDING, SOURCE_TIME_ZONE};
use crate::error::{QueryError, Result};

pub(super) fn invalid(e: iceberg::Error) -> QueryError {
    QueryError::Invalid(e.message().to_string())
}

/// The table's next metadata with `ops` applied; `None` when nothing changes.
pub(super) fn apply(
    metadata: &TableMetadata,
    location: Option<&str>,
    ops: &[AlterOp],
    types: &HashMap<String, Type>,
    table: &str,
) -> Result<Option<TableMetadata>> {
    let is_mv = metadata
        .properties()
        .contains_key(weir_catalog::MV_DEFINITION_PROPERTY);
    let mut draft = Draft::new(metadata, types, table);
    for op in ops {
        let changes_shape = !matches!(
            op,
            AlterOp::SetProperties(_) | AlterOp::UnsetProperties { .. }
        );
        if is_mv && changes_shape {
            return Err(QueryError::Invalid(format!(
                "{table} is a materialized view: its columns, partitioning and order follow its \
                 query; DROP and CREATE it again"
            )));
        }
        match op {
            AlterOp::AddColumn {
                name,
                if_not_exists,
                ..
            } => draft.add_column(name, *if_not_exists)?,
            AlterOp::DropColumn { name, if_exists } => draft.drop_column(name, *if_exists)?,
            AlterOp::RenameColumn { from, to } => draft.rename_column(from, to)?,
            AlterOp::SetDataType { column, .. } => draft.set_data_type(column)?,
            AlterOp::DropNotNull { column } => draft.drop_not_null(column)?,
            AlterOp::RenameTable { .. } => {
                return Err(QueryError::Invalid(
                    "RENAME TO cannot be combined with other changes in one ALTER TABLE".into(),
                ));
            }
            AlterOp::SetProperties(pairs) => {
                for (key, value) in pairs {
                    refuse_internal(key)?;
                    draft.properties.insert(key.clone(), value.clone());
                }
            }
            AlterOp::UnsetProperties { keys, if_exists } => {
                for key in keys {
                    refuse_internal(key)?;
                    if draft.properties.remove(key).is_none() && !if_exists {
                        return Err(QueryError::NotFound(format!(
                            "table property {key} of {table} (UNSET TBLPROPERTIES IF EXISTS ignores missing ones)"
                        )));
                    }
                }
            }
            AlterOp::AddPartitionField { expr, name } => {
                draft.add_partition_field(expr, name.as_deref())?
            }
            AlterOp::DropPartitionField { expr } => draft.drop_partition_field(expr)?,
            AlterOp::WriteOrderedBy(keys) => draft.write_ordered_by(keys)?,
        }
    }
    draft.finish(location)
}

/// The parts of the metadata an `ALTER TABLE` changes, as its operations
/// leave them so far.
struct Draft<'a> {
    metadata: &'a TableMetadata,
    types: &'a HashMap<String, Type>,
    table: &'a str,
    fields: Vec<NestedFieldRef>,
    identifier: Vec<i32>,
    last_id: i32,
    properties: HashMap<String, String>,
    spec: Vec<UnboundPartitionField>,
    sort: Vec<SortField>,
    schema_changed: bool,
    spec_changed: bool,
    sort_changed: bool,
}

impl<'a> Draft<'a> {
    fn new(metadata: &'a TableMetadata, types: &'a HashMap<String, Type>, table: &'a str) -> Self {
        let current = metadata.current_schema();
        Draft {
            metadata,
            types,
            table,
            fields: current.as_struct().fields().to_vec(),
            identifier: current.identifier_field_ids().collect(),
            last_id: metadata.last_column_id(),
            properties: metadata.properties().clone(),
            spec: metadata
                .default_partition_spec()
                .as_ref()
                .clone()
                .into_unbound()
                .fields()
                .to_vec(),
            sort: metadata.default_sort_order().fields.clone(),
            schema_changed: false,
            spec_changed: false,
            sort_changed: false,
        }
    }

    fn position(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|f| f.name == name)
    }

    fn column(&self, name: &str) -> Result<usize> {
        self.position(name)
            .ok_or_else(|| QueryError::NotFound(format!("column {name} in table {}", self.table)))
    }

    fn type_of(&self, column: &str) -> Result<Type> {
        self.types
            .get(column)
            .cloned()
            .ok_or_else(|| QueryError::Internal(format!("no type for column {column}")))
    }

    /// Replaces column `at` by `change` applied to a copy of it.
    fn change_field(&mut self, at: usize, change: impl FnOnce(&mut NestedField)) {
        let mut field = self.fields[at].as_ref().clone();
        change(&mut field);
        self.fields[at] = Arc::new(field);
        self.schema_changed = true;
    }

    fn add_column(&mut self, name: &str, if_not_exists: bool) -> Result<()> {
        if self.position(name).is_some() {
            if if_not_exists {
                return Ok(());
            }
            return Err(QueryError::AlreadyExists(format!(
                "column {name} in table {}",
                self.table
            )));
        }
        let ty = self.type_of(name)?;
        self.last_id += 1;
        self.fields
            .push(Arc::new(NestedField::optional(self.last_id, name, ty)));
        self.schema_changed = true;
        Ok(())
    }

    fn drop_column(&mut self, name: &str, if_exists: bool) -> Result<()> {
        let table = self.table;
        let Some(at) = self.position(name) else {
            if if_exists {
                return Ok(());
            }
            return Err(QueryError::NotFound(format!(
                "column {name} in table {table}"
            )));
        };
        let id = self.fields[at].id;
        if self.identifier.contains(&id) {
            return Err(QueryError::Invalid(format!(
                "column {name} is an identifier field of {table} and cannot be dropped"
            )));
        }
        if let Some(field) = self.spec.iter().find(|f| f.source_id == id) {
            return Err(QueryError::Invalid(format!(
                "column {name} is the source of partition field {} ({}({name})) of {table}; \
                 drop the partition field first (ALTER TABLE … DROP PARTITION FIELD {}({name}))",
                field.name, field.transform, field.transform
            )));
        }
        if self
            .metadata
            .partition_specs_iter()
            .any(|s| s.fields().iter().any(|f| f.source_id == id))
        {
            return Err(QueryError::Invalid(format!(
                "column {name} is the source of a partition field of an earlier partition \
                 spec of {table}: files written under that spec are partitioned by it, so it \
                 cannot be dropped"
            )));
        }
        if self.sort.iter().any(|f| f.source_id == id) {
            return Err(QueryError::Invalid(format!(
                "column {name} is in the sort order of {table}; change it first \
                 (ALTER TABLE … WRITE ORDERED BY … / WRITE UNORDERED)"
            )));
        }
        if self.fields.len() == 1 {
            return Err(QueryError::Invalid(format!(
                "column {name} is the only column of {table}"
            )));
        }
        self.fields.remove(at);
        self.properties.remove(&format!("{SOURCE_TIME_ZONE}{name}"));
        self.schema_changed = true;
        Ok(())
    }

    fn rename_column(&mut self, from: &str, to: &str) -> Result<()> {
        let at = self.column(from)?;
        if from == to {
            return Ok(());
        }
        if self.position(to).is_some() {
            return Err(QueryError::AlreadyExists(format!(
                "column {to} in table {}",
                self.table
            )));
        }
        self.change_field(at, |f| f.name = to.to_string());
        if let Some(zone) = self.properties.remove(&format!("{SOURCE_TIME_ZONE}{from}")) {
            self.properties
                .insert(format!("{SOURCE_TIME_ZONE}{to}"), zone);
        }
        Ok(())
    }

    fn set_data_type(&mut self, column: &str) -> Result<()> {
        let at = self.column(column)?;
        let to = self.type_of(column)?;
        let from = self.fields[at].field_type.as_ref().clone();
        if from == to {
            return Ok(());
        }
        if !widens(&from, &to) {
            return Err(QueryError::Invalid(format!(
                "column {column} of {} cannot change from {from} to {to}: Iceberg only \
                 widens int to bigint, float to double and decimal(P, S) to decimal(P', S) \
                 with P' ≥ P",
                self.table
            )));
        }
        self.change_field(at, |f| *f.field_type = to);
        Ok(())
    }

    fn drop_not_null(&mut self, column: &str) -> Result<()> {
        let at = self.column(column)?;
        if !self.fields[at].required {
            return Ok(());
        }
        if self.identifier.contains(&self.fields[at].id) {
            return Err(QueryError::Invalid(format!(
                "column {column} is an identifier field of {}; identifier fields are required",
                self.table
            )));
        }
        self.change_field(at, |f| f.required = false);
        Ok(())
    }

    fn add_partition_field(&mut self, expr: &str, name: Option<&str>) -> Result<()> {
        let table = self.table;
        require_v2(self.metadata, table)?;
        let schema = schema_of(&self.fields, &self.identifier)?;
        let built = build_partition_spec(&schema, &[expr.to_string()])?;
        let mut field = built.fields()[0].clone();
        if let Some(name) = name {
            field.name = name.to_string();
        }
        if self
            .spec
            .iter()
            .any(|f| f.source_id == field.source_id && f.transform == field.transform)
        {
            return Err(QueryError::AlreadyExists(format!(
                "partition field {expr} of {table}"
            )));
        }
        if self.spec.iter().any(|f| f.name == field.name) {
            return Err(QueryError::AlreadyExists(format!(
                "a partition field named {} in {table}; name it with AS",
                field.name
            )));
        }
        self.spec.push(field);
        self.spec_changed = true;
        Ok(())
    }

    fn drop_partition_field(&mut self, expr: &str) -> Result<()> {
        let table = self.table;
        require_v2(self.metadata, table)?;
        let at = if expr.contains('(') {
            let (transform, column) = parse_partition_expr(expr)?;
            let id = self.fields[self.column(&column)?].id;
            self.spec
                .iter()
                .position(|f| f.source_id == id && f.transform == transform)
        } else {
            let name = expr.trim_matches('"');
            self.spec.iter().position(|f| f.name == name)
        };
        let at =
            at.ok_or_else(|| QueryError::NotFound(format!("partition field {expr} of {table}")))?;
        self.spec.remove(at);
        self.spec_changed = true;
        Ok(())
    }

    fn write_ordered_by(&mut self, keys: &[SortKey]) -> Result<()> {
        let mut order = Vec::new();
        for key in keys {
            let at = self.column(&key.column)?;
            let direction = if key.descending {
                SortDirection::Descending
            } else {
                SortDirection::Ascending
            };
            // Spark's defaults: NULLS FIRST ascending, NULLS LAST descending.
            let nulls_first = key.nulls_first.unwrap_or(!key.descending);
            order.push(SortField {
                source_id: self.fields[at].id,
                transform: Transform::Identity,
                direction,
                null_order: if nulls_first {
                    NullOrder::First
                } else {
                    NullOrder::Last
                },
            });
        }
        self.sort = order;
        self.sort_changed = true;
        Ok(())
    }

    /// The next metadata, or `None` when the statement changed nothing.
    fn finish(self, location: Option<&str>) -> Result<Option<TableMetadata>> {
        let metadata = self.metadata;
        let properties_changed = &self.properties != metadata.properties();
        if !(self.schema_changed || self.spec_changed || self.sort_changed || properties_changed) {
            return Ok(None);
        }
        let mut builder = metadata.clone().into_builder(location.map(str::to_string));
        if self.schema_changed {
            let schema = Schema::builder()
                .with_schema_id(metadata.current_schema().schema_id())
                .with_identifier_field_ids(self.identifier.clone())
                .with_fields(self.fields)
                .build()
                .map_err(invalid)?;
            debug_assert!(schema.highest_field_id() <= self.last_id);
            builder = builder.add_current_schema(schema).map_err(invalid)?;
        }
        if properties_changed {
            let removed: Vec<String> = metadata
                .properties()
                .keys()
                .filter(|k| !self.properties.contains_key(*k))
                .cloned()
                .collect();
            let set: HashMap<String, String> = self
                .properties
                .iter()
                .filter(|(k, v)| metadata.properties().get(*k) != Some(*v))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if !set.is_empty() {
                builder = builder.set_properties(set).map_err(invalid)?;
            }
            if !removed.is_empty() {
                builder = builder.remove_properties(&removed).map_err(invalid)?;
            }
        }
        if self.spec_changed {
            let unbound = UnboundPartitionSpec::builder()
                .add_partition_fields(self.spec)
                .map_err(invalid)?
                .build();
            builder = builder
                .add_partition_spec(unbound)
                .map_err(invalid)?
                .set_default_partition_spec(TableMetadataBuilder::LAST_ADDED)
                .map_err(invalid)?;
        }
        if self.sort_changed {
            let order = if self.sort.is_empty() {
                SortOrder::unsorted_order()
            } else {
                SortOrder::builder()
                    .with_order_id(1)
                    .with_fields(self.sort)
                    .build_unbound()
                    .map_err(invalid)?
            };
            builder = builder
                .add_sort_order(order)
                .map_err(invalid)?
                .set_default_sort_order(TableMetadataBuilder::LAST_ADDED as i64)
                .map_err(invalid)?;
        }
        Ok(Some(builder.build().map_err(invalid)?.metadata))
    }
}

fn refuse_internal(key: &str) -> Result<()> {
    if internal_property(key) {
        return Err(QueryError::Invalid(format!(
            "table property {key} is managed by Weir (weir.mv.*, {CTAS_PENDING}, \
             {SOURCE_TIME_ZONE}*) and cannot be changed with SQL"
        )));
    }
    Ok(())
}

fn require_v2(metadata: &TableMetadata, table: &str) -> Result<()> {
    if metadata.format_version() < FormatVersion::V2 {
        return Err(QueryError::Unsupported(format!(
            "partition evolution of {table}: a format-version 1 table"
        )));
    }
    Ok(())
}

fn schema_of(fields: &[NestedFieldRef], identifier: &[i32]) -> Result<Schema> {
    Schema::builder()
        .with_identifier_field_ids(identifier.to_vec())
        .with_fields(fields.to_vec())
        .build()
        .map_err(invalid)
}

/// Iceberg's type promotions.
pub(super) fn widens(from: &Type, to: &Type) -> bool {
    use PrimitiveType as P;
    match (from, to) {
        (Type::Primitive(P::Int), Type::Primitive(P::Long))
        | (Type::Primitive(P::Float), Type::Primitive(P::Double)) => true,
        (
            Type::Primitive(P::Decimal {
                precision: p1,
                scale: s1,
            }),
            Type::Primitive(P::Decimal {
                precision: p2,
                scale: s2,
            }),
        ) => s1 == s2 && p2 >= p1,
        _ => false,
    }
}
