"""`devprov enrollment`, `devprov group` and `devprov registration`."""

from __future__ import annotations

import base64
import binascii
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from devprov.cli.common import (
    DEFAULT_DATA_DIR,
    DataDir,
    JsonFlag,
    UserError,
    print_json,
    print_listing,
    report,
    with_admin,
)

if TYPE_CHECKING:
    from devprov.admin import Admin, EnrollmentKind

enrollment_app = typer.Typer(
    rich_markup_mode=None, help="Individual enrollments.", no_args_is_help=True
)
group_app = typer.Typer(rich_markup_mode=None, help="Enrollment groups.", no_args_is_help=True)
registration_app = typer.Typer(
    rich_markup_mode=None, help="Registration records.", no_args_is_help=True
)

Key = Annotated[str | None, typer.Option(help="Primary key (base64); generated when omitted.")]
SecondaryKey = Annotated[
    str | None, typer.Option(help="Secondary key (base64); generated when omitted.")
]
Policy = Annotated[
    str | None, typer.Option("--allocation", help="hashed, geoLatency, static or custom.")
]
Hubs = Annotated[
    list[str] | None,
    typer.Option("--hub", help="A linked IoT hub this one may use (repeat; weights: `hub add`)."),
]
Webhook = Annotated[
    str | None, typer.Option(help="Custom allocation webhook URL (implies --allocation custom).")
]
WebhookApi = Annotated[str, typer.Option(help="customAllocationDefinition.apiVersion.")]
Disabled = Annotated[bool, typer.Option("--disabled", help="Create it disabled.")]
CredentialPolicy = Annotated[
    str | None,
    typer.Option(help="credentialPolicyName: issue certificates from CSRs with this policy."),
]
InitialTwin = Annotated[
    Path | None,
    typer.Option(help='Initial twin from a JSON file: {"tags": {...}, "properties": {"desired"...'),
]
Reprovision = Annotated[
    str | None,
    typer.Option(
        help="When the device registers again: migrate (move to a new hub, keep its twin),"
        " reset (new hub, initial twin), never (stay on its hub)."
    ),
]
IotEdge = Annotated[
    bool | None, typer.Option("--iot-edge/--no-iot-edge", help="An IoT Edge device (capabilities).")
]
REPROVISION = {
    "migrate": {"updateHubAssignment": True, "migrateDeviceData": True},
    "reset": {"updateHubAssignment": True, "migrateDeviceData": False},
    "never": {"updateHubAssignment": False, "migrateDeviceData": False},
}
DNS_NAME = re.compile(
    r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$",
    re.IGNORECASE,
)


def check_host_name(name: str) -> None:
    """A hub name is a DNS name (what devices dial): refuse anything else in one line."""
    if not DNS_NAME.match(name):
        raise UserError(f"{name!r} is not a DNS host name (letters, digits, '-' and dots).")


def _base64(option: str, value: str | None) -> str | None:
    if value is not None:
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise UserError(f"{option} is not base64: give the key as Azure prints it.") from None
    return value


def _symmetric_key(key: str | None, secondary_key: str | None) -> dict[str, Any]:
    return {
        "type": "symmetricKey",
        "symmetricKey": {
            "primaryKey": _base64("--key", key),
            "secondaryKey": _base64("--secondary-key", secondary_key),
        },
    }


def _x509(slot: str, certificate: Path) -> dict[str, Any]:
    entry = {"primary": {"certificate": certificate.read_text()}}
    return {"type": "x509", "x509": {slot: entry}}


def _changes(
    *,
    allocation: str | None,
    hubs: list[str] | None,
    webhook: str | None,
    webhook_api_version: str,
    initial_twin: Path | None,
    reprovision: str | None,
    iot_edge: bool | None,
    credential_policy: str | None,
    status: bool | None,
) -> dict[str, Any]:
    """The fields the options set (and only those): what `update` changes."""
    fields: dict[str, Any] = {}
    if webhook and not allocation:
        allocation = "custom"
    if allocation:
        fields["allocationPolicy"] = allocation
    if hubs:
        for hub in hubs:
            check_host_name(hub)
        fields["iotHubs"] = hubs
    if webhook:
        fields["customAllocationDefinition"] = {
            "webhookUrl": webhook,
            "apiVersion": webhook_api_version,
        }
    if initial_twin is not None:
        try:
            fields["initialTwin"] = json.loads(initial_twin.read_text())
        except json.JSONDecodeError as error:
            raise UserError(f"--initial-twin {initial_twin} is not JSON: {error}") from None
    if reprovision is not None:
        if reprovision not in REPROVISION:
            raise UserError(f"--reprovision takes {', '.join(REPROVISION)}, not {reprovision!r}")
        fields["reprovisionPolicy"] = REPROVISION[reprovision]
    if iot_edge is not None:
        fields["capabilities"] = {"iotEdge": iot_edge}
    if credential_policy:
        fields["credentialPolicyName"] = credential_policy
    if status is not None:
        fields["provisioningStatus"] = "enabled" if status else "disabled"
    return fields


async def _check_references(admin: Admin, body: dict[str, Any]) -> None:
    """What a record names must exist: its CA, and its hubs, linked."""
    from devprov.domain.errors import DpsError

    ca = ((body.get("attestation") or {}).get("x509") or {}).get("caReferences") or {}
    for name in filter(None, (ca.get("primary"), ca.get("secondary"))):
        try:
            await admin.get_ca(name)
        except DpsError:
            raise UserError(
                f"there is no CA named {name!r}: add it with `devprov ca add`"
            ) from None
    for hub in body.get("iotHubs") or []:
        try:
            await admin.get_linked_hub(hub)
        except DpsError:
            raise UserError(
                f"IoT hub {hub!r} is not linked: link it with `devprov hub add {hub}` first"
            ) from None


def _create(
    data_dir: Path,
    spec: EnrollmentKind[Any],
    record_id: str,
    body: dict[str, Any],
    noun: str,
    as_json: bool,
) -> None:
    """Store a new enrollment or group made from the options and print it with its keys; an
    existing one is never replaced (that would lose what the options do not repeat)."""

    async def work(admin: Admin) -> dict[str, Any]:
        from devprov.domain.ids import id_key

        if await admin.store.get(spec.kind, id_key(record_id)) is not None:
            raise UserError(
                f"{noun} {record_id!r} exists already: change it with `devprov {noun} update"
                f" {record_id} ...` (only what you give changes), or delete it first."
            )
        await _check_references(admin, body)
        return await admin.put(spec, record_id, body, None)

    print_json(with_admin(data_dir, work), as_json)


def _update(
    data_dir: Path,
    spec: EnrollmentKind[Any],
    record_id: str,
    fields: dict[str, Any],
    keys: tuple[str | None, str | None],
    as_json: bool,
) -> None:
    """Change only the given fields of a record; everything else (keys included) stays."""

    async def work(admin: Admin) -> dict[str, Any]:
        record = await admin.get(spec, record_id)
        record.pop("registrationState", None)
        record["attestation"] = await admin.attestation(spec, record_id)
        if any(keys):
            symmetric = record["attestation"].get("symmetricKey")
            if symmetric is None:
                raise UserError(f"{record_id!r} does not use symmetric keys: --key does not apply")
            for name, value in zip(("primaryKey", "secondaryKey"), keys, strict=True):
                if value is not None:
                    symmetric[name] = value
        record.update(fields)
        await _check_references(admin, fields)
        return await admin.put(spec, record_id, record, record.get("etag"))

    print_json(with_admin(data_dir, work), as_json)


@enrollment_app.command("create")
def enrollment_create(
    registration_id: Annotated[
        str | None,
        typer.Argument(help="The device's registration id (with --tpm-ek: derived from the EK)."),
    ] = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    key: Key = None,
    secondary_key: SecondaryKey = None,
    cert: Annotated[
        Path | None, typer.Option(help="X.509: the device's certificate (PEM).")
    ] = None,
    tpm_ek: Annotated[
        str | None, typer.Option(help="TPM: the endorsement key (base64 TPM2B_PUBLIC).")
    ] = None,
    device_id: Annotated[
        str | None, typer.Option(help="Device id on the hub (default: the registration id).")
    ] = None,
    allocation: Policy = None,
    hub: Hubs = None,
    webhook: Webhook = None,
    webhook_api_version: WebhookApi = "2021-10-01",
    initial_twin: InitialTwin = None,
    reprovision: Reprovision = None,
    iot_edge: IotEdge = None,
    disabled: Disabled = False,
    credential_policy: CredentialPolicy = None,
    as_json: JsonFlag = False,
) -> None:
    """Create an individual enrollment (symmetric key unless --cert or --tpm-ek)."""
    from devprov.admin import INDIVIDUAL

    if cert and tpm_ek:
        raise typer.BadParameter("choose one of --cert and --tpm-ek")
    if registration_id is None:
        if not tpm_ek:
            raise typer.BadParameter("a registration id is needed (or --tpm-ek to derive it)")
        from devprov.attestation.tpm import registration_id_for

        ek = _base64("--tpm-ek", tpm_ek) or ""
        registration_id = registration_id_for(base64.b64decode(ek))  # as the SDKs derive it
    attestation = (
        _x509("clientCertificates", cert)
        if cert
        else {"type": "tpm", "tpm": {"endorsementKey": _base64("--tpm-ek", tpm_ek)}}
        if tpm_ek
        else _symmetric_key(key, secondary_key)
    )
    body: dict[str, Any] = {"registrationId": registration_id, "attestation": attestation}
    if device_id:
        body["deviceId"] = device_id
    body |= _changes(
        allocation=allocation,
        hubs=hub,
        webhook=webhook,
        webhook_api_version=webhook_api_version,
        initial_twin=initial_twin,
        reprovision=reprovision,
        iot_edge=iot_edge,
        credential_policy=credential_policy,
        status=not disabled,
    )
    _create(data_dir, INDIVIDUAL, registration_id, body, "enrollment", as_json)


@group_app.command("create")
def group_create(
    group_id: str,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    key: Key = None,
    secondary_key: SecondaryKey = None,
    ca: Annotated[
        str | None, typer.Option(help="X.509: the name of a verified CA (see `devprov ca`).")
    ] = None,
    signing_cert: Annotated[
        Path | None, typer.Option(help="X.509: a root or intermediate certificate (PEM).")
    ] = None,
    allocation: Policy = None,
    hub: Hubs = None,
    webhook: Webhook = None,
    webhook_api_version: WebhookApi = "2021-10-01",
    initial_twin: InitialTwin = None,
    reprovision: Reprovision = None,
    iot_edge: IotEdge = None,
    disabled: Disabled = False,
    credential_policy: CredentialPolicy = None,
    as_json: JsonFlag = False,
) -> None:
    """Create an enrollment group (symmetric key unless --ca or --signing-cert)."""
    from devprov.admin import GROUP

    if ca and signing_cert:
        raise typer.BadParameter("choose one of --ca and --signing-cert")
    attestation = (
        {"type": "x509", "x509": {"caReferences": {"primary": ca}}}
        if ca
        else _x509("signingCertificates", signing_cert)
        if signing_cert
        else _symmetric_key(key, secondary_key)
    )
    body: dict[str, Any] = {"enrollmentGroupId": group_id, "attestation": attestation}
    body |= _changes(
        allocation=allocation,
        hubs=hub,
        webhook=webhook,
        webhook_api_version=webhook_api_version,
        initial_twin=initial_twin,
        reprovision=reprovision,
        iot_edge=iot_edge,
        credential_policy=credential_policy,
        status=not disabled,
    )
    _create(data_dir, GROUP, group_id, body, "group", as_json)


def _update_command(typer_app: typer.Typer, kind: str, noun: str) -> None:
    @typer_app.command("update")
    def update(
        record_id: str,
        data_dir: DataDir = DEFAULT_DATA_DIR,
        key: Annotated[str | None, typer.Option(help="New primary key (base64).")] = None,
        secondary_key: Annotated[
            str | None, typer.Option(help="New secondary key (base64).")
        ] = None,
        enable: Annotated[
            bool | None, typer.Option("--enable/--disable", help="Let devices register, or not.")
        ] = None,
        allocation: Policy = None,
        hub: Hubs = None,
        webhook: Webhook = None,
        webhook_api_version: WebhookApi = "2021-10-01",
        initial_twin: InitialTwin = None,
        reprovision: Reprovision = None,
        iot_edge: IotEdge = None,
        credential_policy: CredentialPolicy = None,
        as_json: JsonFlag = False,
    ) -> None:
        """Change only what is given; every other setting (keys included) stays as it is."""
        from devprov.admin import GROUP, INDIVIDUAL

        fields = _changes(
            allocation=allocation,
            hubs=hub,
            webhook=webhook,
            webhook_api_version=webhook_api_version,
            initial_twin=initial_twin,
            reprovision=reprovision,
            iot_edge=iot_edge,
            credential_policy=credential_policy,
            status=enable,
        )
        keys = (_base64("--key", key), _base64("--secondary-key", secondary_key))
        spec = INDIVIDUAL if kind == "enrollment" else GROUP
        _update(data_dir, spec, record_id, fields, keys, as_json)

    update.__doc__ = f"Change only what is given of an {noun}; all else (keys too) stays."


def _record_commands(typer_app: typer.Typer, kind: str, noun: str) -> None:
    def spec_of() -> EnrollmentKind[Any]:
        from devprov.admin import GROUP, INDIVIDUAL

        return INDIVIDUAL if kind == "enrollment" else GROUP

    @typer_app.command("show")
    def show(
        record_id: str,
        data_dir: DataDir = DEFAULT_DATA_DIR,
        keys: Annotated[bool, typer.Option("--keys", help="Include the keys.")] = False,
        as_json: JsonFlag = False,
    ) -> None:
        """Show one record (always JSON); --keys adds its keys."""
        spec = spec_of()

        async def work(admin: Admin) -> Any:
            record = await admin.get(spec, record_id)
            if keys:
                record["attestation"] = await admin.attestation(spec, record_id)
            return record

        record = with_admin(data_dir, work)
        if as_json:
            print(json.dumps(record, indent=2))
            return
        print_json(record)

    @typer_app.command("list")
    def list_(data_dir: DataDir = DEFAULT_DATA_DIR, as_json: JsonFlag = False) -> None:
        """List every record (a table; --json: a JSON array)."""
        spec = spec_of()

        async def work(admin: Admin) -> list[dict[str, Any]]:
            items: list[dict[str, Any]] = []
            token = None
            while True:
                page = await admin.query(spec, token, 1000)
                items += page.items
                if not (token := page.continuation):
                    return items

        print_listing(
            with_admin(data_dir, work),
            as_json,
            [
                (f"{noun} id", lambda item: item.get(spec.id_field)),
                ("attestation", lambda item: item["attestation"]["type"]),
                ("status", lambda item: item.get("provisioningStatus", "enabled")),
                ("allocation", lambda item: item.get("allocationPolicy", "hashed (default)")),
                ("hubs", lambda item: ", ".join(item.get("iotHubs") or []) or "all linked"),
            ],
        )

    @typer_app.command("delete")
    def delete(
        record_id: str, data_dir: DataDir = DEFAULT_DATA_DIR, as_json: JsonFlag = False
    ) -> None:
        """Delete one record."""
        spec = spec_of()
        with_admin(data_dir, lambda admin: admin.delete(spec, record_id, None))
        report(as_json, f"deleted {noun} {record_id}", {"deleted": record_id})


_update_command(enrollment_app, "enrollment", "individual enrollment")
_update_command(group_app, "group", "enrollment group")
_record_commands(enrollment_app, "enrollment", "registration")
_record_commands(group_app, "group", "group")


@registration_app.command("show")
def registration_show(
    registration_id: str, data_dir: DataDir = DEFAULT_DATA_DIR, as_json: JsonFlag = False
) -> None:
    """Show a device's registration record, payload included (always JSON)."""
    record = with_admin(data_dir, lambda admin: admin.get_registration(registration_id))
    if as_json:
        print(json.dumps(record, indent=2))
        return
    print_json(record)


@registration_app.command("list")
def registration_list(
    group_id: str, data_dir: DataDir = DEFAULT_DATA_DIR, as_json: JsonFlag = False
) -> None:
    """List the registration records of an enrollment group (a table; --json: a JSON array)."""

    async def work(admin: Admin) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        token = None
        while True:
            page = await admin.query_registrations(group_id, token, 1000)
            items += page.items
            if not (token := page.continuation):
                return items

    print_listing(
        with_admin(data_dir, work),
        as_json,
        [
            ("registration id", lambda item: item.get("registrationId")),
            ("status", lambda item: item.get("status")),
            ("hub", lambda item: item.get("assignedHub")),
            ("device id", lambda item: item.get("deviceId")),
            ("updated", lambda item: item.get("lastUpdatedDateTimeUtc")),
        ],
    )


@registration_app.command("delete")
def registration_delete(
    registration_id: str, data_dir: DataDir = DEFAULT_DATA_DIR, as_json: JsonFlag = False
) -> None:
    """Delete a registration record (the device stays on its hub)."""
    with_admin(data_dir, lambda admin: admin.delete_registration(registration_id, None))
    report(as_json, f"deleted registration record {registration_id}", {"deleted": registration_id})
