"""Coverage-guided fuzzing in the suite: each target of tests/fuzz/targets.py under atheris.

`make test` runs every target at once for FUZZ_SECONDS of wall time (the set costs about ten
seconds); `make soak` (the tests marked soak) runs each alone for SOAK_FUZZ_SECONDS
(DEVPROV_FUZZ_SECONDS, default 120) and prints its executions.
Every finding so far is a regression test in tests/fuzz/test_findings.py.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fuzz.targets import TARGETS

FUZZ_SECONDS = 5
SOAK_FUZZ_SECONDS = int(os.environ.get("DEVPROV_FUZZ_SECONDS", "120"))
ROOT = Path(__file__).resolve().parents[2]


def start(target: str, seconds: int, artifacts: Path) -> subprocess.Popen[str]:
    pytest.importorskip("atheris")
    command = [sys.executable, "-m", "tests.fuzz.run", target, f"--seconds={seconds}"]
    return subprocess.Popen(
        [*command, "--artifacts", str(artifacts)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def executions(target: str, run: subprocess.Popen[str], seconds: int) -> int:
    """How many inputs the run tried, or a failure that shows the finding."""
    try:
        _, stderr = run.communicate(timeout=seconds * 4 + 120)
    except subprocess.TimeoutExpired:
        run.kill()
        raise
    found = re.search(r"^Done (\d+) runs in", stderr, re.MULTILINE)
    assert run.returncode == 0 and found, f"{target} found something:\n{stderr[-6000:]}"
    return int(found.group(1))


@pytest.fixture(scope="module")
def short_runs(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, subprocess.Popen[str]]]:
    """Every target at once, so the set costs one budget of wall time, not one per target."""
    artifacts = tmp_path_factory.mktemp("fuzz")
    runs = {target: start(target, FUZZ_SECONDS, artifacts) for target in sorted(TARGETS)}
    yield runs
    for run in runs.values():
        if run.poll() is None:
            run.kill()
            run.wait()


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_fuzz_target_finds_nothing(
    target: str, short_runs: dict[str, subprocess.Popen[str]]
) -> None:
    assert executions(target, short_runs[target], FUZZ_SECONDS) > 100


@pytest.mark.soak
@pytest.mark.parametrize("target", sorted(TARGETS))
def test_fuzz_target_finds_nothing_for_minutes(target: str, tmp_path: Path) -> None:
    count = executions(target, start(target, SOAK_FUZZ_SECONDS, tmp_path), SOAK_FUZZ_SECONDS)
    print(f"\nfuzz {target}: {count} executions in {SOAK_FUZZ_SECONDS} s, no finding")
