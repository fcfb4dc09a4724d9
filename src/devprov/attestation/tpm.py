"""Server-side TPM 2.0 crypto for DPS TPM attestation: parsing keys, MakeCredential, duplication.

One module on purpose (about 350 lines): unmarshalling, KDFa, MakeCredential and the duplicated
key are one construction from TPM 2.0 Part 1, whose steps reuse each other's pieces.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

try:
    from cryptography.hazmat.decrepit.ciphers import modes
except ImportError:  # cryptography < 47 has CFB only among the (later deprecated) primitives
    from cryptography.hazmat.primitives.ciphers import modes  # type: ignore[no-redef]

# TPM_ALG_ID values (TPM 2.0 Part 2, table "TPM_ALG_ID Constants").
ALG_RSA = 0x0001
ALG_SHA1 = 0x0004
ALG_HMAC = 0x0005
ALG_AES = 0x0006
ALG_KEYEDHASH = 0x0008
ALG_SHA256 = 0x000B
ALG_SHA384 = 0x000C
ALG_SHA512 = 0x000D
ALG_NULL = 0x0010
ALG_ECDAA = 0x001A
ALG_ECC = 0x0023
ALG_SYMCIPHER = 0x0025
ALG_CFB = 0x0043

# TPMA_OBJECT bits (TPM 2.0 Part 2, "TPMA_OBJECT").
ATTR_FIXED_TPM = 0x00000002
ATTR_FIXED_PARENT = 0x00000010
ATTR_USER_WITH_AUTH = 0x00000040
ATTR_NO_DA = 0x00000400
ATTR_RESTRICTED = 0x00010000
ATTR_DECRYPT = 0x00020000
ATTR_SIGN = 0x00040000

# The ID key DPS issues: sign | noDA | userWithAuth (0x00040440). fixedTPM and fixedParent must
# stay clear, or the TPM refuses to import a duplicate of it (Part 1 §23.3).
ID_KEY_ATTRIBUTES = ATTR_SIGN | ATTR_NO_DA | ATTR_USER_WITH_AUTH

# Both SDKs import the duplicate with an AES-128-CFB inner wrapper whose key is the activated
# credential: C hard-codes AES-128, Node uses len(credential) * 8, so 16 bytes suits both.
CREDENTIAL_BYTES = 16

_HASHES: dict[int, tuple[str, type[hashes.HashAlgorithm]]] = {
    ALG_SHA1: ("sha1", hashes.SHA1),
    ALG_SHA256: ("sha256", hashes.SHA256),
    ALG_SHA384: ("sha384", hashes.SHA384),
    ALG_SHA512: ("sha512", hashes.SHA512),
}
_TYPE_NAMES = {
    ALG_RSA: "RSA",
    ALG_KEYEDHASH: "KEYEDHASH",
    ALG_ECC: "ECC",
    ALG_SYMCIPHER: "SYMCIPHER",
}
_DEFAULT_RSA_EXPONENT = 65537


class TpmError(ValueError):
    """A TPM structure is malformed or of a kind this module does not handle."""


@dataclass(frozen=True)
class TpmPublic:
    """A parsed TPM2B_PUBLIC of an RSA key."""

    area: bytes  # the marshalled TPMT_PUBLIC, without the TPM2B size prefix
    name_alg: int
    attributes: int
    symmetric_bits: int  # AES-CFB key size of a storage key; 0 if the key has no symmetric part
    public_key: rsa.RSAPublicKey

    @property
    def name(self) -> bytes:
        """The TPM Name: nameAlg (u16) || H_nameAlg(TPMT_PUBLIC) (Part 1 §16, "Names")."""
        return struct.pack(">H", self.name_alg) + _digest(self.name_alg, self.area)


class _Reader:
    """Big-endian TPM unmarshalling with bounds checks that raise TpmError."""

    def __init__(self, data: bytes, what: str) -> None:
        self._data = data
        self._pos = 0
        self._what = what

    def take(self, count: int) -> bytes:
        if self._pos + count > len(self._data):
            raise TpmError(f"{self._what} is truncated")
        chunk = self._data[self._pos : self._pos + count]
        self._pos += count
        return chunk

    def u16(self) -> int:
        value: int = struct.unpack(">H", self.take(2))[0]
        return value

    def u32(self) -> int:
        value: int = struct.unpack(">I", self.take(4))[0]
        return value

    def tpm2b(self) -> bytes:
        return self.take(self.u16())

    def finish(self) -> None:
        if self._pos != len(self._data):
            raise TpmError(f"{self._what} has {len(self._data) - self._pos} unexpected extra bytes")


def _hash_name(alg: int) -> str:
    try:
        return _HASHES[alg][0]
    except KeyError:
        raise TpmError(f"unsupported hash algorithm 0x{alg:04x}") from None


def _digest(alg: int, data: bytes) -> bytes:
    return hashlib.new(_hash_name(alg), data).digest()


def _digest_size(alg: int) -> int:
    return hashlib.new(_hash_name(alg)).digest_size


def _tpm2b(data: bytes) -> bytes:
    if len(data) > 0xFFFF:
        raise TpmError("a TPM2B buffer holds at most 65535 bytes")
    return struct.pack(">H", len(data)) + data


def parse_public(tpm2b_public: bytes) -> TpmPublic:
    """Parse a marshalled TPM2B_PUBLIC holding an RSA key (as DPS receives EK and SRK)."""
    outer = _Reader(tpm2b_public, "TPM2B_PUBLIC")
    area = outer.tpm2b()
    outer.finish()
    reader = _Reader(area, "TPMT_PUBLIC")
    key_type = reader.u16()
    if key_type != ALG_RSA:
        kind = _TYPE_NAMES.get(key_type, "unknown")
        raise TpmError(f"only RSA keys are supported, not type 0x{key_type:04x} ({kind})")
    name_alg = reader.u16()
    _hash_name(name_alg)  # the Name must be computable, so reject unknown nameAlgs now
    attributes = reader.u32()
    reader.tpm2b()  # authPolicy: irrelevant to the server, but part of `area` and so of the Name
    symmetric_bits = 0
    symmetric_alg = reader.u16()
    if symmetric_alg != ALG_NULL:
        symmetric_bits = reader.u16()
        mode = reader.u16()
        # The protections below encrypt with the key's own symmetric definition, which for an
        # EK/SRK is a CFB-mode block cipher; the SDKs' templates use AES-128-CFB.
        if symmetric_alg != ALG_AES or mode != ALG_CFB:
            raise TpmError(
                f"unsupported symmetric definition 0x{symmetric_alg:04x}/0x{mode:04x};"
                " only AES-CFB is supported"
            )
        if symmetric_bits not in (128, 192, 256):
            raise TpmError(f"invalid AES key size {symmetric_bits}")
    scheme = reader.u16()
    if scheme != ALG_NULL:
        reader.u16()  # the scheme's hashAlg
        if scheme == ALG_ECDAA:
            reader.u16()  # ECDAA details also carry a commit count
    key_bits = reader.u16()
    exponent = reader.u32() or _DEFAULT_RSA_EXPONENT  # 0 means the default, 2^16 + 1
    modulus = reader.tpm2b()
    reader.finish()
    if not modulus:
        raise TpmError("the RSA public key is empty (a template, not a key)")
    if len(modulus) * 8 != key_bits:
        raise TpmError(f"keyBits is {key_bits} but the modulus has {len(modulus) * 8} bits")
    try:
        public_key = rsa.RSAPublicNumbers(exponent, int.from_bytes(modulus, "big")).public_key()
    except ValueError as exc:
        raise TpmError(f"invalid RSA public key: {exc}") from None
    return TpmPublic(
        area=area,
        name_alg=name_alg,
        attributes=attributes,
        symmetric_bits=symmetric_bits,
        public_key=public_key,
    )


def registration_id_for(endorsement_key: bytes) -> str:
    """The Node SDK's default registration id: lower(base32(SHA256(EK TPM2B_PUBLIC))), no '='."""
    digest = hashlib.sha256(endorsement_key).digest()
    return base64.b32encode(digest).decode().lower().rstrip("=")


def same_key(a: bytes, b: bytes) -> bool:
    """Whether two TPM2B_PUBLIC EKs hold the same RSA key, whatever their other fields say."""
    # The key material identifies the TPM; attributes, policy or a 0 vs 65537 exponent encoding
    # may differ between the bytes an enrollment stored and the bytes a device sends.
    first, second = parse_public(a).public_key, parse_public(b).public_key
    return first.public_numbers() == second.public_numbers()


def kdfa(
    hash_alg: int, key: bytes, label: str, context_u: bytes, context_v: bytes, bits: int
) -> bytes:
    """KDFa of TPM 2.0 Part 1 §11.4.10.2: SP 800-108 counter-mode KDF with HMAC."""
    if bits <= 0:
        raise ValueError("bits must be positive")
    # The label is used with its terminating NUL; add one unless the caller already did.
    label_bytes = label.encode("ascii")
    if not label_bytes.endswith(b"\x00"):
        label_bytes += b"\x00"
    digest_name = _hash_name(hash_alg)
    tail = label_bytes + context_u + context_v + struct.pack(">I", bits)
    needed = (bits + 7) // 8
    stream = b""
    counter = 0
    while len(stream) < needed:
        counter += 1
        stream += hmac.new(key, struct.pack(">I", counter) + tail, digest_name).digest()
    out = bytearray(stream[:needed])
    if bits % 8:
        # Like the reference implementation, keep the requested number of low-order bits.
        out[0] &= (1 << (bits % 8)) - 1
    return bytes(out)


def _aes_cfb_encrypt(key: bytes, data: bytes) -> bytes:
    # Wrapping uses CFB with a zero IV: every key comes from a fresh seed or credential and
    # encrypts one message only (Part 1 §23.3 and §24).
    encryptor = Cipher(algorithms.AES(key), modes.CFB(bytes(16))).encryptor()
    return encryptor.update(data) + encryptor.finalize()


def _oaep_encrypt(target: TpmPublic, seed: bytes, label: bytes) -> bytes:
    # RSA secret sharing: OAEP with the target's nameAlg for both hash and MGF1, and a label naming
    # the seed's purpose, NUL included (Part 1 Annex B, "Secret sharing").
    hash_algorithm = _HASHES[target.name_alg][1]()
    return target.public_key.encrypt(
        seed,
        padding.OAEP(mgf=padding.MGF1(hash_algorithm), algorithm=hash_algorithm, label=label),
    )


def _check_storage_key(key: TpmPublic, role: str) -> None:
    # The seed protection below needs a restricted decryption key with a symmetric definition,
    # which is what an EK or a storage root key is (Part 1 §24 and §23.3).
    needed = ATTR_RESTRICTED | ATTR_DECRYPT
    if key.attributes & needed != needed or key.symmetric_bits == 0:
        raise TpmError(f"the {role} is not a restricted decryption key with AES-CFB parameters")


def _outer_wrap(
    protector: TpmPublic, label: bytes, plaintext: bytes, name: bytes
) -> tuple[bytes, bytes]:
    """Encrypt and HMAC `plaintext` under a fresh seed shared with `protector`.

    This is the "outer wrapper" common to MakeCredential (Part 1 §24, label IDENTITY) and
    duplication (Part 1 §23.3, label DUPLICATE). Returns (integrityHMAC || ciphertext as
    marshalled after the TPM2B size, encrypted seed).
    """
    name_alg = protector.name_alg
    seed = secrets.token_bytes(_digest_size(name_alg))
    encrypted_seed = _oaep_encrypt(protector, seed, label)
    # The symmetric key is bound to the Name of the protected object, so the TPM can only
    # decrypt it while it holds that very object (Part 1 §24 and §23.3).
    sym_key = kdfa(name_alg, seed, "STORAGE", name, b"", protector.symmetric_bits)
    ciphertext = _aes_cfb_encrypt(sym_key, plaintext)
    hmac_key = kdfa(name_alg, seed, "INTEGRITY", b"", b"", _digest_size(name_alg) * 8)
    integrity = hmac.new(hmac_key, ciphertext + name, _hash_name(name_alg)).digest()
    return _tpm2b(integrity) + ciphertext, encrypted_seed


def _make_credential(ek: TpmPublic, credential: bytes, object_name: bytes) -> tuple[bytes, bytes]:
    """TPM2_MakeCredential done in software (Part 1 §24): (TPM2B_ID_OBJECT, encrypted seed)."""
    if len(credential) > _digest_size(ek.name_alg):
        raise TpmError("the credential is larger than a digest of the EK's nameAlg")
    # encIdentity is the credential marshalled as a TPM2B_DIGEST (Part 1 §24).
    id_object, encrypted_seed = _outer_wrap(ek, b"IDENTITY\x00", _tpm2b(credential), object_name)
    return _tpm2b(id_object), encrypted_seed


def _hmac_key_public(seed_value: bytes, key: bytes) -> bytes:
    """The TPMT_PUBLIC of a KEYEDHASH HMAC-SHA256 signing key with the given sensitive parts."""
    # For a keyed-hash object, unique = H_nameAlg(seedValue || key), as TPM2_Create sets it: the
    # public area commits to the key without revealing it. The TPM checks this on import
    # (TPM_RC_BINDING otherwise, seen with swtpm).
    unique = hashlib.sha256(seed_value + key).digest()
    return (
        struct.pack(">HHI", ALG_KEYEDHASH, ALG_SHA256, ID_KEY_ATTRIBUTES)
        + _tpm2b(b"")  # authPolicy: none
        + struct.pack(">HH", ALG_HMAC, ALG_SHA256)  # TPMT_KEYEDHASH_SCHEME
        + _tpm2b(unique)
    )


def _hmac_key_sensitive(seed_value: bytes, key: bytes) -> bytes:
    """The TPM2B_SENSITIVE (TPMT_SENSITIVE with its size) matching `_hmac_key_public`."""
    sensitive = (
        struct.pack(">H", ALG_KEYEDHASH)
        + _tpm2b(b"")  # authValue: empty, so the device uses the key with a password session
        + _tpm2b(seed_value)
        + _tpm2b(key)
    )
    return _tpm2b(sensitive)


def _duplicate(
    parent: TpmPublic, public_area: bytes, sensitive: bytes, inner_key: bytes
) -> tuple[bytes, bytes]:
    """TPM2_Duplicate done in software (Part 1 §23.3): (TPM2B_PRIVATE, encrypted seed)."""
    name_alg = struct.unpack(">H", public_area[2:4])[0]
    name = struct.pack(">H", name_alg) + _digest(name_alg, public_area)
    # Inner wrapper (Part 1 §23.3): a digest over sensitive || Name using the object's own
    # nameAlg, then AES-128-CFB under the key the importer passes as encryptionKey. Here that is
    # the credential, so only a TPM that activated it (i.e. holds the EK) can import the key.
    inner_integrity = _digest(name_alg, sensitive + name)
    inner = _aes_cfb_encrypt(inner_key, _tpm2b(inner_integrity) + sensitive)
    duplicate, encrypted_seed = _outer_wrap(parent, b"DUPLICATE\x00", inner, name)
    return _tpm2b(duplicate), encrypted_seed


def activation_blob(ek: TpmPublic, srk: TpmPublic, hmac_key: bytes) -> bytes:
    """Build the DPS activation blob that lets only this TPM import `hmac_key` under its SRK.

    Layout (dps-device-protocol.md §4): TPM2B_ID_OBJECT, TPM2B_ENCRYPTED_SECRET (to the EK),
    TPM2B_PRIVATE, TPM2B_ENCRYPTED_SECRET (to the SRK), TPM2B_PUBLIC, TPM2B_DATA (empty).
    """
    _check_storage_key(ek, "endorsement key")
    _check_storage_key(srk, "storage root key")
    # A TPM refuses HMAC keys longer than the hash's block size, 64 bytes for SHA-256 (swtpm
    # answers TPM_RC_KEY_SIZE to TPM2_Import for 65).
    if not 1 <= len(hmac_key) <= 64:
        raise ValueError("the HMAC key must be 1 to 64 bytes long")
    credential = secrets.token_bytes(CREDENTIAL_BYTES)
    # The device calls ActivateCredential(activateHandle=SRK, keyHandle=EK), and the TPM binds
    # the credential to the Name of activateHandle, so the credential is made for name(SRK).
    id_object, identity_seed = _make_credential(ek, credential, srk.name)
    seed_value = secrets.token_bytes(_digest_size(ALG_SHA256))
    public_area = _hmac_key_public(seed_value, hmac_key)
    sensitive = _hmac_key_sensitive(seed_value, hmac_key)
    private, duplicate_seed = _duplicate(srk, public_area, sensitive, credential)
    return b"".join(
        (
            id_object,
            _tpm2b(identity_seed),
            private,
            _tpm2b(duplicate_seed),
            _tpm2b(public_area),
            _tpm2b(b""),  # encUriData: the SDKs read and ignore it
        )
    )
