"""Bad queries get the gRPC status of what is wrong with them, with a message
naming the problem (issue 22, item 5): INVALID_ARGUMENT for user errors
(unknown function, wrong arguments, type errors, bad literals, runtime errors
of the data such as division by zero), UNIMPLEMENTED for SQL Weir does not
support, NOT_FOUND for missing tables — never INTERNAL.

The mapping is `weir_query::QueryError::from(DataFusionError)` (classified by
the root of DataFusion's error chain) and `weir_flight::error::status_from`.
Cases marked "was INTERNAL" (or "was …") came back wrong before that mapping
looked at the root of the chain."""

from __future__ import annotations

import adbc_driver_manager.dbapi as dbapi
import pytest

from weir_harness import execute, fetch_scalar, fetch_table

INVALID_ARGUMENT = 3
NOT_FOUND = 5
INTERNAL = 13
UNIMPLEMENTED = 12

# (sql, gRPC status, text the message must contain)
CASES = [
    # --- unknown functions
    ("SELECT date_bin_gapfill2(1)", INVALID_ARGUMENT, "Invalid function 'date_bin_gapfill2'"),
    ("SELECT nosuch(1)", INVALID_ARGUMENT, "Invalid function 'nosuch'"),
    ("SELECT nosuch(id) OVER () FROM public.t", INVALID_ARGUMENT, "Invalid function 'nosuch'"),
    ("SELECT count(*) FILTER (WHERE nosuch(id)) FROM public.t", INVALID_ARGUMENT, "Invalid function 'nosuch'"),
    # was INTERNAL: two errors at once (DataFusionError::Collection)
    ("SELECT id, nosuch(id), nosuch2(id) FROM public.t", INVALID_ARGUMENT, "Invalid function 'nosuch'"),
    # was NOT_FOUND: an unknown table function is an unknown function
    ("SELECT * FROM nosuch_fn(1)", INVALID_ARGUMENT, "table function 'nosuch_fn' not found"),
    # --- wrong argument counts / types
    ("SELECT abs('x', 2)", INVALID_ARGUMENT, "'abs' expects 1 arguments but received 2"),
    ("SELECT abs('x')", INVALID_ARGUMENT, "abs(Utf8)"),
    ("SELECT date_bin(1, 2)", INVALID_ARGUMENT, "'date_bin'"),
    ("SELECT sum()", INVALID_ARGUMENT, "'sum' does not support zero arguments"),
    ("SELECT sum(name) FROM public.t", INVALID_ARGUMENT, "Function 'sum'"),
    ("SELECT date_trunc('minute')", INVALID_ARGUMENT, "'date_trunc' expects 2 arguments"),
    ("SELECT * FROM iceberg_snapshots(1)", INVALID_ARGUMENT, "expected a string literal"),
    ("SELECT date_bin(INTERVAL '0 minute', ts) FROM public.t", INVALID_ARGUMENT, "stride must be non-zero"),
    # time-series functions (time_series.rs)
    ("SELECT last(v) FROM public.t", INVALID_ARGUMENT, "last(value, time) takes 2 arguments, got 1"),
    ("SELECT selector_last(v, 1) FROM public.t", INVALID_ARGUMENT, "the second argument must be a timestamp"),
    ("SELECT time_bucket(INTERVAL '1 hour') FROM public.t", INVALID_ARGUMENT, "takes 2 or 3 arguments"),
    # gap filling (gapfill/): no time range; the interval checked when the plan is made; locf elsewhere
    ("SELECT date_bin_gapfill(INTERVAL '1 minute', ts) AS m, avg(v) FROM public.t GROUP BY m", INVALID_ARGUMENT,
     "date_bin_gapfill requires a time range in WHERE: ts >= … AND ts < …"),
    ("SELECT date_bin_gapfill(INTERVAL '1 month', ts) AS m, avg(v) FROM public.t "
     "WHERE ts >= '2024-01-01' AND ts < '2024-02-01' GROUP BY m", INVALID_ARGUMENT, "must not have months"),
    ("SELECT locf(v) FROM public.t", INVALID_ARGUMENT, "locf may only be used in the SELECT list"),
    # --- unknown columns, shapes
    ("SELECT nope FROM public.t", INVALID_ARGUMENT, "No field named nope"),
    # was INTERNAL: two unknown columns (Collection)
    ("SELECT nope1, nope2 FROM public.t", INVALID_ARGUMENT, "No field named nope1"),
    ("SELECT id FROM public.t GROUP BY name", INVALID_ARGUMENT, "must appear in the GROUP BY clause"),
    ("SELECT id FROM public.t UNION SELECT id, name FROM public.t", INVALID_ARGUMENT, "different number of columns"),
    ("SELECT * FROM public.t WHERE id IN (SELECT id, name FROM public.t)", INVALID_ARGUMENT, "only return one column"),
    ("SELECT sum(id) OVER w FROM public.t", INVALID_ARGUMENT, "window w is not defined"),
    ("SELECT id FROM public.t ORDER BY 5", INVALID_ARGUMENT, "Order by column out of bounds"),
    # --- type errors in expressions
    ("SELECT id + name FROM public.t", INVALID_ARGUMENT, "Cannot coerce arithmetic expression Int64 + Utf8"),
    ("SELECT ts + ts FROM public.t", INVALID_ARGUMENT, "Invalid timestamp arithmetic operation"),
    ("SELECT id FROM public.t WHERE name", INVALID_ARGUMENT, "non-boolean predicate"),
    ("SELECT -name FROM public.t", INVALID_ARGUMENT, "Negation only supports numeric"),
    # --- bad literals and casts
    ("SELECT CAST('abc' AS INT)", INVALID_ARGUMENT, "Cannot cast string 'abc'"),
    ("SELECT DATE '2024-02-30'", INVALID_ARGUMENT, "'2024-02-30'"),
    ("SELECT TIMESTAMP 'nonsense'", INVALID_ARGUMENT, "Error parsing timestamp from 'nonsense'"),
    ("SELECT CAST(300 AS TINYINT)", INVALID_ARGUMENT, "Can't cast value 300 to type Int8"),
    ("SELECT INTERVAL 'nonsense'", INVALID_ARGUMENT, "type interval"),
    ("SELECT make_date(2024, 13, 1)", INVALID_ARGUMENT, "Month value '13' is out of range"),
    # --- errors of the data at run time
    ("SELECT 1 / 0", INVALID_ARGUMENT, "division by zero"),
    ("SELECT 10 / id FROM public.t", INVALID_ARGUMENT, "division by zero"),
    ("SELECT abs(-9223372036854775807 - 1)", INVALID_ARGUMENT, "overflow"),
    # was INTERNAL: the optimizer's regex simplification (regex_syntax::Error)
    ("SELECT regexp_like(name, '(') FROM public.t", INVALID_ARGUMENT, "invalid regular expression"),
    ("SELECT name ~ '[' FROM public.t", INVALID_ARGUMENT, "invalid regular expression"),
    # was INTERNAL: regexp_replace boxes the regex crate's error (External)
    ("SELECT regexp_replace(name, '[', 'x') FROM public.t", INVALID_ARGUMENT, "invalid regular expression"),
    # --- syntax
    ("SELEC 1", INVALID_ARGUMENT, "SQL syntax error"),
    ("SELECT id FROM public.t INTO TEMP x", INVALID_ARGUMENT, "SQL syntax error"),
    # --- unsupported SQL
    ("SELECT * FROM public.t PIVOT (sum(v) FOR name IN ('a', 'b'))", UNIMPLEMENTED, "Pivot"),
    ("SELECT * FROM public.t UNPIVOT (val FOR col IN (id, v))", UNIMPLEMENTED, "Unpivot"),
    (
        "SELECT * FROM public.t MATCH_RECOGNIZE (ORDER BY ts MEASURES 1 AS x PATTERN (A) DEFINE A AS true)",
        UNIMPLEMENTED,
        "MatchRecognize",
    ),
    ("SELECT * FROM public.t CROSS APPLY (SELECT 1)", UNIMPLEMENTED, "CrossApply"),
    (
        "SELECT * FROM public.t u, LATERAL (SELECT max(w.id) FROM public.t w WHERE w.id < u.id LIMIT 1)",
        UNIMPLEMENTED,
        "OuterReferenceColumn",
    ),
    ("SELECT CONVERT(v, INT) FROM public.t", UNIMPLEMENTED, "Convert"),
    ("SELECT CAST(ts AS BOOLEAN) FROM public.t", UNIMPLEMENTED, "Unsupported CAST from Timestamp"),
    ("SELECT id::nosuchtype FROM public.t", UNIMPLEMENTED, "Unsupported SQL type nosuchtype"),
    # was OK (every row): DataFusion drops the sample clause
    ("SELECT id FROM public.t TABLESAMPLE BERNOULLI (10)", UNIMPLEMENTED, "TABLESAMPLE"),
    ("SELECT 1; SELECT 2", UNIMPLEMENTED, "more than one statement"),
    # --- missing tables
    ("SELECT * FROM public.nope", NOT_FOUND, "public.nope"),
    ("SELECT * FROM nowhere.t", NOT_FOUND, "nowhere.t"),
    ("INSERT INTO public.nope VALUES (1)", NOT_FOUND, "public.nope"),
    ("SELECT * FROM iceberg_snapshots('public.nope')", NOT_FOUND, "public.nope"),
    ("DROP TABLE public.nope", NOT_FOUND, "public.nope"),
]


@pytest.fixture(scope="module")
def table_t(adbc_conn):
    execute(adbc_conn, "CREATE TABLE public.t (id BIGINT, name VARCHAR, ts TIMESTAMP, v DOUBLE)")
    execute(
        adbc_conn,
        "INSERT INTO public.t VALUES (1, 'a', TIMESTAMP '2024-01-01 00:00:00', 1.5), "
        "(0, 'b', TIMESTAMP '2024-01-01 00:01:00', 2.5)",
    )
    return "public.t"


def run_error(conn, sql: str) -> dbapi.Error:
    with pytest.raises(dbapi.Error) as excinfo:
        fetch_table(conn, sql)
    return excinfo.value


@pytest.mark.parametrize(("sql", "code", "text"), CASES, ids=[c[0][:60] for c in CASES])
def test_bad_query_status(adbc_conn, table_t, sql, code, text):
    err = run_error(adbc_conn, sql)
    assert err.vendor_code == code, f"{sql!r}: expected gRPC {code}, got {err.vendor_code}: {err}"
    assert text in str(err), f"{sql!r}: {text!r} not in {err}"


def test_the_sweep_covers_enough(table_t):
    assert len(CASES) >= 25
    assert {code for _, code, _ in CASES} == {INVALID_ARGUMENT, UNIMPLEMENTED, NOT_FOUND}


def test_a_panic_in_the_engine_is_internal_with_its_message(adbc_conn, table_t):
    # DataFusion 53's overlay() slices out of bounds for a negative position
    # (a panic; the stream used to be reset: CANCELLED without a message).
    err = run_error(adbc_conn, "SELECT overlay('abc' placing 'x' from -5)")
    assert err.vendor_code == INTERNAL, str(err)
    assert "out of bounds" in str(err), str(err)
    # The server and the connection carry on.
    assert fetch_scalar(adbc_conn, "SELECT count(*) FROM public.t") == 2
