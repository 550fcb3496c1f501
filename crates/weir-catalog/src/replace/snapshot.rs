//! The snapshot of a staged replace: its manifest list, summary and
//! metadata file on top of the table's head.

use std::collections::HashMap;

use iceberg::spec::{
    MAIN_BRANCH, ManifestFile, ManifestListWriter, Operation, Snapshot, SnapshotReference,
    SnapshotRetention, Summary,
};
use iceberg::table::Table;
use uuid::Uuid;

use crate::error::{CatalogError, Result};
use crate::swap::write_next_metadata;
use crate::watermark::{table_sources, table_watermarks};
use crate::writer::COMMIT_ID_KEY;

use super::replace_error;
use super::staged::Staged;

/// Writes the manifest list and the metadata file of the replace snapshot on
/// top of `table`'s head; returns the new metadata location.
pub(super) async fn finish(
    table: &Table,
    staged: &Staged,
    manifests: Vec<ManifestFile>,
    properties: &HashMap<String, String>,
    commit_id: Uuid,
    changes_rows: bool,
) -> Result<String> {
    let name = table.identifier().to_string();
    let fail = |reason: &str| replace_error(&name, reason);
    let ice = |e: iceberg::Error| CatalogError::iceberg(name.clone(), e);
    let metadata = table.metadata();
    let current = metadata
        .current_snapshot()
        .ok_or_else(|| fail("table has no snapshot"))?;
    let snapshot_id = staged.snapshot_id;
    let next_seq = metadata.next_sequence_number();
    let list_path = format!(
        "{}/metadata/snap-{snapshot_id}-{next_seq}-{commit_id}.avro",
        metadata.location()
    );
    let out = table.file_io().new_output(&list_path).map_err(ice)?;
    let mut list_writer = ManifestListWriter::v2(
        out.writer().await.map_err(ice)?,
        snapshot_id,
        Some(current.snapshot_id()),
        next_seq,
    );
    list_writer
        .add_manifests(manifests.into_iter())
        .map_err(ice)?;
    list_writer.close().await.map_err(ice)?;

    let mut props = properties.clone();
    props.insert(COMMIT_ID_KEY.into(), commit_id.to_string());
    // Carry the source watermarks forward so they survive snapshot expiry.
    for source in table_sources(table) {
        props.extend(table_watermarks(table, &source).to_properties(&source));
    }
    count_changes(&mut props, staged);
    count_totals(&mut props, &current.summary().additional_properties, staged);
    let snapshot = Snapshot::builder()
        .with_manifest_list(list_path)
        .with_snapshot_id(snapshot_id)
        .with_parent_snapshot_id(Some(current.snapshot_id()))
        .with_sequence_number(next_seq)
        .with_summary(Summary {
            operation: operation(staged, changes_rows),
            additional_properties: props,
        })
        .with_schema_id(metadata.current_schema_id())
        .with_timestamp_ms(chrono::Utc::now().timestamp_millis())
        .build();

    let current_location = table
        .metadata_location()
        .ok_or_else(|| fail("table has no metadata location"))?;
    let new_metadata = metadata
        .clone()
        .into_builder(Some(current_location.to_string()))
        .add_snapshot(snapshot)
        .and_then(|b| {
            b.set_ref(
                MAIN_BRANCH,
                SnapshotReference::new(snapshot_id, SnapshotRetention::branch(None, None, None)),
            )
        })
        .and_then(|b| b.build())
        .map_err(ice)?
        .metadata;
    write_next_metadata(table, &new_metadata).await
}

/// Removing files without replacements drops rows (retention); a manifest
/// merge alone is a `replace` without data change.
fn operation(staged: &Staged, changes_rows: bool) -> Operation {
    if staged.added_files == 0 && (staged.deleted_files > 0 || staged.added_delete_files > 0) {
        Operation::Delete
    } else if changes_rows {
        Operation::Overwrite
    } else {
        Operation::Replace
    }
}

/// The snapshot summary's counts of what this snapshot changed.
fn count_changes(props: &mut HashMap<String, String>, staged: &Staged) {
    for (k, v) in [
        ("added-data-files", staged.added_files),
        ("deleted-data-files", staged.deleted_files),
        ("added-records", staged.added_rows),
        ("deleted-records", staged.deleted_rows),
        (
            "added-files-size",
            staged.added_bytes + staged.added_delete_bytes,
        ),
        ("removed-files-size", staged.deleted_bytes),
    ] {
        props.insert(k.into(), v.to_string());
    }
    if staged.added_delete_files > 0 {
        for (k, v) in [
            ("added-delete-files", staged.added_delete_files),
            ("added-position-delete-files", staged.added_delete_files),
            ("added-position-deletes", staged.added_position_deletes),
        ] {
            props.insert(k.into(), v.to_string());
        }
    }
    if staged.manifests_replaced > 0 {
        let created = staged.written.len() as u64;
        for (k, v) in [
            ("manifests-created", created),
            ("manifests-replaced", staged.manifests_replaced),
            ("manifests-kept", staged.kept.len() as u64),
            ("entries-processed", staged.entries_processed),
        ] {
            props.insert(k.into(), v.to_string());
        }
    }
}

/// The snapshot summary's table totals: the parent's (`totals`) moved by
/// this snapshot's changes.
fn count_totals(
    props: &mut HashMap<String, String>,
    totals: &HashMap<String, String>,
    staged: &Staged,
) {
    for (k, plus, minus) in [
        ("total-records", staged.added_rows, staged.deleted_rows),
        ("total-data-files", staged.added_files, staged.deleted_files),
        ("total-files-size", staged.added_bytes, staged.deleted_bytes),
    ] {
        if let Some(total) = totals.get(k).and_then(|v| v.parse::<u64>().ok()) {
            props.insert(k.into(), (total + plus).saturating_sub(minus).to_string());
        }
    }
    for (k, plus) in [
        ("total-delete-files", staged.added_delete_files),
        ("total-position-deletes", staged.added_position_deletes),
        ("total-equality-deletes", 0),
    ] {
        let total = totals.get(k).and_then(|v| v.parse::<u64>().ok());
        match total {
            Some(t) => {
                props.insert(k.into(), (t + plus).to_string());
            }
            None if plus > 0 => {
                props.insert(k.into(), plus.to_string());
            }
            None => {}
        }
    }
}
