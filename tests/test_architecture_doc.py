"""docs/architecture.md names, for each step of the flow, the Python function and the SQL
function with its migration file: these tests keep every name pointing at something that exists,
and every SQL function of the migrations named somewhere in it."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "architecture.md").read_text()
MIGRATIONS = sorted((ROOT / "supabase" / "migrations").glob("*.sql"))
FUNCTION = re.compile(r"create (?:or replace )?function ((?:public|private)\.\w+)")


def _defined() -> dict[str, str]:
    return {name: path.name for path in MIGRATIONS for name in FUNCTION.findall(path.read_text())}


def test_every_python_reference_exists() -> None:
    missing = []
    for path, dotted in set(re.findall(r"((?:bridge|jobs)/[\w/]+\.py):([\w.]+)", DOC)):
        source = ROOT / path
        if not source.is_file():
            missing.append(path)
            continue
        text = source.read_text()
        for name in dotted.split("."):
            if not re.search(rf"^\s*(?:async def|def|class) {name}\b|^{name}\b", text, re.M):
                missing.append(f"{path}:{dotted}")
    assert sorted(missing) == []


def test_every_sql_function_named_exists_and_every_one_is_named() -> None:
    defined = _defined()
    tables = set(
        re.findall(
            r"create table ((?:public|private)\.\w+)", "".join(p.read_text() for p in MIGRATIONS)
        )
    )
    named = set(re.findall(r"`((?:public|private)\.\w+)", DOC)) - tables
    assert sorted(named - defined.keys()) == [], "named in the doc but defined nowhere"
    assert sorted(defined.keys() - named) == [], "defined but not named in the doc"


def test_every_migration_file_named_exists() -> None:
    names = [p.name for p in MIGRATIONS]
    for suffix in set(re.findall(r"`\*(_\w+\.sql)`", DOC)):
        assert [n for n in names if n.endswith(suffix)], f"no migration file ends with {suffix}"
