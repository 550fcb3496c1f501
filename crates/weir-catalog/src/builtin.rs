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
);

/// The built-in table definitions, parsed and validated.
pub fn builtin_specs() -> Result<Vec<TableSpec>> {
    DEFINITIONS
        .iter()
        .map(|(path, text)| TableSpec::from_toml(text, &format!("catalog/{path}")))
        .collect()
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
