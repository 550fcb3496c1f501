//! `CommandStatementIngest` (ADBC `adbc_ingest`): the client's Arrow stream
//! written into an Iceberg table by `QueryEngine::ingest`.
//!
//! ADBC modes map to the command's table definition options:
//! `create` (missing → create, exists → fail), `append` (missing → fail,
//! exists → append), `replace` (create, or drop and create), and
//! `create_append` (create, or append). Which tables accept ingestion is the
//! engine's rule (weir-query `ingest.rs`); a refused table is
//! INVALID_ARGUMENT with the reason.

use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use arrow_flight::sql::server::PeekableFlightDataStream;
use arrow_flight::sql::{
    CommandStatementIngest, TableDefinitionOptions, TableExistsOption, TableNotExistOption,
};
use datafusion::error::DataFusionError;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::prelude::SessionContext;
use futures::{StreamExt, TryStreamExt};
use tonic::Status;
use weir_query::{IfExists, IfMissing, IngestTarget, QueryEngine, QueryError};

use crate::error::{ErrorKind, error_status, status_from, status_from_client_data, unimplemented};

/// The engine's ingest target for a command, or why it is not valid.
pub(crate) fn target(
    engine: &QueryEngine,
    cmd: &CommandStatementIngest,
) -> Result<IngestTarget, Status> {
    if cmd.transaction_id.as_ref().is_some_and(|t| !t.is_empty()) {
        return Err(unimplemented("transactions"));
    }
    if cmd.temporary {
        return Err(unimplemented(
            "temporary tables (ingest with temporary = false)",
        ));
    }
    if cmd.table.is_empty() {
        return Err(error_status(
            ErrorKind::InvalidArgument,
            "ingest needs a target table name",
        ));
    }
    if let Some(catalog) = cmd.catalog.as_deref().filter(|c| !c.is_empty())
        && catalog != engine.catalog_name()
    {
        return Err(if engine.catalog_names().iter().any(|c| c == catalog) {
            error_status(
                ErrorKind::InvalidArgument,
                format!(
                    "catalog {catalog} is an attached database and read-only; ingest into catalog {}",
                    engine.catalog_name()
                ),
            )
        } else {
            error_status(
                ErrorKind::NotFound,
                format!("catalog {catalog} does not exist"),
            )
        });
    }
    let options = cmd
        .table_definition_options
        .unwrap_or(TableDefinitionOptions {
            if_not_exist: TableNotExistOption::Unspecified as i32,
            if_exists: TableExistsOption::Unspecified as i32,
        });
    let if_missing = match TableNotExistOption::try_from(options.if_not_exist) {
        Ok(TableNotExistOption::Create) => IfMissing::Create,
        Ok(TableNotExistOption::Fail) => IfMissing::Fail,
        _ => {
            return Err(error_status(
                ErrorKind::InvalidArgument,
                "ingest: table_definition_options.if_not_exist must be CREATE or FAIL",
            ));
        }
    };
    let if_exists = match TableExistsOption::try_from(options.if_exists) {
        Ok(TableExistsOption::Fail) => IfExists::Fail,
        Ok(TableExistsOption::Append) => IfExists::Append,
        Ok(TableExistsOption::Replace) => IfExists::Replace,
        _ => {
            return Err(error_status(
                ErrorKind::InvalidArgument,
                "ingest: table_definition_options.if_exists must be FAIL, APPEND or REPLACE",
            ));
        }
    };
    if !cmd.options.is_empty() {
        tracing::debug!(options = ?cmd.options, "ingest options ignored");
    }
    Ok(IngestTarget {
        schema: cmd.schema.clone().filter(|s| !s.is_empty()),
        table: cmd.table.clone(),
        if_exists,
        if_missing,
    })
}

/// Decodes the client's batches and writes them; returns the rows written.
pub(crate) async fn ingest(
    engine: &QueryEngine,
    ctx: &SessionContext,
    target: &IngestTarget,
    stream: PeekableFlightDataStream,
) -> Result<i64, Status> {
    // The first message may carry only the descriptor; skip empty messages.
    let data = stream
        .try_filter(|fd| {
            std::future::ready(!(fd.data_header.is_empty() && fd.data_body.is_empty()))
        })
        .map_err(FlightError::from);
    let mut batches = FlightRecordBatchStream::new_from_flight_data(data);
    // The schema arrives before the first batch.
    let first = batches
        .next()
        .await
        .transpose()
        .map_err(status_from_client_data)?;
    let schema = batches.schema().cloned().ok_or_else(|| {
        error_status(
            ErrorKind::InvalidArgument,
            "ingest: the client sent no Arrow schema",
        )
    })?;
    let rest = batches.map_err(|e| {
        DataFusionError::External(Box::new(QueryError::Invalid(format!(
            "invalid Arrow data from client: {e}"
        ))))
    });
    let input = futures::stream::iter(first.map(Ok)).chain(rest);
    let input = Box::pin(RecordBatchStreamAdapter::new(schema, input));
    let rows = engine
        .ingest(ctx, target, input)
        .await
        .map_err(status_from)?;
    Ok(i64::try_from(rows).unwrap_or(i64::MAX))
}
