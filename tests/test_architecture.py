"""The import contracts in pyproject.toml hold, and an import they forbid makes them fail."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(source_root: Path) -> subprocess.CompletedProcess[str]:
    """Run the contracts against the package found under `source_root`."""
    environment = {**os.environ, "PYTHONPATH": str(source_root)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_contracts_hold() -> None:
    result = lint_imports(ROOT / "src")
    assert result.returncode == 0, result.stdout
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "forbidden", "contract"),
    [
        ("domain/models.py", "devprov.store.database", "reach storage only through their ports"),
        ("admin.py", "devprov.server.http", "Layers"),
        ("domain/ids.py", "asyncio", "pure: no I/O"),
        ("registration/service.py", "devprov.hubs.factory", "through their interfaces"),
        ("store/database.py", "devprov.registration.ports", "The store is an adapter"),
    ],
)
def test_a_forbidden_import_breaks_a_contract(
    tmp_path: Path, module: str, forbidden: str, contract: str
) -> None:
    copy = tmp_path / "src" / "devprov"
    shutil.copytree(ROOT / "src" / "devprov", copy, ignore=shutil.ignore_patterns("__pycache__"))
    with open(copy / module, "a") as source:
        source.write(f"\nimport {forbidden}  # noqa\n")

    result = lint_imports(tmp_path / "src")

    assert result.returncode != 0
    broken = [line for line in result.stdout.splitlines() if line.endswith("BROKEN")]
    assert any(contract in line for line in broken), result.stdout
