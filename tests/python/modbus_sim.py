"""A Modbus TCP device for the tests: pymodbus's own server (not ours) with
known register values, run as its own process so a test can kill it (the
device goes away) and start it again on the same port.

    python modbus_sim.py PORT SPEC.json

SPEC: {"hr": [words...], "ir": [words...], "co": [0/1...], "di": [0/1...]}
holding/input register i (0-based protocol address) holds hr[i]/ir[i];
addresses past the lists answer with exception 2 (illegal data address).
"""

from __future__ import annotations

import asyncio
import json
import sys

from pymodbus.datastore import ModbusDeviceContext, ModbusSequentialDataBlock, ModbusServerContext
from pymodbus.server import StartAsyncTcpServer


def block(values):
    # pymodbus adds 1 to the protocol address before indexing the block, so a
    # block starting at 1 puts protocol address 0 at values[0].
    return ModbusSequentialDataBlock(1, list(values) or [0])


async def main(port: int, spec: dict) -> None:
    device = ModbusDeviceContext(
        hr=block(spec.get("hr", [])),
        ir=block(spec.get("ir", [])),
        co=block([bool(v) for v in spec.get("co", [])]),
        di=block([bool(v) for v in spec.get("di", [])]),
    )
    context = ModbusServerContext(devices=device, single=True)
    await StartAsyncTcpServer(context=context, address=("127.0.0.1", port))


if __name__ == "__main__":
    with open(sys.argv[2]) as f:
        spec = json.load(f)
    asyncio.run(main(int(sys.argv[1]), spec))
