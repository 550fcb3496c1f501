//! Session settings: which a caller may change, and the bounds no session
//! can lift (issue 24: a read user set `datafusion.sql_parser.dialect` to
//! slip a DROP past the role check, and `batch_size = 4000000000` to drive
//! the server into the OOM killer).
//!
//! - Anyone may set: `weir.*` (`mv_rewrite`, `file_cache`), the time zone,
//!   the default catalog and schema, `batch_size` (bounded), `explain.*` and
//!   `format.*` (how results and plans are shown).
//! - Only admins may set every other `datafusion.*` setting: the SQL
//!   dialect and parser options change what a text means, and optimizer and
//!   execution options change what a query may cost.
//! - Nobody may set `datafusion.runtime.*` in a session (a session memory
//!   limit would be a pool of its own beside the server's: `--query-memory-mb`
//!   bounds all queries together).
//! - Bounds for everyone: see [`check`].

use crate::error::{QueryError, Result};
use crate::statement::{Access, MAX_PARSER_RECURSION};

/// Largest `datafusion.execution.batch_size` a session may set.
pub const MAX_BATCH_SIZE: usize = 1 << 20;
/// Largest `datafusion.execution.target_partitions` a session may set.
pub const MAX_TARGET_PARTITIONS: usize = 256;

/// Settings anyone may change.
const ANYONE: &[&str] = &[
    "datafusion.execution.time_zone",
    "datafusion.execution.batch_size",
    "datafusion.catalog.default_catalog",
    "datafusion.catalog.default_schema",
];
/// Prefixes of settings anyone may change.
const ANYONE_PREFIXES: &[&str] = &["weir.", "datafusion.explain.", "datafusion.format."];

/// The access changing setting `name` (lower case) needs.
pub fn access(name: &str) -> Access {
    if ANYONE.contains(&name) || ANYONE_PREFIXES.iter().any(|p| name.starts_with(p)) {
        Access::Read
    } else {
        Access::Admin
    }
}

/// Refuses values beyond the bounds no session can lift.
pub fn check(name: &str, value: &str) -> Result<()> {
    let name = name.to_ascii_lowercase();
    if name.starts_with("datafusion.runtime.") {
        return Err(QueryError::Invalid(format!(
            "{name} cannot be changed in a session; it is a server setting \
             (query memory: --query-memory-mb)"
        )));
    }
    let bounded = |max: usize, min: usize| -> Result<()> {
        let n: usize = value.trim().parse().map_err(|_| {
            QueryError::Invalid(format!("{name} must be a whole number, got {value:?}"))
        })?;
        if n < min || n > max {
            return Err(QueryError::Invalid(format!(
                "{name} = {n} is out of bounds: {min} to {max}"
            )));
        }
        Ok(())
    };
    match name.as_str() {
        "datafusion.execution.batch_size" => bounded(MAX_BATCH_SIZE, 1),
        "datafusion.execution.target_partitions" => bounded(MAX_TARGET_PARTITIONS, 0),
        "datafusion.sql_parser.recursion_limit" => bounded(MAX_PARSER_RECURSION, 1),
        // Checked here: DataFusion takes any text and fails on the first
        // timestamp a query then renders.
        "datafusion.execution.time_zone" if !value.trim().is_empty() => {
            <arrow::array::timezone::Tz as std::str::FromStr>::from_str(value.trim())
                .map(|_| ())
                .map_err(|_| {
                    QueryError::Invalid(format!(
                        "unknown time zone {value:?}: use an IANA name (Europe/Berlin, UTC) or an offset (+01:00)"
                    ))
                })
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn who_may_set_what() {
        assert_eq!(access("weir.mv_rewrite"), Access::Read);
        assert_eq!(access("datafusion.execution.time_zone"), Access::Read);
        assert_eq!(access("datafusion.sql_parser.dialect"), Access::Admin);
        assert_eq!(
            access("datafusion.execution.target_partitions"),
            Access::Admin
        );
        assert_eq!(access("datafusion.runtime.memory_limit"), Access::Admin);
    }

    #[test]
    fn bounds_hold_for_everyone() {
        assert!(check("datafusion.execution.batch_size", "8192").is_ok());
        assert!(check("datafusion.execution.batch_size", "4000000000").is_err());
        assert!(check("datafusion.execution.batch_size", "0").is_err());
        assert!(check("datafusion.sql_parser.recursion_limit", "100000").is_err());
        assert!(check("datafusion.runtime.memory_limit", "100G").is_err());
        assert!(check("weir.mv_rewrite", "false").is_ok());
    }
}
