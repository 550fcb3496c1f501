//! The table definitions of the repository's `catalog/` folder, compiled into
//! the binary so `weir serve` works from any directory with zero config.

use crate::error::Result;
use crate::spec::TableSpec;

macro_rules! definitions {
    ($($path:literal),* $(,)?) => {
        &[$(($path, include_str!(concat!("../../../catalog/", $path)))),*]
    };
}

const DEFINITIONS: &[(&str, &str)] = definitions!(
    "bronze/raw_messages.toml",
    "bronze/dead_letters.toml",
    "silver/points.toml",
    "gold/points_1m.toml",
    "gold/points_1h.toml",
    "gold/points_1d.toml",
    "gold/fleet_1m.toml",
    "gold/alerts.toml",
);

/// Queries of the declared tables that are materialized views (`sql/`).
const VIEWS: &[(&str, &str)] = &[
    (
        "gold.points_1m",
        include_str!("../../../sql/gold/points_1m.sql"),
    ),
    (
        "gold.points_1h",
        include_str!("../../../sql/gold/points_1h.sql"),
    ),
    (
        "gold.points_1d",
        include_str!("../../../sql/gold/points_1d.sql"),
    ),
    (
        "gold.fleet_1m",
        include_str!("../../../sql/gold/fleet_1m.sql"),
    ),
];

/// Table property holding a materialized view's query.
pub const MV_DEFINITION_PROPERTY: &str = "weir.mv.definition";

/// Snapshot summary key of a materialized view's refresh snapshots
/// (`full` or `incremental`).
pub const MV_REFRESH_SUMMARY: &str = "weir.mv.refresh";

/// A rollup's newest refresh: the newest snapshot in the current one's
/// ancestry whose summary says what the rollup's rows reflect
/// ([`MV_REFRESH_SUMMARY`], `weir.mv.base-snapshot.<ns.t>`,
/// `weir.mv.base-sequence.<ns.t>` — a materialized view's refresh, or
/// another engine's write to a rollup table it maintains). Snapshots after
/// it are compactions, which change no row and record none of that. `None`
/// for a rollup never refreshed (or a plain table).
pub fn mv_last_refresh(
    metadata: &iceberg::spec::TableMetadata,
) -> Option<&iceberg::spec::SnapshotRef> {
    let mut at = metadata.current_snapshot();
    while let Some(snapshot) = at {
        if snapshot
            .summary()
            .additional_properties
            .keys()
            .any(|k| k == MV_REFRESH_SUMMARY || k.starts_with("weir.mv.base-"))
        {
            return Some(snapshot);
        }
        at = snapshot
            .parent_snapshot_id()
            .and_then(|id| metadata.snapshot_by_id(id));
    }
    None
}

/// The built-in table definitions, parsed and validated; the Gold rollups
/// carry their view query as the `weir.mv.definition` property.
pub fn builtin_specs() -> Result<Vec<TableSpec>> {
    let mut specs = DEFINITIONS
        .iter()
        .map(|(path, text)| TableSpec::from_toml(text, &format!("catalog/{path}")))
        .collect::<Result<Vec<_>>>()?;
    for spec in &mut specs {
        if let Some((_, sql)) = VIEWS.iter().find(|(n, _)| *n == spec.qualified_name()) {
            spec.properties
                .insert(MV_DEFINITION_PROPERTY.to_string(), sql.trim().to_string());
        }
    }
    Ok(specs)
}

#[cfg(test)]
mod tests {
    #[test]
    fn builtin_definitions_parse() {
        let specs = super::builtin_specs().unwrap();
        assert_eq!(specs.len(), super::DEFINITIONS.len());
        assert!(specs.iter().any(|s| s.qualified_name() == "silver.points"));
    }

    #[test]
    fn every_file_in_catalog_dir_is_built_in() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../catalog");
        let on_disk = crate::spec::TableSpec::load_dir(&dir).unwrap();
        assert_eq!(
            on_disk.len(),
            super::DEFINITIONS.len(),
            "add new catalog/ files to builtin.rs"
        );
    }
}
