"""The `devprov` command line: serve, info, and managing what devprov serves."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from typer._click.core import Context
from typer._click.exceptions import ClickException
from typer.core import TyperGroup

from devprov.cli.audit import audit_app
from devprov.cli.bench import bench, bench_hub, bench_idle, bench_seed, bench_slowloris
from devprov.cli.certificates import ca_app, cert_app
from devprov.cli.common import DEBUG, err_console, explain
from devprov.cli.config import config_app
from devprov.cli.credentials import credential_policy_app
from devprov.cli.device import device_app
from devprov.cli.hubs import hub_app
from devprov.cli.keys import keys_app
from devprov.cli.moving import export, import_
from devprov.cli.records import enrollment_app, group_app, registration_app
from devprov.cli.server import db_app, info, init, serve
from devprov.cli.webhooks import webhook_app


class Devprov(TyperGroup):
    """The root command: a user's or the environment's mistake is one line and exit 1; a
    traceback only with --debug (or DEVPROV_DEBUG=1), or for what is a bug of ours."""

    def invoke(self, ctx: Context) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, ClickException):
            raise
        except Exception as error:
            told = explain(error)
            if DEBUG["on"] or told is None:
                raise
            err_console.print(f"[red]error[/red]: {told}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None


app = typer.Typer(
    rich_markup_mode=None,
    cls=Devprov,
    help="devprov: a self-hosted Device Provisioning Service, wire-compatible with Azure DPS.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        print(f"devprov {version('devprov')}")
        raise typer.Exit()


@app.callback()
def main(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the traceback of any error (DEVPROV_DEBUG=1).")
    ] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """devprov: a self-hosted Device Provisioning Service, wire-compatible with Azure DPS."""
    DEBUG["on"] = DEBUG["on"] or debug


app.command()(serve)
app.command()(init)
app.command()(info)
app.command()(export)
app.command("import")(import_)
app.command()(bench)
app.command("bench-seed")(bench_seed)
app.command("bench-idle")(bench_idle)
app.command("bench-slowloris")(bench_slowloris)
app.command("bench-hub")(bench_hub)
app.add_typer(enrollment_app, name="enrollment")
app.add_typer(group_app, name="group")
app.add_typer(registration_app, name="registration")
app.add_typer(hub_app, name="hub")
app.add_typer(ca_app, name="ca")
app.add_typer(cert_app, name="cert")
app.add_typer(credential_policy_app, name="credential-policy")
app.add_typer(device_app, name="device")
app.add_typer(db_app, name="db")
app.add_typer(webhook_app, name="webhook")
app.add_typer(keys_app, name="keys")
app.add_typer(audit_app, name="audit")
app.add_typer(config_app, name="config")

__all__ = ["app"]
