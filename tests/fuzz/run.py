"""Run one fuzz target under atheris (coverage-guided, libFuzzer).

    python -m tests.fuzz.run TARGET [--seconds N] [--runs N] [--corpus DIR] [--artifacts DIR]

libFuzzer ends with `Done N runs in S second(s)` and exit status 0 when nothing was found; a
finding prints its traceback and input (written to the artifacts directory as crash-*) and
exits non-zero.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["devprov"]):
    from tests.fuzz.targets import SEEDS, TARGETS


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("target", choices=sorted(TARGETS))
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--runs", type=int, default=-1)
    parser.add_argument("--corpus", type=Path, default=None)
    parser.add_argument("--artifacts", type=Path, default=Path(tempfile.gettempdir()))
    options = parser.parse_args()
    target = TARGETS[options.target]
    corpus = options.corpus or Path(tempfile.mkdtemp(prefix=f"fuzz-{options.target}-"))
    corpus.mkdir(parents=True, exist_ok=True)
    for number, seed in enumerate(SEEDS[options.target]()):
        (corpus / f"seed-{number}").write_bytes(seed)
    atheris.Setup(
        [
            sys.argv[0],
            f"-max_total_time={options.seconds}",
            f"-runs={options.runs}",
            "-max_len=4096",
            "-timeout=20",
            "-rss_limit_mb=1024",
            f"-artifact_prefix={options.artifacts}/",
            str(corpus),
        ],
        target,
    )
    atheris.Fuzz()


if __name__ == "__main__":
    main()
