"""A thin raw Flight SQL client on top of ``pyarrow.flight``.

Every call goes through GetFlightInfo and then DoGet on each endpoint, and
checks that the schema advertised in the FlightInfo is exactly the schema of
the DoGet stream(s): that is part of the Flight SQL contract and a common
source of client breakage.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.flight as flight

from flightsql_proto import command_statement_query


@dataclass
class FlightSqlResult:
    info_schema: pa.Schema
    table: pa.Table


class FlightSqlClient:
    def __init__(self, uri: str):
        self.uri = uri
        self.client = flight.FlightClient(uri)

    def close(self) -> None:
        self.client.close()

    def get_flight_info(self, command: bytes) -> flight.FlightInfo:
        return self.client.get_flight_info(flight.FlightDescriptor.for_command(command))

    def execute(self, command: bytes) -> FlightSqlResult:
        """GetFlightInfo + DoGet of every endpoint; asserts schema agreement."""
        info = self.get_flight_info(command)
        assert info.endpoints, "FlightInfo has no endpoints"
        info_schema = info.schema
        tables = []
        for endpoint in info.endpoints:
            table = self.client.do_get(endpoint.ticket).read_all()
            assert_schemas_equal(info_schema, table.schema, "FlightInfo vs DoGet")
            tables.append(table)
        return FlightSqlResult(info_schema, pa.concat_tables(tables))

    def query(self, sql: str) -> FlightSqlResult:
        return self.execute(command_statement_query(sql))


def assert_schemas_equal(expected: pa.Schema, actual: pa.Schema, what: str) -> None:
    """Exact equality of names, types and nullability (metadata ignored)."""
    assert expected.equals(actual, check_metadata=False), (
        f"{what}: schemas differ\n--- expected\n{expected}\n--- actual\n{actual}"
    )
