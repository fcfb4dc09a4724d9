"""`devprov export` and `devprov import`: a store's enrollments, groups, linked hubs and CAs as
JSON Lines, keys included; and everything a running DPS (Azure's or a devprov) holds, copied
through its service API.

A line is `{"kind": "ca" | "linkedHub" | "group" | "enrollment", "record": {...}}`, in that order
(what a record names comes before it). Importing compares each record with the one stored (keys
included, etags and timestamps not): the same is left alone, so a second run changes nothing.
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from devprov.cli.common import (
    DEFAULT_DATA_DIR,
    DataDir,
    JsonFlag,
    UserError,
    console,
    err_console,
    with_admin,
)

if TYPE_CHECKING:
    from rich.progress import Progress

    from devprov.admin import Admin, EnrollmentKind

VOLATILE = ("etag", "createdDateTimeUtc", "lastUpdatedDateTimeUtc", "registrationState")
KIND_ORDER = ("ca", "linkedHub", "group", "enrollment")
BATCH = 200  # enrollments or groups written in one transaction
KEYS_WARNING = (
    "the export holds every key (enrollments', groups', hubs' connection strings): keep it as"
    " secret as the data dir."
)


@dataclass
class Tally:
    """What an import did, per kind."""

    created: dict[str, int] = field(default_factory=dict)
    updated: dict[str, int] = field(default_factory=dict)
    unchanged: dict[str, int] = field(default_factory=dict)

    def count(self, outcome: str, kind: str) -> None:
        counts: dict[str, int] = getattr(self, outcome)
        counts[kind] = counts.get(kind, 0) + 1

    def summary(self) -> dict[str, dict[str, int]]:
        return {"created": self.created, "updated": self.updated, "unchanged": self.unchanged}


def _progress() -> Progress:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=err_console,
        transient=True,
        disable=not err_console.is_terminal,
    )


def _spec(kind: str) -> EnrollmentKind[Any]:
    from devprov.admin import GROUP, INDIVIDUAL

    return INDIVIDUAL if kind == "enrollment" else GROUP


def _same(stored: dict[str, Any], incoming: dict[str, Any]) -> bool:
    def bare(document: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in document.items() if k not in VOLATILE and v is not None}

    return bare(stored) == bare(incoming)


def _normalized(kind: str, record: dict[str, Any]) -> dict[str, Any]:
    """A record as devprov stores it (its model's wire form), so that comparing is fair."""
    from devprov.domain.models import LinkedHub, parse_model

    if kind == "linkedHub":
        hub: dict[str, Any] = parse_model(LinkedHub, record, "linked hub").to_wire()
        return hub
    if kind == "ca":
        return record
    spec = _spec(kind)
    body = {k: v for k, v in record.items() if k != "registrationState"}
    wire: dict[str, Any] = parse_model(spec.model, body, spec.noun).to_wire()
    return wire


async def _stored(admin: Admin, kind: str) -> dict[str, dict[str, Any]]:
    """Every stored record of a kind, keys included, by store key."""
    from devprov.domain.records import Kind

    table = {
        "ca": Kind.CERTIFICATE,
        "linkedHub": Kind.LINKED_HUB,
        "group": Kind.GROUP,
        "enrollment": Kind.ENROLLMENT,
    }[kind]
    found: dict[str, dict[str, Any]] = {}
    after = None
    while True:
        rows = await admin.store.page(table, after=after, limit=1000)
        for row in rows:
            found[row.key] = row.document
        if len(rows) < 1000:
            return found
        after = rows[-1].key


def _record_id(kind: str, record: dict[str, Any]) -> str:
    name = {
        "ca": "name",
        "linkedHub": "hostName",
        "group": "enrollmentGroupId",
        "enrollment": "registrationId",
    }[kind]
    value = record.get(name)
    if not isinstance(value, str) or not value:
        raise UserError(f"a {kind} record without its {name}: is this a devprov export?")
    return value


async def _import(
    admin: Admin, lines: AsyncIterator[tuple[str, dict[str, Any]]], total: int | None
) -> Tally:
    """Write what differs from the store, kind by kind in the order references need."""
    from devprov.domain.ids import id_key
    from devprov.domain.records import Kind, Put

    tally = Tally()
    stored: dict[str, dict[str, dict[str, Any]]] = {}
    batch: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
    batch_kind = ""

    async def flush() -> None:
        if batch:
            await admin.put_many(_spec(batch_kind), batch)
            batch.clear()

    with _progress() as progress:
        task = progress.add_task("importing", total=total)
        async for kind, record in lines:
            if kind not in KIND_ORDER:
                raise UserError(f"unknown record kind {kind!r}: is this a devprov export?")
            if kind not in stored:
                stored[kind] = await _stored(admin, kind)
            record_id = _record_id(kind, record)
            key = id_key(record_id)
            incoming = _normalized(kind, record)
            existing = stored[kind].get(key)
            progress.advance(task)
            if existing is not None and _same(existing, incoming):
                tally.count("unchanged", kind)
                continue
            tally.count("created" if existing is None else "updated", kind)
            if kind != batch_kind or len(batch) >= BATCH:
                await flush()
                batch_kind = kind
            if kind == "ca":  # as it was, verified or not
                await admin.store.write([Put(Kind.CERTIFICATE, key, record["etag"], record)])
            elif kind == "linkedHub":
                await admin.put_linked_hub(record_id, incoming)
            else:
                batch.append((incoming, existing))
        await flush()
    return tally


def _read_export(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """Every line of an export, all read before anything is written: a bad line imports nothing."""
    lines = []
    with path.open() as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                kind, record = item["kind"], item["record"]
            except (json.JSONDecodeError, KeyError, TypeError):
                kind, record = None, None
            if kind not in KIND_ORDER or not isinstance(record, dict):
                raise UserError(
                    f"{path}:{number} is not a devprov export line"
                    ' ({"kind": "enrollment" | "group" | "linkedHub" | "ca", "record": {...}})'
                )
            lines.append((kind, record))
    return lines


async def _listed(lines: list[tuple[str, dict[str, Any]]]) -> AsyncIterator[tuple[str, Any]]:
    for line in lines:
        yield line


async def _from_dps(
    connection_string: str, ca: Path | None, concurrency: int
) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """Every group, then every enrollment, of a DPS through its service API: the queries (with
    continuation), then each record's attestation mechanism (the keys, which queries omit)."""
    import asyncio
    import ssl

    import aiohttp

    from devprov.attestation.sas import build_sas
    from devprov.client.service import API_VERSION, parse_connection_string

    try:
        fields = parse_connection_string(connection_string)
    except ValueError as error:
        raise UserError(f"--from-dps: {error} (give the service connection string)") from None
    host, key_name, key = (
        fields["HostName"],
        fields["SharedAccessKeyName"],
        fields["SharedAccessKey"],
    )
    context = ssl.create_default_context(cafile=str(ca) if ca else None)
    limit = asyncio.Semaphore(concurrency)

    async def call(http: aiohttp.ClientSession, path: str, **headers: str) -> tuple[Any, Any]:
        url = f"https://{host}{path}?api-version={API_VERSION}"
        headers["Authorization"] = build_sas(host, key, key_name=key_name)
        async with limit, http.post(url, json={"query": "*"}, headers=headers) as response:
            body = await response.json(content_type=None)
            if response.status != 200:
                message = body.get("message") if isinstance(body, dict) else body
                raise UserError(f"{host} answered {response.status} to {path}: {message}")
            return body, response.headers.get("x-ms-continuation")

    async def keyed(
        http: aiohttp.ClientSession, base: str, record: dict[str, Any], id_field: str
    ) -> dict[str, Any]:
        from urllib.parse import quote

        mechanism, _ = await call(http, f"{base}/{quote(record[id_field])}/attestationmechanism")
        return {**record, "attestation": mechanism}

    try:
        connector = aiohttp.TCPConnector(ssl=context, limit=concurrency)
        async with aiohttp.ClientSession(connector=connector) as http:
            for kind, base, id_field in (
                ("group", "/enrollmentGroups", "enrollmentGroupId"),
                ("enrollment", "/enrollments", "registrationId"),
            ):
                token: str | None = None
                while True:
                    headers = {"x-ms-max-item-count": "1000"}
                    if token:
                        headers["x-ms-continuation"] = token
                    page, token = await call(http, f"{base}/query", **headers)
                    records = await asyncio.gather(
                        *(keyed(http, base, record, id_field) for record in page)
                    )
                    for record in records:
                        yield kind, record
                    if not token:
                        break
    except (aiohttp.ClientError, OSError) as error:
        raise UserError(f"cannot reach the DPS at https://{host}: {error}") from None


def import_(
    file: Annotated[
        Path | None, typer.Argument(help="A `devprov export` file (JSON Lines).")
    ] = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    from_dps: Annotated[
        str | None,
        typer.Option(
            help="Copy every enrollment and group (keys included) from the DPS with this service"
            " connection string (Azure's, or another devprov's `serviceConnectionString`)."
        ),
    ] = None,
    ca: Annotated[
        Path | None, typer.Option(help="With --from-dps: a CA certificate to trust for it.")
    ] = None,
    concurrency: Annotated[int, typer.Option(help="With --from-dps: requests at once.")] = 16,
    as_json: JsonFlag = False,
) -> None:
    """Bring enrollments, groups, linked hubs and CAs in from an export, or from a running DPS;
    records that are already the same are left alone."""
    if (file is None) == (from_dps is None):
        raise UserError("give an export FILE or --from-dps 'SERVICE CONNECTION STRING'")
    if file is not None and not file.is_file():
        raise UserError(f"{file}: no such file")
    read = _read_export(file) if file is not None else None
    lines = _listed(read) if read is not None else _from_dps(from_dps or "", ca, concurrency)
    total = len(read) if read is not None else None
    tally = with_admin(data_dir, lambda admin: _import(admin, lines, total))
    if as_json:
        print(json.dumps(tally.summary()))
        return
    for outcome, counts in tally.summary().items():
        shown = ", ".join(f"{count} {kind}s" for kind, count in counts.items()) or "nothing"
        console.print(f"{outcome}: {shown}", highlight=False)


def export(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write to this file (default: stdout).")
    ] = None,
) -> None:
    """Everything an instance is configured with (CAs, linked hubs, groups, enrollments; keys
    included) as JSON Lines, for `devprov import`."""

    async def work(admin: Admin) -> list[tuple[str, Iterable[dict[str, Any]]]]:
        return [(kind, (await _stored(admin, kind)).values()) for kind in KIND_ORDER]

    err_console.print(f"[yellow]warning[/yellow]: {KEYS_WARNING}", highlight=False)
    everything = with_admin(data_dir, work)
    handle = out.open("w") if out is not None else sys.stdout
    try:
        with _progress() as progress:
            task = progress.add_task("exporting", total=sum(len(list(r)) for _, r in everything))
            for kind, records in everything:
                for record in records:
                    handle.write(json.dumps({"kind": kind, "record": record}) + "\n")
                    progress.advance(task)
    finally:
        if out is not None:
            handle.close()
            out.chmod(0o600)
