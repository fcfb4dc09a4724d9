"""Listening sockets when file descriptors run out: the waiting peer is refused with the spare
descriptor, asyncio is told the backlog is empty (no retry storm), and it is counted once."""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import socket
from collections.abc import Iterator

import pytest

from devprov.server.listen import SPARE, listening_sockets


@pytest.fixture
def exhausted() -> Iterator[list[int]]:
    """A way to use up every file descriptor (the limit is restored afterwards)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    opened: list[int] = []
    yield opened
    for fd in opened:
        os.close(fd)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def use_up_descriptors(opened: list[int]) -> None:
    resource.setrlimit(
        resource.RLIMIT_NOFILE,
        (len(os.listdir("/proc/self/fd")) + 16, resource.getrlimit(resource.RLIMIT_NOFILE)[1]),
    )
    while True:
        try:
            opened.append(os.open(os.devnull, os.O_RDONLY))
        except OSError as error:
            assert error.errno == errno.EMFILE
            return


def test_out_of_descriptors_the_waiting_peer_is_refused_and_counted(
    exhausted: list[int],
) -> None:
    (listener,) = listening_sockets("127.0.0.1", 0)
    port = listener.getsockname()[1]
    peer = socket.create_connection(("127.0.0.1", port))
    before = SPARE.refused.totals.total()
    use_up_descriptors(exhausted)

    with pytest.raises(BlockingIOError):
        listener.accept()

    assert SPARE.refused.totals.total() == before + 1
    assert SPARE.fd is not None  # taken back for the next one
    peer.settimeout(10)
    with contextlib.suppress(ConnectionResetError):
        assert peer.recv(1) == b""
    peer.close()
    listener.close()


def test_with_descriptors_to_spare_accept_is_plain() -> None:
    (listener,) = listening_sockets("127.0.0.1", 0)
    peer = socket.create_connection(("127.0.0.1", listener.getsockname()[1]))
    accepted, _ = listener.accept()
    accepted.sendall(b"hi")
    assert peer.recv(2) == b"hi"
    for s in (accepted, peer, listener):
        s.close()
