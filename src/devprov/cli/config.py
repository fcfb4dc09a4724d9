"""`devprov config show`: the settings `serve` would run with, and where each came from."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Annotated, Any

import typer

from devprov.cli.common import console

config_app = typer.Typer(rich_markup_mode=None, help="devprov's settings.", no_args_is_help=True)
SECRETS = {"webhook_secret", "metrics_token"}  # and a password in the db URL


@config_app.command("show")
def config_show(
    data_dir: Annotated[
        Path | None, typer.Option(help="The data dir (its devprov.toml is the settings file).")
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", envvar="DEVPROV_CONFIG", help="Settings file.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for machines.")] = False,
) -> None:
    """The settings from the TOML file, DEVPROV_* variables and flags (later ones win), secrets
    hidden; beside each, where it came from."""
    from devprov.cli.server import _settings
    from devprov.settings import Settings, _config_file

    settings = _settings(config, data_dir=data_dir)
    file = config or _config_file(data_dir)
    in_file: dict[str, Any] = {}
    if file is not None:
        import tomllib

        with open(file, "rb") as handle:
            in_file = tomllib.load(handle)
    shown: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for name, value in settings.model_dump(mode="json").items():
        shown[name] = "(hidden)" if name in SECRETS and value else value
        if name == "db" and isinstance(value, str):
            shown[name] = re.sub(r"(://[^:/@]*:)[^@]*@", r"\1(hidden)@", value)
        variable = f"DEVPROV_{name.upper()}"
        sources[name] = (
            "flag"
            if name == "data_dir" and data_dir is not None
            else f"env {variable}"
            if variable in os.environ
            else f"file {file}"
            if name in in_file
            else "default"
        )
    if as_json:
        print(json.dumps(shown, indent=2))
        return
    for field in Settings.model_fields:
        console.print(
            f"[bold]{field}[/bold] = {json.dumps(shown[field])}  [dim]({sources[field]})[/dim]",
            highlight=False,
            soft_wrap=True,
        )
