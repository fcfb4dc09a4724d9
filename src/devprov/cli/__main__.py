"""`python -m devprov.cli`."""

from devprov.cli import app

app()
