"""TPM 2.0 server crypto: KDFa vectors, key parsing, the activation blob, a real software TPM."""

from __future__ import annotations

import hashlib
import hmac
import struct

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from devprov.attestation.tpm import (
    TpmError,
    TpmPublic,
    activation_blob,
    kdfa,
    parse_public,
    registration_id_for,
    same_key,
)
from tests.tpm_support import (
    EK_ATTRIBUTES,
    EK_POLICY,
    SRK_ATTRIBUTES,
    SRK_TEMPLATE_ATTRIBUTES,
    SoftTpm,
    SoftwareTpm,
    reference_kdfa,
    rsa_storage_public,
    split_tpm2b,
)

# Captured from swtpm 0.7.1 through the Node SDK (azure-iot-security-tpm 1.9.3 over tss.js):
# `getEndorsementKey` / `getStorageRootKey` bytes, and the registration id `getRegistrationId`
# derived from that EK. The names are what `tpm2_readpublic -n` printed for the same objects.
REAL_EK = bytes.fromhex(
    "013a0001000b000300b20020837197674484b3f81a90cc8d46a5d724fd52d76e06520b64f2a1da1b331469aa"
    "00060080004300100800000000000100aa758b98fa9c241c3b204ebca87be974b259d58bc29e96fc53bcca92"
    "1225fcf5eca6068fd690cb247d2175132267a1a84706a1821ba12511dd318c8001cd868e7dae37c79e5550cb"
    "ad89ad2ea803152a834401d890ea96cf579bfec2ec9c881edabfd3852eb380dab755cf3cd669d982e87e1627"
    "1e9c6eca14d535f5717d7827b8ea6cd982f7c960227349e9ddaa0bbf9a6cef3cd53ceafcd33251581203dbb7"
    "dbf9673941749e9f57c9ae94b35e5a57b06c65e6c5e6c18f28976b662e34b28b9770e259445f9a06c242f66c"
    "65d20241844743e33c1bd5c997949e293e5f85fccb08133aa88d724e4e73310afc831d279a696209267e2036"
    "61a6316c2f687f4b"
)
REAL_EK_NAME = bytes.fromhex("000b968f956d864a82c9061683f54424ad953818f3dbe5407d6262ea5040faf8b4c8")
REAL_EK_REGISTRATION_ID = "45wsqnxeopj7wo7y52o2cxe4plg7mjd2cl25xgmz6om3wupb3k3q"
REAL_SRK = bytes.fromhex(
    "011a0001000b00030472000000060080004300100800000000000100a752723f99699b88656f3cd9292b820d"
    "fbe72964283ea900e2e61939d7503ef7df22d35ab1d1196bfdcf89b1a1280255a35ac79d0b72d621a88a6cc8"
    "2242866447098bdf7ec98c99c5f092d943729e26c0e04d2e3ae1920d668d795447175b203416d842d08b8652"
    "997254b25fa31b6c9ebd3bb4358ae56c9324f85d76c8070fba33113f13d178c0c7a8c69f02d26c92d84374a4"
    "ecdbee333a8d4f400c2af22c945316d9e19faf938b5d10810b43a3a7a5df978fa90bbfaa2256a202d53a6d91"
    "5773929149b89743a3d9fdfe8d132e924f088bd9a95842de935f8745bf178f004b526b77d50e1770ee502a1d"
    "baede54efb6b72c78b78a7400e4b9401b48db6af"
)
REAL_SRK_NAME = bytes.fromhex(
    "000bf21188e28cd1a9a1fc762e21e314f95307330a659ac42d4dc33a18a1084cb9ae"
)
# swtpm's ECC EK (0x81010016: P-384, nameAlg SHA-384), which DPS does not support.
REAL_ECC_EK = bytes.fromhex(
    "00aa0023000c000300f20030b26e7d28d11a50bc53d882bcf5fd3a1a074148bb35d3b4e4cb1c0ad9bde419ca"
    "cb47ba09699646150f9fc000f3f80e120006010000430010000400100030058f99c4695258c75b8dbd8e7266"
    "5ae5bb82cb35dc2d30e7bda664ee49f50b2731f0ab5f419b1199be05335a85efc61d003017dc5aa6dfa6a23e"
    "3d78d9290757e8b565ae1a957a8ca7904c391dd21dcc55951cf2cf323c63cb6127cd12a0c8160f29"
)

# --- KDFa ------------------------------------------------------------------------------------

# The TCG reference implementation's KDFa self-test (libtpms src/tpm2/KdfTestData.h):
# 20-byte key, label "KDFSELFTESTLABEL", 8-byte contexts, 160 output bits, per hash.
KDF_KEY = bytes.fromhex("271fa08bbdc5060ec3dfa928ff9b73123a12da0c")
KDF_CONTEXT_U = bytes.fromhex("ce244f395dca7391")
KDF_CONTEXT_V = bytes.fromhex("da504031ddf12e83")


@pytest.mark.parametrize(
    ("hash_alg", "expected"),
    [
        (0x0004, "55b5a7184aa07423c47dae766c26a2377d7cf851"),
        (0x000B, "bb0259e1c8ba607e6a2cd704b69a902e9ade84c4"),
        (0x000C, "1dce70c9113eb2dba47bd9cfc72bf46f45b09312"),
        (0x000D, "8be2c1b85b78569b9fa759f5857c56d684810fd3"),
    ],
)
def test_kdfa_matches_the_tcg_reference_self_test_vectors(hash_alg: int, expected: str) -> None:
    derived = kdfa(hash_alg, KDF_KEY, "KDFSELFTESTLABEL", KDF_CONTEXT_U, KDF_CONTEXT_V, 160)
    assert derived.hex() == expected
    # A label that already carries its NUL is not given a second one.
    assert kdfa(hash_alg, KDF_KEY, "KDFSELFTESTLABEL\0", KDF_CONTEXT_U, KDF_CONTEXT_V, 160) == (
        derived
    )


@pytest.mark.parametrize("bits", [1, 7, 128, 256, 257, 520, 1000])
def test_kdfa_agrees_with_a_plain_implementation_across_block_and_bit_boundaries(
    bits: int,
) -> None:
    key, u, v = b"seed" * 8, b"\x00\x0b" + bytes(range(32)), b"other"
    assert kdfa(0x000B, key, "STORAGE", u, v, bits) == reference_kdfa(
        "sha256", key, b"STORAGE", u, v, bits
    )


def test_kdfa_rejects_unknown_hashes_and_empty_outputs() -> None:
    with pytest.raises(TpmError, match="0x0012"):
        kdfa(0x0012, b"k", "L", b"", b"", 128)
    with pytest.raises(ValueError):
        kdfa(0x000B, b"k", "L", b"", b"", 0)


# --- parsing, names, registration ids --------------------------------------------------------


def test_parse_public_reads_the_real_ek() -> None:
    ek = parse_public(REAL_EK)
    assert ek.area == REAL_EK[2:]
    assert (ek.name_alg, ek.attributes, ek.symmetric_bits) == (0x000B, EK_ATTRIBUTES, 128)
    assert EK_POLICY in ek.area
    assert ek.public_key.key_size == 2048
    assert ek.public_key.public_numbers().e == 65537  # marshalled as 0: the default exponent
    assert ek.name == REAL_EK_NAME


def test_parse_public_reads_the_real_srk() -> None:
    srk = parse_public(REAL_SRK)
    assert (srk.name_alg, srk.attributes, srk.symmetric_bits) == (0x000B, SRK_ATTRIBUTES, 128)
    assert srk.public_key.key_size == 2048
    assert srk.name == REAL_SRK_NAME


def test_parse_public_rejects_other_key_types_and_malformed_bytes() -> None:
    with pytest.raises(TpmError, match=r"only RSA keys are supported.*ECC"):
        parse_public(REAL_ECC_EK)
    with pytest.raises(TpmError, match="truncated"):
        parse_public(REAL_EK[:-1])
    with pytest.raises(TpmError, match="extra bytes"):
        parse_public(REAL_EK + b"\x00")
    with pytest.raises(TpmError, match="truncated"):
        parse_public(b"\x00")
    area = REAL_SRK[2:]
    inner_junk = area + b"\x00"
    with pytest.raises(TpmError, match="TPMT_PUBLIC has 1 unexpected extra bytes"):
        parse_public(struct.pack(">H", len(inner_junk)) + inner_junk)
    template = area[:-258] + b"\x00\x00"  # unique left empty, as in a CreatePrimary template
    with pytest.raises(TpmError, match="empty"):
        parse_public(struct.pack(">H", len(template)) + template)
    odd_name_alg = area[:2] + b"\x00\x12" + area[4:]
    with pytest.raises(TpmError, match="hash algorithm 0x0012"):
        parse_public(struct.pack(">H", len(odd_name_alg)) + odd_name_alg)
    xor_symmetric = area[:10] + b"\x00\x0a" + area[12:]
    with pytest.raises(TpmError, match="only AES-CFB"):
        parse_public(struct.pack(">H", len(xor_symmetric)) + xor_symmetric)


def test_registration_id_matches_what_the_node_sdk_derived_from_the_same_ek() -> None:
    assert registration_id_for(REAL_EK) == REAL_EK_REGISTRATION_ID


def test_same_key_compares_key_material_not_encoding() -> None:
    assert same_key(REAL_EK, REAL_EK)
    assert not same_key(REAL_EK, REAL_SRK)
    # The same modulus with an explicit 65537 exponent, other attributes and no policy is the
    # same key, though every incidental byte differs.
    modulus = parse_public(REAL_EK).public_key.public_numbers().n
    area = (
        struct.pack(">HHIH", 0x0001, 0x000B, SRK_ATTRIBUTES, 0)
        + struct.pack(">HHHHHI", 0x0006, 128, 0x0043, 0x0010, 2048, 65537)
        + struct.pack(">H", 256)
        + modulus.to_bytes(256, "big")
    )
    assert same_key(REAL_EK, struct.pack(">H", len(area)) + area)
    with pytest.raises(TpmError):
        same_key(REAL_EK, REAL_ECC_EK)


# --- the activation blob ---------------------------------------------------------------------


def test_blob_has_the_documented_layout_for_rsa_2048_keys() -> None:
    key = bytes(range(32))
    blob = activation_blob(parse_public(REAL_EK), parse_public(REAL_SRK), key)
    fields = split_tpm2b(blob)
    # dps-device-protocol.md §4: as a real DPS blob, except the empty trailing TPM2B_DATA.
    assert [len(field) for field in fields] == [54, 258, 144, 258, 50, 2]
    id_object, _, _, _, public, data = fields
    assert id_object[2:4] == b"\x00\x20"  # integrityHMAC is a SHA-256 digest
    assert data == b"\x00\x00"
    area = public[2:]
    assert area[:8] == bytes.fromhex(
        "0008000b00040440"
    )  # KEYEDHASH, SHA-256, sign|noDA|userWithAuth
    assert area[8:16] == bytes.fromhex("00000005000b0020")  # no policy, HMAC-SHA256, 32-byte unique
    # Fresh randomness every time.
    assert activation_blob(parse_public(REAL_EK), parse_public(REAL_SRK), key) != blob


def test_blob_rejects_unusable_keys_and_key_sizes() -> None:
    ek, srk = parse_public(REAL_EK), parse_public(REAL_SRK)
    for bad_key in (b"", bytes(65)):
        with pytest.raises(ValueError, match="1 to 64 bytes"):
            activation_blob(ek, srk, bad_key)
    signing = parse_public(
        rsa_storage_public(rsa.generate_private_key(65537, 2048).public_key(), 0x00040072)
    )
    with pytest.raises(TpmError, match="storage root key is not a restricted decryption key"):
        activation_blob(ek, signing, bytes(32))


def test_blob_unwraps_in_software_to_the_key_and_only_for_the_srk_name() -> None:
    soft = SoftTpm(rsa.generate_private_key(65537, 2048), rsa.generate_private_key(65537, 2048))
    ek = parse_public(rsa_storage_public(soft.ek.public_key(), EK_ATTRIBUTES))
    srk = parse_public(rsa_storage_public(soft.srk.public_key()))
    blob = activation_blob(ek, srk, b"\x42" * 64)
    credential, key = soft.activate(blob, srk.name)
    assert len(credential) == 16
    assert key == b"\x42" * 64
    # The credential is bound to the SRK's Name: activating it for another object (here the EK
    # itself) fails the outer integrity check, as TPM2_ActivateCredential would.
    with pytest.raises(AssertionError, match="outer integrity"):
        soft.activate(blob, ek.name)


def test_a_real_tpm_activates_the_blob_and_hmacs_with_the_key(software_tpm: SoftwareTpm) -> None:
    tpm, work = software_tpm, software_tpm.workdir
    # The standard RSA EK (TCG EK profile template), and an SRK from the template the Node SDK
    # (azure-iot-security-tpm) uses: RSA-2048, SHA-256, AES-128-CFB, restricted decryption key.
    tpm.run("tpm2_createek", "-c", "ek.ctx", "-G", "rsa", "-u", "ek.pub")
    tpm.flush_transient()
    tpm.run("tpm2_readpublic", "-c", "ek.ctx", "-n", "ek.name")
    tpm.flush_transient()
    tpm.run(
        "tpm2_createprimary", "-C", "o", "-g", "sha256", "-G", "rsa2048:aes128cfb",
        "-a", SRK_TEMPLATE_ATTRIBUTES, "-c", "srk.ctx",
    )  # fmt: skip
    tpm.flush_transient()
    tpm.run("tpm2_readpublic", "-c", "srk.ctx", "-o", "srk.pub", "-n", "srk.name")
    tpm.flush_transient()
    ek_bytes, srk_bytes = (work / "ek.pub").read_bytes(), (work / "srk.pub").read_bytes()
    ek, srk = parse_public(ek_bytes), parse_public(srk_bytes)
    assert (ek.attributes, srk.attributes) == (EK_ATTRIBUTES, SRK_ATTRIBUTES)
    assert ek.name == (work / "ek.name").read_bytes()
    assert srk.name == (work / "srk.name").read_bytes()
    assert len(registration_id_for(ek_bytes)) == 52

    data = b"0ne00000000%2Fregistrations%2Fdevice-1\n1900000000"
    (work / "data.txt").write_bytes(data)
    for key in (bytes(range(1, 33)), bytes(range(100, 164))):  # DPS's 32 bytes; the 64 maximum
        _activate_import_and_hmac(tpm, ek, srk, key)
        signature = (work / "hmac.out").read_bytes()
        assert signature == hmac.new(key, data, hashlib.sha256).digest()


def _activate_import_and_hmac(tpm: SoftwareTpm, ek: TpmPublic, srk: TpmPublic, key: bytes) -> None:
    """What a device does with the blob (dps-device-protocol.md §4), step by step in tpm2-tools."""
    work = tpm.workdir
    id_object, identity_secret, private, duplicate_secret, public, _ = split_tpm2b(
        activation_blob(ek, srk, key)
    )
    # tpm2-tools' credential file: magic, version 1, TPM2B_ID_OBJECT, TPM2B_ENCRYPTED_SECRET.
    (work / "cred.in").write_bytes(struct.pack(">II", 0xBADCC0DE, 1) + id_object + identity_secret)
    (work / "dup.priv").write_bytes(private)
    (work / "dup.seed").write_bytes(duplicate_secret)
    (work / "dup.pub").write_bytes(public)
    for stale in ("cred.out", "imported.priv", "idkey.ctx", "hmac.out", "session.ctx"):
        (work / stale).unlink(missing_ok=True)

    # ActivateCredential(activateHandle=SRK, keyHandle=EK); the EK's policy is
    # PolicySecret(endorsement).
    tpm.run("tpm2_startauthsession", "--policy-session", "-S", "session.ctx")
    tpm.run("tpm2_policysecret", "-S", "session.ctx", "-c", "e")
    tpm.run(
        "tpm2_activatecredential", "-c", "srk.ctx", "-C", "ek.ctx",
        "-i", "cred.in", "-o", "cred.out", "-P", "session:session.ctx",
    )  # fmt: skip
    tpm.run("tpm2_flushcontext", "session.ctx")
    tpm.flush_transient()
    assert len((work / "cred.out").read_bytes()) == 16
    # Import under the SRK with the credential as the AES-128-CFB inner wrapper key, then load.
    tpm.run(
        "tpm2_import", "-C", "srk.ctx", "-u", "dup.pub", "-i", "dup.priv",
        "-s", "dup.seed", "-k", "cred.out", "-r", "imported.priv",
    )  # fmt: skip
    tpm.flush_transient()
    tpm.run("tpm2_load", "-C", "srk.ctx", "-u", "dup.pub", "-r", "imported.priv", "-c", "idkey.ctx")
    tpm.flush_transient()
    tpm.run("tpm2_hmac", "-c", "idkey.ctx", "-g", "sha256", "-o", "hmac.out", "data.txt")
    tpm.flush_transient()
