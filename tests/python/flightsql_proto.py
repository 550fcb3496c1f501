"""Minimal hand-written protobuf encoder for the Flight SQL commands the tests send.

Only what the tests need is implemented: varints, length-delimited fields and
``google.protobuf.Any`` wrapping.  Field numbers follow Arrow's
``format/FlightSql.proto`` (package ``arrow.flight.protocol.sql``).
"""

from __future__ import annotations

from typing import Iterable, Optional

_TYPE_URL_PREFIX = "type.googleapis.com/arrow.flight.protocol.sql."

_WIRE_VARINT = 0
_WIRE_LEN = 2


def _varint(value: int) -> bytes:
    if value < 0:
        # Negative int32/int64 values are encoded as 10-byte two's complement.
        value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _key(field: int, wire_type: int) -> bytes:
    return _varint((field << 3) | wire_type)


def _len_field(field: int, payload: bytes) -> bytes:
    return _key(field, _WIRE_LEN) + _varint(len(payload)) + payload


def _string(field: int, value: Optional[str]) -> bytes:
    """An (optional) string field; ``None`` means "not set"."""
    if value is None:
        return b""
    return _len_field(field, value.encode("utf-8"))


def _bytes(field: int, value: Optional[bytes]) -> bytes:
    if value is None:
        return b""
    return _len_field(field, value)


def _int(field: int, value: Optional[int]) -> bytes:
    if value is None:
        return b""
    return _key(field, _WIRE_VARINT) + _varint(value)


def _bool(field: int, value: bool) -> bytes:
    # proto3 scalar: the default (false) is not serialized.
    return _int(field, 1) if value else b""


def _packed_uint32(field: int, values: Iterable[int]) -> bytes:
    values = list(values)
    if not values:
        return b""
    return _len_field(field, b"".join(_varint(v) for v in values))


def pack_any(message_name: str, payload: bytes) -> bytes:
    """Wrap a serialized Flight SQL message in ``google.protobuf.Any``."""
    return _string(1, _TYPE_URL_PREFIX + message_name) + _bytes(2, payload)


# --- Flight SQL commands (each returns the serialized ``Any``) ---------------


def command_get_sql_info(info: Iterable[int] = ()) -> bytes:
    return pack_any("CommandGetSqlInfo", _packed_uint32(1, info))


def command_get_catalogs() -> bytes:
    return pack_any("CommandGetCatalogs", b"")


def command_get_db_schemas(
    catalog: Optional[str] = None, db_schema_filter_pattern: Optional[str] = None
) -> bytes:
    return pack_any(
        "CommandGetDbSchemas",
        _string(1, catalog) + _string(2, db_schema_filter_pattern),
    )


def command_get_tables(
    catalog: Optional[str] = None,
    db_schema_filter_pattern: Optional[str] = None,
    table_name_filter_pattern: Optional[str] = None,
    table_types: Iterable[str] = (),
    include_schema: bool = False,
) -> bytes:
    payload = (
        _string(1, catalog)
        + _string(2, db_schema_filter_pattern)
        + _string(3, table_name_filter_pattern)
        + b"".join(_string(4, t) for t in table_types)
        + _bool(5, include_schema)
    )
    return pack_any("CommandGetTables", payload)


def command_get_table_types() -> bytes:
    return pack_any("CommandGetTableTypes", b"")


def command_get_xdbc_type_info(data_type: Optional[int] = None) -> bytes:
    return pack_any("CommandGetXdbcTypeInfo", _int(1, data_type))


def _table_ref(catalog: Optional[str], db_schema: Optional[str], table: str) -> bytes:
    return _string(1, catalog) + _string(2, db_schema) + _string(3, table)


def command_get_primary_keys(
    table: str, catalog: Optional[str] = None, db_schema: Optional[str] = None
) -> bytes:
    return pack_any("CommandGetPrimaryKeys", _table_ref(catalog, db_schema, table))


def command_get_exported_keys(
    table: str, catalog: Optional[str] = None, db_schema: Optional[str] = None
) -> bytes:
    return pack_any("CommandGetExportedKeys", _table_ref(catalog, db_schema, table))


def command_get_imported_keys(
    table: str, catalog: Optional[str] = None, db_schema: Optional[str] = None
) -> bytes:
    return pack_any("CommandGetImportedKeys", _table_ref(catalog, db_schema, table))


def command_get_cross_reference(
    pk_table: str,
    fk_table: str,
    pk_catalog: Optional[str] = None,
    pk_db_schema: Optional[str] = None,
    fk_catalog: Optional[str] = None,
    fk_db_schema: Optional[str] = None,
) -> bytes:
    payload = (
        _string(1, pk_catalog)
        + _string(2, pk_db_schema)
        + _string(3, pk_table)
        + _string(4, fk_catalog)
        + _string(5, fk_db_schema)
        + _string(6, fk_table)
    )
    return pack_any("CommandGetCrossReference", payload)


def command_statement_query(query: str, transaction_id: Optional[bytes] = None) -> bytes:
    return pack_any("CommandStatementQuery", _string(1, query) + _bytes(2, transaction_id))


def command_unknown(message_name: str = "CommandWeirDoesNotExist") -> bytes:
    """An ``Any`` whose type URL names no Flight SQL command."""
    return pack_any(message_name, b"")
