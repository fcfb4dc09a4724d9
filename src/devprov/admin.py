"""Managing what devprov serves: enrollments, groups, registration records, CAs, linked hubs.

The service API, the console and the CLI all go through this one module, so the rules
(validation, etags, generated keys, what a view may show) hold whichever way a change arrives;
it is longer than most modules for that reason: one facade, grouped by what it manages.
"""

from __future__ import annotations

import base64
import binascii
import functools
from collections.abc import Callable, Coroutine
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar

from devprov.allocation.payload import check_payload_rules
from devprov.domain import cas
from devprov.domain.audit import AdminAudit
from devprov.domain.clock import new_etag
from devprov.domain.enrollments import (
    EnrollmentT,
    default_registration_state,
    prepare_for_write,
    public_view,
)
from devprov.domain.errors import (
    CA_NOT_FOUND,
    GROUP_NOT_FOUND,
    LINKED_HUB_NOT_FOUND,
    REGISTRATION_NOT_FOUND,
    DpsError,
    bad_request,
    not_found,
)
from devprov.domain.ids import check_name, id_key, validate_id
from devprov.domain.models import (
    BulkEnrollmentOperation,
    EnrollmentGroup,
    IndividualEnrollment,
    LinkedHub,
    parse_model,
)
from devprov.domain.records import Kind, Put, RecordStore

MAX_BULK_ITEMS = 10
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    continuation: str | None


@dataclass(frozen=True)
class Found:
    """One page of a search: its records, how many match in all, and the key to go on after."""

    items: list[dict[str, Any]]
    total: int
    after: str | None


@dataclass(frozen=True)
class EnrollmentKind(Generic[EnrollmentT]):
    """What differs between individual enrollments and groups."""

    model: type[EnrollmentT]
    kind: Kind
    noun: str
    id_field: str
    not_found_code: int
    bulk_field: str


INDIVIDUAL = EnrollmentKind(
    IndividualEnrollment, Kind.ENROLLMENT, "enrollment", "registrationId", 404201, "enrollments"
)
GROUP = EnrollmentKind(
    EnrollmentGroup,
    Kind.GROUP,
    "enrollment group",
    "enrollmentGroupId",
    GROUP_NOT_FOUND,
    "enrollmentGroups",
)


def _prepared(
    incoming: EnrollmentT, existing: EnrollmentT | None, path_id: str | None = None
) -> EnrollmentT:
    """The domain's rules for a write, and the payload schema and routes compile."""
    record = prepare_for_write(incoming, existing, path_id)
    check_payload_rules(record)
    return record


def _put(spec: EnrollmentKind[EnrollmentT], key: str, record: EnrollmentT) -> Put:
    columns = {"attestation": record.attestation.type}
    return Put(spec.kind, key, record.etag or "", record.to_wire(), columns)


def encode_continuation(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode()).decode()


def decode_continuation(token: str | None) -> str | None:
    if not token:
        return None
    try:
        return base64.b64decode(token.encode(), altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise bad_request("The x-ms-continuation token is not valid.") from None


def page_size(value: str | int | None) -> int:
    if value in (None, ""):
        return DEFAULT_PAGE_SIZE
    try:
        size = int(value)
    except ValueError:
        raise bad_request("x-ms-max-item-count must be a positive integer.") from None
    if size < 1:
        raise bad_request("x-ms-max-item-count must be a positive integer.")
    return min(size, MAX_PAGE_SIZE)


HubPrepare = Callable[[LinkedHub], LinkedHub]
P = ParamSpec("P")
R = TypeVar("R")
_in_write: ContextVar[bool] = ContextVar("admin_in_write", default=False)
AdminCall = Callable[Concatenate["Admin", P], Coroutine[Any, Any, R]]


def _audited(method: str, path: str, ok: int = 200) -> Callable[[AdminCall[P, R]], AdminCall[P, R]]:
    """Tell the facade's `audit` (when it has one) of each call: `path` is formatted with the
    collection of an enrollment kind (`{c}`) and the id the call is about (`{id}`); a write
    made inside another (a bulk's items) is part of that one."""

    def wrap(call: AdminCall[P, R]) -> AdminCall[P, R]:
        @functools.wraps(call)
        async def audited(self: Admin, /, *args: P.args, **kwargs: P.kwargs) -> R:
            if self.audit is None or _in_write.get():
                return await call(self, *args, **kwargs)
            token, status = _in_write.set(True), ok
            try:
                return await call(self, *args, **kwargs)
            except DpsError as error:
                status = error.status
                raise
            except Exception:
                status = 500
                raise
            finally:
                _in_write.reset(token)
                first, collection = (args[0] if args else None), ""
                if isinstance(first, EnrollmentKind):
                    collection, first = first.bulk_field, (args[1] if len(args) > 1 else None)
                resource = first if isinstance(first, str) else None
                where = path.format(c=f"/{collection}", id=resource or "")
                await self.audit(method, where, resource, status)

        return audited

    return wrap


class Admin:
    """Management operations over the store.

    `prepare_hub` checks a linked hub's connector settings (refusing what no connector could
    use, so that a mistake is told when the hub is linked, not at the first registration) and
    completes them (a built-in hub makes its own connection string)."""

    def __init__(
        self,
        store: RecordStore,
        prepare_hub: HubPrepare | None = None,
        audit: AdminAudit | None = None,
    ) -> None:
        self.store = store
        self.prepare_hub = prepare_hub
        self.audit = audit

    # Enrollments and groups -------------------------------------------------------------

    @_audited("PUT", "{c}/{id}")
    async def put(
        self, spec: EnrollmentKind[EnrollmentT], path_id: str, body: Any, if_match: str | None
    ) -> dict[str, Any]:
        """Create or replace; answers the full record, keys included (as DPS does on PUT)."""
        incoming = parse_model(spec.model, body, spec.noun)
        key = id_key(path_id)
        stored = await self.store.get(spec.kind, key)
        existing = spec.model.model_validate(stored.document) if stored else None
        record = _prepared(incoming, existing, path_id)
        await self.store.replace(_put(spec, key, record), if_match)
        return record.to_wire()

    async def put_many(
        self,
        spec: EnrollmentKind[EnrollmentT],
        records: list[tuple[dict[str, Any], dict[str, Any] | None]],
    ) -> None:
        """Create or replace many records in one transaction (`devprov import`), each by the
        rules of `put`: (the body, and the stored document it replaces or None)."""
        puts = []
        for body, stored in records:
            incoming = parse_model(spec.model, body, spec.noun)
            existing = spec.model.model_validate(stored) if stored else None
            record = _prepared(incoming, existing)
            puts.append(_put(spec, id_key(body.get(spec.id_field) or ""), record))
        await self.store.write(puts)

    async def get(self, spec: EnrollmentKind[EnrollmentT], record_id: str) -> dict[str, Any]:
        record = await self._load(spec, record_id)
        view = public_view(record)
        if isinstance(record, IndividualEnrollment):
            state = await self.store.get(Kind.REGISTRATION, id_key(record_id))
            view["registrationState"] = (
                state.document if state else default_registration_state(record.registration_id)
            )
        return view

    async def attestation(
        self, spec: EnrollmentKind[EnrollmentT], record_id: str
    ) -> dict[str, Any]:
        record = await self._load(spec, record_id)
        return record.attestation.to_wire()

    @_audited("DELETE", "{c}/{id}", 204)
    async def delete(
        self, spec: EnrollmentKind[EnrollmentT], record_id: str, if_match: str | None
    ) -> None:
        if not await self.store.delete(spec.kind, id_key(record_id), if_match):
            raise self._missing(spec, record_id)

    async def query(
        self, spec: EnrollmentKind[EnrollmentT], continuation: str | None, size: int
    ) -> Page:
        """Every record, in pages (the query text is accepted but not interpreted)."""
        rows = await self.store.page(
            spec.kind, after=decode_continuation(continuation), limit=size + 1
        )
        items = [public_view(spec.model.model_validate(row.document)) for row in rows[:size]]
        more = len(rows) > size
        return Page(items, encode_continuation(rows[size - 1].key) if more else None)

    async def search(
        self,
        spec: EnrollmentKind[EnrollmentT],
        prefix: str = "",
        *,
        after: str | None = None,
        size: int = DEFAULT_PAGE_SIZE,
        attestation: str | None = None,
    ) -> Found:
        """Records whose id starts with `prefix` (without case), a page at a time, through the
        key's index and the attestation column's: as fast for 100,000 records as for ten."""
        where = {"attestation": attestation} if attestation else None
        key_prefix = id_key(prefix.strip())
        rows = await self.store.page(
            spec.kind, after=after, limit=size + 1, where=where, prefix=key_prefix or None
        )
        total = await self.store.count(spec.kind, where=where, prefix=key_prefix or None)
        items = [public_view(spec.model.model_validate(row.document)) for row in rows[:size]]
        return Found(items, total, rows[size - 1].key if len(rows) > size else None)

    @_audited("PUT", "{c}/{id}")
    async def set_status(
        self, spec: EnrollmentKind[EnrollmentT], record_id: str, enabled: bool
    ) -> dict[str, Any]:
        """Enable or disable an enrollment or group, keys and all else kept."""
        record = await self._load(spec, record_id)
        record.provisioning_status = "enabled" if enabled else "disabled"
        return await self.put(spec, record_id, record.to_wire(), record.etag)

    @_audited("POST", "{c}")
    async def bulk(self, spec: EnrollmentKind[EnrollmentT], body: Any) -> dict[str, Any]:
        """Up to ten creates, updates or deletes; HTTP 200 even when some fail, as DPS."""
        operation = parse_model(BulkEnrollmentOperation, body, "bulk enrollment operation")
        items = (operation.enrollments if spec is INDIVIDUAL else operation.enrollment_groups) or []
        if len(items) > MAX_BULK_ITEMS:
            raise bad_request(f"A bulk operation takes at most {MAX_BULK_ITEMS} {spec.bulk_field}.")
        errors = []
        for item in items:
            item_id = item.get(spec.id_field) if isinstance(item, dict) else None
            try:
                if not isinstance(item_id, str):
                    raise bad_request(f"Each item needs a {spec.id_field}.")
                await self._bulk_item(spec, operation.mode, item_id, item)
            except DpsError as error:
                errors.append(
                    {
                        spec.id_field: item_id,
                        "errorCode": error.error_code,
                        "errorStatus": error.message,
                    }
                )
        return {"isSuccessful": not errors, "errors": errors}

    async def _bulk_item(
        self, spec: EnrollmentKind[EnrollmentT], mode: str, item_id: str, item: dict[str, Any]
    ) -> None:
        if mode == "delete":
            await self.delete(spec, item_id, item.get("etag"))
            return
        if mode == "create":
            incoming = parse_model(spec.model, item, spec.noun)
            record = _prepared(incoming, None)
            await self.store.create(_put(spec, id_key(item_id), record))
            return
        if_match = item.get("etag") if mode == "updateIfMatchETag" else None
        if mode == "updateIfMatchETag" and not if_match:
            raise bad_request("updateIfMatchETag needs each item's etag.")
        await self.put(spec, item_id, item, if_match)

    async def _load(self, spec: EnrollmentKind[EnrollmentT], record_id: str) -> EnrollmentT:
        stored = await self.store.get(spec.kind, id_key(record_id))
        if stored is None:
            raise self._missing(spec, record_id)
        return spec.model.model_validate(stored.document)

    @staticmethod
    def _missing(spec: EnrollmentKind[EnrollmentT], record_id: str) -> DpsError:
        return not_found(f"The {spec.noun} {record_id!r} does not exist.", spec.not_found_code)

    # Registration records ---------------------------------------------------------------

    async def get_registration(self, registration_id: str) -> dict[str, Any]:
        stored = await self.store.get(Kind.REGISTRATION, id_key(registration_id))
        if stored is None:
            raise not_found(
                f"There is no registration record for {registration_id!r}.",
                REGISTRATION_NOT_FOUND,
            )
        return stored.document

    @_audited("DELETE", "/registrations/{id}", 204)
    async def delete_registration(self, registration_id: str, if_match: str | None) -> None:
        if not await self.store.delete(Kind.REGISTRATION, id_key(registration_id), if_match):
            raise not_found(
                f"There is no registration record for {registration_id!r}.",
                REGISTRATION_NOT_FOUND,
            )

    async def query_registrations(self, group_id: str, continuation: str | None, size: int) -> Page:
        rows = await self.store.page(
            Kind.REGISTRATION,
            after=decode_continuation(continuation),
            limit=size + 1,
            where={"group_key": id_key(group_id)},
        )
        items = [row.document for row in rows[:size]]
        more = len(rows) > size
        return Page(items, encode_continuation(rows[size - 1].key) if more else None)

    async def search_registrations(
        self,
        prefix: str = "",
        *,
        group_id: str | None = None,
        after: str | None = None,
        size: int = DEFAULT_PAGE_SIZE,
    ) -> Found:
        """Registration records by id prefix, optionally of one group (both indexed)."""
        where = {"group_key": id_key(group_id)} if group_id else None
        key_prefix = id_key(prefix.strip()) or None
        rows = await self.store.page(
            Kind.REGISTRATION, after=after, limit=size + 1, where=where, prefix=key_prefix
        )
        total = await self.store.count(Kind.REGISTRATION, where=where, prefix=key_prefix)
        items = [row.document for row in rows[:size]]
        return Found(items, total, rows[size - 1].key if len(rows) > size else None)

    async def devices_per_hub(self) -> dict[str, int]:
        """How many device identities the built-in registry connector holds on each hub."""
        counts = await self.store.count_by(Kind.HUB_DEVICE, "hub_key")
        return {hub: count for hub, count in counts.items() if hub is not None}

    # Verified CAs ------------------------------------------------------------------------

    @_audited("PUT", "/certificates/{id}")
    async def put_ca(self, name: str, body: Any) -> dict[str, Any]:
        certificate = body.get("certificate") if isinstance(body, dict) else None
        if not isinstance(certificate, str):
            raise bad_request("A CA needs a certificate (PEM or base64 DER).")
        validate_id(name, "CA name")
        stored = await self.store.get(Kind.CERTIFICATE, id_key(name))
        record = cas.new_ca_record(name, certificate, stored.document if stored else None)
        await self.store.write([Put(Kind.CERTIFICATE, id_key(name), record["etag"], record)])
        return record

    async def get_ca(self, name: str) -> dict[str, Any]:
        stored = await self.store.get(Kind.CERTIFICATE, id_key(name))
        if stored is None:
            raise not_found(f"There is no CA named {name!r}.", CA_NOT_FOUND)
        return stored.document

    async def list_cas(self) -> list[dict[str, Any]]:
        return [row.document for row in await self.store.page(Kind.CERTIFICATE)]

    @_audited("DELETE", "/certificates/{id}", 204)
    async def delete_ca(self, name: str) -> None:
        if not await self.store.delete(Kind.CERTIFICATE, id_key(name)):
            raise not_found(f"There is no CA named {name!r}.", CA_NOT_FOUND)

    @_audited("POST", "/certificates/{id}/generateVerificationCode")
    async def ca_verification_code(self, name: str) -> dict[str, Any]:
        return await self._update_ca(name, cas.with_verification_code)

    @_audited("POST", "/certificates/{id}/verify")
    async def verify_ca(self, name: str, body: Any) -> dict[str, Any]:
        proof = body.get("certificate") if isinstance(body, dict) else None
        if not isinstance(proof, str):
            raise bad_request("Verification needs the proof certificate (PEM or base64 DER).")
        return await self._update_ca(name, lambda record: cas.verified(record, proof))

    async def _update_ca(
        self, name: str, change: Callable[[dict[str, Any]], dict[str, Any]]
    ) -> dict[str, Any]:
        stored = await self.store.get(Kind.CERTIFICATE, id_key(name))
        if stored is None:
            raise not_found(f"There is no CA named {name!r}.", CA_NOT_FOUND)
        record = change(stored.document)
        await self.store.replace(
            Put(Kind.CERTIFICATE, id_key(name), record["etag"], record), stored.etag
        )
        return record

    # Linked hubs --------------------------------------------------------------------------

    @_audited("PUT", "/linkedHubs/{id}")
    async def put_linked_hub(self, host_name: str, body: Any) -> dict[str, Any]:
        """Link or relink a hub. Its connection string is write-only: kept when a PUT leaves
        it out (as GET never shows it), and never answered."""
        check_name(host_name, "IoT hub host name")
        data = dict(body) if isinstance(body, dict) else {}
        data["hostName"] = host_name
        hub = parse_model(LinkedHub, data, "linked hub")
        key = id_key(host_name)
        if hub.connection_string is None:
            stored = await self.store.get(Kind.LINKED_HUB, key)
            if stored is not None:
                hub.connection_string = stored.document.get("connectionString")
        if self.prepare_hub is not None:
            hub = self.prepare_hub(hub)
        await self.store.write([Put(Kind.LINKED_HUB, key, new_etag(), hub.to_wire())])
        return hub.public_view()

    async def get_linked_hub(self, host_name: str) -> dict[str, Any]:
        stored = await self.store.get(Kind.LINKED_HUB, id_key(host_name))
        if stored is None:
            raise not_found(f"IoT hub {host_name!r} is not linked.", LINKED_HUB_NOT_FOUND)
        return LinkedHub.model_validate(stored.document).public_view()

    async def list_linked_hubs(self) -> list[dict[str, Any]]:
        rows = await self.store.page(Kind.LINKED_HUB)
        return [LinkedHub.model_validate(row.document).public_view() for row in rows]

    @_audited("DELETE", "/linkedHubs/{id}", 204)
    async def delete_linked_hub(self, host_name: str) -> None:
        if not await self.store.delete(Kind.LINKED_HUB, id_key(host_name)):
            raise not_found(f"IoT hub {host_name!r} is not linked.", LINKED_HUB_NOT_FOUND)
