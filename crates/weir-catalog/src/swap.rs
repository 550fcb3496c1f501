//! Metadata-only commits (snapshot expiry, property changes): write the next
//! metadata file, then compare-and-swap the catalog row, retrying on a lost
//! race with the change recomputed from the fresh table.

use std::str::FromStr;

use iceberg::spec::TableMetadata;
use iceberg::table::Table;
use iceberg::{MetadataLocation, TableIdent};

use crate::error::{CatalogError, Result};
use crate::lakehouse::Lakehouse;
use crate::retry::{Backoff, Retry};

/// Writes `metadata` as the version after `table`'s; returns its location.
pub(crate) async fn write_next_metadata(table: &Table, metadata: &TableMetadata) -> Result<String> {
    let name = table.identifier().to_string();
    let current = table
        .metadata_location()
        .ok_or_else(|| CatalogError::Replace {
            table: name.clone(),
            reason: "table has no metadata location".into(),
        })?;
    let location = MetadataLocation::from_str(current)
        .map_err(|e| CatalogError::iceberg(&name, e))?
        .with_next_version()
        .with_new_metadata(metadata);
    metadata
        .write_to(table.file_io(), &location)
        .await
        .map_err(|e| CatalogError::iceberg(&name, e))?;
    Ok(location.to_string())
}

/// Applies `change` to the table's metadata and commits it. `change` sees the
/// freshly loaded table on every attempt and returns `None` when there is
/// nothing to do. Returns the committed table, or `None` if nothing changed.
pub async fn commit_metadata<F>(
    lakehouse: &Lakehouse,
    ident: &TableIdent,
    mut change: F,
) -> Result<Option<Table>>
where
    F: FnMut(&Table) -> Result<Option<TableMetadata>>,
{
    let name = ident.to_string();
    let mut retry = Retry::new("metadata", &name, Backoff::RACE);
    loop {
        let table = lakehouse
            .catalog()
            .load_table(ident)
            .await
            .map_err(|e| CatalogError::iceberg(&name, e))?;
        let Some(metadata) = change(&table)? else {
            return Ok(None);
        };
        let location = write_next_metadata(&table, &metadata).await?;
        let current = table.metadata_location().unwrap_or_default().to_string();
        if lakehouse.swap_metadata(ident, &current, &location).await? {
            let table = lakehouse
                .catalog()
                .load_table(ident)
                .await
                .map_err(|e| CatalogError::iceberg(&name, e))?;
            return Ok(Some(table));
        }
        // The metadata file just written is unreferenced: orphan cleanup
        // removes it later (never delete a file whose commit state is unknown).
        retry.follow_table(table.metadata().properties());
        if !retry.again(&"another commit landed first").await {
            return Err(CatalogError::ReplaceContended {
                table: name,
                attempts: retry.attempt(),
            });
        }
    }
}
