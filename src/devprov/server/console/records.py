"""The console's management pages: enrollments, groups, linked hubs and CAs.

Every change goes through `Admin`, the rules the service API applies.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from devprov.admin import GROUP, INDIVIDUAL, EnrollmentKind
from devprov.domain.errors import ALREADY_EXISTS, DpsError, bad_request
from devprov.domain.json_text import JsonRefused, parse_json
from devprov.server.console.web import PREFIX, Console, Context, redirect
from devprov.server.routing import Router

PAGE_SIZE = 50
READ, WRITE, CONFIG = "EnrollmentRead", "EnrollmentWrite", "ServiceConfig"
KINDS: dict[str, EnrollmentKind[Any]] = {"enrollments": INDIVIDUAL, "groups": GROUP}


def add_routes(console: Console, router: Router) -> None:
    for name in KINDS:
        base = f"{PREFIX}/{name}"
        router.add("GET", base, console.page(listing, READ))
        router.add("GET", base + "/new", console.page(new_form, WRITE))
        router.add("POST", base + "/new", console.page(create, WRITE))
        router.add("GET", base + "/{id}", console.page(show, READ))
        router.add("POST", base + "/{id}", console.page(save, WRITE))
        router.add("POST", base + "/{id}/status", console.page(set_status, WRITE))
        router.add("POST", base + "/{id}/delete", console.page(delete, WRITE))
    router.add("GET", PREFIX + "/hubs", console.page(hubs, CONFIG))
    router.add("POST", PREFIX + "/hubs", console.page(link_hub, CONFIG))
    router.add("POST", PREFIX + "/hubs/{hub}/delete", console.page(unlink_hub, CONFIG))
    router.add("GET", PREFIX + "/cas", console.page(cas, CONFIG))
    router.add("POST", PREFIX + "/cas", console.page(add_ca, CONFIG))
    router.add("POST", PREFIX + "/cas/{name}/code", console.page(ca_code, CONFIG))
    router.add("POST", PREFIX + "/cas/{name}/verify", console.page(verify_ca, CONFIG))
    router.add("POST", PREFIX + "/cas/{name}/delete", console.page(delete_ca, CONFIG))


def _kind(context: Context) -> tuple[str, EnrollmentKind[Any]]:
    name = context.request.path[len(PREFIX) + 1 :].split("/", 1)[0].lower()
    return name, KINDS[name]


# Enrollments and groups -----------------------------------------------------------------


async def listing(context: Context) -> web.StreamResponse:
    name, spec = _kind(context)
    query = context.request.query
    q, attestation, after = query.get("q", ""), query.get("attestation", ""), query.get("after")
    found = await context.console.admin.search(
        spec, q, after=after, size=PAGE_SIZE, attestation=attestation or None
    )
    return context.render(
        "records.html", kind=name, spec=spec, found=found, q=q, attestation=attestation,
        after=after,
    )  # fmt: skip


async def new_form(context: Context) -> web.StreamResponse:
    name, spec = _kind(context)
    return context.render("record_new.html", kind=name, spec=spec)


def _lines(text: str) -> list[str]:
    return [part.strip() for part in text.replace(",", "\n").splitlines() if part.strip()]


def _json_field(form: dict[str, str], field: str, what: str) -> Any:
    text = form.get(field, "").strip()
    if not text:
        return None
    try:
        return parse_json(text)
    except JsonRefused as error:
        raise bad_request(f"The {what} is not valid JSON: {error}.") from None


def new_record(spec: EnrollmentKind[Any], form: dict[str, str]) -> dict[str, Any]:
    """An enrollment or group from the creation form's fields."""
    record_id = form.get("id", "").strip()
    attestation_type = form.get("attestation", "symmetricKey")
    attestation: dict[str, Any] = {"type": attestation_type}
    if attestation_type == "x509":
        if spec is GROUP:
            attestation["x509"] = {"caReferences": {"primary": form.get("ca", "").strip()}}
        else:
            certificate = {"certificate": form.get("certificate", "").strip()}
            attestation["x509"] = {"clientCertificates": {"primary": certificate}}
    elif attestation_type == "tpm":
        attestation["tpm"] = {"endorsementKey": form.get("endorsementKey", "").strip()}
    body: dict[str, Any] = {spec.id_field: record_id, "attestation": attestation}
    policy = form.get("allocationPolicy") or None
    hubs = _lines(form.get("iotHubs", ""))
    if policy:
        body["allocationPolicy"] = policy
    if hubs:
        body["iotHubs"] = hubs
    if policy == "custom":
        body["customAllocationDefinition"] = {
            "webhookUrl": form.get("webhookUrl", "").strip(),
            "apiVersion": form.get("apiVersion", "").strip() or "2021-10-01",
        }
    twin = _json_field(form, "initialTwin", "initial twin")
    if twin is not None:
        body["initialTwin"] = twin
    body["provisioningStatus"] = "disabled" if form.get("disabled") else "enabled"
    return body


async def create(context: Context) -> web.StreamResponse:
    name, spec = _kind(context)
    form = await context.form()
    body = new_record(spec, form)
    record_id = str(body[spec.id_field])
    try:
        await context.console.admin.get(spec, record_id)
    except DpsError as error:
        if error.status != 404:
            raise
    else:
        raise DpsError(409, ALREADY_EXISTS, f"The {spec.noun} {record_id!r} exists already.")
    await context.console.admin.put(spec, record_id, body, None)
    raise redirect(f"{PREFIX}/{name}/{record_id}", notice=f"Created {record_id}.")


async def show(context: Context) -> web.StreamResponse:
    name, spec = _kind(context)
    record_id = context.params["id"]
    admin = context.console.admin
    record = await admin.get(spec, record_id)
    keys = None
    if context.request.query.get("keys"):
        keys = await admin.attestation(spec, record_id)
    editable = {key: value for key, value in record.items() if key != "registrationState"}
    return context.render(
        "record.html", kind=name, spec=spec, record_id=record_id, record=record,
        editable=editable, keys=keys,
    )  # fmt: skip


async def save(context: Context) -> web.StreamResponse:
    name, spec = _kind(context)
    record_id = context.params["id"]
    form = await context.form()
    body = _json_field(form, "document", spec.noun)
    await context.console.admin.put(spec, record_id, body, form.get("etag") or None)
    raise redirect(f"{PREFIX}/{name}/{record_id}", notice="Saved.")


async def set_status(context: Context) -> web.StreamResponse:
    name, spec = _kind(context)
    record_id = context.params["id"]
    enabled = (await context.form()).get("enabled") == "true"
    await context.console.admin.set_status(spec, record_id, enabled)
    state = "enabled" if enabled else "disabled"
    raise redirect(f"{PREFIX}/{name}/{record_id}", notice=f"{record_id} is {state}.")


async def delete(context: Context) -> web.StreamResponse:
    name, spec = _kind(context)
    record_id = context.params["id"]
    await context.console.admin.delete(spec, record_id, None)
    raise redirect(f"{PREFIX}/{name}", notice=f"Deleted {record_id}.")


# Linked hubs and CAs ----------------------------------------------------------------------


async def hubs(context: Context) -> web.StreamResponse:
    admin = context.console.admin
    return context.render(
        "hubs.html",
        hubs=await admin.list_linked_hubs(),
        devices=await admin.devices_per_hub(),
        health=context.console.activity.hubs,
        connector_kinds=context.console.connector_kinds,
    )


async def link_hub(context: Context) -> web.StreamResponse:
    form = await context.form()
    host_name = form.get("hostName", "").strip()
    body: dict[str, Any] = {}
    for field in ("connector", "connectionString", "location"):
        if form.get(field, "").strip():
            body[field] = form[field].strip()
    if form.get("allocationWeight", "").strip():
        body["allocationWeight"] = form["allocationWeight"].strip()
    await context.console.admin.put_linked_hub(host_name, body)
    raise redirect(PREFIX + "/hubs", notice=f"Linked {host_name}.")


async def unlink_hub(context: Context) -> web.StreamResponse:
    await context.console.admin.delete_linked_hub(context.params["hub"])
    raise redirect(PREFIX + "/hubs", notice=f"Unlinked {context.params['hub']}.")


async def cas(context: Context) -> web.StreamResponse:
    return context.render("cas.html", cas=await context.console.admin.list_cas())


async def add_ca(context: Context) -> web.StreamResponse:
    form = await context.form()
    name = form.get("name", "").strip()
    await context.console.admin.put_ca(name, {"certificate": form.get("certificate", "")})
    raise redirect(PREFIX + "/cas", notice=f"Added {name}; prove you hold its key to verify it.")


async def ca_code(context: Context) -> web.StreamResponse:
    await context.console.admin.ca_verification_code(context.params["name"])
    raise redirect(PREFIX + "/cas", notice="A new verification code is shown below.")


async def verify_ca(context: Context) -> web.StreamResponse:
    form = await context.form()
    name = context.params["name"]
    await context.console.admin.verify_ca(name, {"certificate": form.get("certificate", "")})
    raise redirect(PREFIX + "/cas", notice=f"{name} is verified.")


async def delete_ca(context: Context) -> web.StreamResponse:
    await context.console.admin.delete_ca(context.params["name"])
    raise redirect(PREFIX + "/cas", notice=f"Removed {context.params['name']}.")
