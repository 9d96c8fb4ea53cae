"""plpgsql_check over every plpgsql function of public and private: no error and no warning of
any kind (unused variables, hidden casts, dead code, ...). PostgreSQL checks a plpgsql body's
syntax when the function is created; plpgsql_check also resolves its statements against the
schema, as a call would.

The extension comes with Debian's `postgresql-<major>-plpgsql-check` (scripts/services.sh installs
it for a local server) and is created only in this test's own scratch database."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg
import pytest

from bridge import migrations

# Trigger functions are checked against a table whose trigger runs them.
FINDINGS = """
select p.oid::regprocedure::text as function, r.lineno, r.level, r.sqlstate, r.message,
       r.detail, r.context
  from pg_catalog.pg_proc p
  join pg_catalog.pg_namespace n on n.oid = p.pronamespace
  join pg_catalog.pg_language l on l.oid = p.prolang
  cross join lateral extensions.plpgsql_check_function_tb(
    p.oid,
    coalesce((select t.tgrelid from pg_catalog.pg_trigger t where t.tgfoid = p.oid
               order by t.tgrelid limit 1), 0),
    all_warnings => true) r
 where n.nspname in ('public', 'private') and l.lanname = 'plpgsql'
 order by 1, r.lineno
"""


async def test_plpgsql_functions_have_no_errors_or_warnings(
    empty_database_factory: Callable[[], Awaitable[str]],
) -> None:
    url = await empty_database_factory()
    await migrations.apply(url)
    conn = await asyncpg.connect(url)
    try:
        if not await conn.fetchval(
            "select exists (select 1 from pg_available_extensions where name = 'plpgsql_check')"
        ):
            pytest.fail(
                "the PostgreSQL server lacks the plpgsql_check extension: install Debian's "
                "postgresql-<major>-plpgsql-check (scripts/services.sh does for a local server)"
            )
        await conn.execute("create extension plpgsql_check schema extensions")
        checked = await conn.fetchval(
            "select count(*) from pg_proc p join pg_namespace n on n.oid = p.pronamespace"
            " join pg_language l on l.oid = p.prolang"
            " where n.nspname in ('public', 'private') and l.lanname = 'plpgsql'"
        )
        findings = await conn.fetch(FINDINGS)
    finally:
        await conn.close()
    assert checked > 0, "the schema has plpgsql functions"
    assert [
        f"{r['function']} line {r['lineno']}: {r['level']} {r['sqlstate']} {r['message']}"
        + (f" ({r['detail']})" if r["detail"] else "")
        + (f" [{r['context']}]" if r["context"] else "")
        for r in findings
    ] == []
