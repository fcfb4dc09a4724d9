"""`devprov enrollment`, `devprov group` and `devprov registration`."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from devprov.admin import GROUP, INDIVIDUAL, Admin, EnrollmentKind
from devprov.attestation.tpm import registration_id_for
from devprov.cli.common import DataDir, JsonFlag, console, print_json, with_admin
from devprov.settings import DEFAULT_DATA_DIR

enrollment_app = typer.Typer(help="Individual enrollments.", no_args_is_help=True)
group_app = typer.Typer(help="Enrollment groups.", no_args_is_help=True)
registration_app = typer.Typer(help="Registration records.", no_args_is_help=True)

Key = Annotated[str | None, typer.Option(help="Primary key (base64); generated when omitted.")]
SecondaryKey = Annotated[
    str | None, typer.Option(help="Secondary key (base64); generated when omitted.")
]
Policy = Annotated[
    str | None, typer.Option("--allocation", help="hashed, geoLatency, static or custom.")
]
Hubs = Annotated[
    list[str] | None, typer.Option("--hub", help="IoT hub this enrollment may use (repeat).")
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


def _symmetric_key(key: str | None, secondary_key: str | None) -> dict[str, Any]:
    return {
        "type": "symmetricKey",
        "symmetricKey": {"primaryKey": key, "secondaryKey": secondary_key},
    }


def _x509(slot: str, certificate: Path) -> dict[str, Any]:
    entry = {"primary": {"certificate": certificate.read_text()}}
    return {"type": "x509", "x509": {slot: entry}}


def _allocation(
    policy: str | None, hubs: list[str] | None, webhook: str | None, webhook_api_version: str
) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if webhook and not policy:
        policy = "custom"
    if policy:
        fields["allocationPolicy"] = policy
    if hubs:
        fields["iotHubs"] = hubs
    if webhook:
        fields["customAllocationDefinition"] = {
            "webhookUrl": webhook,
            "apiVersion": webhook_api_version,
        }
    return fields


def _create(
    data_dir: Path,
    spec: EnrollmentKind[Any],
    record_id: str,
    body: dict[str, Any],
    allocation_fields: dict[str, Any],
    disabled: bool,
) -> None:
    """Store an enrollment or group made from the options, and print it with its keys."""
    body = {
        **body,
        "provisioningStatus": "disabled" if disabled else "enabled",
        **allocation_fields,
    }
    print_json(with_admin(data_dir, lambda admin: admin.put(spec, record_id, body, None)))


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
    disabled: Disabled = False,
    credential_policy: CredentialPolicy = None,
) -> None:
    """Create or replace an individual enrollment (symmetric key unless --cert or --tpm-ek)."""
    if cert and tpm_ek:
        raise typer.BadParameter("choose one of --cert and --tpm-ek")
    if registration_id is None:
        if not tpm_ek:
            raise typer.BadParameter("a registration id is needed (or --tpm-ek to derive it)")
        registration_id = registration_id_for(base64.b64decode(tpm_ek))  # as the SDKs derive it
    attestation = (
        _x509("clientCertificates", cert)
        if cert
        else {"type": "tpm", "tpm": {"endorsementKey": tpm_ek}}
        if tpm_ek
        else _symmetric_key(key, secondary_key)
    )
    body = {"registrationId": registration_id, "attestation": attestation}
    if device_id:
        body["deviceId"] = device_id
    if credential_policy:
        body["credentialPolicyName"] = credential_policy
    allocation_fields = _allocation(allocation, hub, webhook, webhook_api_version)
    _create(data_dir, INDIVIDUAL, registration_id, body, allocation_fields, disabled)


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
    disabled: Disabled = False,
    credential_policy: CredentialPolicy = None,
) -> None:
    """Create or replace an enrollment group (symmetric key unless --ca or --signing-cert)."""
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
    if credential_policy:
        body["credentialPolicyName"] = credential_policy
    allocation_fields = _allocation(allocation, hub, webhook, webhook_api_version)
    _create(data_dir, GROUP, group_id, body, allocation_fields, disabled)


def _record_commands(typer_app: typer.Typer, spec: EnrollmentKind[Any], noun: str) -> None:
    @typer_app.command("show")
    def show(
        record_id: str,
        data_dir: DataDir = DEFAULT_DATA_DIR,
        keys: Annotated[bool, typer.Option("--keys", help="Include the keys.")] = False,
    ) -> None:
        """Show one record."""

        async def work(admin: Admin) -> Any:
            record = await admin.get(spec, record_id)
            if keys:
                record["attestation"] = await admin.attestation(spec, record_id)
            return record

        print_json(with_admin(data_dir, work))

    @typer_app.command("list")
    def list_(data_dir: DataDir = DEFAULT_DATA_DIR, as_json: JsonFlag = False) -> None:
        """List every record."""

        async def work(admin: Admin) -> list[dict[str, Any]]:
            items: list[dict[str, Any]] = []
            token = None
            while True:
                page = await admin.query(spec, token, 1000)
                items += page.items
                if not (token := page.continuation):
                    return items

        items = with_admin(data_dir, work)
        if as_json:
            print(json.dumps(items, indent=2))
            return
        table = Table(f"{noun} id", "attestation", "status", "allocation", "hubs")
        for item in items:
            table.add_row(
                item.get(spec.id_field),
                item["attestation"]["type"],
                item.get("provisioningStatus", "enabled"),
                item.get("allocationPolicy", "hashed (default)"),
                ", ".join(item.get("iotHubs") or []) or "all linked",
            )
        console.print(table)

    @typer_app.command("delete")
    def delete(record_id: str, data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
        """Delete one record."""
        with_admin(data_dir, lambda admin: admin.delete(spec, record_id, None))
        console.print(f"deleted {noun} {record_id}")


_record_commands(enrollment_app, INDIVIDUAL, "registration")
_record_commands(group_app, GROUP, "group")


@registration_app.command("show")
def registration_show(registration_id: str, data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """Show a device's registration record, payload included."""
    print_json(with_admin(data_dir, lambda admin: admin.get_registration(registration_id)))


@registration_app.command("list")
def registration_list(group_id: str, data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """List the registration records of an enrollment group."""

    async def work(admin: Admin) -> list[dict[str, Any]]:
        page = await admin.query_registrations(group_id, None, 1000)
        return page.items

    print_json(with_admin(data_dir, work))


@registration_app.command("delete")
def registration_delete(registration_id: str, data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """Delete a registration record (the device stays on its hub)."""
    with_admin(data_dir, lambda admin: admin.delete_registration(registration_id, None))
    console.print(f"deleted registration record {registration_id}")
