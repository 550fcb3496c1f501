"""Authentication, roles and TLS of the Flight SQL server, through the ADBC
Flight SQL driver (and pyarrow.flight for the raw handshake).

gRPC status codes reach ADBC as ``vendor_code``: UNAUTHENTICATED = 16,
PERMISSION_DENIED = 7."""

from __future__ import annotations

import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import adbc_driver_flightsql.dbapi as flightsql
import adbc_driver_manager
import adbc_driver_manager.dbapi as dbapi
import pyarrow as pa
import pyarrow.flight as flight
import pytest

import flightsql_proto as proto
from tls_certs import make_server_certs, other_ca_pem
from weir_harness import execute, fetch_rows, fetch_scalar, hash_password, weir_binary

Status = adbc_driver_manager.AdbcStatusCode
GRPC_PERMISSION_DENIED = 7
GRPC_UNAUTHENTICATED = 16

AUTH_HEADER = "adbc.flight.sql.authorization_header"
TLS_ROOT_CERTS = "adbc.flight.sql.client_option.tls_root_certs"

PASSWORDS = {"reader": "r-secret", "writer": "w-secret", "boss": "b-secret"}
ROLES = {"reader": "read", "writer": "write", "boss": "admin"}


@pytest.fixture(scope="module")
def user_hashes() -> dict:
    return {name: hash_password(pw) for name, pw in PASSWORDS.items()}


@pytest.fixture(scope="module")
def users_flag(user_hashes) -> str:
    return ";".join(f"{n}:{ROLES[n]}:{h}" for n, h in user_hashes.items())


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_server_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def plain_server(tmp_path_factory, users_flag):
    """No TLS, users given with --users (auth is required: users exist)."""
    from weir_harness import WeirServer

    server = WeirServer(tmp_path_factory.mktemp("plain") / "data", ["--users", users_flag])
    yield server
    server.discard()


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory, certs, user_hashes):
    """TLS, users from [[users]] in weir.toml."""
    from weir_harness import WeirServer

    root = tmp_path_factory.mktemp("tls")
    config = root / "weir.toml"
    config.write_text(
        "".join(
            f'[[users]]\nname = "{n}"\nrole = "{ROLES[n]}"\npassword_hash = "{h}"\n'
            for n, h in user_hashes.items()
        )
    )
    server = WeirServer(
        root / "data",
        [
            "--config", str(config),
            "--tls-cert", str(certs.cert_path),
            "--tls-key", str(certs.key_path),
        ],
    )
    server.tls_uri = f"grpc+tls://127.0.0.1:{server.port}"
    yield server
    server.discard()


def connect(uri: str, user: str | None = None, password: str | None = None, **options):
    kwargs = dict(options)
    if user is not None:
        kwargs["username"] = user
        kwargs["password"] = password if password is not None else PASSWORDS[user]
    return flightsql.connect(uri, db_kwargs=kwargs, autocommit=True)


def tls_connect(server, certs, user=None, password=None, **options):
    return connect(server.tls_uri, user, password, **{TLS_ROOT_CERTS: certs.ca_pem, **options})


def assert_grpc_error(excinfo, status, grpc_code, text: str | None = None) -> None:
    err = excinfo.value
    assert err.status_code == status, f"expected {status!r}, got {err.status_code!r}: {err}"
    assert err.vendor_code == grpc_code, f"expected gRPC code {grpc_code}: {err}"
    if text is not None:
        assert text in str(err), f"{text!r} not in {err}"


def expect_unauthenticated(fn, text: str | None = None) -> None:
    with pytest.raises(dbapi.Error) as excinfo:
        fn()
    assert_grpc_error(excinfo, Status.UNAUTHENTICATED, GRPC_UNAUTHENTICATED, text)


def expect_denied(conn, sql: str) -> None:
    with pytest.raises(dbapi.Error) as excinfo:
        execute(conn, sql)
    assert_grpc_error(excinfo, Status.UNAUTHORIZED, GRPC_PERMISSION_DENIED, "may not run")


def basic_token(uri: str, user: str, password: str, **client_args) -> bytes:
    """A Bearer token from a raw Flight handshake (pyarrow.flight)."""
    client = flight.FlightClient(uri, **client_args)
    try:
        key, value = client.authenticate_basic_token(user, password)
        assert key.lower() == b"authorization" and value.startswith(b"Bearer ")
        return value
    finally:
        client.close()


# --- authentication matrix, no TLS ------------------------------------------------


def test_no_credentials_is_unauthenticated(plain_server):
    def run():
        with connect(plain_server.uri) as conn:
            fetch_rows(conn, "SELECT 1")

    expect_unauthenticated(run, "authentication required")


def test_wrong_password_is_unauthenticated(plain_server):
    expect_unauthenticated(lambda: connect(plain_server.uri, "reader", "nope").close(),
                           "invalid user name or password")
    expect_unauthenticated(lambda: connect(plain_server.uri, "nobody", "x").close())


def test_right_password_queries(plain_server):
    with connect(plain_server.uri, "reader") as conn:
        assert fetch_scalar(conn, "SELECT 40 + 2") == 42


def test_bearer_token_passed_directly(plain_server):
    token = basic_token(plain_server.uri, "writer", PASSWORDS["writer"]).decode()
    with connect(plain_server.uri, **{AUTH_HEADER: token}) as conn:
        assert fetch_scalar(conn, "SELECT 7") == 7
    # The token carries the writer's role: DDL is refused.
    with connect(plain_server.uri, **{AUTH_HEADER: token}) as conn:
        expect_denied(conn, "CREATE SCHEMA writer_schema")


def test_unknown_bearer_token_is_unauthenticated(plain_server):
    def run():
        with connect(plain_server.uri, **{AUTH_HEADER: "Bearer not-a-token"}) as conn:
            fetch_rows(conn, "SELECT 1")

    expect_unauthenticated(run, "unknown bearer token")


def test_raw_flight_calls_need_a_token(plain_server):
    client = flight.FlightClient(plain_server.uri)
    try:
        with pytest.raises(flight.FlightUnauthenticatedError):
            client.list_actions()
        with pytest.raises(flight.FlightUnauthenticatedError):
            client.authenticate_basic_token("boss", "wrong")
    finally:
        client.close()


def test_expired_token_is_unauthenticated(weir_factory, tmp_path, users_flag):
    server = weir_factory(tmp_path / "ttl", ["--users", users_flag, "--token-ttl", "1s"])
    conn = connect(server.uri, "reader")  # handshake: a token valid for 1 s
    try:
        assert fetch_scalar(conn, "SELECT 1") == 1
        deadline = time.monotonic() + 10
        while True:
            try:
                fetch_rows(conn, "SELECT 1")
            except dbapi.Error as err:
                assert err.vendor_code == GRPC_UNAUTHENTICATED, err
                assert err.status_code == Status.UNAUTHENTICATED, err
                assert "expired" in str(err), err
                break
            assert time.monotonic() < deadline, "token did not expire"
            time.sleep(0.2)
    finally:
        conn.close()
    # A new handshake gets a fresh token.
    with connect(server.uri, "reader") as again:
        assert fetch_scalar(again, "SELECT 2") == 2


# --- TLS ------------------------------------------------------------------------------


def test_tls_with_the_ca_and_password(tls_server, certs):
    with tls_connect(tls_server, certs, "reader") as conn:
        assert fetch_scalar(conn, "SELECT 'over tls'") == "over tls"


def test_tls_wrong_password_and_no_credentials(tls_server, certs):
    expect_unauthenticated(lambda: tls_connect(tls_server, certs, "boss", "nope").close())

    def anonymous():
        with tls_connect(tls_server, certs) as conn:
            fetch_rows(conn, "SELECT 1")

    expect_unauthenticated(anonymous)


def test_tls_bearer_token_passed_directly(tls_server, certs):
    token = basic_token(
        tls_server.tls_uri, "reader", PASSWORDS["reader"], tls_root_certs=certs.ca_pem
    ).decode()
    with tls_connect(tls_server, certs, **{AUTH_HEADER: token}) as conn:
        assert fetch_scalar(conn, "SELECT 3") == 3


def test_tls_with_a_wrong_ca_fails(tls_server, certs):
    with pytest.raises(dbapi.Error) as excinfo:
        with connect(tls_server.tls_uri, "reader", **{TLS_ROOT_CERTS: other_ca_pem()}) as conn:
            fetch_rows(conn, "SELECT 1")
    # The connection is refused before any call reaches the server.
    assert excinfo.value.vendor_code not in (0, GRPC_UNAUTHENTICATED), excinfo.value
    assert "certificate" in str(excinfo.value).lower() or "x509" in str(excinfo.value), excinfo.value


def test_plaintext_client_cannot_talk_to_tls_server(tls_server):
    with pytest.raises(dbapi.Error):
        with connect(f"grpc://127.0.0.1:{tls_server.port}", "reader") as conn:
            fetch_rows(conn, "SELECT 1")


# --- roles ----------------------------------------------------------------------------

# Where a denied COPY would have written (must never appear).
COPY_TARGET = Path(tempfile.gettempdir()) / f"weir-denied-{uuid.uuid4().hex}.parquet"

# Statements only an admin may run (a role below is refused with PERMISSION_DENIED).
ADMIN_ONLY = [
    "CREATE SCHEMA denied_schema",
    "CREATE TABLE public.denied (a INT)",
    "CREATE TABLE public.denied_p (ts TIMESTAMP NOT NULL, a INT) PARTITIONED BY (day(ts))",
    "CREATE TABLE public.denied_ctas AS SELECT 1 AS a",
    "SELECT 1 AS a INTO public.denied_into",
    "DROP TABLE public.roles_t",
    "DROP SCHEMA roles CASCADE",
    "CREATE MATERIALIZED VIEW public.denied_mv AS SELECT count(*) AS n FROM public.roles_t",
    "REFRESH MATERIALIZED VIEW gold.points_1h",
    "DROP MATERIALIZED VIEW gold.points_1h",
    f"COPY (SELECT 1) TO '{COPY_TARGET}'",
    # Rows of the pipeline's tables are changed by admins only (issue 20).
    "DELETE FROM silver.points WHERE device_id = 'x'",
    "UPDATE silver.points SET value = 0 WHERE device_id = 'x'",
    "TRUNCATE TABLE gold.points_1m",
    "INSERT OVERWRITE silver.points SELECT * FROM silver.points WHERE false",
    "INSERT OVERWRITE silver.points PARTITION (device_id = 'x') SELECT * FROM silver.points WHERE false",
    "MERGE INTO silver.points t USING public.roles_t s ON t.value = s.a WHEN MATCHED THEN DELETE",
    # Alert rules (issue 22).
    "CREATE ALERT denied ON public.roles_t WHEN a > 1",
    "DROP ALERT IF EXISTS denied",
]
WRITE = [
    "ACKNOWLEDGE ALERT 'no-such-alert'",
    "INSERT INTO public.roles_t VALUES (100)",
    "DELETE FROM public.roles_t WHERE a = 1",
    "MERGE INTO public.roles_t t USING (SELECT 100 AS a) s ON t.a = s.a WHEN NOT MATCHED THEN INSERT VALUES (s.a)",
]


@pytest.fixture(scope="module")
def role_table(tls_server, certs):
    with tls_connect(tls_server, certs, "boss") as conn:
        execute(conn, "CREATE TABLE public.roles_t (a INT)")
        execute(conn, "INSERT INTO public.roles_t VALUES (1), (2)")
    return "public.roles_t"


def row_count(tls_server, certs) -> int:
    with tls_connect(tls_server, certs, "boss") as conn:
        return fetch_scalar(conn, "SELECT count(*) FROM public.roles_t")


def table_names(conn) -> set:
    return {
        r[0]
        for r in fetch_rows(
            conn,
            "SELECT table_schema || '.' || table_name FROM information_schema.tables "
            "WHERE table_catalog = 'weir'",
        )
    }


def schema_names(conn) -> set:
    return {r[0] for r in fetch_rows(conn, "SELECT schema_name FROM information_schema.schemata")}


def test_reader_can_query_and_list_metadata(tls_server, certs, role_table):
    with tls_connect(tls_server, certs, "reader") as conn:
        assert sorted(r[0] for r in fetch_rows(conn, f"SELECT a FROM {role_table}"))[:2] == [1, 2]
        assert "public.roles_t" in table_names(conn)
        objects = conn.adbc_get_objects(depth="tables", catalog_filter="weir").read_all()
        schemas = objects.column("catalog_db_schemas").to_pylist()[0]
        assert {"public", "silver", "gold"} <= {s["db_schema_name"] for s in schemas}
        schema = conn.adbc_get_table_schema("roles_t", db_schema_filter="public")
        assert schema.names == ["a"]
        assert fetch_rows(conn, f"SELECT a FROM {role_table} WHERE a = ?", parameters=(2,)) == [(2,)]
        assert fetch_rows(conn, "EXPLAIN SELECT count(*) FROM silver.points")
        # EXPLAIN plans without running: allowed, and creates nothing.
        assert fetch_rows(conn, "EXPLAIN CREATE SCHEMA explained_only")
        assert "explained_only" not in schema_names(conn)


def test_sql_that_does_not_parse_is_a_syntax_error_for_everyone(tls_server, certs):
    # Parsed once, with the session's dialect: what does not parse never runs,
    # whatever the role (issue 24: no separate keyword classification).
    for user in ("reader", "boss"):
        with tls_connect(tls_server, certs, user) as conn:
            with pytest.raises(dbapi.Error) as excinfo:
                execute(conn, "COMPACT silver.points")
            assert_grpc_error(excinfo, Status.INVALID_ARGUMENT, 3, "syntax error")


@pytest.mark.parametrize("sql", WRITE + ADMIN_ONLY)
def test_reader_cannot_change_anything(tls_server, certs, role_table, sql):
    with tls_connect(tls_server, certs, "reader") as conn:
        expect_denied(conn, sql)


def test_reader_cannot_write_through_prepared_statements_or_ingest(tls_server, certs, role_table):
    before = row_count(tls_server, certs)
    with tls_connect(tls_server, certs, "reader") as conn:
        with conn.cursor() as cur:
            with pytest.raises(dbapi.Error) as excinfo:
                cur.executemany("INSERT INTO public.roles_t VALUES (?)", [(7,), (8,)])
            assert_grpc_error(excinfo, Status.UNAUTHORIZED, GRPC_PERMISSION_DENIED)
            with pytest.raises(dbapi.Error) as excinfo:
                cur.adbc_ingest("roles_t", pa.table({"a": pa.array([9], pa.int32())}), mode="append")
            assert_grpc_error(excinfo, Status.UNAUTHORIZED, GRPC_PERMISSION_DENIED)
    assert row_count(tls_server, certs) == before


def test_denied_statements_changed_nothing(tls_server, certs, role_table):
    with tls_connect(tls_server, certs, "reader") as conn:
        for sql in WRITE + ADMIN_ONLY:
            with pytest.raises(dbapi.Error):
                execute(conn, sql)
    with tls_connect(tls_server, certs, "boss") as conn:
        names = table_names(conn)
        assert not {n for n in names if "denied" in n}, names
        assert "denied_schema" not in schema_names(conn)
        assert {"public.roles_t", "gold.points_1h"} <= names
        assert sorted(r[0] for r in fetch_rows(conn, "SELECT a FROM public.roles_t"))[:2] == [1, 2]
    assert not COPY_TARGET.exists()


def test_raw_statement_commands_check_roles(tls_server, certs, role_table):
    """CommandStatementQuery (GetFlightInfo) and CommandStatementUpdate (DoPut),
    the paths clients other than ADBC use, with a reader's token."""
    token = basic_token(
        tls_server.tls_uri, "reader", PASSWORDS["reader"], tls_root_certs=certs.ca_pem
    )
    client = flight.FlightClient(tls_server.tls_uri, tls_root_certs=certs.ca_pem)
    options = flight.FlightCallOptions(headers=[(b"authorization", token)])

    def info(sql):
        descriptor = flight.FlightDescriptor.for_command(proto.command_statement_query(sql))
        return client.get_flight_info(descriptor, options)

    def update(sql):
        command = proto.pack_any("CommandStatementUpdate", proto._string(1, sql))
        descriptor = flight.FlightDescriptor.for_command(command)
        writer, reader = client.do_put(descriptor, pa.schema([]), options)
        writer.done_writing()
        reader.read()
        writer.close()

    try:
        table = client.do_get(info("SELECT 41 + 1 AS x").endpoints[0].ticket, options).read_all()
        assert table.column("x").to_pylist() == [42]
        for sql in ["INSERT INTO public.roles_t VALUES (5)", "CREATE SCHEMA raw_denied"]:
            with pytest.raises(flight.FlightUnauthorizedError, match="may not run"):
                info(sql)
            with pytest.raises(flight.FlightUnauthorizedError, match="may not run"):
                update(sql)
    finally:
        client.close()
    with tls_connect(tls_server, certs, "boss") as conn:
        assert "raw_denied" not in schema_names(conn)
        assert fetch_rows(conn, "SELECT a FROM public.roles_t WHERE a = 5") == []


def test_writer_inserts_but_no_ddl(tls_server, certs, role_table):
    before = row_count(tls_server, certs)
    with tls_connect(tls_server, certs, "writer") as conn:
        execute(conn, "INSERT INTO public.roles_t VALUES (10), (11)")
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO public.roles_t VALUES (?)", [(12,), (13,)])
        assert fetch_scalar(conn, "SELECT count(*) FROM public.roles_t") == before + 4
        # Row-level DML on ordinary tables is a write (issue 20).
        assert fetch_rows(conn, "UPDATE public.roles_t SET a = 20 WHERE a = 10") == [(1,)]
        assert fetch_rows(conn, "DELETE FROM public.roles_t WHERE a IN (20, 11)") == [(2,)]
        assert fetch_rows(
            conn,
            "MERGE INTO public.roles_t t USING (SELECT 10 AS a UNION ALL SELECT 11) s ON t.a = s.a "
            "WHEN NOT MATCHED THEN INSERT VALUES (s.a)",
        ) == [(2,)]
        for sql in ADMIN_ONLY:
            expect_denied(conn, sql)
    assert row_count(tls_server, certs) == before + 4


def test_admin_runs_everything(tls_server, certs, role_table):
    with tls_connect(tls_server, certs, "boss") as conn:
        execute(conn, "CREATE SCHEMA adm")
        execute(conn, "CREATE TABLE adm.t (ts TIMESTAMP NOT NULL, v DOUBLE) PARTITIONED BY (day(ts))")
        execute(conn, "INSERT INTO adm.t VALUES (TIMESTAMP '2026-01-01T00:00:00', 1.5)")
        execute(
            conn,
            "CREATE MATERIALIZED VIEW adm.t_1d AS SELECT date_bin(INTERVAL '1 day', ts) AS bucket, "
            "count(*) AS n FROM adm.t GROUP BY 1",
        )
        execute(conn, "INSERT INTO adm.t VALUES (TIMESTAMP '2026-01-01T01:00:00', 2.5)")
        execute(conn, "REFRESH MATERIALIZED VIEW adm.t_1d")
        assert fetch_scalar(conn, "SELECT n FROM adm.t_1d") == 2
        execute(conn, "DROP MATERIALIZED VIEW adm.t_1d")
        assert fetch_rows(conn, "DELETE FROM silver.points WHERE device_id = 'nobody'") == [(0,)]
        execute(conn, "DROP TABLE adm.t")
        execute(conn, "DROP SCHEMA adm")
        assert not {n for n in table_names(conn) if n.startswith("adm.")}


# --- modes and start-up checks ------------------------------------------------------


def test_optional_mode_makes_anonymous_callers_readers(weir_factory, tmp_path, users_flag):
    server = weir_factory(tmp_path / "opt", ["--users", users_flag, "--auth", "optional"])
    with connect(server.uri) as conn:
        assert fetch_scalar(conn, "SELECT 5") == 5
        expect_denied(conn, "CREATE SCHEMA anon")
    expect_unauthenticated(lambda: connect(server.uri, "boss", "wrong").close())
    with connect(server.uri, "boss") as conn:
        execute(conn, "CREATE SCHEMA by_boss")


def test_auth_off_ignores_users(weir_factory, tmp_path, users_flag):
    server = weir_factory(tmp_path / "off", ["--users", users_flag, "--auth", "off"])
    with connect(server.uri) as conn:
        execute(conn, "CREATE SCHEMA anyone")
        assert "anyone" in schema_names(conn)


def run_serve(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(weir_binary()), "serve", "--data-dir", str(tmp_path / "refused"), *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_non_loopback_without_users_refuses_to_start(tmp_path):
    result = run_serve(tmp_path, "--listen", "0.0.0.0:0")
    assert result.returncode != 0
    assert "not a loopback address" in result.stderr, result.stderr
    assert "Flight SQL listening" not in result.stdout


def test_required_without_users_and_plain_text_passwords_refuse_to_start(tmp_path):
    result = run_serve(tmp_path, "--listen", "127.0.0.1:0", "--auth", "required")
    assert result.returncode != 0 and "no users are configured" in result.stderr, result.stderr
    result = run_serve(tmp_path, "--listen", "127.0.0.1:0", "--users", "eve:admin:hunter2")
    assert result.returncode != 0 and "weir hash-password" in result.stderr, result.stderr
    config = tmp_path / "plain.toml"
    config.write_text('[[users]]\nname = "eve"\nrole = "admin"\npassword = "hunter2"\n')
    result = run_serve(tmp_path, "--listen", "127.0.0.1:0", "--config", str(config))
    assert result.returncode != 0 and "plain-text" in result.stderr, result.stderr


def test_missing_tls_files_refuse_to_start(tmp_path):
    result = run_serve(
        tmp_path, "--listen", "127.0.0.1:0",
        "--tls-cert", str(tmp_path / "nope.pem"), "--tls-key", str(tmp_path / "nope.key"),
    )
    assert result.returncode != 0 and "TLS setup" in result.stderr, result.stderr
