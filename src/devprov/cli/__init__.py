"""The `devprov` command line: serve, info, and managing what devprov serves."""

from __future__ import annotations

import typer

from devprov.cli.bench import bench, bench_hub, bench_idle, bench_seed, bench_slowloris
from devprov.cli.certificates import ca_app, cert_app
from devprov.cli.credentials import credential_policy_app
from devprov.cli.device import device_app
from devprov.cli.hubs import hub_app
from devprov.cli.records import enrollment_app, group_app, registration_app
from devprov.cli.server import db_app, info, init, serve
from devprov.cli.webhooks import webhook_app

app = typer.Typer(
    help="devprov: a self-hosted Device Provisioning Service, wire-compatible with Azure DPS.",
    no_args_is_help=True,
)
app.command()(serve)
app.command()(init)
app.command()(info)
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

__all__ = ["app"]
