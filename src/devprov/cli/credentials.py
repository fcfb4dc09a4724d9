"""`devprov credential-policy`: issuing CAs held by devprov, for certificates from a CSR."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from devprov.cli.common import (
    DEFAULT_DATA_DIR,
    DataDir,
    JsonFlag,
    audited,
    console,
    fail,
    print_json,
    print_listing,
    report,
    with_store,
)

if TYPE_CHECKING:
    from devprov.domain.credentials import CredentialPolicy
    from devprov.issuing_cas import IssuingCas
    from devprov.store.database import Store

DEFAULT_VALIDITY_DAYS = 30  # domain.credentials.DEFAULT_VALIDITY_DAYS (a test holds them equal)

T = TypeVar("T")

credential_policy_app = typer.Typer(
    rich_markup_mode=None,
    help="Credential policies: an issuing CA held by devprov signs the CSRs devices send"
    " (credentialPolicyName on an enrollment or group turns it on).",
    no_args_is_help=True,
)
Name = Annotated[str, typer.Argument(help="The policy's name (credentialPolicyName).")]


def _with_policies(
    data_dir: Path,
    work: Callable[[IssuingCas], Awaitable[T]],
    write: tuple[str, str, str] | None = None,
) -> T:
    """Run `work` on the policies; a `write` (method, path, name) is audited."""
    from devprov.issuing_cas import IssuingCas

    def run(store: Store) -> Awaitable[T]:
        if write is None:
            return work(IssuingCas(store, data_dir))
        return audited(store, *write, work(IssuingCas(store, data_dir)))

    return with_store(data_dir, run)


def _show(policy: CredentialPolicy, as_json: bool) -> None:
    from devprov.domain.credentials import describe_policy

    if as_json:
        print_json(policy.to_document())
    else:
        console.print(describe_policy(policy), highlight=False)


@credential_policy_app.command("create")
def create(
    name: Name,
    days: Annotated[int, typer.Option(help="Days an issued certificate is valid.")] = (
        DEFAULT_VALIDITY_DAYS
    ),
    data_dir: DataDir = DEFAULT_DATA_DIR,
    as_json: JsonFlag = False,
) -> None:
    """Make a policy with a new issuing CA (P-384); its key stays in the data dir (0600)."""
    write = ("PUT", f"/credentialPolicies/{name}", name)
    _show(_with_policies(data_dir, lambda policies: policies.create(name, days), write), as_json)


@credential_policy_app.command("rotate")
def rotate(name: Name, data_dir: DataDir = DEFAULT_DATA_DIR, as_json: JsonFlag = False) -> None:
    """A new issuing CA signs from now on; certificates the old ones issued stay accepted."""
    write = ("POST", f"/credentialPolicies/{name}/rotate", name)
    _show(_with_policies(data_dir, lambda policies: policies.rotate(name), write), as_json)


@credential_policy_app.command("list")
def listing(data_dir: DataDir = DEFAULT_DATA_DIR, as_json: JsonFlag = False) -> None:
    """Every policy and its current issuing CA (a table; --json: a JSON array)."""
    policies = _with_policies(data_dir, lambda policies: policies.policies())
    print_listing(
        [policy.to_document() for policy in policies],
        as_json,
        [
            ("policy", lambda document: document["name"]),
            ("validity days", lambda document: document["validityDays"]),
            (
                "issuing CA (SHA-256)",
                lambda document: document["issuingCas"][0]["sha256Thumbprint"],
            ),
        ],
    )


@credential_policy_app.command("show")
def show(
    name: Name,
    pem: Annotated[
        bool, typer.Option("--pem", help="Print the issuing CAs as PEM (for a hub to trust).")
    ] = False,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    as_json: JsonFlag = False,
) -> None:
    """A policy; with --pem its issuing CAs (current first), e.g. for an IoT hub to trust."""
    policy = _with_policies(data_dir, lambda policies: policies.policy(name))
    if policy is None:
        raise fail(f"there is no credential policy named {name!r}")
    if pem:
        from devprov.domain.certificates import to_pem

        print("".join(to_pem(ca) for ca in policy.issuing_cas), end="")
        return
    _show(policy, as_json)


@credential_policy_app.command("remove")
def remove(name: Name, data_dir: DataDir = DEFAULT_DATA_DIR, as_json: JsonFlag = False) -> None:
    """Forget a policy: its devices get no new certificates and their old ones are refused."""
    write = ("DELETE", f"/credentialPolicies/{name}", name)
    _with_policies(data_dir, lambda policies: policies.remove(name), write)
    report(as_json, f"removed credential policy {name}", {"removed": name})
