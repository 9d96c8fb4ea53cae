"""The import contracts (`[tool.importlinter]` in pyproject.toml, checked by `lint-imports` in
`make lint`) name modules one by one; these tests keep those lists complete, so a new module of
the kernel or the worker is covered without anyone remembering to add it."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _contract(name_start: str) -> dict[str, Any]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contracts: list[dict[str, Any]] = config["tool"]["importlinter"]["contracts"]
    return next(c for c in contracts if c["name"].startswith(name_start))


def _modules(package: str, *, exclude: set[str]) -> set[str]:
    return {
        f"{package}.{path.stem}"
        for path in (ROOT / package).glob("*.py")
        if path.stem != "__init__" and path.stem not in exclude
    }


def test_every_kernel_module_is_held_by_the_kernel_contract() -> None:
    contract = _contract("The shared kernel")
    assert set(contract["source_modules"]) == _modules("bridge", exclude={"cli"})


def test_engines_may_import_no_module_of_the_worker() -> None:
    contract = _contract("Engines know only")
    forbidden = set(contract["forbidden_modules"])
    assert _modules("jobs", exclude=set()) <= forbidden
    assert "bridge" in forbidden
