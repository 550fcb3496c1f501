//! Names and locations: what a namespace or table may be called, where a new
//! table's files go, and where every live table's files are.
//!
//! A table owns every file under its location, so two live tables must never
//! have nested (or equal) locations: orphan cleanup of the outer one would
//! see the inner one's files as its own unreferenced files. The SQL catalog
//! would derive `<warehouse>/<namespace>/<name>` from any name, so
//! `public."victim/data"` would land inside `public.victim`; Weir derives the
//! location itself (one path component per identifier, see
//! [`path_component`]) and refuses a location that overlaps another table's.

use iceberg::TableIdent;

use crate::error::{CatalogError, Result};

/// The longest namespace or table name, in bytes: one file-name component on
/// common filesystems (ext4, XFS, APFS, NTFS), and what S3 keys are built of.
pub const MAX_NAME_BYTES: usize = 255;

/// Checks a namespace or table name before anything is created under it:
/// not empty, at most [`MAX_NAME_BYTES`] bytes, no NUL or other control
/// characters. `kind` is "namespace" or "table", for the message.
pub fn validate_name(kind: &'static str, name: &str) -> Result<()> {
    let invalid = |reason: String| CatalogError::InvalidName {
        kind,
        name: shown(name),
        reason,
    };
    if name.is_empty() {
        return Err(invalid("the name is empty".into()));
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(invalid(format!(
            "the name is {} bytes long; at most {MAX_NAME_BYTES} are allowed",
            name.len()
        )));
    }
    if let Some(c) = name.chars().find(|c| c.is_control()) {
        return Err(invalid(format!(
            "the name contains the control character U+{:04X}",
            c as u32
        )));
    }
    Ok(())
}

/// A name cut short for a message (a 5,000-character name is not echoed).
fn shown(name: &str) -> String {
    const KEEP: usize = 64;
    let printable: String = name
        .chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect();
    match printable.char_indices().nth(KEEP) {
        Some((cut, _)) => format!("{}… ({} bytes)", &printable[..cut], name.len()),
        None => printable,
    }
}

/// The directory name a namespace or table name is stored under: the name
/// itself when it is one plain path component (every name Weir declares),
/// otherwise the name with `/`, `\`, `%` and leading dots replaced by `_` and
/// a hash of the original name appended, so it stays one component (never
/// a directory inside another table's, nor outside the warehouse; `%` would
/// be decoded as an escape by file URLs) and two names never share one.
pub fn path_component(name: &str) -> String {
    let unsafe_char = |c: char| matches!(c, '/' | '\\' | '%') || c.is_control();
    if !name.is_empty() && !name.starts_with('.') && !name.contains(unsafe_char) {
        return name.to_string();
    }
    let mut plain: String = name
        .chars()
        .map(|c| if unsafe_char(c) { '_' } else { c })
        .collect();
    let dots = plain.len() - plain.trim_start_matches('.').len();
    plain.replace_range(..dots, &"_".repeat(dots));
    let suffix = format!("-{:016x}", fnv1a(name.as_bytes()));
    // Stay one file-name component long.
    let mut keep = MAX_NAME_BYTES.saturating_sub(suffix.len()).min(plain.len());
    while !plain.is_char_boundary(keep) {
        keep -= 1;
    }
    plain.truncate(keep);
    plain + &suffix
}

/// FNV-1a: a hash that never changes between builds (locations are derived
/// from it once and then recorded in the table metadata).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// A location as a comparable path: no scheme (`file://`, `s3://`; the
/// bucket stays), no leading or trailing `/`. `file:///a/b/`, `file:/a/b`
/// and the object-store key `a/b` all become `a/b`.
pub fn normalize_location(location: &str) -> &str {
    let rest = match location.find("://") {
        Some(i) => &location[i + 3..],
        None => location.strip_prefix("file:").unwrap_or(location),
    };
    rest.trim_matches('/')
}

/// Whether `path` is the location `dir` or lies under it, compared as whole
/// path components: `a/victim2` is not under `a/victim`.
pub fn is_within(path: &str, dir: &str) -> bool {
    let (path, dir) = (normalize_location(path), normalize_location(dir));
    dir.is_empty()
        || path == dir
        || (path.starts_with(dir) && path.as_bytes().get(dir.len()) == Some(&b'/'))
}

/// Whether one location lies inside the other (or they are the same).
pub fn overlaps(a: &str, b: &str) -> bool {
    is_within(a, b) || is_within(b, a)
}

/// Where a live table's files are: the location its metadata records and
/// the directory its current metadata file lies in (`<location>/metadata/`
/// unless `write.metadata.path` moved it). A table whose metadata cannot be
/// read is still listed, with the location derived from its metadata path.
#[derive(Debug, Clone)]
pub struct TableLocation {
    pub ident: TableIdent,
    /// The catalog row's metadata file.
    pub metadata_location: String,
    /// The table location from the metadata; `None` when the metadata file
    /// could not be read.
    pub location: Option<String>,
}

impl TableLocation {
    /// Every directory whose files belong to this table.
    pub fn roots(&self) -> Vec<String> {
        let mut roots: Vec<String> = self.location.iter().cloned().collect();
        let dir = self
            .metadata_location
            .rsplit_once('/')
            .map_or(self.metadata_location.as_str(), |(dir, _)| dir);
        // `<location>/metadata/<file>`: the table's directory is the parent.
        let root = dir.strip_suffix("/metadata").unwrap_or(dir);
        if !roots.iter().any(|r| is_within(root, r)) {
            roots.push(root.to_string());
        }
        roots
    }

    /// Whether `path` lies under one of the table's directories.
    pub fn contains(&self, path: &str) -> bool {
        self.roots().iter().any(|r| is_within(path, r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_bounded_and_printable() {
        assert!(validate_name("table", "points").is_ok());
        assert!(validate_name("table", "victim/data").is_ok());
        assert!(validate_name("table", &"é".repeat(127)).is_ok()); // 254 bytes
        let long = "x".repeat(5000);
        let err = validate_name("table", &long).unwrap_err();
        assert!(matches!(err, CatalogError::InvalidName { .. }), "{err}");
        let message = err.to_string();
        assert!(message.contains("5000 bytes"), "{message}");
        assert!(message.len() < 300, "the name is not echoed: {message}");
        assert!(validate_name("table", &"é".repeat(128)).is_err()); // 256 bytes
        assert!(validate_name("table", "").is_err());
        assert!(validate_name("namespace", "a\0b").is_err());
        assert!(validate_name("table", "a\nb").is_err());
    }

    #[test]
    fn a_name_is_one_path_component() {
        assert_eq!(path_component("points"), "points");
        assert_eq!(path_component("raw_messages.v2"), "raw_messages.v2");
        for name in ["victim/data", "..", ".", "a\\b", "a%2Fb", "/", ".hidden"] {
            let c = path_component(name);
            assert!(!c.contains(['/', '\\', '%']), "{name} -> {c}");
            assert!(!c.starts_with('.'), "{name} -> {c}");
            assert!(c.len() <= MAX_NAME_BYTES);
        }
        assert!(path_component("victim/data").starts_with("victim_data-"));
        // Names that sanitize alike still get their own directories.
        assert_ne!(path_component("a/b"), path_component("a\\b"));
        assert_ne!(path_component("a/b"), "a_b");
        let long = format!("{}/", "é".repeat(127));
        assert!(path_component(&long).len() <= MAX_NAME_BYTES);
    }

    #[test]
    fn locations_compare_as_whole_components() {
        assert!(is_within(
            "file:///w/public/victim/data/x",
            "file:/w/public/victim"
        ));
        assert!(is_within("w/public/victim", "file:///w/public/victim/"));
        assert!(!is_within(
            "file:///w/public/victim2/x",
            "file:///w/public/victim"
        ));
        assert!(!is_within(
            "file:///w/public/vic",
            "file:///w/public/victim"
        ));
        assert!(is_within("s3://b/w/t/f", "s3://b/w/t"));
        assert!(!is_within("s3://c/w/t/f", "s3://b/w/t"));
        assert!(overlaps("file:///w/a", "file:///w/a/b"));
        assert!(overlaps("file:///w/a/b", "file:///w/a"));
        assert!(!overlaps("file:///w/a", "file:///w/ab"));
    }

    #[test]
    fn a_table_owns_its_location_and_metadata_directory() {
        let ident = TableIdent::from_strs(["public", "t"]).unwrap();
        let listed = TableLocation {
            ident: ident.clone(),
            metadata_location: "file:///w/public/t/metadata/00001-x.metadata.json".into(),
            location: None,
        };
        assert_eq!(listed.roots(), vec!["file:///w/public/t".to_string()]);
        assert!(listed.contains("file:///w/public/t/data/a.parquet"));
        assert!(!listed.contains("file:///w/public/t2/data/a.parquet"));
        let moved = TableLocation {
            ident,
            metadata_location: "file:///m/t/00001-x.metadata.json".into(),
            location: Some("file:///w/public/t".into()),
        };
        assert_eq!(moved.roots(), vec!["file:///w/public/t", "file:///m/t"]);
    }
}
