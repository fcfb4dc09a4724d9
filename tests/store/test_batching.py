"""Requests gathered into one call while the previous call is in flight."""

from __future__ import annotations

import asyncio

import pytest

from devprov.store.batching import Batcher


async def test_requests_made_meanwhile_share_one_call_and_each_gets_its_answer() -> None:
    calls: list[list[int]] = []

    async def double(numbers: list[int]) -> list[int]:
        calls.append(numbers)
        await asyncio.sleep(0.01)
        return [2 * n for n in numbers]

    batcher = Batcher(double, most=3)
    answers = await asyncio.gather(*(batcher(n) for n in range(5)))

    assert answers == [0, 2, 4, 6, 8]
    assert calls == [[0, 1, 2], [3, 4]]  # all five arrived before the first call: at most 3 each


async def test_a_failing_call_fails_its_requests_only() -> None:
    async def refuse_odd(numbers: list[int]) -> list[int]:
        await asyncio.sleep(0)
        if any(n % 2 for n in numbers):
            raise ValueError("odd")
        return numbers

    batcher = Batcher(refuse_odd, most=1)
    results = await asyncio.gather(*(batcher(n) for n in range(3)), return_exceptions=True)

    assert results[0] == 0 and results[2] == 2
    assert isinstance(results[1], ValueError)
    with pytest.raises(ValueError):
        await batcher(5)
    assert await batcher(4) == 4  # and it goes on serving
