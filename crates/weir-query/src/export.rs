//! Where `COPY … TO` may write: only below the server's export directory
//! (`--export-dir`), and nowhere when none is configured (issue 24: COPY
//! wrote any path the server process can write, for anyone on a loopback
//! server without users).

use std::path::{Component, Path, PathBuf};

use crate::error::{QueryError, Result};

/// The absolute path COPY writes for `target` (relative targets are below
/// the export directory); refused outside `export_dir`.
pub(crate) fn check_copy_target(export_dir: Option<&Path>, target: &str) -> Result<String> {
    let Some(dir) = export_dir else {
        return Err(QueryError::PermissionDenied(
            "COPY … TO is off on this server; start it with --export-dir DIR \
             to allow writing files below DIR"
                .into(),
        ));
    };
    let path = local_path(target).ok_or_else(|| {
        QueryError::PermissionDenied(format!(
            "COPY may only write local files below the export directory {}, not {target}",
            dir.display()
        ))
    })?;
    let resolved = if path.is_absolute() {
        path
    } else {
        dir.join(path)
    };
    let normal = normalize(&resolved).ok_or_else(|| {
        QueryError::PermissionDenied(format!("COPY target {target} leaves the export directory"))
    })?;
    // The export directory as it really is (symlinks resolved), and the
    // deepest existing ancestor of the target likewise: a symlink inside the
    // export directory must not lead out of it.
    let root = dir
        .canonicalize()
        .map_err(|e| QueryError::Invalid(format!("export directory {}: {e}", dir.display())))?;
    let mut existing = normal.as_path();
    let mut rest = Vec::new();
    while !existing.exists() {
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            _ => break,
        }
    }
    let mut real = existing
        .canonicalize()
        .unwrap_or_else(|_| existing.to_path_buf());
    for name in rest.iter().rev() {
        real.push(name);
    }
    if real.starts_with(&root) && real != root {
        Ok(real.to_string_lossy().into_owned())
    } else {
        Err(QueryError::PermissionDenied(format!(
            "COPY may only write below the export directory {}, not {target}",
            dir.display()
        )))
    }
}

/// A local path from `target` (a plain path or a `file://` URL).
fn local_path(target: &str) -> Option<PathBuf> {
    if let Some(rest) = target.strip_prefix("file://") {
        return Some(PathBuf::from(rest));
    }
    if target.contains("://") {
        return None;
    }
    Some(PathBuf::from(target))
}

/// `..` and `.` resolved lexically; None if `..` climbs above the root.
fn normalize(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_stays_in_the_export_directory() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let ok = |t: &str| check_copy_target(Some(root), t);
        assert!(ok(&format!("{}/out.parquet", root.display())).is_ok());
        assert!(ok("sub/out.csv").is_ok());
        assert!(ok(&format!("file://{}/a.csv", root.display())).is_ok());
        for bad in [
            "/tmp/elsewhere.csv",
            "../escape.csv",
            "sub/../../escape.csv",
            "s3://bucket/x.parquet",
        ] {
            let err = ok(bad).unwrap_err();
            assert!(
                matches!(err, QueryError::PermissionDenied(_)),
                "{bad}: {err}"
            );
        }
        std::os::unix::fs::symlink("/tmp", root.join("link")).unwrap();
        assert!(ok("link/out.csv").is_err());
        assert!(matches!(
            check_copy_target(None, "/tmp/x.csv"),
            Err(QueryError::PermissionDenied(_))
        ));
    }
}
