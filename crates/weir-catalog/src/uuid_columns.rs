//! Iceberg `uuid` columns.
//!
//! Iceberg stores a `uuid` as 16 bytes (Parquet `FIXED_LEN_BYTE_ARRAY(16)`
//! with the UUID logical type; iceberg-rust reads it as Arrow
//! `FixedSizeBinary(16)`). DataFusion 53 has no UUID type and compares, casts
//! and prints 16 raw bytes, so Weir's SQL shows a `uuid` column as its
//! canonical text (`550e8400-e29b-41d4-a716-446655440000`, lower case, as
//! Spark and Trino print it): files are read as bytes and converted on the
//! way out of the scan, text is parsed back to bytes on the way into a file.
//! Lower-case hyphenated text sorts like the bytes, so `min`/`max`/`ORDER BY`
//! agree with Iceberg's ordering of uuids.
//!
//! An Arrow field with the canonical extension `arrow.uuid` (pyarrow's
//! `pa.uuid()`) or a `UUID` column in DDL creates an Iceberg `uuid` column.
//!
//! By hand rather than a crate: arrow-rs has the `arrow.uuid` extension type
//! but no cast between it and text; the `uuid` crate does the parsing and
//! formatting of each value.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, FixedSizeBinaryArray, FixedSizeBinaryBuilder, StringArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field};
use iceberg::spec::{NestedField, PrimitiveType, Schema, Type};
use uuid::Uuid;

/// Arrow field metadata key naming an extension type.
pub const EXTENSION_NAME_KEY: &str = "ARROW:extension:name";
/// The canonical Arrow extension of 16-byte UUIDs.
pub const ARROW_UUID: &str = "arrow.uuid";

/// A `FixedSizeBinary(16)` field marked as a UUID (`arrow.uuid`).
pub fn uuid_field(name: &str, nullable: bool) -> Field {
    Field::new(name, DataType::FixedSizeBinary(16), nullable).with_metadata(HashMap::from([(
        EXTENSION_NAME_KEY.to_string(),
        ARROW_UUID.to_string(),
    )]))
}

/// Whether an Arrow field holds UUIDs by the canonical extension.
pub fn is_arrow_uuid(field: &Field) -> bool {
    field.data_type() == &DataType::FixedSizeBinary(16)
        && field
            .metadata()
            .get(EXTENSION_NAME_KEY)
            .is_some_and(|n| n == ARROW_UUID)
}

/// Whether a top-level Iceberg field is a `uuid`.
pub fn is_iceberg_uuid(field: &NestedField) -> bool {
    matches!(*field.field_type, Type::Primitive(PrimitiveType::Uuid))
}

/// `schema` with the named top-level columns typed `uuid` (Iceberg's Arrow
/// mapping makes `FixedSizeBinary(16)` a `fixed[16]`).
pub fn with_uuid_columns(schema: Schema, names: &[String]) -> iceberg::Result<Schema> {
    if names.is_empty() {
        return Ok(schema);
    }
    let fields: Vec<Arc<NestedField>> = schema
        .as_struct()
        .fields()
        .iter()
        .map(|f| {
            if names.iter().any(|n| n == &f.name) {
                let mut uuid = NestedField::new(
                    f.id,
                    f.name.clone(),
                    Type::Primitive(PrimitiveType::Uuid),
                    f.required,
                );
                uuid.doc = f.doc.clone();
                Arc::new(uuid)
            } else {
                f.clone()
            }
        })
        .collect();
    Schema::builder()
        .with_schema_id(schema.schema_id())
        .with_identifier_field_ids(schema.identifier_field_ids())
        .with_fields(fields)
        .build()
}

/// 16-byte values as canonical lower-case text.
pub fn to_text(array: &FixedSizeBinaryArray) -> ArrayRef {
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let values: StringArray = array
        .iter()
        .map(|v| {
            v.map(|bytes| match Uuid::from_slice(bytes) {
                Ok(u) => u.hyphenated().encode_lower(&mut buf).to_string(),
                // FixedSizeBinary(16) always has 16 bytes; kept total anyway.
                Err(_) => String::new(),
            })
        })
        .collect();
    Arc::new(values)
}

/// Why a text column cannot be stored as UUIDs.
#[derive(Debug, thiserror::Error)]
pub enum UuidTextError {
    #[error("{0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("text column expected")]
    NotText,
    /// The first value that is not a UUID (long values cut short).
    #[error("'{value}' is not a UUID ({source})")]
    NotUuid { value: String, source: uuid::Error },
}

/// Text (any string type) parsed as UUIDs (hyphenated, simple, braced or
/// `urn:uuid:`), as 16-byte values; the first value that is not a UUID is
/// the error.
pub fn from_text(array: &dyn Array) -> Result<FixedSizeBinaryArray, UuidTextError> {
    let text = cast(array, &DataType::Utf8)?;
    let text = text
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or(UuidTextError::NotText)?;
    let mut out = FixedSizeBinaryBuilder::with_capacity(text.len(), 16);
    for value in text.iter() {
        match value {
            None => out.append_null(),
            Some(s) => {
                let u = Uuid::try_parse(s.trim()).map_err(|source| UuidTextError::NotUuid {
                    value: truncate(s),
                    source,
                })?;
                out.append_value(u.as_bytes())?;
            }
        }
    }
    Ok(out.finish())
}

fn truncate(s: &str) -> String {
    match s.char_indices().nth(64) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trip_and_errors() {
        let text = StringArray::from(vec![
            Some("550E8400-E29B-41D4-A716-446655440000"),
            None,
            Some("{00000000-0000-0000-0000-000000000001}"),
            Some("urn:uuid:ffffffff-ffff-ffff-ffff-ffffffffffff"),
        ]);
        let bytes = from_text(&text).unwrap();
        assert_eq!(bytes.len(), 4);
        assert!(bytes.is_null(1));
        let back = to_text(&bytes);
        let back = back.as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(back.value(0), "550e8400-e29b-41d4-a716-446655440000");
        assert!(back.is_null(1));
        assert_eq!(back.value(2), "00000000-0000-0000-0000-000000000001");
        assert_eq!(back.value(3), "ffffffff-ffff-ffff-ffff-ffffffffffff");
        let err = from_text(&StringArray::from(vec!["not-a-uuid"]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("'not-a-uuid' is not a UUID"), "{err}");
    }

    #[test]
    fn text_order_is_byte_order() {
        let a = Uuid::from_bytes([0x0a; 16]).hyphenated().to_string();
        let b = Uuid::from_bytes([0xa0; 16]).hyphenated().to_string();
        assert!(a < b);
    }
}
