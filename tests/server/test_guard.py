"""The pieces every listener shares: the tally that sums up closures, and the outbox that
stops reading a WebSocket client whose answers pile up."""

from __future__ import annotations

import asyncio
import logging

import pytest

from devprov.server.guard import Outbox, Tally


def test_a_tally_logs_once_an_interval_however_many_events(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tally = Tally("connections closed", interval=3600)
    tally.flush()  # the interval starts now
    with caplog.at_level(logging.WARNING):
        for _ in range(10_000):
            tally.count("request head timeout")
        tally.count("over the cap")
        tally.flush()
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "connections closed in the last 3600 s: 10000 request head timeout, 1 over the cap"
    ]
    assert tally.totals["request head timeout"] == 10_000


async def test_the_outbox_holds_the_reader_past_its_high_water_mark_until_drained() -> None:
    outbox = Outbox(high_water=1000)
    for _ in range(3):
        outbox.put(b"x" * 400)
    assert outbox.pauses == 1
    waiting = asyncio.create_task(outbox.room())
    await asyncio.sleep(0)
    assert not waiting.done()

    await outbox.get()
    await outbox.get()  # 400 left: under half the mark
    await asyncio.wait_for(waiting, 5)
    assert outbox.peak == 1200
