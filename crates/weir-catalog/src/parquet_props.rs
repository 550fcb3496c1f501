//! Parquet writer settings from a table's `write.parquet.*` properties.
//!
//! iceberg-rust 0.10's `ParquetWriterBuilder::from_table_properties` ignores
//! them (its own TODO says so) and writes uncompressed files, whatever the
//! table declares; Weir translates the standard Iceberg keys itself:
//!
//! - `write.parquet.compression-codec`: zstd (default), snappy, gzip, lz4,
//!   brotli, uncompressed/none;
//! - `write.parquet.compression-level` (zstd default 1: ingest is CPU-bound
//!   on 2 cores, level 1 keeps most of the size win);
//! - `write.parquet.page-size-bytes`, `write.parquet.page-row-limit`,
//!   `write.parquet.dict-size-bytes`;
//! - `write.parquet.row-group-size-bytes` (encoded size, as Java's) and
//!   `write.parquet.row-group-limit` (rows, default arrow-rs's 1 Mi);
//! - `write.parquet.bloom-filter-enabled.column.<col>` (true/false) and
//!   `write.parquet.bloom-filter-fpp.column.<col>`;
//! - content-defined chunking, as iceberg-rust reads it.

use std::collections::HashMap;

use iceberg::spec::TableProperties;
use parquet::basic::{BrotliLevel, Compression, GzipLevel, ZstdLevel};
use parquet::file::properties::{CdcOptions, WriterProperties};

pub const CODEC: &str = "write.parquet.compression-codec";
pub const LEVEL: &str = "write.parquet.compression-level";
pub const BLOOM_ENABLED: &str = "write.parquet.bloom-filter-enabled.column.";
pub const BLOOM_FPP: &str = "write.parquet.bloom-filter-fpp.column.";

/// Whether `properties` ask writers for a bloom filter on any column (then
/// readers look for them; otherwise there are none to read, unless another
/// writer ignored the table's properties).
pub fn declares_bloom_filters(properties: &HashMap<String, String>) -> bool {
    properties
        .iter()
        .any(|(k, v)| k.starts_with(BLOOM_ENABLED) && v.trim().eq_ignore_ascii_case("true"))
}

/// A table property the Parquet writer cannot use.
#[derive(Debug, thiserror::Error)]
pub enum PropertyError {
    /// `key = "value" is not …`.
    #[error("{key} = {value:?} is not {expected}")]
    BadValue {
        key: String,
        value: String,
        expected: &'static str,
    },
    /// A compression level the codec refuses.
    #[error("{key}: {source}")]
    Level {
        key: &'static str,
        source: parquet::errors::ParquetError,
    },
}

fn bad_value(key: impl Into<String>, value: &str, expected: &'static str) -> PropertyError {
    PropertyError::BadValue {
        key: key.into(),
        value: value.to_string(),
        expected,
    }
}

fn bad_level(source: parquet::errors::ParquetError) -> PropertyError {
    PropertyError::Level { key: LEVEL, source }
}

/// Writer properties for a table with `properties`.
pub fn writer_properties(
    properties: &HashMap<String, String>,
    parsed: &TableProperties,
) -> Result<WriterProperties, PropertyError> {
    let level: Option<i32> = match properties.get(LEVEL) {
        Some(v) => Some(
            v.trim()
                .parse()
                .map_err(|_| bad_value(LEVEL, v, "an integer"))?,
        ),
        None => None,
    };
    let codec = properties
        .get(CODEC)
        .map(|c| c.trim().to_ascii_lowercase())
        .unwrap_or_else(|| "zstd".into());
    let compression = match codec.as_str() {
        "zstd" => Compression::ZSTD(ZstdLevel::try_new(level.unwrap_or(1)).map_err(bad_level)?),
        "snappy" => Compression::SNAPPY,
        "lz4" => Compression::LZ4_RAW,
        "gzip" => Compression::GZIP(match level {
            Some(l) => GzipLevel::try_new(l as u32).map_err(bad_level)?,
            None => GzipLevel::default(),
        }),
        "brotli" => Compression::BROTLI(match level {
            Some(l) => BrotliLevel::try_new(l as u32).map_err(bad_level)?,
            None => BrotliLevel::default(),
        }),
        "uncompressed" | "none" => Compression::UNCOMPRESSED,
        other => return Err(bad_value(CODEC, other, "a known codec")),
    };
    let usize_prop = |key: &str| -> Result<Option<usize>, PropertyError> {
        properties
            .get(key)
            .map(|v| {
                v.trim()
                    .parse::<usize>()
                    .map_err(|_| bad_value(key, v, "a positive integer"))
            })
            .transpose()
    };
    let mut builder = WriterProperties::builder().set_compression(compression);
    if let Some(bytes) = usize_prop("write.parquet.page-size-bytes")? {
        builder = builder.set_data_page_size_limit(bytes);
    }
    if let Some(rows) = usize_prop("write.parquet.page-row-limit")? {
        builder = builder.set_data_page_row_count_limit(rows);
    }
    if let Some(bytes) = usize_prop("write.parquet.dict-size-bytes")? {
        builder = builder.set_dictionary_page_size_limit(bytes);
    }
    if let Some(rows) = usize_prop("write.parquet.row-group-limit")? {
        builder = builder.set_max_row_group_row_count(Some(rows.max(1)));
    }
    if let Some(bytes) = usize_prop("write.parquet.row-group-size-bytes")? {
        builder = builder.set_max_row_group_bytes(Some(bytes.max(1)));
    }
    // Bloom filters per column (Iceberg's keys): pruning "these N sensors"
    // where min/max cannot (ids of hash buckets interleave).
    for (key, value) in properties {
        let Some(column) = key.strip_prefix(BLOOM_ENABLED) else {
            continue;
        };
        let enabled = match value.trim().to_ascii_lowercase().as_str() {
            "true" => true,
            "false" => false,
            other => return Err(bad_value(key, other, "true/false")),
        };
        let path = parquet::schema::types::ColumnPath::from(column.to_string());
        builder = builder.set_column_bloom_filter_enabled(path.clone(), enabled);
        if let Some(fpp) = properties.get(&format!("{BLOOM_FPP}{column}")) {
            let fpp: f64 = fpp
                .trim()
                .parse()
                .ok()
                .filter(|f| *f > 0.0 && *f < 1.0)
                .ok_or_else(|| bad_value(format!("{BLOOM_FPP}{column}"), fpp, "in (0, 1)"))?;
            builder = builder.set_column_bloom_filter_fpp(path, fpp);
        }
    }
    let cdc = parsed.cdc_enabled.then_some(CdcOptions {
        min_chunk_size: parsed.cdc_min_chunk_size,
        max_chunk_size: parsed.cdc_max_chunk_size,
        norm_level: parsed.cdc_norm_level,
    });
    Ok(builder.set_content_defined_chunking(cdc).build())
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquet::schema::types::ColumnPath;

    #[test]
    fn bloom_filters_per_column() {
        let p = props(&[
            (
                "write.parquet.bloom-filter-enabled.column.device_id",
                "true",
            ),
            ("write.parquet.bloom-filter-fpp.column.device_id", "0.01"),
        ]);
        let w = writer_properties(&p, &parsed(&p)).unwrap();
        let bloom = w
            .bloom_filter_properties(&ColumnPath::from("device_id"))
            .expect("bloom filter on device_id");
        assert_eq!(bloom.fpp, 0.01);
        assert!(
            w.bloom_filter_properties(&ColumnPath::from("value"))
                .is_none()
        );
        let bad = props(&[("write.parquet.bloom-filter-enabled.column.x", "yes")]);
        assert!(writer_properties(&bad, &parsed(&bad)).is_err());
    }

    fn props(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn parsed(p: &HashMap<String, String>) -> TableProperties {
        TableProperties::try_from(p).unwrap()
    }

    #[test]
    fn zstd_level_one_by_default() {
        let p = props(&[]);
        let w = writer_properties(&p, &parsed(&p)).unwrap();
        assert_eq!(
            w.compression(&ColumnPath::from("value")),
            Compression::ZSTD(ZstdLevel::try_new(1).unwrap())
        );
    }

    #[test]
    fn codecs_and_levels_from_properties() {
        let p = props(&[(CODEC, "SNAPPY")]);
        let w = writer_properties(&p, &parsed(&p)).unwrap();
        assert_eq!(
            w.compression(&ColumnPath::from("value")),
            Compression::SNAPPY
        );
        let p = props(&[
            (CODEC, "zstd"),
            (LEVEL, "9"),
            ("write.parquet.row-group-limit", "1000"),
        ]);
        let w = writer_properties(&p, &parsed(&p)).unwrap();
        assert_eq!(
            w.compression(&ColumnPath::from("value")),
            Compression::ZSTD(ZstdLevel::try_new(9).unwrap())
        );
        assert_eq!(w.max_row_group_row_count(), Some(1000));
    }

    #[test]
    fn bad_values_are_errors() {
        for bad in [
            props(&[(CODEC, "lzo2")]),
            props(&[(LEVEL, "high")]),
            props(&[(CODEC, "zstd"), (LEVEL, "99")]),
        ] {
            assert!(writer_properties(&bad, &parsed(&bad)).is_err());
        }
    }
}
