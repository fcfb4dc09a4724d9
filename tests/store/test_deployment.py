"""One deployment, one identity: every data dir on a store takes the identity the store holds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography import x509
from typer.testing import CliRunner

from devprov.cli import app
from devprov.domain.sealing import is_sealed, new_key
from devprov.keyring import KEY_VARIABLE, encode_key, load_sealer
from devprov.settings import Settings
from devprov.store.connections import normalize_url
from devprov.store.deployment import DeploymentIdentity, claim
from devprov.store.tables import deployment
from devprov.wiring import prepare


@pytest.fixture(autouse=True)
def one_sealing_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every node of a deployment is given the same sealing key (as deploying.md says)."""
    monkeypatch.setenv(KEY_VARIABLE, encode_key(new_key()))


def test_the_first_claim_wins_and_later_ones_read_it(database_url: str, tmp_path: Path) -> None:
    first, _ = prepare(Settings(data_dir=tmp_path / "a", db=database_url))
    second, second_tls = prepare(Settings(data_dir=tmp_path / "b", db=database_url))
    assert second.id_scope == first.id_scope
    assert second.policies == first.policies
    assert (tmp_path / "b" / "tls" / "ca.pem").read_text() == (
        tmp_path / "a" / "tls" / "ca.pem"
    ).read_text()
    # The second node's server certificate is issued by the shared CA, not by the one it made.
    ca = x509.load_pem_x509_certificate((tmp_path / "a" / "tls" / "ca.pem").read_bytes())
    served = x509.load_pem_x509_certificates(second_tls.cert.read_bytes())[0]
    served.verify_directly_issued_by(ca)
    again = claim(
        database_url,
        DeploymentIdentity("0ne00000000", (), "not used", "not used"),
        load_sealer(tmp_path / "a"),
    )
    assert again.id_scope == first.id_scope


def test_devprov_info_shows_the_same_identity_on_every_node(
    database_url: str, tmp_path: Path
) -> None:
    runner = CliRunner()
    shown = []
    for name in ("a", "b"):
        data_dir = tmp_path / name
        assert (
            runner.invoke(
                app, ["init", "--data-dir", str(data_dir), "--db", database_url]
            ).exit_code
            == 0
        )
        result = runner.invoke(app, ["info", "--data-dir", str(data_dir), "--json"])
        assert result.exit_code == 0, result.output
        shown.append(json.loads(result.output))
    assert shown[0]["idScope"] == shown[1]["idScope"]
    assert shown[0]["serviceConnectionString"] == shown[1]["serviceConnectionString"]


def test_the_keys_in_the_store_are_sealed(database_url: str, tmp_path: Path) -> None:
    instance, _ = prepare(Settings(data_dir=tmp_path / "a", db=database_url))
    engine = sa.create_engine(normalize_url(database_url))
    with engine.connect() as connection:
        document = connection.execute(sa.select(deployment.c.document)).scalar_one()
    engine.dispose()
    assert is_sealed(document["caKey"])
    assert "PRIVATE KEY" not in document["caKey"]
    policy = document["policies"][0]
    assert is_sealed(policy["primaryKey"])
    assert instance.policies[0].primary_key not in json.dumps(document)
