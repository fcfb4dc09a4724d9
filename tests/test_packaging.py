"""`make run` installs pyproject's dependencies only: everything devprov imports must be there,
and nothing of the test extra."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _name(requirement: str) -> str:
    return re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_what_devprov_imports_is_in_its_dependencies_not_the_test_extra() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    serving = {_name(requirement) for requirement in project["dependencies"]}
    testing = {_name(requirement) for requirement in project["optional-dependencies"]["test"]}
    assert not serving & testing
    imported = set()
    for source in (ROOT / "src" / "devprov").rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - {"devprov", "__future__"}
    distributions = packages_distributions()
    needed = {
        _name(distribution) for module in third_party for distribution in distributions[module]
    }
    assert needed <= serving, needed - serving


def test_make_run_installs_no_test_extra() -> None:
    makefile = (ROOT / "Makefile").read_text()
    run_stamp = makefile.split("$(RUN_STAMP): pyproject.toml", 1)[1].split("\n\n", 1)[0]
    assert "pip install --quiet -e ." in run_stamp and "[test]" not in run_stamp
    assert re.search(r"^run: \$\(RUN_STAMP\)$", makefile, re.MULTILINE)
    assert re.search(r"^test: \$\(STAMP\)", makefile, re.MULTILINE)
