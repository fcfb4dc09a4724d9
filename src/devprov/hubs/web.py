"""What the HTTP-based connectors share: TLS trust, one pooled session, retries inside a budget.

A connector's call has a time budget (`hub_connector_timeout`, well inside a registration's own):
throttling (429) and server errors (5xx) and connections that fail are retried with exponential
back-off (honouring Retry-After) while the budget lasts; then the last answer is returned (or the
failure raised as a ConnectorError) so the registration fails with the hub's own words.
"""

from __future__ import annotations

import asyncio
import random
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from devprov.domain.json_text import JsonRefused, parse_json
from devprov.hubs.connector import ConnectorError

RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})
FIRST_BACKOFF_SECONDS = 0.1
MAX_BACKOFF_SECONDS = 2.0
Headers = Callable[[bytes], Mapping[str, str]]


def tls_context(ca_file: str | None = None) -> ssl.SSLContext:
    """The system's trust store as OpenSSL finds it (so SSL_CERT_FILE and SSL_CERT_DIR work, as
    for any OpenSSL client), plus `ca_file` when one is named."""
    context = ssl.create_default_context()
    if ca_file:
        try:
            context.load_verify_locations(cafile=ca_file)
        except (OSError, ssl.SSLError) as error:
            raise ConnectorError(f"cannot load the CA file {ca_file}: {error}") from None
    return context


@dataclass(frozen=True)
class Answer:
    """A back end's answer: status, headers, raw body, and how many attempts it took."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    attempts: int = 1

    def json(self) -> Any:
        try:
            return parse_json(self.body) if self.body else None
        except JsonRefused:
            return None


class WebClient:
    """Requests to one back end over one pooled aiohttp session.

    `where` names the back end in every error (a host, never a URL's credentials or query)."""

    def __init__(
        self,
        where: str,
        timeout: float,
        ssl_context: ssl.SSLContext | None,
        *,
        connections: int = 64,
    ) -> None:
        self.where = where
        self.timeout = timeout
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else False
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=self._connections, keepalive_timeout=30, ssl=self._ssl
                ),
                # Redirects would re-send signed requests elsewhere: a back end answers itself.
                auto_decompress=True,
            )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def deadline(self) -> float:
        """When a call starting now must have ended."""
        return asyncio.get_running_loop().time() + self.timeout

    async def request(
        self,
        method: str,
        url: str,
        *,
        deadline: float,
        headers: Headers,
        body: bytes = b"",
    ) -> Answer:
        """Send until an answer that is not retried comes, or the budget is spent (then the
        last answer, or the last failure as a ConnectorError). `headers` is called for every
        attempt, so signatures and tokens are fresh."""
        if self._session is None:
            await self.start()
        assert self._session is not None
        loop = asyncio.get_running_loop()
        attempt = 0
        while True:
            attempt += 1
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise self._timed_out()
            retry_after: float | None = None
            try:
                async with self._session.request(
                    method,
                    url,
                    data=body or None,
                    headers=dict(headers(body)),
                    timeout=aiohttp.ClientTimeout(total=remaining),
                    allow_redirects=False,
                ) as response:
                    answer = Answer(
                        response.status, dict(response.headers), await response.read(), attempt
                    )
                if answer.status not in RETRIED_STATUSES:
                    return answer
                retry_after = _seconds(answer.headers.get("Retry-After"))
                failure: ConnectorError | None = None
            except TimeoutError:
                raise self._timed_out() from None
            except aiohttp.ClientConnectorCertificateError as error:
                raise ConnectorError(
                    f"{self.where}: its TLS certificate is not trusted ({error.certificate_error});"
                    " trust its CA (SSL_CERT_FILE or the connection string's CA)"
                ) from None
            except aiohttp.ClientSSLError as error:
                raise ConnectorError(f"{self.where}: TLS failed ({error})") from None
            except aiohttp.ClientConnectorError as error:
                failure = ConnectorError(f"cannot connect to {self.where}: {error.strerror}")
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as error:
                failure = ConnectorError(f"{self.where} failed: {error}")
            except aiohttp.ClientError as error:  # its text may hold the URL, whose query may
                failure = ConnectorError(
                    f"{self.where} failed: {type(error).__name__}"
                )  # be secret
            pause = min(MAX_BACKOFF_SECONDS, FIRST_BACKOFF_SECONDS * 2 ** (attempt - 1))
            pause = retry_after if retry_after is not None else pause * random.uniform(0.5, 1.0)
            if loop.time() + pause >= deadline:
                if failure is not None:
                    raise ConnectorError(f"{failure} (after {attempt} attempts)")
                return answer
            await asyncio.sleep(pause)

    def _timed_out(self) -> ConnectorError:
        return ConnectorError(f"{self.where} did not answer within {self.timeout:g} s")


def _seconds(value: str | None) -> float | None:
    """Retry-After in seconds (the HTTP-date form is not used by the hubs we talk to)."""
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
