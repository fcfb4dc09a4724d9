"""`devprov ca` (verified CAs) and `devprov cert` (test certificates like DPS users' scripts)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from devprov.cli.common import (
    DEFAULT_DATA_DIR,
    DataDir,
    JsonFlag,
    print_json,
    print_listing,
    report,
    with_admin,
)

if TYPE_CHECKING:
    from devprov import certmaker

ca_app = typer.Typer(
    rich_markup_mode=None,
    help="Verified CAs: add one, get a code, prove possession, then groups may use it.",
    no_args_is_help=True,
)
cert_app = typer.Typer(
    rich_markup_mode=None,
    help="Make test certificates: root and intermediate CAs, devices, verification proofs.",
    no_args_is_help=True,
)
CertFile = Annotated[Path, typer.Option("--cert", help="Certificate file (PEM).")]
OutDir = Annotated[Path, typer.Option("--out", help="Directory to write NAME.pem etc. into.")]
IssuerName = Annotated[
    str | None, typer.Option("--issuer", help="Name of an issuer written before in --out.")
]


@ca_app.command("add")
def ca_add(
    name: str, cert: CertFile, data_dir: DataDir = DEFAULT_DATA_DIR, as_json: JsonFlag = False
) -> None:
    """Add (or replace) a CA; it is unverified until its possession is proven."""
    body = {"certificate": cert.read_text()}
    print_json(with_admin(data_dir, lambda admin: admin.put_ca(name, body)), as_json)


@ca_app.command("code")
def ca_code(name: str, data_dir: DataDir = DEFAULT_DATA_DIR, as_json: JsonFlag = False) -> None:
    """Get a verification code: sign a certificate whose CN is this code with the CA's key."""
    record = with_admin(data_dir, lambda admin: admin.ca_verification_code(name))
    code = record["properties"]["verificationCode"]
    print(json.dumps({"name": name, "verificationCode": code}) if as_json else code)


@ca_app.command("verify")
def ca_verify(
    name: str, cert: CertFile, data_dir: DataDir = DEFAULT_DATA_DIR, as_json: JsonFlag = False
) -> None:
    """Prove possession with the certificate made for the verification code."""
    body = {"certificate": cert.read_text()}
    print_json(with_admin(data_dir, lambda admin: admin.verify_ca(name, body)), as_json)


@ca_app.command("list")
def ca_list(data_dir: DataDir = DEFAULT_DATA_DIR, as_json: JsonFlag = False) -> None:
    """List CAs and whether each is verified (a table; --json: a JSON array)."""
    print_listing(
        with_admin(data_dir, lambda admin: admin.list_cas()),
        as_json,
        [
            ("CA", lambda record: record["name"]),
            ("subject", lambda record: record["properties"]["subject"]),
            (
                "verified",
                lambda record: "verified" if record["properties"]["isVerified"] else "NOT verified",
            ),
        ],
    )


@ca_app.command("remove")
def ca_remove(name: str, data_dir: DataDir = DEFAULT_DATA_DIR, as_json: JsonFlag = False) -> None:
    """Remove a CA."""
    with_admin(data_dir, lambda admin: admin.delete_ca(name))
    report(as_json, f"removed CA {name}", {"removed": name})


def _saved(issued: certmaker.Issued, out: Path, name: str, as_json: bool) -> None:
    cert, chain, key = issued.save(out, name)
    paths = {"certificate": str(cert), "chain": str(chain), "key": str(key)}
    report(as_json, f"wrote {cert}, {chain} and {key}", paths)


@cert_app.command("root")
def cert_root(name: str, out: OutDir = Path("certs"), as_json: JsonFlag = False) -> None:
    """A self-signed root CA."""
    from devprov import certmaker

    _saved(certmaker.root_ca(f"{name} root CA"), out, name, as_json)


@cert_app.command("intermediate")
def cert_intermediate(
    name: str,
    issuer: Annotated[str, typer.Option()],
    out: OutDir = Path("certs"),
    as_json: JsonFlag = False,
) -> None:
    """An intermediate CA signed by --issuer."""
    from devprov import certmaker

    parent = certmaker.Issued.load(out, issuer)
    _saved(certmaker.intermediate_ca(parent, f"{name} intermediate CA"), out, name, as_json)


@cert_app.command("device")
def cert_device(
    registration_id: str,
    issuer: IssuerName = None,
    out: OutDir = Path("certs"),
    as_json: JsonFlag = False,
) -> None:
    """A device certificate whose CN is the registration id (self-signed without --issuer).

    Give the device NAME-chain.pem: it carries the intermediates DPS needs to see."""
    from devprov import certmaker

    parent = certmaker.Issued.load(out, issuer) if issuer else None
    _saved(certmaker.device(registration_id, parent), out, registration_id, as_json)


@cert_app.command("verification")
def cert_verification(
    code: str,
    issuer: Annotated[str, typer.Option()],
    out: OutDir = Path("certs"),
    as_json: JsonFlag = False,
) -> None:
    """The proof of possession for `devprov ca verify`: CN = the code, signed by --issuer."""
    from devprov import certmaker

    proof = certmaker.verification(code, certmaker.Issued.load(out, issuer))
    _saved(proof, out, f"verify-{issuer}", as_json)
