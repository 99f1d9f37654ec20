"""Every simulated venue answers a request that is not a JSON object naming its operation
with that venue's own error message (the shared Encoder.on_text), and keeps the connection."""

from __future__ import annotations

import asyncio
import json

import pytest
from sim_helpers import running
from websockets.asyncio.client import connect

# venue -> (path after its URL, the venue's answer to a malformed request)
ANSWERS = {
    "binance": ("/ws", {"error": {"code": 3, "msg": "Invalid JSON: expected a method object"}}),
    "kraken": ("", {"error": "malformed request", "success": False}),
    "okx": ("", {"event": "error", "code": "60012", "msg": "Invalid request"}),
    "bybit": ("", {"success": False, "ret_msg": "Invalid request", "op": ""}),
}


@pytest.mark.parametrize("venue", sorted(ANSWERS))
def test_a_malformed_request_gets_the_venues_error_and_the_connection_stays(venue):
    path, want = ANSWERS[venue]

    async def main() -> list:
        async with running(venues=(venue,), assets=("BTC",), seed=1) as sim:
            async with connect(sim.urls()[venue] + path) as ws:
                got = []
                for text in ("{", "[1]", '{"no_operation": 1}'):
                    await ws.send(text)
                    while True:  # past any unsolicited message (Kraken's status on connect)
                        m = json.loads(await asyncio.wait_for(ws.recv(), 10))
                        if m.get("channel") not in ("status", "heartbeat"):
                            break
                    got.append(m)
                return got

    assert asyncio.run(main()) == [want] * 3
