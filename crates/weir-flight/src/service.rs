//! The `FlightSqlService` implementation: request dispatch, FlightInfo
//! construction and the glue between Flight SQL commands and the engine.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::Schema;
use arrow::ipc::writer::IpcWriteOptions;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::metadata::GetCatalogsBuilder;
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionBeginSavepointRequest, ActionBeginSavepointResult, ActionBeginTransactionRequest,
    ActionBeginTransactionResult, ActionCancelQueryRequest, ActionCancelQueryResult,
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, ActionCreatePreparedSubstraitPlanRequest,
    ActionEndSavepointRequest, ActionEndTransactionRequest, Any, Command, CommandGetCatalogs,
    CommandGetCrossReference, CommandGetDbSchemas, CommandGetExportedKeys, CommandGetImportedKeys,
    CommandGetPrimaryKeys, CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables,
    CommandGetXdbcTypeInfo, CommandPreparedStatementQuery, CommandPreparedStatementUpdate,
    CommandStatementIngest, CommandStatementQuery, CommandStatementSubstraitPlan,
    CommandStatementUpdate, DoPutPreparedStatementResult, ProstMessageExt, SqlInfo,
    TicketStatementQuery,
};
use arrow_flight::{
    Action, FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse,
    IpcMessage, SchemaAsIpc, Ticket,
};
use bytes::Bytes;
use datafusion::prelude::SessionContext;
use futures::{Stream, TryStreamExt};
use prost::Message;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status, Streaming};
use weir_query::{QueryEngine, WeirStatement};

use crate::FlightOptions;
use crate::access::{self, Access};
use crate::actions;
use crate::auth::{AUTHORIZATION, Authenticator, Principal};
use crate::cancel::RunningQueries;
use crate::error::{
    ErrorKind, error_status, internal, status_from, status_from_client_data, unimplemented,
};
use crate::ingest;
use crate::metadata;
use crate::sessions::{self, ConnectionId, SessionKey, Sessions, Settings};
use crate::sql_info::{SQL_INFO, XDBC_TYPE_INFO};
use crate::statements::{
    self, Executable, FlightDataStream, PreparedStatements, StatementCache, StatementKind,
};

/// Prepared statements survive at least this long without use.
const MIN_PREPARED_IDLE: Duration = Duration::from_secs(3600);

type DoGetResult = Result<Response<<WeirFlightSqlService as FlightService>::DoGetStream>, Status>;

/// Weir's Arrow Flight SQL service over a [`QueryEngine`].
#[derive(Clone)]
pub struct WeirFlightSqlService {
    inner: Arc<Inner>,
}

struct Inner {
    engine: QueryEngine,
    statements: StatementCache,
    prepared: PreparedStatements,
    auth: Arc<Authenticator>,
    query_timeout: Option<Duration>,
    sessions: Sessions,
    running: RunningQueries,
}

impl WeirFlightSqlService {
    /// A service checking callers as [`crate::serve`] would on a loopback
    /// address (no users and no `--auth`: everyone is admin).
    pub fn new(
        engine: QueryEngine,
        options: FlightOptions,
    ) -> Result<Self, crate::FlightServeError> {
        let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        let auth = Arc::new(Authenticator::new(&options.auth, loopback)?);
        Ok(Self::with_authenticator(engine, options, auth))
    }

    pub(crate) fn with_authenticator(
        engine: QueryEngine,
        options: FlightOptions,
        auth: Arc<Authenticator>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                engine,
                statements: StatementCache::new(options.statement_ttl),
                prepared: PreparedStatements::new(options.statement_ttl.max(MIN_PREPARED_IDLE)),
                auth,
                query_timeout: options.query_timeout,
                sessions: Sessions::new(options.statement_ttl.max(MIN_PREPARED_IDLE)),
                running: RunningQueries::default(),
            }),
        }
    }

    pub(crate) fn engine(&self) -> &QueryEngine {
        &self.inner.engine
    }

    /// The caller of a request (for actions).
    pub(crate) fn caller<T>(&self, request: &Request<T>) -> Result<Principal, Status> {
        self.authorize(request)
    }

    /// The caller: authenticated by the gate in front of the service
    /// (`gate.rs`), or here when the service is served without it.
    fn authorize<T>(&self, request: &Request<T>) -> Result<Principal, Status> {
        if let Some(principal) = request.extensions().get::<Principal>() {
            return Ok(principal.clone());
        }
        let header = request
            .metadata()
            .get(AUTHORIZATION)
            .map(|v| v.to_str())
            .transpose()
            .map_err(|_| {
                error_status(
                    ErrorKind::Unauthenticated,
                    "authorization header is not ASCII",
                )
            })?;
        self.inner.auth.authenticate_blocking(header)
    }

    /// Parses `sql` once with the session's dialect; PERMISSION_DENIED
    /// unless the caller's role may run it (`access.rs`).
    fn permit_sql<T>(
        &self,
        request: &Request<T>,
        ctx: &SessionContext,
        sql: &str,
    ) -> Result<(Principal, WeirStatement), Status> {
        let principal = self.authorize(request)?;
        let statement = access::permit_sql(&principal, ctx, sql)?;
        Ok((principal, statement))
    }

    /// What names the request's session (see `sessions.rs`).
    pub(crate) fn session_key<T>(&self, request: &Request<T>) -> Result<SessionKey, Status> {
        let user = self.authorize(request)?.name;
        let connection = request.extensions().get::<ConnectionId>().copied();
        Ok(SessionKey::new(request.metadata(), connection, user))
    }

    /// The session settings the request runs with (see `sessions.rs`).
    fn settings<T>(&self, request: &Request<T>) -> Result<Settings, Status> {
        self.inner.sessions.settings(&self.session_key(request)?)
    }

    /// A fresh engine context with the request's session options, and the
    /// statement timeout that applies to the caller.
    fn context<T>(
        &self,
        request: &Request<T>,
    ) -> Result<(SessionContext, Option<Duration>), Status> {
        let settings = self.settings(request)?;
        let principal = self.authorize(request)?;
        let ctx = sessions::context(self.engine(), &settings)?;
        weir_query::set_actor(&ctx, &principal.name);
        let timeout = sessions::timeout(&settings, self.inner.query_timeout, principal.role);
        Ok((ctx, timeout))
    }

    /// The statement timeout that applies to the caller (no context: a
    /// DoGet only runs the plan made by its GetFlightInfo).
    fn timeout<T>(&self, request: &Request<T>) -> Result<Option<Duration>, Status> {
        let settings = self.settings(request)?;
        let principal = self.authorize(request)?;
        Ok(sessions::timeout(
            &settings,
            self.inner.query_timeout,
            principal.role,
        ))
    }

    pub(crate) fn sessions(&self) -> &Sessions {
        &self.inner.sessions
    }

    pub(crate) fn running(&self) -> &RunningQueries {
        &self.inner.running
    }

    pub(crate) fn statements(&self) -> &StatementCache {
        &self.inner.statements
    }

    pub(crate) fn server_timeout(&self) -> Option<Duration> {
        self.inner.query_timeout
    }
}

fn no_transactions(transaction_id: &Option<Bytes>) -> Result<(), Status> {
    match transaction_id {
        Some(id) if !id.is_empty() => Err(unimplemented("transactions")),
        _ => Ok(()),
    }
}

/// A FlightInfo with a single endpoint whose ticket is `ticket`.
fn flight_info(
    schema: &Schema,
    ticket: Vec<u8>,
    descriptor: FlightDescriptor,
) -> Result<Response<FlightInfo>, Status> {
    let endpoint = FlightEndpoint::new().with_ticket(Ticket::new(ticket));
    let info = FlightInfo::new()
        .try_with_schema(schema)
        .map_err(|e| internal("encoding the result schema", e))?
        .with_endpoint(endpoint)
        .with_descriptor(descriptor)
        .with_total_records(-1)
        .with_total_bytes(-1);
    Ok(Response::new(info))
}

/// A FlightInfo whose ticket is the command itself (metadata commands).
fn command_info(
    schema: &Schema,
    command: Any,
    request: Request<FlightDescriptor>,
) -> Result<Response<FlightInfo>, Status> {
    flight_info(schema, command.encode_to_vec(), request.into_inner())
}

fn batch_response(batch: RecordBatch) -> DoGetResult {
    Ok(Response::new(statements::stream_batch(batch)))
}

fn stream_response(stream: FlightDataStream) -> DoGetResult {
    Ok(Response::new(stream))
}

fn schema_bytes(schema: &Schema) -> Result<Bytes, Status> {
    let IpcMessage(bytes) = SchemaAsIpc::new(schema, &IpcWriteOptions::default())
        .try_into()
        .map_err(|e| internal("encoding a schema", e))?;
    Ok(bytes)
}

/// Parameter rows sent with a DoPut (`None`: no parameter batch was sent).
async fn read_parameters(
    stream: PeekableFlightDataStream,
) -> Result<Option<Vec<Vec<datafusion::common::ScalarValue>>>, Status> {
    // The first message may carry only the descriptor; skip empty messages.
    let data = stream
        .try_filter(|fd| {
            std::future::ready(!(fd.data_header.is_empty() && fd.data_body.is_empty()))
        })
        .map_err(FlightError::from);
    let batches: Vec<RecordBatch> = FlightRecordBatchStream::new_from_flight_data(data)
        .try_collect()
        .await
        .map_err(status_from_client_data)?;
    if batches.is_empty() {
        return Ok(None);
    }
    statements::rows_from_batches(&batches)
}

#[tonic::async_trait]
impl FlightSqlService for WeirFlightSqlService {
    type FlightService = WeirFlightSqlService;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<
        Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>,
        Status,
    > {
        let caller = self.authorize(&request)?;
        tracing::debug!(user = %caller.name, role = %caller.role, "Flight SQL handshake");
        let token = match request.metadata().get(AUTHORIZATION).map(|v| v.to_str()) {
            // A valid Bearer token (the gate checked it) is answered with itself.
            Some(Ok(v)) if v.len() > 7 && v[..7].eq_ignore_ascii_case("bearer ") => {
                v[7..].trim().to_string()
            }
            _ => self.inner.auth.issue_token(&caller)?,
        };
        let header = MetadataValue::try_from(format!("Bearer {token}"))
            .map_err(|e| internal("building the authorization header", e))?;
        let reply = HandshakeResponse {
            protocol_version: 0,
            payload: token.into_bytes().into(),
        };
        let output: Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>> =
            Box::pin(futures::stream::iter([Ok(reply)]));
        let mut response = Response::new(output);
        response.metadata_mut().insert(AUTHORIZATION, header);
        Ok(response)
    }

    // --- statements ------------------------------------------------------------

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        crate::observe::mark_query(&request);
        let (ctx, timeout) = self.context(&request)?;
        let (principal, statement) = self.permit_sql(&request, &ctx, &query.query)?;
        no_transactions(&query.transaction_id)?;
        tracing::debug!(sql = %query.query, "GetFlightInfo statement");
        // Writes take effect here, whether or not the client reads the result.
        let df = statements::within(timeout, async {
            self.engine()
                .execute(&ctx, &statement)
                .await
                .map_err(status_from)
        })
        .await?;
        actions::remember_set(self, &self.session_key(&request)?, &statement);
        let schema = Arc::new(df.schema().as_arrow().clone());
        let handle = self.inner.statements.insert(Executable {
            schema: schema.clone(),
            frames: vec![df],
            owner: principal.name,
        });
        let ticket = TicketStatementQuery {
            statement_handle: handle.into_bytes().into(),
        };
        flight_info(
            &schema,
            ticket.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> DoGetResult {
        let principal = self.authorize(&request)?;
        crate::observe::mark_query(&request);
        let handle = std::str::from_utf8(&ticket.statement_handle).map_err(|_| {
            error_status(ErrorKind::InvalidArgument, "statement handle is not UTF-8")
        })?;
        tracing::debug!(%handle, "DoGet statement");
        let timeout = self.timeout(&request)?;
        let exec = self
            .inner
            .statements
            .take(handle, &principal)
            .ok_or_else(|| {
                error_status(
                    ErrorKind::NotFound,
                    "statement handle is unknown, already fetched, cancelled or expired",
                )
            })?;
        stream_response(self.inner.running.track(
            handle.to_string(),
            &principal.name,
            statements::with_deadline(statements::stream_executable(exec), timeout),
        ))
    }

    async fn do_put_statement_update(
        &self,
        command: CommandStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let (ctx, timeout) = self.context(&request)?;
        let (_, statement) = self.permit_sql(&request, &ctx, &command.query)?;
        no_transactions(&command.transaction_id)?;
        tracing::debug!(sql = %command.query, "DoPut statement update");
        let count = statements::within(timeout, async {
            let df = self
                .engine()
                .execute(&ctx, &statement)
                .await
                .map_err(status_from)?;
            statements::execute_update(vec![df]).await
        })
        .await?;
        actions::remember_set(self, &self.session_key(&request)?, &statement);
        Ok(count)
    }

    // --- prepared statements ------------------------------------------------------

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        crate::observe::mark_query(&request);
        let settings = self.settings(&request)?;
        let ctx = sessions::context(self.engine(), &settings)?;
        let sql = statements::number_placeholders(&query.query);
        let (principal, parsed) = self.permit_sql(&request, &ctx, &sql)?;
        weir_query::set_actor(&ctx, &principal.name);
        no_transactions(&query.transaction_id)?;
        tracing::debug!(sql = %query.query, "CreatePreparedStatement");
        let (statement, frame) = statements::prepare(self.engine(), &ctx, parsed).await?;
        // Flight SQL: a dataset schema only for statements with a result set.
        // The JDBC driver runs a prepared statement without one as an update
        // (DoPut → the affected-row count `executeUpdate` returns) and one
        // with a schema as a query (update count -1).
        let dataset_schema = if statement.kind == StatementKind::Query {
            schema_bytes(&statement.dataset_schema)?
        } else {
            Bytes::new()
        };
        let parameter_schema = if statement.parameter_names.is_empty() {
            Bytes::new()
        } else {
            schema_bytes(&statement.parameter_schema())?
        };
        let planned = frame.map(|(frame, catalog)| statements::Planned {
            frame,
            options: settings.options,
            catalog,
            at: std::time::Instant::now(),
        });
        let handle = self.inner.prepared.insert(statement, planned);
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: handle.into_bytes().into(),
            dataset_schema,
            parameter_schema,
        })
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<(), Status> {
        self.authorize(&request)?;
        let existed = self.inner.prepared.remove(&query.prepared_statement_handle);
        tracing::debug!(existed, "ClosePreparedStatement");
        Ok(())
    }

    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        self.authorize(&request)?;
        crate::observe::mark_query(&request);
        // Fail fast on an unknown handle before reading the parameters.
        self.inner.prepared.get(&query.prepared_statement_handle)?;
        let rows = read_parameters(request.into_inner()).await?;
        tracing::debug!(
            rows = rows.as_ref().map(Vec::len),
            "DoPut prepared statement parameters"
        );
        self.inner
            .prepared
            .bind(&query.prepared_statement_handle, rows)?;
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(query.prepared_statement_handle),
        })
    }

    async fn get_flight_info_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let principal = self.authorize(&request)?;
        crate::observe::mark_query(&request);
        let statement = self.inner.prepared.get(&cmd.prepared_statement_handle)?;
        access::permit(&principal, statement.parsed.access())?;
        tracing::debug!(sql = %statement.sql(), "GetFlightInfo prepared statement");
        let settings = self.settings(&request)?;
        let timeout = sessions::timeout(&settings, self.inner.query_timeout, principal.role);
        let exec = match self
            .inner
            .prepared
            .take_planned(
                &cmd.prepared_statement_handle,
                &settings.options,
                self.engine(),
            )
            .await?
        {
            Some(frame) => statements::Executable {
                schema: statement.dataset_schema.clone(),
                frames: vec![frame],
                owner: principal.name.clone(),
            },
            None => {
                let ctx = sessions::context(self.engine(), &settings)?;
                // Statements that keep an author (ACKNOWLEDGE ALERT) record the caller.
                weir_query::set_actor(&ctx, &principal.name);
                // Writes take effect here, whether or not the client reads the result.
                let mut exec = statements::within(
                    timeout,
                    statements::run_prepared(self.engine(), &ctx, &statement),
                )
                .await?;
                exec.owner = principal.name.clone();
                exec
            }
        };
        actions::remember_set(self, &self.session_key(&request)?, &statement.parsed);
        let schema = exec.schema.clone();
        let handle = self.inner.statements.insert(exec);
        let ticket = TicketStatementQuery {
            statement_handle: handle.into_bytes().into(),
        };
        flight_info(
            &schema,
            ticket.as_any().encode_to_vec(),
            request.into_inner(),
        )
    }

    async fn do_get_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> DoGetResult {
        let principal = self.authorize(&request)?;
        crate::observe::mark_query(&request);
        let statement = self.inner.prepared.get(&query.prepared_statement_handle)?;
        access::permit(&principal, statement.parsed.access())?;
        tracing::debug!(sql = %statement.sql(), "DoGet prepared statement");
        let (ctx, timeout) = self.context(&request)?;
        let exec = statements::within(
            timeout,
            statements::run_prepared(self.engine(), &ctx, &statement),
        )
        .await?;
        stream_response(self.inner.running.track(
            uuid::Uuid::new_v4().to_string(),
            &principal.name,
            statements::with_deadline(statements::stream_executable(exec), timeout),
        ))
    }

    async fn do_put_prepared_statement_update(
        &self,
        query: CommandPreparedStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let principal = self.authorize(&request)?;
        let (ctx, timeout) = self.context(&request)?;
        let session = self.session_key(&request)?;
        let handle = query.prepared_statement_handle;
        access::permit(
            &principal,
            self.inner.prepared.get(&handle)?.parsed.access(),
        )?;
        // Parameters may come with this DoPut (ADBC executemany) or from an earlier bind.
        if let Some(rows) = read_parameters(request.into_inner()).await? {
            self.inner.prepared.bind(&handle, Some(rows))?;
        }
        let statement = self.inner.prepared.get(&handle)?;
        tracing::debug!(
            sql = %statement.sql(),
            rows = statement.bound.as_ref().map(|b| b.len()),
            "DoPut prepared statement update"
        );
        if statement.kind == StatementKind::Query {
            tracing::debug!("executing a query as an update; its rows are discarded");
        }
        let count = statements::within(timeout, async {
            let exec = statements::run_prepared(self.engine(), &ctx, &statement).await?;
            statements::execute_update(exec.frames).await
        })
        .await?;
        actions::remember_set(self, &session, &statement.parsed);
        Ok(count)
    }

    // --- metadata ----------------------------------------------------------------

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.authorize(&request)?;
        let schema = SQL_INFO.schema();
        command_info(&schema, query.as_any(), request)
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> DoGetResult {
        self.authorize(&request)?;
        tracing::debug!(ids = ?query.info, "DoGet SqlInfo");
        let batch = query
            .into_builder(&SQL_INFO)
            .build()
            .map_err(|e| internal("building SqlInfo result", e))?;
        batch_response(batch)
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.authorize(&request)?;
        command_info(&GetCatalogsBuilder::new().schema(), query.as_any(), request)
    }

    async fn do_get_catalogs(
        &self,
        _query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> DoGetResult {
        self.authorize(&request)?;
        tracing::debug!("DoGet catalogs");
        batch_response(metadata::catalogs(self.engine())?)
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.authorize(&request)?;
        command_info(&metadata::db_schemas_schema(), query.as_any(), request)
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> DoGetResult {
        self.authorize(&request)?;
        tracing::debug!(?query, "DoGet db schemas");
        batch_response(metadata::db_schemas(self.engine(), query).await?)
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.authorize(&request)?;
        command_info(
            &metadata::tables_schema(query.include_schema),
            query.as_any(),
            request,
        )
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> DoGetResult {
        self.authorize(&request)?;
        tracing::debug!(?query, "DoGet tables");
        batch_response(metadata::tables(self.engine(), query).await?)
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.authorize(&request)?;
        command_info(&metadata::table_types_schema(), query.as_any(), request)
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> DoGetResult {
        self.authorize(&request)?;
        tracing::debug!("DoGet table types");
        batch_response(metadata::table_types(query)?)
    }

    async fn get_flight_info_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.authorize(&request)?;
        command_info(&XDBC_TYPE_INFO.schema(), query.as_any(), request)
    }

    async fn do_get_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<Ticket>,
    ) -> DoGetResult {
        self.authorize(&request)?;
        tracing::debug!(data_type = ?query.data_type, "DoGet XdbcTypeInfo");
        let batch = XDBC_TYPE_INFO
            .record_batch(query.data_type)
            .map_err(|e| internal("building XdbcTypeInfo result", e))?;
        batch_response(batch)
    }

    async fn get_flight_info_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.authorize(&request)?;
        command_info(&metadata::PRIMARY_KEYS_SCHEMA, query.as_any(), request)
    }

    async fn do_get_primary_keys(
        &self,
        _query: CommandGetPrimaryKeys,
        request: Request<Ticket>,
    ) -> DoGetResult {
        self.authorize(&request)?;
        batch_response(metadata::empty_batch(&metadata::PRIMARY_KEYS_SCHEMA)?)
    }

    async fn get_flight_info_exported_keys(
        &self,
        query: CommandGetExportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.authorize(&request)?;
        command_info(&metadata::FOREIGN_KEYS_SCHEMA, query.as_any(), request)
    }

    async fn do_get_exported_keys(
        &self,
        _query: CommandGetExportedKeys,
        request: Request<Ticket>,
    ) -> DoGetResult {
        self.authorize(&request)?;
        batch_response(metadata::empty_batch(&metadata::FOREIGN_KEYS_SCHEMA)?)
    }

    async fn get_flight_info_imported_keys(
        &self,
        query: CommandGetImportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.authorize(&request)?;
        command_info(&metadata::FOREIGN_KEYS_SCHEMA, query.as_any(), request)
    }

    async fn do_get_imported_keys(
        &self,
        _query: CommandGetImportedKeys,
        request: Request<Ticket>,
    ) -> DoGetResult {
        self.authorize(&request)?;
        batch_response(metadata::empty_batch(&metadata::FOREIGN_KEYS_SCHEMA)?)
    }

    async fn get_flight_info_cross_reference(
        &self,
        query: CommandGetCrossReference,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.authorize(&request)?;
        command_info(&metadata::FOREIGN_KEYS_SCHEMA, query.as_any(), request)
    }

    async fn do_get_cross_reference(
        &self,
        _query: CommandGetCrossReference,
        request: Request<Ticket>,
    ) -> DoGetResult {
        self.authorize(&request)?;
        batch_response(metadata::empty_batch(&metadata::FOREIGN_KEYS_SCHEMA)?)
    }

    // --- unsupported ---------------------------------------------------------------

    async fn get_flight_info_fallback(
        &self,
        cmd: Command,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.authorize(&request)?;
        tracing::debug!(
            type_url = cmd.type_url(),
            "GetFlightInfo for an unsupported command"
        );
        Err(error_status(
            ErrorKind::Unsupported,
            format!("command {} is not supported by Weir", cmd.type_url()),
        ))
    }

    async fn do_get_fallback(&self, request: Request<Ticket>, message: Any) -> DoGetResult {
        self.authorize(&request)?;
        tracing::debug!(type_url = %message.type_url, "DoGet for an unsupported ticket");
        Err(error_status(
            ErrorKind::Unsupported,
            format!("ticket {} is not supported by Weir", message.type_url),
        ))
    }

    async fn do_put_fallback(
        &self,
        request: Request<PeekableFlightDataStream>,
        message: Any,
    ) -> Result<Response<<Self as FlightService>::DoPutStream>, Status> {
        self.authorize(&request)?;
        Err(error_status(
            ErrorKind::Unsupported,
            format!(
                "DoPut command {} is not supported by Weir",
                message.type_url
            ),
        ))
    }

    async fn do_put_error_callback(
        &self,
        _request: Request<PeekableFlightDataStream>,
        error: arrow_flight::sql::server::DoPutError,
    ) -> Result<Response<<Self as FlightService>::DoPutStream>, Status> {
        Err(error_status(
            ErrorKind::InvalidArgument,
            format!("invalid DoPut: {error}"),
        ))
    }

    async fn do_action_fallback(
        &self,
        request: Request<Action>,
    ) -> Result<Response<<Self as FlightService>::DoActionStream>, Status> {
        if actions::is_weir_action(&request.get_ref().r#type) {
            self.authorize(&request)?;
            return actions::do_action(self, request).await;
        }
        Err(error_status(
            ErrorKind::Unsupported,
            format!(
                "action {:?} is not supported by Weir",
                request.get_ref().r#type
            ),
        ))
    }

    async fn list_custom_actions(&self) -> Option<Vec<Result<arrow_flight::ActionType, Status>>> {
        Some(actions::action_types())
    }

    async fn get_flight_info_substrait_plan(
        &self,
        _query: CommandStatementSubstraitPlan,
        _request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        Err(unimplemented("Substrait plans"))
    }

    async fn do_put_substrait_plan(
        &self,
        _query: CommandStatementSubstraitPlan,
        _request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        Err(unimplemented("Substrait plans"))
    }

    async fn do_action_create_prepared_substrait_plan(
        &self,
        _query: ActionCreatePreparedSubstraitPlanRequest,
        _request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        Err(unimplemented("Substrait plans"))
    }

    async fn do_put_statement_ingest(
        &self,
        command: CommandStatementIngest,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        access::permit(&self.authorize(&request)?, Access::Write)?;
        let target = ingest::target(self.engine(), &command)?;
        tracing::debug!(?target, "DoPut statement ingest");
        let (ctx, timeout) = self.context(&request)?;
        let stream = request.into_inner();
        statements::within(
            timeout,
            ingest::ingest(self.engine(), &ctx, &target, stream),
        )
        .await
    }

    async fn do_action_begin_transaction(
        &self,
        _query: ActionBeginTransactionRequest,
        _request: Request<Action>,
    ) -> Result<ActionBeginTransactionResult, Status> {
        Err(unimplemented("transactions"))
    }

    async fn do_action_end_transaction(
        &self,
        _query: ActionEndTransactionRequest,
        _request: Request<Action>,
    ) -> Result<(), Status> {
        Err(unimplemented("transactions"))
    }

    async fn do_action_begin_savepoint(
        &self,
        _query: ActionBeginSavepointRequest,
        _request: Request<Action>,
    ) -> Result<ActionBeginSavepointResult, Status> {
        Err(unimplemented("savepoints"))
    }

    async fn do_action_end_savepoint(
        &self,
        _query: ActionEndSavepointRequest,
        _request: Request<Action>,
    ) -> Result<(), Status> {
        Err(unimplemented("savepoints"))
    }

    async fn do_action_cancel_query(
        &self,
        query: ActionCancelQueryRequest,
        request: Request<Action>,
    ) -> Result<ActionCancelQueryResult, Status> {
        let caller = self.authorize(&request)?;
        let info = FlightInfo::decode(query.info).map_err(|e| {
            error_status(
                ErrorKind::InvalidArgument,
                format!("CancelQuery: invalid FlightInfo: {e}"),
            )
        })?;
        actions::cancel_legacy(self, &info, &caller)
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}
