//! Table definitions: the TOML files under `catalog/` and their translation to
//! Iceberg schemas, hidden-partition specs and sort orders.
//!
//! ```toml
//! namespace = "silver"
//! name = "points"
//! partition = ["day(ts)", "bucket(16, device_id)"]
//! sort = ["device_id", "ts"]
//! [[columns]]
//! name = "ts"
//! type = "timestamptz"
//! required = true
//! [properties]
//! "write.target-file-size-bytes" = "134217728"
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use iceberg::spec::{
    ListType, MapType, NestedField, NullOrder, PrimitiveType, Schema, SortDirection, SortField,
    SortOrder, Transform, Type, UnboundPartitionSpec,
};
use serde::Deserialize;

use crate::error::{CatalogError, Result};

/// Why a column type, partition transform or sort order of a table
/// definition (or of `CREATE TABLE` / `ALTER TABLE`) is refused; the query
/// layer reports it as an invalid statement.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("unknown column type `{0}`")]
    UnknownType(String),
    #[error("bad map type `{0}`")]
    BadMap(String),
    #[error("bad decimal `{0}`")]
    BadDecimal(String),
    #[error("partition `{expr}`: {reason}")]
    Partition { expr: String, reason: String },
    #[error("partition column `{0}` is not in the schema")]
    PartitionColumn(String),
    #[error("sort `{item}`: unknown direction `{direction}`")]
    SortDirection { item: String, direction: String },
    #[error("sort column `{0}` is not in the schema")]
    SortColumn(String),
    /// Iceberg refused the schema, partition spec or sort order built.
    #[error("{0}")]
    Iceberg(Box<iceberg::Error>),
}

impl From<iceberg::Error> for SpecError {
    fn from(e: iceberg::Error) -> Self {
        SpecError::Iceberg(Box::new(e))
    }
}

type SpecResult<T> = std::result::Result<T, SpecError>;

/// One declared table, as written in `catalog/<namespace>/<name>.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableSpec {
    pub namespace: String,
    pub name: String,
    #[serde(default)]
    pub doc: Option<String>,
    pub columns: Vec<ColumnSpec>,
    /// Hidden partition transforms: `day(ts)`, `bucket(16, device_id)`, `identity(x)`, `x`.
    #[serde(default)]
    pub partition: Vec<String>,
    /// Sort order within files: column names, optionally suffixed ` desc`.
    #[serde(default)]
    pub sort: Vec<String>,
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// Maintenance and ingest policies read by later stages (kept verbatim).
    #[serde(default)]
    pub policy: BTreeMap<String, toml::Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnSpec {
    pub name: String,
    #[serde(rename = "type")]
    pub type_name: String,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub doc: Option<String>,
}

impl TableSpec {
    pub fn qualified_name(&self) -> String {
        format!("{}.{}", self.namespace, self.name)
    }

    /// Parses one TOML definition; `origin` names the file in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self> {
        let spec: TableSpec = toml::from_str(text).map_err(|e| spec_err(origin, e.to_string()))?;
        // Validate everything now so a bad file fails at start, not at first write.
        let invalid = |source| CatalogError::InvalidSpec {
            file: origin.to_string(),
            source,
        };
        let schema = spec.schema().map_err(invalid)?;
        spec.partition_spec(&schema).map_err(invalid)?;
        spec.sort_order(&schema).map_err(invalid)?;
        Ok(spec)
    }

    /// Reads every `*.toml` below `dir` (one level of namespace folders or
    /// flat), except the device registry folder `devices/`.
    pub fn load_dir(dir: &Path) -> Result<Vec<TableSpec>> {
        let mut files = Vec::new();
        collect_toml(dir, &mut files)
            .map_err(|e| spec_err(&dir.display().to_string(), e.to_string()))?;
        files.sort();
        files
            .iter()
            .map(|f| {
                let text = std::fs::read_to_string(f)
                    .map_err(|e| spec_err(&f.display().to_string(), e.to_string()))?;
                TableSpec::from_toml(&text, &f.display().to_string())
            })
            .collect()
    }

    /// The Iceberg schema, ids assigned top-level first (1..n), nested after.
    pub fn schema(&self) -> SpecResult<Schema> {
        let mut next_id = self.columns.len() as i32 + 1;
        let fields = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let ty = parse_type(&c.type_name, &mut next_id)?;
                let mut f = if c.required {
                    NestedField::required(i as i32 + 1, &c.name, ty)
                } else {
                    NestedField::optional(i as i32 + 1, &c.name, ty)
                };
                if let Some(doc) = &c.doc {
                    f = f.with_doc(doc);
                }
                Ok(f.into())
            })
            .collect::<SpecResult<Vec<_>>>()?;
        Ok(Schema::builder().with_fields(fields).build()?)
    }

    pub fn partition_spec(&self, schema: &Schema) -> SpecResult<UnboundPartitionSpec> {
        build_partition_spec(schema, &self.partition)
    }

    pub fn sort_order(&self, schema: &Schema) -> SpecResult<SortOrder> {
        let mut builder = SortOrder::builder();
        builder.with_order_id(if self.sort.is_empty() { 0 } else { 1 });
        for item in &self.sort {
            let mut parts = item.split_whitespace();
            let col = parts.next().unwrap_or_default();
            let direction = match parts.next().map(str::to_ascii_lowercase).as_deref() {
                None | Some("asc") => SortDirection::Ascending,
                Some("desc") => SortDirection::Descending,
                Some(other) => {
                    return Err(SpecError::SortDirection {
                        item: item.clone(),
                        direction: other.to_string(),
                    });
                }
            };
            let field = schema
                .field_by_name(col)
                .ok_or_else(|| SpecError::SortColumn(col.to_string()))?;
            builder.with_sort_field(SortField {
                source_id: field.id,
                transform: Transform::Identity,
                direction,
                null_order: NullOrder::First,
            });
        }
        Ok(builder.build(schema)?)
    }
}

/// Builds a partition spec from transform expressions such as `day(ts)`.
pub fn build_partition_spec(schema: &Schema, exprs: &[String]) -> SpecResult<UnboundPartitionSpec> {
    let mut builder = UnboundPartitionSpec::builder();
    for expr in exprs {
        let (transform, column) = parse_partition_expr(expr)?;
        let field = schema
            .field_by_name(&column)
            .ok_or_else(|| SpecError::PartitionColumn(column.clone()))?;
        let name = partition_field_name(&column, &transform);
        builder = builder.add_partition_field(field.id, name, transform)?;
    }
    Ok(builder.build())
}

/// Parses `col`, `identity(col)`, `year|month|day|hour(col)`, `bucket(N, col)`,
/// `truncate(W, col)` into an Iceberg transform and its source column.
pub fn parse_partition_expr(expr: &str) -> SpecResult<(Transform, String)> {
    let expr = expr.trim();
    let bad = |reason: String| SpecError::Partition {
        expr: expr.to_string(),
        reason,
    };
    let Some(open) = expr.find('(') else {
        return Ok((Transform::Identity, unquote(expr)));
    };
    if !expr.ends_with(')') {
        return Err(bad("expected `transform(column)`".into()));
    }
    let func = expr[..open].trim().to_ascii_lowercase();
    let args: Vec<&str> = expr[open + 1..expr.len() - 1]
        .split(',')
        .map(str::trim)
        .collect();
    let width = |s: &str| {
        s.parse::<u32>()
            .map_err(|_| bad(format!("`{s}` is not a positive integer")))
    };
    let transform_one = |t: Transform| match args.as_slice() {
        [col] => Ok((t, unquote(col))),
        _ => Err(bad(format!("`{func}` takes one column"))),
    };
    match func.as_str() {
        "identity" => transform_one(Transform::Identity),
        "year" | "years" => transform_one(Transform::Year),
        "month" | "months" => transform_one(Transform::Month),
        "day" | "days" => transform_one(Transform::Day),
        "hour" | "hours" => transform_one(Transform::Hour),
        "bucket" | "truncate" => match args.as_slice() {
            [n, col] => {
                let n = width(n)?;
                let t = if func == "bucket" {
                    Transform::Bucket(n)
                } else {
                    Transform::Truncate(n)
                };
                Ok((t, unquote(col)))
            }
            _ => Err(bad(format!("`{func}` takes (N, column)"))),
        },
        other => Err(bad(format!("unknown transform `{other}`"))),
    }
}

/// Partition field names as Java/PyIceberg name them (`ts_day`, `device_id_bucket`).
fn partition_field_name(column: &str, transform: &Transform) -> String {
    match transform {
        Transform::Identity => column.to_string(),
        Transform::Year => format!("{column}_year"),
        Transform::Month => format!("{column}_month"),
        Transform::Day => format!("{column}_day"),
        Transform::Hour => format!("{column}_hour"),
        Transform::Bucket(_) => format!("{column}_bucket"),
        Transform::Truncate(_) => format!("{column}_trunc"),
        other => format!("{column}_{other}"),
    }
}

fn unquote(s: &str) -> String {
    s.trim().trim_matches('"').to_string()
}

/// Parses an Iceberg type name; nested ids are taken from `next_id`.
pub fn parse_type(name: &str, next_id: &mut i32) -> SpecResult<Type> {
    let name = name.trim();
    let lower = name.to_ascii_lowercase();
    let mut take_id = || {
        let id = *next_id;
        *next_id += 1;
        id
    };
    if let Some(inner) = lower.strip_prefix("map<").and_then(|s| s.strip_suffix('>')) {
        let (k, v) = split_top_level(inner).ok_or_else(|| SpecError::BadMap(name.to_string()))?;
        let (kid, vid) = (take_id(), take_id());
        let key = parse_type(k, next_id)?;
        let value = parse_type(v, next_id)?;
        return Ok(Type::Map(MapType::new(
            NestedField::map_key_element(kid, key).into(),
            NestedField::map_value_element(vid, value, false).into(),
        )));
    }
    if let Some(inner) = lower
        .strip_prefix("list<")
        .and_then(|s| s.strip_suffix('>'))
    {
        let eid = take_id();
        let element = parse_type(inner, next_id)?;
        return Ok(Type::List(ListType::new(
            NestedField::list_element(eid, element, false).into(),
        )));
    }
    if let Some(inner) = lower
        .strip_prefix("decimal(")
        .and_then(|s| s.strip_suffix(')'))
    {
        let (p, s) = inner
            .split_once(',')
            .ok_or_else(|| SpecError::BadDecimal(name.to_string()))?;
        let precision = p
            .trim()
            .parse()
            .map_err(|_| SpecError::BadDecimal(name.to_string()))?;
        let scale = s
            .trim()
            .parse()
            .map_err(|_| SpecError::BadDecimal(name.to_string()))?;
        return Ok(Type::Primitive(PrimitiveType::Decimal { precision, scale }));
    }
    let p = match lower.as_str() {
        "boolean" | "bool" => PrimitiveType::Boolean,
        "int" | "integer" | "int32" => PrimitiveType::Int,
        "long" | "bigint" | "int64" => PrimitiveType::Long,
        "float" | "float32" => PrimitiveType::Float,
        "double" | "float64" => PrimitiveType::Double,
        "string" | "varchar" | "text" => PrimitiveType::String,
        "binary" | "bytes" => PrimitiveType::Binary,
        "date" => PrimitiveType::Date,
        "time" => PrimitiveType::Time,
        "timestamp" => PrimitiveType::Timestamp,
        "timestamptz" => PrimitiveType::Timestamptz,
        "uuid" => PrimitiveType::Uuid,
        _ => return Err(SpecError::UnknownType(name.to_string())),
    };
    Ok(Type::Primitive(p))
}

fn split_top_level(s: &str) -> Option<(&str, &str)> {
    let mut depth = 0;
    for (i, c) in s.char_indices() {
        match c {
            '<' | '(' => depth += 1,
            '>' | ')' => depth -= 1,
            ',' if depth == 0 => return Some((&s[..i], &s[i + 1..])),
            _ => {}
        }
    }
    None
}

/// The folder of `catalog/` holding the Modbus device registry, not tables.
pub const DEVICES_DIR: &str = "devices";

fn collect_toml(dir: &Path, out: &mut Vec<std::path::PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() && path.file_name().is_some_and(|n| n == DEVICES_DIR) {
            continue;
        } else if path.is_dir() {
            collect_toml(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "toml") {
            out.push(path);
        }
    }
    Ok(())
}

fn spec_err(file: &str, message: impl Into<String>) -> CatalogError {
    CatalogError::TableSpec {
        file: file.to_string(),
        message: message.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_transforms() {
        assert_eq!(
            parse_partition_expr("day(ts)").unwrap(),
            (Transform::Day, "ts".into())
        );
        assert_eq!(
            parse_partition_expr("bucket(16, device_id)").unwrap(),
            (Transform::Bucket(16), "device_id".into())
        );
        assert_eq!(
            parse_partition_expr("site").unwrap(),
            (Transform::Identity, "site".into())
        );
        assert!(parse_partition_expr("bogus(x)").is_err());
        assert!(parse_partition_expr("bucket(x, y)").is_err());
    }

    #[test]
    fn builds_schema_with_map() {
        let spec = TableSpec::from_toml(
            r#"
namespace = "silver"
name = "p"
partition = ["day(ts)", "bucket(4, d)"]
sort = ["d", "ts desc"]
[[columns]]
name = "ts"
type = "timestamptz"
required = true
[[columns]]
name = "d"
type = "string"
[[columns]]
name = "labels"
type = "map<string,string>"
"#,
            "test",
        )
        .unwrap();
        let schema = spec.schema().unwrap();
        assert_eq!(schema.highest_field_id(), 5);
        assert_eq!(spec.partition_spec(&schema).unwrap().fields().len(), 2);
    }

    #[test]
    fn rejects_unknown_column_in_partition() {
        let err = TableSpec::from_toml(
            "namespace='a'\nname='b'\npartition=['day(nope)']\n[[columns]]\nname='ts'\ntype='timestamp'\n",
            "x.toml",
        )
        .unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
    }
}
