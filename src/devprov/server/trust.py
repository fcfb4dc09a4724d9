"""TLS client certificates: what the listeners trust, and the chain a device presented.

Python 3.11's `ssl` has no verification callback, so the work is split:

- OpenSSL only gates the handshake. The listeners' one context asks for a client certificate
  (CERT_OPTIONAL: symmetric-key and service clients send none) and trusts every certificate an
  enrollment, a group, a CA record or a credential policy (its issuing CAs) holds, with
  partial-chain verification, so an enrolled intermediate or a self-signed device certificate
  is an anchor by itself. Time checks are off
  there (X509_V_FLAG_NO_CHECK_TIME), so an expired device is refused by the application with a
  message instead of by a TLS alert.
- The application decides (attestation/x509.py): it reads the presented chain, validates it with
  `cryptography`'s verifier against the one enrollment it matches, and checks CN, dates and
  whether a CA was verified.

Because the application is the authority, the context's trust store only ever grows: a new
certificate is added within a second of being stored (at once when the change came through this
process's API), and one that was removed stays trusted by TLS until restart but matches no
enrollment, so the device is refused with a clear reason. This keeps one context for all
connections and no per-connection work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Iterable
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from devprov.domain.certificates import load_certificate
from devprov.domain.records import Kind, RecordStore

log = logging.getLogger(__name__)
NO_CHECK_TIME = 0x200000  # X509_V_FLAG_NO_CHECK_TIME: dates are checked by the application
REFRESH_SECONDS = 1.0
_WATCHED = (
    (Kind.ENROLLMENT, {"attestation": "x509"}),
    (Kind.GROUP, {"attestation": "x509"}),
    (Kind.CERTIFICATE, None),
    (Kind.CREDENTIAL_POLICY, None),
)
_ENCODING_DER = 2  # _ssl.ENCODING_DER, for the 3.10-3.12 private certificate objects


def request_client_certificates(context: ssl.SSLContext) -> None:
    context.verify_mode = ssl.CERT_OPTIONAL
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN | NO_CHECK_TIME


def peer_chain(ssl_object: Any) -> list[x509.Certificate]:
    """The chain the peer sent, leaf first; empty when it sent none.

    Python 3.13 made `get_unverified_chain` public (DER bytes); 3.10-3.12 have it on the private
    `_sslobj`, returning certificate objects. Both are read here and nowhere else."""
    if ssl_object is None:
        return []
    getter = getattr(ssl_object, "get_unverified_chain", None)
    if getter is None:
        getter = getattr(getattr(ssl_object, "_sslobj", None), "get_unverified_chain", None)
    if getter is None:
        return []
    chain = getter() or []
    return [
        x509.load_der_x509_certificate(
            item if isinstance(item, bytes) else item.public_bytes(_ENCODING_DER)
        )
        for item in chain
        if item is not None
    ]


def anchors_in(document: dict[str, Any]) -> Iterable[str]:
    """Certificates held by an enrollment, a group, a CA record or a credential policy."""
    x509_part = (document.get("attestation") or {}).get("x509") or {}
    for slot in ("clientCertificates", "signingCertificates"):
        for entry in (x509_part.get(slot) or {}).values():
            if isinstance(entry, dict) and entry.get("certificate"):
                yield entry["certificate"]
    certificate = (document.get("properties") or {}).get("certificate")
    if certificate:
        yield certificate
    for entry in document.get("issuingCas") or []:
        if isinstance(entry, dict) and entry.get("certificate"):
            yield entry["certificate"]


class ClientTrust:
    """Keeps the listeners' context trusting every certificate the store holds."""

    def __init__(self, context: ssl.SSLContext, store: RecordStore) -> None:
        self.context = context
        self.store = store
        self._loaded: set[bytes] = set()
        self._seen: tuple[int, ...] | None = None
        self._task: asyncio.Task[None] | None = None
        request_client_certificates(context)

    async def refresh(self) -> None:
        """Add the certificates stored since the last look (cheap when nothing changed)."""
        marker = await self.store.revisions()
        if marker == self._seen:
            return
        added = 0
        for kind, where in _WATCHED:
            for row in await self.store.page(kind, where=where):
                for text in anchors_in(row.document):
                    added += self._trust(text)
        self._seen = marker
        if added:
            log.info("TLS now trusts %d more client certificate anchors", added)

    def _trust(self, text: str) -> int:
        try:
            certificate = load_certificate(text)
        except Exception:
            return 0
        fingerprint = certificate.fingerprint(hashes.SHA256())
        if fingerprint in self._loaded:
            return 0
        self.context.load_verify_locations(
            cadata=certificate.public_bytes(serialization.Encoding.DER)
        )
        self._loaded.add(fingerprint)
        return 1

    def start(self) -> None:
        async def watch() -> None:
            while True:
                try:
                    await self.refresh()
                except Exception:
                    log.exception("could not refresh the client certificate anchors")
                await asyncio.sleep(REFRESH_SECONDS)

        self._task = asyncio.create_task(watch())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
