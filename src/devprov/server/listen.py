"""Listening sockets that stay calm when file descriptors run out, and the servers on them.

When the process has no file descriptor left, `accept()` fails with EMFILE while the peer
waits in the backlog, and the socket stays readable: asyncio (3.11) then logs
`socket.accept() out of system resource` and schedules a retry for every one of its backlog's
worth of attempts, which snowballs (hundreds of thousands of lines a minute). These sockets
keep one spare descriptor instead: on EMFILE they give it up, accept the waiting peer, close it
at once (it is refused, cleanly), take the spare back and tell asyncio the backlog is empty.
Each refusal is counted in a `Tally` (one log line an interval).
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import ssl
from collections.abc import Callable
from typing import Any

from devprov.server.guard import Tally

_OUT_OF_DESCRIPTORS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


class _Spare:
    """One file descriptor held back for refusing a peer when none is left."""

    def __init__(self) -> None:
        self.fd: int | None = None
        self.refused = Tally("connections refused for want of file descriptors")

    def take(self) -> None:
        if self.fd is None:
            try:
                self.fd = os.open(os.devnull, os.O_RDONLY)
            except OSError:
                self.fd = None

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


SPARE = _Spare()


class CalmSocket(socket.socket):
    """A listening socket whose accept refuses a peer with the spare descriptor on EMFILE."""

    __slots__ = ()

    def accept(self) -> tuple[socket.socket, Any]:
        try:
            return super().accept()
        except OSError as error:
            if error.errno not in _OUT_OF_DESCRIPTORS:
                raise
        SPARE.refused.count(os.strerror(errno.EMFILE))
        SPARE.release()
        try:
            peer, _ = super().accept()
            peer.close()
        except OSError:
            pass
        finally:
            SPARE.take()
        raise BlockingIOError(errno.EAGAIN, "refused a peer: out of file descriptors")


def listening_sockets(host: str, port: int, reuse_port: bool = False) -> list[CalmSocket]:
    """Bound, listening sockets for `host` (every address it resolves to) and `port`."""
    SPARE.take()
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    sockets: list[CalmSocket] = []
    seen: set[tuple[int, Any]] = set()
    try:
        for family, kind, proto, _name, address in infos:
            if (family, address) in seen:
                continue
            seen.add((family, address))
            listener = CalmSocket(family, kind, proto)
            sockets.append(listener)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            listener.bind(address)
            listener.listen(1024)
            listener.setblocking(False)
    except OSError:
        for listener in sockets:
            listener.close()
        raise
    return sockets


async def serve(
    factory: Callable[[], asyncio.BaseProtocol],
    host: str,
    port: int,
    context: ssl.SSLContext,
    *,
    handshake_timeout: float,
    reuse_port: bool = False,
) -> list[asyncio.Server]:
    """A TLS server on every address of `host`, with a deadline on the TLS handshake."""
    loop = asyncio.get_running_loop()
    servers = []
    try:
        for listener in listening_sockets(host, port, reuse_port):
            servers.append(
                await loop.create_server(
                    factory, sock=listener, ssl=context, ssl_handshake_timeout=handshake_timeout
                )
            )
    except BaseException:
        for server in servers:
            server.close()
        raise
    return servers
