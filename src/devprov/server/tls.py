"""TLS material: a CA and a server certificate made on first start, or the user's own pair.

Keys are ECDSA P-256: the official SDKs all accept it, and its handshakes cost a fraction of RSA's.
The server certificate is remade when the names it must carry change (a new --host or --name).
Given a sealer, the keys are written as encrypted PKCS#8 PEM under a password derived from the
sealing key (TLS loads keys from files, so they cannot be sealed text); keys written before
devprov sealed are encrypted the next time the certificates are ensured.
Every worker of `serve --workers N` does this at start and when a built-in hub is linked, so
making and loading the files happens under an exclusive lock on a file in the TLS directory:
one process writes, the others then find the files cover their names and only read them.
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import contextlib
import fcntl
import ipaddress
import logging
import os
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from devprov.domain.clock import utc_now
from devprov.domain.sealing import Sealer

log = logging.getLogger(__name__)
CA_CERT = "ca.pem"
CA_KEY = "ca-key.pem"
SERVER_CERT = "server.pem"
SERVER_KEY = "server-key.pem"
LOCK_FILE = ".lock"
DEFAULT_NAMES = ("localhost", "127.0.0.1", "::1")


@dataclass(frozen=True)
class TlsFiles:
    ca_cert: Path
    cert: Path
    key: Path


def server_names(host: str, extra: list[str]) -> list[str]:
    names = [*DEFAULT_NAMES]
    for name in [host, *extra]:
        if name and name not in ("0.0.0.0", "::") and name not in names:
            names.append(name)
    return names


@contextlib.contextmanager
def locked(tls_dir: Path) -> Iterator[None]:
    """Hold the TLS directory's lock (an flock, so a killed holder releases it at once; not
    reentrant: functions called under it take none)."""
    tls_dir.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(tls_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # closing the descriptor releases the lock


def ensure_certificates(tls_dir: Path, names: list[str], sealer: Sealer | None = None) -> TlsFiles:
    """Create the CA once, and a server certificate for `names` whenever they change (under
    the directory's lock: several processes may ask at once)."""
    with locked(tls_dir):
        return _ensure_certificates(tls_dir, names, sealer)


def _ensure_certificates(tls_dir: Path, names: list[str], sealer: Sealer | None) -> TlsFiles:
    ca_cert_path, ca_key_path = tls_dir / CA_CERT, tls_dir / CA_KEY
    _ensure_ca(tls_dir, sealer)
    ca_key_loaded = read_key(ca_key_path, sealer)
    ca = x509.load_pem_x509_certificate(ca_cert_path.read_bytes())
    cert_path, key_path = tls_dir / SERVER_CERT, tls_dir / SERVER_KEY
    if not _covers(cert_path, names, ca):
        key = ec.generate_private_key(ec.SECP256R1())
        _write_key(key_path, key, sealer)
        cert = _make_server_cert(key, ca, ca_key_loaded, names)
        _write(
            cert_path,
            cert.public_bytes(serialization.Encoding.PEM)
            + ca.public_bytes(serialization.Encoding.PEM),
        )
    elif sealer is not None:
        reseal_key(key_path, sealer)
    if sealer is not None:
        reseal_key(ca_key_path, sealer)
    return TlsFiles(ca_cert_path, cert_path, key_path)


def ensure_ca(tls_dir: Path, sealer: Sealer | None = None) -> tuple[str, str]:
    """The data dir's CA, made on first use: its certificate and its key as PEM text (the key
    unencrypted, for the shared store to seal)."""
    with locked(tls_dir):
        return _ensure_ca(tls_dir, sealer)


def _ensure_ca(tls_dir: Path, sealer: Sealer | None) -> tuple[str, str]:
    ca_cert_path, ca_key_path = tls_dir / CA_CERT, tls_dir / CA_KEY
    if not ca_cert_path.exists() or not ca_key_path.exists():
        ca_key = ec.generate_private_key(ec.SECP256R1())
        _write_key(ca_key_path, ca_key, sealer)
        _write(ca_cert_path, _make_ca(ca_key).public_bytes(serialization.Encoding.PEM))
    plain = read_key(ca_key_path, sealer).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return ca_cert_path.read_text(), plain.decode()


def install_ca(tls_dir: Path, ca_cert: str, ca_key: str, sealer: Sealer | None = None) -> None:
    """Make `ca_cert` (and its key) the data dir's CA: the deployment's, shared by every node.
    A server certificate the previous CA issued is remade by the next `ensure_certificates`."""
    key = serialization.load_pem_private_key(ca_key.encode(), None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("the deployment's CA key is not an EC key")
    with locked(tls_dir):
        if (tls_dir / CA_CERT).exists() and (tls_dir / CA_CERT).read_text() == ca_cert:
            return
        _write_key(tls_dir / CA_KEY, key, sealer)
        _write(tls_dir / CA_CERT, ca_cert.encode())
    log.info("took the deployment's TLS CA from the store")


def _passwords(path: Path, sealer: Sealer | None) -> list[bytes | None]:
    """The passwords to try on a key file: none for a plain one, the sealer's for another."""
    if b"ENCRYPTED" not in path.read_bytes()[:64]:
        return [None]
    if sealer is None:
        raise ValueError(f"{path} is encrypted, and no sealing key was given to open it")
    return [*sealer.pem_passwords()]


def read_key(path: Path, sealer: Sealer | None = None) -> ec.EllipticCurvePrivateKey:
    """An EC key from a PEM file, plain or encrypted under one of the sealer's keys."""
    data = path.read_bytes()
    for password in _passwords(path, sealer):
        try:
            key = serialization.load_pem_private_key(data, password)
        except ValueError:
            continue
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{path} does not hold an EC key")
        return key
    raise ValueError(f"{path} does not open with any sealing key held")


def reseal_key(path: Path, sealer: Sealer) -> bool:
    """Encrypt a key file under the sealer's current key if it is not already (plain, or
    under an older key); True when it was rewritten."""
    current = sealer.pem_passwords()[0]
    try:
        serialization.load_pem_private_key(path.read_bytes(), current)
        return False
    except (ValueError, TypeError):
        pass
    _write_key(path, read_key(path, sealer), sealer)
    return True


# asyncio's TLS transport gives every connection a read buffer of `SSLProtocol.max_size`
# bytes, 256 KiB in Python 3.11: 5,000 idle MQTT devices cost 1.4 GB. A TLS record carries at
# most 16 KiB, so a buffer of one record loses nothing but the memory (measured in
# BENCHMARKS.md with `devprov bench-idle`).
TLS_READ_BUFFER_BYTES = 16 * 1024


def small_tls_buffers() -> None:
    protocol = getattr(asyncio.sslproto, "SSLProtocol", None)
    if protocol is not None and getattr(protocol, "max_size", 0) > TLS_READ_BUFFER_BYTES:
        protocol.max_size = TLS_READ_BUFFER_BYTES


def server_context(
    cert: Path, key: Path, sealer: Sealer | None = None, tls_dir: Path | None = None
) -> ssl.SSLContext:
    """A server context with the pair loaded (under `tls_dir`'s lock when devprov made it, so
    another worker remaking it cannot hand this one a new certificate with the old key)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    with locked(tls_dir) if tls_dir is not None else contextlib.nullcontext():
        load_chain(context, cert, key, sealer)
    return context


def load_chain(context: ssl.SSLContext, cert: Path, key: Path, sealer: Sealer | None) -> None:
    """Load a certificate chain and its key, plain or encrypted under a sealing key."""
    passwords = _passwords(key, sealer)
    for number, password in enumerate(passwords, 1):
        try:
            context.load_cert_chain(cert, key, password)
            return
        except ssl.SSLError:
            if number == len(passwords):
                raise


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey, sealer: Sealer | None) -> None:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(sealer.pem_passwords()[0])
        if sealer is not None
        else serialization.NoEncryption()
    )
    data = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    _write(path, data, 0o600)


def _write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write a file whole or not at all (a new file renamed over the old one), so a process
    killed while writing leaves the old file, never half of one."""
    temporary = path.with_name(path.name + ".tmp")
    with open(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode), "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    temporary.replace(path)


def _make_ca(key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "devprov local CA")])
    now = utc_now()
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


def _san(names: list[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def _make_server_cert(
    key: ec.EllipticCurvePrivateKey,
    ca: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    names: list[str],
) -> x509.Certificate:
    now = utc_now()
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=825))
        .add_extension(_san(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )


def _covers(cert_path: Path, names: list[str], ca: x509.Certificate) -> bool:
    if not cert_path.exists():
        return False
    cert = x509.load_pem_x509_certificates(cert_path.read_bytes())[0]
    if cert.issuer != ca.subject or cert.not_valid_after_utc < utc_now() + timedelta(days=30):
        return False
    try:  # every devprov CA has the same name: only its key tells them apart
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    present = {
        str(value)
        for value in cert.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        ).value.get_values_for_type(x509.DNSName)
    }
    present |= {
        str(value)
        for value in cert.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        ).value.get_values_for_type(x509.IPAddress)
    }
    wanted = {str(ipaddress.ip_address(n)) if _is_ip(n) else n for n in names}
    return wanted <= present


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class ServerCertificate:
    """The server certificate of a running devprov, remade to carry new names.

    A built-in hub linked while devprov runs is reached by its own host name, so the listeners'
    certificate must name it: when devprov made the certificate (`tls_dir` set), it remakes it
    and loads it into the live context, which new connections then use. A certificate the user
    brought is theirs: a name it lacks is logged, once."""

    def __init__(self, tls_dir: Path | None, sealer: Sealer | None = None) -> None:
        self.tls_dir = tls_dir
        self.sealer = sealer
        self._covered: set[str] = set()

    def cover(self, context: ssl.SSLContext, names: list[str]) -> None:
        wanted = set(names)
        if wanted <= self._covered:
            return
        if self.tls_dir is None:
            log.warning(
                "the TLS certificate given to devprov may not name %s; devices dialling"
                " those names need it to",
                ", ".join(sorted(wanted - self._covered)),
            )
        else:
            with locked(self.tls_dir):  # no other worker rewrites the pair while it is read
                files = _ensure_certificates(self.tls_dir, names, self.sealer)
                load_chain(context, files.cert, files.key, self.sealer)
        self._covered = wanted
