"""The migration files themselves: each SQL function is created in exactly one of them, and each
is named `YYYYMMDDHHMMSS_<verb>_<object>.sql` (docs/migrations.md)."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

from bridge.migrations import SUPABASE_DIR

MIGRATIONS_DIR = SUPABASE_DIR / "migrations"

FILE_NAME = re.compile(r"^\d{14}_[a-z0-9_]+\.sql$")
CREATE_FUNCTION = re.compile(
    r"\bcreate\s+(?:or\s+replace\s+)?function\s+"
    r"(?P<schema>\"[^\"]+\"|[a-z_][a-z0-9_$]*)\s*\.\s*(?P<name>\"[^\"]+\"|[a-z_][a-z0-9_$]*)",
    re.IGNORECASE,
)
LINE_COMMENT = re.compile(r"--[^\n]*")


def function_definitions(migrations_dir: Path) -> dict[str, list[str]]:
    """schema.name of every function a `create [or replace] function` statement makes, with the
    files that make it (a file once per statement). Quoted identifiers keep their case."""
    found: dict[str, list[str]] = defaultdict(list)
    for path in sorted(migrations_dir.glob("*.sql")):
        sql = LINE_COMMENT.sub("", path.read_text())
        for match in CREATE_FUNCTION.finditer(sql):
            schema, name = (
                part.strip('"') if part.startswith('"') else part.lower()
                for part in match.group("schema", "name")
            )
            found[f"{schema}.{name}"].append(path.name)
    return dict(found)


def redefined(migrations_dir: Path) -> dict[str, list[str]]:
    return {
        fn: files for fn, files in function_definitions(migrations_dir).items() if len(files) > 1
    }


def test_every_function_is_created_in_exactly_one_migration() -> None:
    definitions = function_definitions(MIGRATIONS_DIR)
    assert "public.ingest_whatsapp_webhook" in definitions, "the parser finds the functions"
    assert redefined(MIGRATIONS_DIR) == {}, (
        "fold the later definition into the migration that creates the function "
        "(until the first release, see docs/migrations.md)"
    )


def test_the_check_sees_a_function_created_twice(tmp_path: Path) -> None:
    (tmp_path / "20260101000000_create_thing.sql").write_text(
        "create function private.thing() returns int language sql as $$ select 1 $$;\n"
        "-- create function private.only_mentioned() is a comment, not a definition\n"
    )
    (tmp_path / "20260101000100_speed_up_thing.sql").write_text(
        'CREATE  OR REPLACE\nFUNCTION "private".Thing() returns int language sql as $$ select 2 $$;\n'
    )
    assert redefined(tmp_path) == {
        "private.thing": ["20260101000000_create_thing.sql", "20260101000100_speed_up_thing.sql"]
    }


def test_migration_files_are_named_by_timestamp_and_what_they_create() -> None:
    names = sorted(p.name for p in MIGRATIONS_DIR.iterdir())
    assert names, "the project has migrations"
    assert [n for n in names if not FILE_NAME.match(n)] == []
    versions = [n.partition("_")[0] for n in names]
    assert len(set(versions)) == len(versions), "two migrations share a timestamp"
