"""`devprov device register`: devprov's own device client, from the command line."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer

from devprov import certmaker
from devprov.cli.common import DEFAULT_DATA_DIR, DataDir, err_console, print_json
from devprov.client.device import DeviceClient, RegistrationFailed
from devprov.instance import load_instance

device_app = typer.Typer(help="devprov's own device client.", no_args_is_help=True)


@device_app.command("register")
def device_register(
    registration_id: str,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    key: Annotated[str | None, typer.Option(help="The device's symmetric key.")] = None,
    group_key: Annotated[
        str | None, typer.Option(help="The enrollment group's key (the device key is derived).")
    ] = None,
    payload: Annotated[
        str | None, typer.Option(help="JSON payload sent with the registration.")
    ] = None,
    host: Annotated[
        str | None, typer.Option(help="devprov host (default: from the data dir).")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="devprov HTTPS port (default: from the data dir).")
    ] = None,
    id_scope: Annotated[
        str | None, typer.Option(help="Id scope (default: from the data dir).")
    ] = None,
    ca: Annotated[
        Path | None, typer.Option(help="CA certificate to trust (default: from the data dir).")
    ] = None,
    new_certificate: Annotated[
        Path | None,
        typer.Option(
            help="Make a P-256 key and a CSR, and write the certificate issued for it to"
            " DIR/ID-chain.pem and its key to DIR/ID-key.pem (the enrollment needs a"
            " credentialPolicyName)."
        ),
    ] = None,
) -> None:
    """Register a device over HTTPS and print its registration result."""
    instance = load_instance(data_dir)
    if (host is None or id_scope is None) and instance is None:
        raise typer.BadParameter("give --host and --id-scope, or a --data-dir of a devprov")
    client = DeviceClient(
        host=host or (instance.host_name if instance else "localhost"),
        id_scope=id_scope or (instance.id_scope if instance else ""),
        port=port or (instance.https_port if instance else 443),
        ca_file=str(ca or (data_dir / "tls" / "ca.pem")),
    )
    try:
        parsed = json.loads(payload) if payload else None
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"--payload is not JSON: {exc}") from None
    request = certmaker.certificate_request(registration_id) if new_certificate else None
    try:
        state = asyncio.run(
            client.register(
                registration_id,
                symmetric_key=key,
                group_key=group_key,
                payload=parsed,
                csr=request.csr if request else None,
            )
        )
    except RegistrationFailed as failure:
        err_console.print(f"[red]registration failed[/red] (HTTP {failure.status})")
        print_json(failure.body)
        raise typer.Exit(1) from None
    if request is not None and new_certificate is not None:
        chain = state.get("issuedCertificateChain") or []
        if not chain:
            err_console.print("[red]error[/red]: no certificate was issued")
            raise typer.Exit(1)
        chain_file, key_file = request.save(new_certificate, registration_id, chain)
        err_console.print(f"wrote {chain_file} and {key_file}")
    print_json(state)
