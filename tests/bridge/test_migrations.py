"""`bridge db apply`: bootstrap where needed, every migration once, in order, like the CLI."""

from __future__ import annotations

import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest

from bridge import migrations
from bridge.cli import main


async def test_apply_twice_on_an_empty_database_is_a_noop_the_second_time(
    empty_database_factory: Callable[[], Awaitable[str]],
) -> None:
    url = await empty_database_factory()
    expected = [m.version for m in migrations.list_migrations()]
    assert expected, "the project has migrations"

    first = await migrations.apply(url)
    assert first.bootstrapped
    assert first.applied == expected

    second = await migrations.apply(url)
    assert not second.bootstrapped
    assert second.applied == []

    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "select version, name, statements from supabase_migrations.schema_migrations"
            " order by version"
        )
    finally:
        await conn.close()
    assert [r["version"] for r in rows] == expected
    assert all(r["name"] and r["statements"] for r in rows)


async def test_seed_applies_twice_without_duplicating_demo_data(
    empty_database_factory: Callable[[], Awaitable[str]],
) -> None:
    url = await empty_database_factory()
    await migrations.apply(url, seed=True)
    conn = await asyncpg.connect(url)
    try:
        before = await conn.fetchval("select count(*) from public.workspaces")
        await migrations.apply(url, seed=True)
        after = await conn.fetchval("select count(*) from public.workspaces")
        channel = await conn.fetchval(
            "select provider from public.whatsapp_channels where phone_number_id = '1000000000000001'"
        )
    finally:
        await conn.close()
    assert before == after == 2  # the demo store and a second workspace, for isolation
    assert channel == "meta"


async def test_cli_applies_schema(
    empty_database_factory: Callable[[], Awaitable[str]],
    capsys: object,
) -> None:
    url = await empty_database_factory()
    # The CLI runs its own event loop: call it from a worker thread.
    import asyncio

    code = await asyncio.to_thread(main, ["db", "apply", "--database-url", url])
    assert code == 0
    conn = await asyncpg.connect(url)
    try:
        count = await conn.fetchval("select count(*) from supabase_migrations.schema_migrations")
    finally:
        await conn.close()
    assert count == len(migrations.list_migrations())


async def test_cli_refuses_a_database_built_from_other_files_with_the_reset_advice(
    empty_database_factory: Callable[[], Awaitable[str]], capfd: pytest.CaptureFixture[str]
) -> None:
    import asyncio

    url = await empty_database_factory()
    assert await asyncio.to_thread(main, ["db", "apply", "--database-url", url]) == 0
    first = migrations.list_migrations()[0]
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "update supabase_migrations.schema_migrations set statements = array['select 1']"
            " where version = $1",
            first.version,
        )
    finally:
        await conn.close()
    capfd.readouterr()
    assert await asyncio.to_thread(main, ["db", "apply", "--database-url", url]) == 1
    err = capfd.readouterr().err
    assert err.startswith("bridge db apply: ")
    assert first.version in err
    assert "supabase db reset" in err
    assert "Traceback" not in err


def _tree(root: Path, files: dict[str, str]) -> Path:
    """A supabase/ directory of its own: the project's bootstrap and the given migrations."""
    supabase_dir = root / "supabase"
    (supabase_dir / "migrations").mkdir(parents=True)
    shutil.copy(migrations.SUPABASE_DIR / "bootstrap.sql", supabase_dir / "bootstrap.sql")
    for name, sql in files.items():
        (supabase_dir / "migrations" / name).write_text(sql)
    return supabase_dir


async def _fetch(url: str, query: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch(query)
    finally:
        await conn.close()


async def test_a_database_built_from_other_migration_files_is_refused_not_migrated(
    empty_database_factory: Callable[[], Awaitable[str]], tmp_path: Path
) -> None:
    url = await empty_database_factory()
    supabase_dir = _tree(
        tmp_path,
        {
            "20260101000100_create_notes.sql": "create table public.notes (id int primary key);\n",
            "20260101000200_speed_up_notes.sql": "create index on public.notes (id);\n",
        },
    )
    await migrations.apply(url, supabase_dir=supabase_dir)

    # The tree is then edited in place: the first file changed, the second folded into it, and
    # a new migration added.
    (supabase_dir / "migrations" / "20260101000100_create_notes.sql").write_text(
        "create table public.notes (id int primary key, body text);\n"
    )
    (supabase_dir / "migrations" / "20260101000200_speed_up_notes.sql").unlink()
    (supabase_dir / "migrations" / "20260101000300_create_tags.sql").write_text(
        "create table public.tags (id int primary key);\n"
    )
    with pytest.raises(migrations.MigrationHistoryMismatch) as raised:
        await migrations.apply(url, supabase_dir=supabase_dir)

    assert raised.value.problems == [
        "20260101000100_create_notes: applied with other statements than"
        " 20260101000100_create_notes.sql",
        "20260101000200_speed_up_notes: applied, but no migration file has version 20260101000200",
    ]
    message = str(raised.value)
    assert "supabase db reset" in message
    assert "bridge db apply --database-url URL --seed" in message
    tables = await _fetch(
        url,
        "select to_regclass('public.tags') is null as no_tags, count(*) as n"
        " from supabase_migrations.schema_migrations",
    )
    assert (tables[0]["no_tags"], tables[0]["n"]) == (True, 2)

    # Rebuilt from scratch, the same tree applies.
    fresh = await empty_database_factory()
    report = await migrations.apply(fresh, supabase_dir=supabase_dir)
    assert report.applied == ["20260101000100", "20260101000300"]


async def test_statements_recorded_the_way_the_supabase_cli_splits_them_match_their_file(
    empty_database_factory: Callable[[], Awaitable[str]], tmp_path: Path
) -> None:
    url = await empty_database_factory()
    sql = (
        "-- Notes.\ncreate table public.notes (id int primary key);\n\n"
        "comment on table public.notes is 'Notes; one per row.';\n"
    )
    supabase_dir = _tree(tmp_path, {"20260101000100_create_notes.sql": sql})
    await migrations.apply(url, supabase_dir=supabase_dir)

    async def record(statements: list[str]) -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(
                "update supabase_migrations.schema_migrations set statements = $1", statements
            )
        finally:
            await conn.close()

    # `supabase db push` records each statement trimmed, without its semicolon.
    await record(
        [
            "-- Notes.\ncreate table public.notes (id int primary key)",
            "comment on table public.notes is 'Notes; one per row.'",
        ]
    )
    assert (await migrations.apply(url, supabase_dir=supabase_dir)).applied == []

    await record(
        [
            "-- Notes.\ncreate table public.notes (id int primary key)",
            "comment on table public.notes is 'Notes.'",
        ]
    )
    with pytest.raises(migrations.MigrationHistoryMismatch):
        await migrations.apply(url, supabase_dir=supabase_dir)
