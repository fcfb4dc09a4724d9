"""`devprov device register`: devprov's own device client, from the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from devprov.cli.common import (
    DEFAULT_DATA_DIR,
    DataDir,
    JsonFlag,
    UserError,
    err_console,
    print_json,
    resolved_data_dir,
)
from devprov.cli.records import _base64

device_app = typer.Typer(
    rich_markup_mode=None, help="devprov's own device client.", no_args_is_help=True
)


@device_app.command("register")
def device_register(
    registration_id: str,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    key: Annotated[str | None, typer.Option(help="The device's symmetric key.")] = None,
    cert: Annotated[
        Path | None,
        typer.Option(help="X.509: the device's certificate chain (PEM, leaf first)."),
    ] = None,
    cert_key: Annotated[
        Path | None, typer.Option("--cert-key", help="X.509: the key of --cert (PEM).")
    ] = None,
    tpm: Annotated[
        bool,
        typer.Option(
            "--tpm", help="TPM: attest with the TPM tpm2-tools reach (TPM2TOOLS_TCTI, --tpm-tcti)."
        ),
    ] = False,
    tpm_tcti: Annotated[
        str | None,
        typer.Option(help="TPM: tpm2-tools' TCTI, e.g. swtpm:host=127.0.0.1,port=2321."),
    ] = None,
    as_json: JsonFlag = False,
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
    """Register a device over HTTPS (symmetric key, group key, X.509 or TPM) and print its
    result. With --tpm the registration id is the one the SDKs derive from the EK when "-"."""
    from devprov import certmaker
    from devprov.client.device import DeviceClient, RegistrationFailed
    from devprov.instance import load_instance

    data_dir = resolved_data_dir(data_dir)
    instance = load_instance(data_dir)
    if (host is None or id_scope is None) and instance is None:
        raise UserError(
            f"no devprov data dir at {data_dir.resolve()} to read the server from: give --host"
            " and --id-scope, or point --data-dir (DEVPROV_DATA_DIR) at the server's data dir."
        )
    if sum(1 for given in (key, group_key, cert, tpm) if given) != 1:
        raise UserError("give one of --key, --group-key, --cert (with --cert-key) and --tpm")
    _base64("--key", key)
    for option, path in (("--cert", cert), ("--cert-key", cert_key), ("--ca", ca)):
        if path is not None and not path.is_file():
            raise UserError(f"{option} {path}: no such file")
    _base64("--group-key", group_key)
    client = DeviceClient(
        host=host or (instance.host_name if instance else "localhost"),
        id_scope=id_scope or (instance.id_scope if instance else ""),
        port=port or (instance.https_port if instance else 443),
        ca_file=str(ca or (data_dir / "tls" / "ca.pem")),
        cert_file=str(cert) if cert else None,
        key_file=str(cert_key) if cert_key else None,
    )
    from devprov.domain.json_text import JsonRefused, parse_json

    try:
        parsed = parse_json(payload) if payload else None
    except JsonRefused as exc:
        raise typer.BadParameter(f"--payload is not JSON: {exc}") from None
    request = certmaker.certificate_request(registration_id) if new_certificate else None
    import asyncio
    import ssl

    import aiohttp

    from devprov.client.tpm import TpmDevice, TpmUnavailable

    try:
        device = TpmDevice(tpm_tcti) if tpm else None
    except TpmUnavailable as error:
        raise UserError(f"{error}: install tpm2-tools (Debian: tpm2-tools)") from None
    try:
        if device is not None and registration_id == "-":
            from devprov.attestation.tpm import registration_id_for

            registration_id = registration_id_for(device.public_keys()[0])
        state = asyncio.run(
            client.register(
                registration_id,
                symmetric_key=key,
                group_key=group_key,
                payload=parsed,
                csr=request.csr if request else None,
                tpm=device,
            )
        )
    except TpmUnavailable as error:
        raise UserError(f"the TPM: {error} (is it running, and --tpm-tcti right?)") from None
    except RegistrationFailed as failure:
        err_console.print(
            f"[red]registration failed[/red]: {_why(failure.status, failure.body)}",
            highlight=False,
            soft_wrap=True,
        )
        print_json(failure.body, as_json)
        raise typer.Exit(1) from None
    except (OSError, aiohttp.ClientError) as error:
        where = f"https://{client.host}:{client.port}"
        tls = isinstance(error, aiohttp.ClientSSLError | ssl.SSLError)
        if isinstance(
            error, aiohttp.ClientConnectorCertificateError | ssl.SSLCertVerificationError
        ):
            raise UserError(
                f"the certificate of {where} is not trusted ({error}): give its CA with --ca"
            ) from None
        unreachable = isinstance(error, ConnectionRefusedError) or (
            isinstance(error, aiohttp.ClientConnectorError) and not tls
        )
        if cert is not None and not unreachable:  # TLS refused the certificate, or hung up
            raise UserError(
                f"{where} closed the connection when shown {cert} ({type(error).__name__}):"
                " no verified CA of an enabled enrollment trusts it; see `devprov ca list`"
            ) from None
        if tls:
            raise UserError(f"TLS with {where} failed ({error})") from None
        raise UserError(
            f"cannot reach devprov at {where}: is `devprov serve` running? (or give --host and"
            " --port)"
        ) from None
    finally:
        if device is not None:
            device.close()
    if request is not None and new_certificate is not None:
        chain = state.get("issuedCertificateChain") or []
        if not chain:
            err_console.print("[red]error[/red]: no certificate was issued")
            raise typer.Exit(1)
        chain_file, key_file = request.save(new_certificate, registration_id, chain)
        err_console.print(f"wrote {chain_file} and {key_file}")
    print_json(state, as_json)


def _why(status: int, body: object) -> str:
    """The errorCode and message DPS answered (a failed allocation answers them inside
    registrationState, with HTTP 200)."""
    found = body if isinstance(body, dict) else {}
    inner = found.get("registrationState")
    state = inner if isinstance(inner, dict) else None
    source = state or found
    code, message = source.get("errorCode"), source.get("errorMessage") or source.get("message")
    if code is not None:
        return f"{code}: {message}"
    return f"HTTP {status}"
