"""Coverage-guided fuzzing in the suite: each target of tests/fuzz/targets.py under atheris.

`make test` gives each target FUZZ_SECONDS (3 s: the set stays well under a minute); `make soak`
(DEVPROV_SOAK=1, the tests marked soak) gives each SOAK_FUZZ_SECONDS and prints the executions.
Every finding so far is a regression test in tests/fuzz/test_findings.py.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fuzz.targets import TARGETS

FUZZ_SECONDS = 3
SOAK_FUZZ_SECONDS = int(os.environ.get("DEVPROV_FUZZ_SECONDS", "120"))
ROOT = Path(__file__).resolve().parents[2]


def fuzz(target: str, seconds: int, artifacts: Path) -> int:
    """Run one target for `seconds`; the number of executions, or a failure with the finding."""
    pytest.importorskip("atheris")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.fuzz.run",
            target,
            f"--seconds={seconds}",
            f"--artifacts={artifacts}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=seconds * 4 + 60,
        check=False,
    )
    found = re.search(r"^Done (\d+) runs in", done.stderr, re.MULTILINE)
    assert done.returncode == 0 and found, f"{target} found something:\n{done.stderr[-6000:]}"
    return int(found.group(1))


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_fuzz_target_finds_nothing(target: str, tmp_path: Path) -> None:
    executions = fuzz(target, FUZZ_SECONDS, tmp_path)
    assert executions > 100, executions


@pytest.mark.soak
@pytest.mark.parametrize("target", sorted(TARGETS))
def test_fuzz_target_finds_nothing_for_minutes(target: str, tmp_path: Path) -> None:
    executions = fuzz(target, SOAK_FUZZ_SECONDS, tmp_path)
    print(f"\nfuzz {target}: {executions} executions in {SOAK_FUZZ_SECONDS} s, no finding")
