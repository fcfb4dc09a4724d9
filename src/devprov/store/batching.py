"""Concurrent requests gathered into one call, one call in flight at a time."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

In = TypeVar("In")
Out = TypeVar("Out")


class Batcher(Generic[In, Out]):
    """Answers each request with its part of one `run` over every request that arrived while
    the previous run was in flight (at most `most` at a time): under load, many requests cost
    one round trip; alone, a request waits for none."""

    def __init__(self, run: Callable[[list[In]], Awaitable[list[Out]]], most: int = 256) -> None:
        self.run = run
        self.most = most
        self._pending: list[tuple[In, asyncio.Future[Out]]] = []
        self._task: asyncio.Task[None] | None = None

    async def __call__(self, request: In) -> Out:
        future: asyncio.Future[Out] = asyncio.get_running_loop().create_future()
        self._pending.append((request, future))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[: self.most], self._pending[self.most :]
            try:
                answers = await self.run([request for request, _ in batch])
            except Exception as error:  # every request of the batch fails with it
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            for (_, future), answer in zip(batch, answers, strict=True):
                if not future.done():
                    future.set_result(answer)
