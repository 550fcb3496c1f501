//! Matching a data file's columns to the table schema by Iceberg field id.
//!
//! Iceberg identifies columns by field id, never by name: a renamed column
//! keeps its id (files written before the rename hold it under the old
//! name), a dropped and re-added column gets a new id (its old values must
//! not reappear), and a column added later is absent from older files (NULL,
//! or its `initial-default`). Parquet files written by Iceberg writers carry
//! the ids (`PARQUET:field_id` in arrow-rs field metadata); files added
//! without them (PyIceberg `add_files`) are matched through the table's name
//! mapping (`schema.name-mapping.default`).
//!
//! DataFusion's Parquet scan adapts each file through a
//! [`PhysicalExprAdapterFactory`]: the projection and the predicate, written
//! against the table schema, are rewritten against the file's own schema once
//! per file, before row-group, page and bloom-filter pruning and the row
//! filter are built. [`FieldIdAdapterFactory`] relabels the file's schema with
//! the table's names by field id (columns of other ids get names no query can
//! refer to), lets DataFusion's [`DefaultPhysicalExprAdapter`] do what it
//! always does (casts for promoted types, NULL for missing columns, struct
//! casts), then points the resulting column references back at the file's
//! physical names, so pruning reads the statistics of the column with the
//! right id. iceberg-rust's `RecordBatchTransformer` does the same for its
//! own reader but is crate-private, so the id matching is written here.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use arrow::array::{ArrayData, ArrayRef, make_array};
use arrow::datatypes::{DataType, Field, FieldRef, Fields, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::common::{Result as DFResult, ScalarValue};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::ColumnarValue;
use datafusion::parquet::arrow::PARQUET_FIELD_ID_META_KEY;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr_adapter::{
    DefaultPhysicalExprAdapter, PhysicalExprAdapter, PhysicalExprAdapterFactory,
    replace_columns_with_literals,
};
use iceberg::spec::{
    DEFAULT_SCHEMA_NAME_MAPPING, Literal, MappedField, NameMapping, NestedFieldRef,
    PrimitiveLiteral, PrimitiveType, StructType, TableMetadata, Type,
};

/// How one table schema (the one a scan reads in) matches data files.
#[derive(Debug)]
pub struct FieldIds {
    /// The Iceberg schema of the scan; its top-level fields are the table
    /// provider's columns, in order.
    schema: iceberg::spec::SchemaRef,
    /// `schema.name-mapping.default`, for files without field ids (an
    /// unparsable mapping fails only reads that need it).
    name_mapping: Option<Result<NameMapping, serde_json::Error>>,
    /// `initial-default` of top-level columns, by name, in the column's type.
    defaults: HashMap<String, ScalarValue>,
    /// Top-level columns whose type was promoted (int→long, …): older
    /// manifests hold their bounds in the old type, which iceberg-rust's
    /// manifest pruning compares as unequal types (and prunes the file).
    promoted: HashSet<i32>,
}

impl FieldIds {
    /// `table_schema` is the provider's Arrow schema of `schema` (its
    /// defaults are typed like the columns clients see).
    pub fn new(
        schema: iceberg::spec::SchemaRef,
        table_schema: &Schema,
        metadata: &TableMetadata,
    ) -> Self {
        Self::from_parts(
            schema,
            table_schema,
            metadata.properties(),
            &metadata
                .schemas_iter()
                .map(|s| s.as_ref())
                .collect::<Vec<_>>(),
        )
    }

    /// [`FieldIds::new`] from the table's properties and all its schemas.
    fn from_parts(
        schema: iceberg::spec::SchemaRef,
        table_schema: &Schema,
        properties: &HashMap<String, String>,
        schemas: &[&iceberg::spec::Schema],
    ) -> Self {
        let name_mapping = properties
            .get(DEFAULT_SCHEMA_NAME_MAPPING)
            .map(|json| serde_json::from_str::<NameMapping>(json));
        let defaults = schema
            .as_struct()
            .fields()
            .iter()
            .zip(table_schema.fields())
            .filter_map(|(field, arrow)| {
                let value = literal_scalar(field.initial_default.as_ref()?, &field.field_type)?;
                let value = value.cast_to(arrow.data_type()).ok()?;
                Some((field.name.clone(), value))
            })
            .collect();
        let promoted = schema
            .as_struct()
            .fields()
            .iter()
            .filter(|field| {
                schemas.iter().any(|other| {
                    other
                        .as_struct()
                        .field_by_id(field.id)
                        .is_some_and(|f| f.field_type != field.field_type)
                })
            })
            .map(|field| field.id)
            .collect();
        FieldIds {
            schema,
            name_mapping,
            defaults,
            promoted,
        }
    }

    /// The Iceberg schema id (file-cache entries are per schema).
    pub fn schema_id(&self) -> i32 {
        self.schema.schema_id()
    }

    /// The name the column `name` of this schema has in `other` (an older
    /// schema of the same table), matched by field id: `None` when `other`
    /// has no top-level column of that id (added since, or re-added).
    pub fn name_in<'a>(&self, name: &str, other: &'a iceberg::spec::Schema) -> Option<&'a str> {
        let field = self.schema.as_struct().field_by_name(name)?;
        other
            .as_struct()
            .field_by_id(field.id)
            .map(|f| f.name.as_str())
    }

    /// Whether iceberg-rust's manifest pruning, which binds filters by name
    /// to `snapshot`'s schema, may use filters on column `name`: the same
    /// name and id there, a type never promoted, and not `float`:
    /// iceberg-datafusion turns every floating-point literal into a `double`
    /// datum, which iceberg-rust refuses to bind to a `float` column ("Can't
    /// convert datum from double type to float type": every filter on a REAL
    /// column failed), and narrowing the literal to `float` would prune
    /// wrongly (`f > 0.1` holds for the float nearest 0.1).
    pub fn prunable_in(&self, name: &str, snapshot: &iceberg::spec::Schema) -> bool {
        self.name_in(name, snapshot) == Some(name)
            && self
                .schema
                .as_struct()
                .field_by_name(name)
                .is_some_and(|f| {
                    !self.promoted.contains(&f.id)
                        && *f.field_type != Type::Primitive(PrimitiveType::Float)
                })
    }

    /// `file` with the table's names by field id, or `None` when every
    /// column already carries the table's name for its id (the common case:
    /// nothing to rewrite). Columns of ids the table does not have are
    /// renamed out of reach.
    pub fn relabel(&self, file: &Schema) -> DFResult<Option<Schema>> {
        let has_ids = file
            .fields()
            .iter()
            .any(|f| f.metadata().contains_key(PARQUET_FIELD_ID_META_KEY));
        let ids = if has_ids {
            Ids::Metadata
        } else {
            match &self.name_mapping {
                Some(Ok(mapping)) => Ids::Mapping(mapping.fields().iter().collect()),
                Some(Err(e)) => {
                    return Err(DataFusionError::Execution(format!(
                        "data file has no field ids and the table's \
                         {DEFAULT_SCHEMA_NAME_MAPPING} cannot be parsed: {e}"
                    )));
                }
                // Neither ids nor a mapping: match by name (files of tables
                // that never evolved; PyIceberg refuses to read these).
                None => return Ok(None),
            }
        };
        let (fields, changed) = relabel_fields(file.fields(), self.schema.as_struct(), &ids);
        Ok(changed.then(|| Schema::new_with_metadata(fields, file.metadata().clone())))
    }
}

/// Where a file's columns get their ids.
enum Ids<'a> {
    Metadata,
    /// Name-mapping entries of this nesting level.
    Mapping(Vec<&'a MappedField>),
}

impl<'a> Ids<'a> {
    /// The id of `field` and how its children get theirs.
    fn of(&self, field: &Field) -> (Option<i32>, Ids<'a>) {
        match self {
            Ids::Metadata => (
                field
                    .metadata()
                    .get(PARQUET_FIELD_ID_META_KEY)
                    .and_then(|v| v.parse().ok()),
                Ids::Metadata,
            ),
            Ids::Mapping(entries) => {
                match entries
                    .iter()
                    .find(|m| m.names().iter().any(|n| n == field.name()))
                {
                    Some(m) => (
                        m.field_id(),
                        Ids::Mapping(m.fields().iter().map(|f| f.as_ref()).collect()),
                    ),
                    None => (None, Ids::Mapping(Vec::new())),
                }
            }
        }
    }
}

/// Renames `fields` after `table`'s fields of the same ids (recursively);
/// whether anything changed.
fn relabel_fields(fields: &Fields, table: &StructType, ids: &Ids) -> (Fields, bool) {
    let mut changed = false;
    let out: Vec<FieldRef> = fields
        .iter()
        .enumerate()
        .map(|(i, field)| {
            let (id, child_ids) = ids.of(field);
            match id.and_then(|id| table.field_by_id(id)) {
                Some(target) => {
                    let (data_type, nested) =
                        relabel_type(field.data_type(), &target.field_type, &child_ids);
                    if !nested && *field.name() == target.name {
                        return field.clone();
                    }
                    changed = true;
                    Arc::new(
                        Field::new(target.name.clone(), data_type, field.is_nullable())
                            .with_metadata(field.metadata().clone()),
                    )
                }
                None => {
                    changed = true;
                    Arc::new(field.as_ref().clone().with_name(unmapped_name(i)))
                }
            }
        })
        .collect();
    (out.into(), changed)
}

/// A name no table column has: the file's column of an id the table does
/// not know (dropped, or never part of it).
fn unmapped_name(index: usize) -> String {
    format!("\u{1}weir.unmapped.{index}")
}

/// `data_type` with nested field names relabeled by id; whether it changed.
fn relabel_type(data_type: &DataType, table: &Type, ids: &Ids) -> (DataType, bool) {
    match (data_type, table) {
        (DataType::Struct(fields), Type::Struct(st)) => {
            let (fields, changed) = relabel_fields(fields, st, ids);
            (DataType::Struct(fields), changed)
        }
        (DataType::List(item), Type::List(list)) => {
            relabel_item(item, &list.element_field, ids, DataType::List)
        }
        (DataType::LargeList(item), Type::List(list)) => {
            relabel_item(item, &list.element_field, ids, DataType::LargeList)
        }
        (DataType::Map(entries, sorted), Type::Map(map)) => match entries.data_type() {
            DataType::Struct(kv) if kv.len() == 2 => {
                // Keys and values are matched by position (their ids are the
                // map's own; names of the entries are Arrow conventions).
                let (key_ids, value_ids) = match ids {
                    Ids::Metadata => (Ids::Metadata, Ids::Metadata),
                    Ids::Mapping(_) => (ids.of(&kv[0]).1, ids.of(&kv[1]).1),
                };
                let (key, k) = relabel_type(kv[0].data_type(), &map.key_field.field_type, &key_ids);
                let (value, v) =
                    relabel_type(kv[1].data_type(), &map.value_field.field_type, &value_ids);
                if !(k || v) {
                    return (data_type.clone(), false);
                }
                let kv: Fields = vec![
                    Arc::new(kv[0].as_ref().clone().with_data_type(key)),
                    Arc::new(kv[1].as_ref().clone().with_data_type(value)),
                ]
                .into();
                let entries = entries
                    .as_ref()
                    .clone()
                    .with_data_type(DataType::Struct(kv));
                (DataType::Map(Arc::new(entries), *sorted), true)
            }
            _ => (data_type.clone(), false),
        },
        _ => (data_type.clone(), false),
    }
}

fn relabel_item(
    item: &FieldRef,
    element: &NestedFieldRef,
    ids: &Ids,
    wrap: impl Fn(FieldRef) -> DataType,
) -> (DataType, bool) {
    let item_ids = match ids {
        Ids::Metadata => Ids::Metadata,
        Ids::Mapping(_) => ids.of(item).1,
    };
    let (data_type, changed) = relabel_type(item.data_type(), &element.field_type, &item_ids);
    if !changed {
        return (wrap(item.clone()), false);
    }
    (
        wrap(Arc::new(item.as_ref().clone().with_data_type(data_type))),
        true,
    )
}

/// Reads a table's data files by field id (see the module docs).
#[derive(Debug, Clone)]
pub(super) struct FieldIdAdapterFactory(pub Arc<FieldIds>);

impl PhysicalExprAdapterFactory for FieldIdAdapterFactory {
    fn create(
        &self,
        logical_file_schema: SchemaRef,
        physical_file_schema: SchemaRef,
    ) -> DFResult<Arc<dyn PhysicalExprAdapter>> {
        let relabeled = self.0.relabel(&physical_file_schema)?.map(Arc::new);
        let matched = relabeled.as_ref().unwrap_or(&physical_file_schema);
        let defaults: HashMap<String, ScalarValue> = self
            .0
            .defaults
            .iter()
            .filter(|(name, _)| matched.index_of(name).is_err())
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        let inner = DefaultPhysicalExprAdapter::new(logical_file_schema, matched.clone());
        Ok(Arc::new(FieldIdAdapter {
            inner,
            physical: physical_file_schema,
            relabeled,
            defaults,
        }))
    }
}

#[derive(Debug)]
struct FieldIdAdapter {
    /// DataFusion's adapter, against the relabeled file schema.
    inner: DefaultPhysicalExprAdapter,
    physical: SchemaRef,
    /// `None`: the file's names are the table's.
    relabeled: Option<SchemaRef>,
    /// `initial-default` values of columns the file does not have.
    defaults: HashMap<String, ScalarValue>,
}

impl PhysicalExprAdapter for FieldIdAdapter {
    fn rewrite(&self, expr: Arc<dyn PhysicalExpr>) -> DFResult<Arc<dyn PhysicalExpr>> {
        let expr = if self.defaults.is_empty() {
            expr
        } else {
            replace_columns_with_literals(expr, &self.defaults)?
        };
        let expr = self.inner.rewrite(expr)?;
        let Some(relabeled) = &self.relabeled else {
            return Ok(expr);
        };
        // Back to the file's own names (pruning looks statistics up by
        // name), with nested names relabeled on the fly.
        expr.transform_up(|e| {
            let Some(column) = e.as_any().downcast_ref::<Column>() else {
                return Ok(Transformed::no(e));
            };
            let index = column.index();
            let (Some(physical), Some(target)) = (
                self.physical.fields().get(index),
                relabeled.fields().get(index),
            ) else {
                return Ok(Transformed::no(e));
            };
            let col: Arc<dyn PhysicalExpr> = Arc::new(Column::new(physical.name(), index));
            if physical.data_type() == target.data_type() {
                return Ok(Transformed::yes(col));
            }
            Ok(Transformed::yes(Arc::new(RelabelExpr {
                expr: col,
                data_type: target.data_type().clone(),
                nullable: target.is_nullable(),
            })))
        })
        .data()
    }
}

/// Renames the nested fields of its input (same layout, no copy of values):
/// a struct column read from a file that has renamed sub-fields, so the
/// struct cast above it matches sub-fields by the table's names.
#[derive(Debug, Clone, Eq)]
struct RelabelExpr {
    expr: Arc<dyn PhysicalExpr>,
    data_type: DataType,
    nullable: bool,
}

// By hand: `Arc<dyn PhysicalExpr>` has no derivable equality.
impl PartialEq for RelabelExpr {
    fn eq(&self, other: &Self) -> bool {
        self.expr.eq(&other.expr)
            && self.data_type == other.data_type
            && self.nullable == other.nullable
    }
}

impl Hash for RelabelExpr {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.expr.hash(state);
        self.data_type.hash(state);
        self.nullable.hash(state);
    }
}

impl fmt::Display for RelabelExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RELABEL({})", self.expr)
    }
}

impl PhysicalExpr for RelabelExpr {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn data_type(&self, _input_schema: &Schema) -> DFResult<DataType> {
        Ok(self.data_type.clone())
    }

    fn nullable(&self, _input_schema: &Schema) -> DFResult<bool> {
        Ok(self.nullable)
    }

    fn evaluate(&self, batch: &RecordBatch) -> DFResult<ColumnarValue> {
        match self.expr.evaluate(batch)? {
            ColumnarValue::Array(array) => Ok(ColumnarValue::Array(relabel_array(
                &array,
                &self.data_type,
            )?)),
            ColumnarValue::Scalar(scalar) => {
                let array = relabel_array(&scalar.to_array_of_size(1)?, &self.data_type)?;
                Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(
                    array.as_ref(),
                    0,
                )?))
            }
        }
    }

    fn children(&self) -> Vec<&Arc<dyn PhysicalExpr>> {
        vec![&self.expr]
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn PhysicalExpr>>,
    ) -> DFResult<Arc<dyn PhysicalExpr>> {
        let expr = children
            .pop()
            .ok_or_else(|| DataFusionError::Internal("RELABEL takes one child".into()))?;
        Ok(Arc::new(RelabelExpr {
            expr,
            ..self.as_ref().clone()
        }))
    }

    fn fmt_sql(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// `array` as `data_type`, which differs from its own in field names only.
fn relabel_array(array: &ArrayRef, data_type: &DataType) -> DFResult<ArrayRef> {
    if array.data_type() == data_type {
        return Ok(array.clone());
    }
    Ok(make_array(relabel_data(array.to_data(), data_type)?))
}

fn relabel_data(data: ArrayData, data_type: &DataType) -> DFResult<ArrayData> {
    let child_types: Vec<&DataType> = match data_type {
        DataType::Struct(fields) => fields.iter().map(|f| f.data_type()).collect(),
        DataType::List(f) | DataType::LargeList(f) | DataType::Map(f, _) => vec![f.data_type()],
        _ => Vec::new(),
    };
    if child_types.len() != data.child_data().len() {
        return Err(DataFusionError::Internal(format!(
            "cannot relabel {} as {data_type}",
            data.data_type()
        )));
    }
    let children = data
        .child_data()
        .iter()
        .zip(child_types)
        .map(|(child, t)| relabel_data(child.clone(), t))
        .collect::<DFResult<Vec<_>>>()?;
    Ok(data
        .into_builder()
        .data_type(data_type.clone())
        .child_data(children)
        .build()?)
}

/// An Iceberg `initial-default` as a DataFusion value (primitive types; a
/// default of another type is not applied).
fn literal_scalar(literal: &Literal, ty: &Type) -> Option<ScalarValue> {
    let (Literal::Primitive(value), Type::Primitive(ty)) = (literal, ty) else {
        return None;
    };
    use PrimitiveLiteral as L;
    use PrimitiveType as T;
    Some(match (ty, value) {
        (T::Boolean, L::Boolean(v)) => ScalarValue::Boolean(Some(*v)),
        (T::Int, L::Int(v)) => ScalarValue::Int32(Some(*v)),
        (T::Long, L::Long(v)) => ScalarValue::Int64(Some(*v)),
        (T::Float, L::Float(v)) => ScalarValue::Float32(Some(v.0)),
        (T::Double, L::Double(v)) => ScalarValue::Float64(Some(v.0)),
        (T::Date, L::Int(v)) => ScalarValue::Date32(Some(*v)),
        (T::Time, L::Long(v)) => ScalarValue::Time64Microsecond(Some(*v)),
        (T::Timestamp, L::Long(v)) => ScalarValue::TimestampMicrosecond(Some(*v), None),
        (T::Timestamptz, L::Long(v)) => {
            ScalarValue::TimestampMicrosecond(Some(*v), Some("+00:00".into()))
        }
        (T::TimestampNs, L::Long(v)) => ScalarValue::TimestampNanosecond(Some(*v), None),
        (T::TimestamptzNs, L::Long(v)) => {
            ScalarValue::TimestampNanosecond(Some(*v), Some("+00:00".into()))
        }
        (T::String, L::String(v)) => ScalarValue::Utf8(Some(v.clone())),
        (T::Binary, L::Binary(v)) => ScalarValue::Binary(Some(v.clone())),
        (T::Decimal { precision, scale }, L::Int128(v)) => {
            ScalarValue::Decimal128(Some(*v), u8::try_from(*precision).ok()?, {
                i8::try_from(*scale).ok()?
            })
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::logical_expr::Operator;
    use datafusion::physical_expr::expressions::{BinaryExpr, lit};
    use iceberg::spec::{NestedField, Schema as IcebergSchema};

    fn with_id(field: Field, id: i32) -> Field {
        field.with_metadata(HashMap::from([(
            PARQUET_FIELD_ID_META_KEY.to_string(),
            id.to_string(),
        )]))
    }

    /// id 1 `id`, id 3 `value` (renamed from `reading`), id 5 `extra` (added;
    /// a dropped `extra` had id 4), id 6 `loc` struct of 7 `latitude`.
    fn table() -> FieldIds {
        let loc = StructType::new(vec![
            NestedField::optional(7, "latitude", Type::Primitive(PrimitiveType::Double)).into(),
        ]);
        let schema = IcebergSchema::builder()
            .with_fields(vec![
                NestedField::required(1, "id", Type::Primitive(PrimitiveType::Long)).into(),
                NestedField::optional(3, "value", Type::Primitive(PrimitiveType::Long)).into(),
                NestedField::optional(5, "extra", Type::Primitive(PrimitiveType::Long)).into(),
                NestedField::optional(6, "loc", Type::Struct(loc)).into(),
            ])
            .build()
            .unwrap();
        let arrow = iceberg::arrow::schema_to_arrow_schema(&schema).unwrap();
        FieldIds::from_parts(Arc::new(schema), &arrow, &HashMap::new(), &[])
    }

    fn old_file() -> Schema {
        let loc =
            DataType::Struct(vec![with_id(Field::new("lat", DataType::Float64, true), 7)].into());
        Schema::new(vec![
            with_id(Field::new("id", DataType::Int64, false), 1),
            with_id(Field::new("reading", DataType::Int32, true), 3),
            with_id(Field::new("extra", DataType::Int64, true), 4),
            with_id(Field::new("loc", loc, true), 6),
        ])
    }

    #[test]
    fn relabels_by_field_id() {
        let relabeled = table().relabel(&old_file()).unwrap().unwrap();
        let names: Vec<&str> = relabeled
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        assert_eq!(names[..2], ["id", "value"]);
        // The dropped `extra` is out of reach of the new one.
        assert!(names[2].starts_with('\u{1}'));
        let DataType::Struct(loc) = relabeled.field(3).data_type() else {
            panic!("loc is a struct");
        };
        assert_eq!(loc[0].name(), "latitude");
        // Types stay the file's (the cast to the table's comes later).
        assert_eq!(relabeled.field(1).data_type(), &DataType::Int32);
    }

    #[test]
    fn a_matching_file_needs_no_relabel() {
        let loc = DataType::Struct(
            vec![with_id(Field::new("latitude", DataType::Float64, true), 7)].into(),
        );
        let file = Schema::new(vec![
            with_id(Field::new("id", DataType::Int64, false), 1),
            with_id(Field::new("value", DataType::Int64, true), 3),
            with_id(Field::new("loc", loc, true), 6),
        ]);
        assert!(table().relabel(&file).unwrap().is_none());
    }

    #[test]
    fn files_without_ids_use_the_name_mapping() {
        let mapping = r#"[{"field-id": 1, "names": ["id"]},
            {"field-id": 3, "names": ["reading", "value"]}]"#;
        let mut ids = table();
        ids.name_mapping = Some(serde_json::from_str(mapping));
        let file = Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("reading", DataType::Int64, true),
            Field::new("extra", DataType::Int64, true),
        ]);
        let relabeled = ids.relabel(&file).unwrap().unwrap();
        assert_eq!(relabeled.field(1).name(), "value");
        // `extra` is not in the mapping: not the table's `extra`.
        assert!(relabeled.field(2).name().starts_with('\u{1}'));
        // No mapping at all: matched by name, as before.
        ids.name_mapping = None;
        assert!(ids.relabel(&file).unwrap().is_none());
    }

    #[test]
    fn filters_on_float_columns_are_not_given_to_iceberg_rust() {
        let schema = Arc::new(
            IcebergSchema::builder()
                .with_fields(vec![
                    NestedField::optional(1, "f", Type::Primitive(PrimitiveType::Float)).into(),
                    NestedField::optional(2, "d", Type::Primitive(PrimitiveType::Double)).into(),
                ])
                .build()
                .unwrap(),
        );
        let arrow = iceberg::arrow::schema_to_arrow_schema(&schema).unwrap();
        let ids = FieldIds::from_parts(schema.clone(), &arrow, &HashMap::new(), &[]);
        assert!(!ids.prunable_in("f", &schema));
        assert!(ids.prunable_in("d", &schema));
    }

    #[test]
    fn predicates_point_at_the_file_column_of_the_id() {
        let ids = table();
        let logical = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("value", DataType::Int64, true),
            Field::new("extra", DataType::Int64, true),
        ]));
        let adapter = FieldIdAdapterFactory(Arc::new(ids))
            .create(logical, Arc::new(old_file()))
            .unwrap();
        let value_gt_5: Arc<dyn PhysicalExpr> = Arc::new(BinaryExpr::new(
            Arc::new(Column::new("value", 1)),
            Operator::Gt,
            lit(5i64),
        ));
        let rewritten = adapter.rewrite(value_gt_5).unwrap().to_string();
        assert!(rewritten.contains("reading@1"), "{rewritten}");
        let extra: Arc<dyn PhysicalExpr> = Arc::new(Column::new("extra", 2));
        let rewritten = adapter.rewrite(extra).unwrap().to_string();
        assert!(!rewritten.contains("@2"), "{rewritten}");
    }
}
