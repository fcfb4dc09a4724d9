"""In-process allocators: Python functions the operator names at start, called with exactly the
webhook's request body and answering exactly its response.

Only functions named in the settings (`--allocator NAME=package.module:function`) can run: an
enrollment selects one by name (`allocator://NAME`), and nothing that arrives through the
service API is ever imported or evaluated."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
from collections.abc import Callable, Mapping
from typing import Any

from devprov.allocation.policies import AllocationError
from devprov.domain.errors import (
    CUSTOM_ALLOCATION_FAILED,
    WEBHOOK_BAD_RESPONSE,
    WEBHOOK_TIMEOUT,
    WEBHOOK_UNREACHABLE,
)
from devprov.domain.json_text import parse_json

AllocatorFunction = Callable[[dict[str, Any]], Any]
"""Takes the AllocationRequest body (a dict); returns the AllocationResponse (a dict), directly
or from a coroutine."""


def load_function(spec: str) -> AllocatorFunction:
    """`package.module:function` imported; a ValueError that says what is wrong otherwise."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"{spec!r} is not package.module:function")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"cannot import {module_name!r}: {error}") from None
    target: Any = module
    for part in attribute.split("."):
        target = getattr(target, part, None)
        if target is None:
            raise ValueError(f"{module_name!r} has no {attribute!r}")
    if not callable(target):
        raise ValueError(f"{spec!r} is not callable")
    function: AllocatorFunction = target
    return function


def parse_allocator_specs(specs: Mapping[str, str]) -> dict[str, AllocatorFunction]:
    """Every configured NAME -> package.module:function, imported at start (a typo fails then,
    not at a device's registration)."""
    loaded = {}
    for name, spec in specs.items():
        try:
            loaded[name.lower()] = load_function(spec)
        except ValueError as error:
            raise ValueError(f"allocator {name!r}: {error}") from None
    return loaded


async def call_function(function: AllocatorFunction, body: dict[str, Any]) -> Any:
    """An async function runs on the event loop; a plain one in a worker thread, so that a
    slow one cannot stall other devices and the timeout holds."""
    if inspect.iscoroutinefunction(function):
        return await function(body)
    answer = await asyncio.to_thread(function, body)
    if inspect.isawaitable(answer):
        answer = await answer
    return answer


class InProcessAllocators:
    """The configured functions, by lower-case name, called under the webhook's timeout."""

    def __init__(
        self, functions: Mapping[str, AllocatorFunction], timeout_seconds: float = 10.0
    ) -> None:
        self.functions = {name.lower(): function for name, function in functions.items()}
        self.timeout_seconds = timeout_seconds

    async def call(self, name: str, body: dict[str, Any]) -> Any:
        """The function's answer, made plain JSON (it is recorded and sent to the device);
        failures carry the webhook's errorCodes."""
        function = self.functions.get(name.lower())
        if function is None:
            raise AllocationError(
                400,
                WEBHOOK_UNREACHABLE,
                f"No in-process allocator named {name!r} is configured: start devprov with"
                f" --allocator {name}=package.module:function.",
            )
        try:
            async with asyncio.timeout(self.timeout_seconds):
                answer = await call_function(function, body)
        except TimeoutError:
            raise AllocationError(
                400,
                WEBHOOK_TIMEOUT,
                f"In-process allocator {name!r} did not answer within {self.timeout_seconds:g} s.",
            ) from None
        except Exception as error:
            raise AllocationError(
                400,
                CUSTOM_ALLOCATION_FAILED,
                f"Custom allocation failed: allocator {name!r} raised"
                f" {type(error).__name__}: {error}",
            ) from None
        try:
            return parse_json(json.dumps(answer))
        except (TypeError, ValueError, RecursionError) as error:
            raise AllocationError(
                400,
                WEBHOOK_BAD_RESPONSE,
                f"In-process allocator {name!r} answered something that is not JSON: {error}.",
            ) from None
