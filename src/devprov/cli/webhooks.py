"""`devprov webhook log|replay|serve`: the recorded payload exchanges, and a function served."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from devprov.cli.common import (
    DEFAULT_DATA_DIR,
    DataDir,
    JsonFlag,
    console,
    fail,
    print_json,
    with_store,
)

if TYPE_CHECKING:
    from devprov.domain.exchanges import Exchange
    from devprov.settings import Settings

webhook_app = typer.Typer(
    rich_markup_mode=None,
    help="Custom allocation exchanges: list them, replay one, serve a function as a webhook.",
    no_args_is_help=True,
)


def _outcome(exchange: Exchange | dict[str, Any]) -> str:
    document = exchange if isinstance(exchange, dict) else exchange.to_document()
    error = document.get("error")
    status = document.get("status")
    if error:
        return f"failed {error['errorCode']}" + (f" (HTTP {status})" if status else "")
    return f"ok (HTTP {status})" if status else "ok"


def _when(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"


@webhook_app.command("log")
def log(
    enrollment: Annotated[
        str | None,
        typer.Option(help="An enrollment or group id (or enrollment:ID / group:ID)."),
    ] = None,
    registration: Annotated[str | None, typer.Option(help="A registration id.")] = None,
    failed: Annotated[bool, typer.Option("--failed", help="Only failed exchanges.")] = False,
    limit: Annotated[int, typer.Option(help="At most this many, newest first.")] = 50,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    as_json: JsonFlag = False,
) -> None:
    """List recorded exchanges (webhooks and in-process allocators), newest first."""
    from devprov.store.exchanges import StoredExchanges

    keys: list[str | None] = [None]
    if enrollment and ":" in enrollment:
        keys = [enrollment.lower()]
    elif enrollment:
        keys = [f"enrollment:{enrollment.lower()}", f"group:{enrollment.lower()}"]

    async def read(store: Any) -> list[Exchange]:
        reader = StoredExchanges(store)
        found: list[Exchange] = []
        for key in keys:
            found += await reader.recent(
                enrollment=key, registration_id=registration, failed=failed, limit=limit
            )
        return sorted(found, key=lambda exchange: exchange.id, reverse=True)[:limit]

    exchanges = with_store(data_dir, read)
    if as_json:
        print(json.dumps([exchange.to_document() for exchange in exchanges], indent=2))
        return
    from rich.table import Table

    table = Table(title=f"{len(exchanges)} exchanges")
    for column in ("id", "time (UTC)", "registration", "enrollment", "target", "outcome", "ms"):
        table.add_column(column, justify="right" if column == "ms" else "left")
    for exchange in exchanges:
        table.add_row(
            exchange.id,
            _when(exchange.at),
            exchange.registration_id,
            exchange.enrollment,
            exchange.target,
            _outcome(exchange),
            f"{exchange.duration_ms:.1f}",
        )
    console.print(table)


async def _replay(
    request: dict[str, Any], to: str, settings: Settings, secret: str | None
) -> dict[str, Any]:
    """Send `request` to a URL or a function; what came back, shaped like a recorded exchange."""
    import asyncio

    from devprov.allocation.functions import InProcessAllocators, load_function
    from devprov.allocation.policies import AllocationError
    from devprov.allocation.webhook import WebhookClient, check_answer
    from devprov.domain.json_text import JsonRefused, parse_json

    loop = asyncio.get_running_loop()
    started = loop.time()
    if to.startswith(("http://", "https://")):
        client = WebhookClient(settings.webhook_timeout, secret=secret or settings.webhook_secret)
        try:
            exchanged = await client.exchange(to, request)
        finally:
            await client.close()
        answer: Any = None
        if exchanged.raw:
            try:
                answer = parse_json(exchanged.raw)
            except JsonRefused:
                answer = {"text": exchanged.raw[:4096].decode("utf-8", "replace")}
        error = exchanged.error
        status = exchanged.status
    else:
        spec = to
        if to.startswith("allocator://"):
            name = to.removeprefix("allocator://")
            configured = {key.lower(): value for key, value in settings.allocators.items()}
            if name.lower() not in configured:
                raise fail(
                    f"no allocator {name!r} in the settings: give package.module:function instead"
                )
            spec = configured[name.lower()]
        try:
            function = load_function(spec)
        except ValueError as problem:
            raise fail(str(problem)) from None
        allocators = InProcessAllocators({"replay": function}, settings.webhook_timeout)
        answer, error, status = None, None, None
        try:
            answer = await allocators.call("replay", request)
            check_answer(answer, request.get("linkedHubs") or [])
        except AllocationError as refusal:
            error = refusal
    return {
        "target": to,
        "status": status,
        "answer": answer,
        "error": {"errorCode": error.error_code, "message": error.message} if error else None,
        "duration_ms": round((loop.time() - started) * 1000, 3),
    }


@webhook_app.command("replay")
def replay(
    exchange_id: str,
    to: Annotated[
        str,
        typer.Option(
            "--to",
            help="http(s)://URL, allocator://NAME (from the settings) or package.module:function.",
        ),
    ],
    secret: Annotated[
        str | None, typer.Option(help="Sign the request with this secret (X-Devprov-Signature).")
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", envvar="DEVPROV_CONFIG", help="Settings file.")
    ] = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    as_json: JsonFlag = False,
) -> None:
    """Send a recorded request again and show the new answer beside the recorded one."""
    from devprov.store.exchanges import StoredExchanges

    async def read(store: Any) -> Exchange | None:
        return await StoredExchanges(store).get(exchange_id)

    recorded = with_store(data_dir, read)
    if recorded is None:
        raise fail(f"no exchange {exchange_id!r}: `devprov webhook log` lists them")
    from devprov.settings import Settings

    settings = Settings.load(config, data_dir=data_dir)
    import asyncio

    replayed = asyncio.run(_replay(recorded.request, to, settings, secret))
    if as_json:
        print_json({"recorded": recorded.to_document(), "replayed": replayed})
        return
    from rich.table import Table

    table = Table(title=f"exchange {recorded.id} ({recorded.registration_id})")
    table.add_column("")
    table.add_column("recorded")
    table.add_column("replayed")
    old = recorded.to_document()
    table.add_row("target", recorded.target, replayed["target"])
    table.add_row("outcome", _outcome(old), _outcome(replayed))
    table.add_row(
        "answer",
        json.dumps(recorded.answer, indent=2),
        json.dumps(replayed["answer"], indent=2),
    )
    table.add_row("ms", f"{recorded.duration_ms:.1f}", f"{replayed['duration_ms']:.1f}")
    if recorded.error or replayed["error"]:
        table.add_row(
            "error",
            (recorded.error or {}).get("message", ""),
            (replayed["error"] or {}).get("message", ""),
        )
    console.print(table)
    same = recorded.answer == replayed["answer"] and recorded.error == replayed["error"]
    console.print("same answer" if same else "[yellow]the answer differs[/yellow]")


@webhook_app.command("serve")
def serve(
    function: Annotated[str, typer.Argument(help="package.module:function")],
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    secret: Annotated[
        str | None,
        typer.Option(
            envvar="DEVPROV_WEBHOOK_SECRET",
            help="Refuse (401) requests whose X-Devprov-Signature does not verify.",
        ),
    ] = None,
) -> None:
    """Serve a Python allocator function as a custom allocation webhook (POST, any path)."""
    from aiohttp import web

    from devprov.allocation.functions import load_function
    from devprov.server.webhook_server import webhook_app as build

    try:
        loaded = load_function(function)
    except ValueError as problem:
        raise fail(str(problem)) from None
    console.print(f"serving {function} as a webhook on http://{host}:{port}/")
    web.run_app(build(loaded, secret), host=host, port=port, print=None, access_log=None)
