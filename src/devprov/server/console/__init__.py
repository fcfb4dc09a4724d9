"""The web console, served under /console on the HTTPS port (see web.py)."""

from devprov.server.console.activity import Activity
from devprov.server.console.web import Console

__all__ = ["Activity", "Console"]
