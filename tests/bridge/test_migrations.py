"""`bridge db apply`: bootstrap where needed, every migration once, in order, like the CLI."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg

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
    assert before == after == 1
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
