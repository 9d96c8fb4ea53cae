"""`bridge doctor`'s checks of the worker's database (DATABASE_URL): session mode, writable, the
migrations applied and their objects present, the realtime publication; and the channels to check.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import asyncpg

from bridge import migrations
from bridge.doctor_report import Check, masked, ok, problem
from bridge.settings import Settings

_DEPLOY = "docs/deploy.md"


@dataclass(frozen=True)
class ChannelRow:
    """A row of public.whatsapp_channels with its private credentials."""

    phone_number_id: str
    provider: str
    api_base_url: str | None
    access_token: str | None
    api_key: str | None


_POOLER_FIX = (
    "use the direct connection (db.<project-ref>.supabase.co:5432) or Supavisor in session mode "
    f"(the pooler host on port 5432); {_DEPLOY}"
)
_SKIPPED = Check("database checks", "skipped", "skipped until DATABASE_URL connects")


async def check_database(
    settings: Settings, seconds: float
) -> tuple[list[Check], list[ChannelRow] | None]:
    url, name = settings.DATABASE_URL, "database"
    try:
        parts = urlsplit(url)
        port, host = parts.port, parts.hostname or ""
    except ValueError:
        return [problem(name, "DATABASE_URL is not a URL", f"a postgresql:// URL; {_DEPLOY}")], None
    if port == 6543:
        where = (
            "Supavisor's transaction pooler"
            if host.endswith(".pooler.supabase.com")
            else ("port 6543, the transaction pooler's port")
        )
        message = (
            f"DATABASE_URL ({masked(url)}) names {where}: the worker's advisory locks and LISTEN "
            "need session mode, and a transaction pooler moves each transaction to another backend"
        )
        return [problem(name, message, _POOLER_FIX), _SKIPPED], None
    try:
        conn = await asyncpg.connect(url, timeout=seconds)
    except (
        OSError,
        TimeoutError,
        ValueError,
        asyncpg.PostgresError,
        asyncpg.InterfaceError,
    ) as exc:
        message = f"cannot connect to {masked(url)} ({type(exc).__name__}: {exc})"
        fix = f"check DATABASE_URL's host, port, user, password and database; {_DEPLOY}"
        return [problem(name, message[:400], fix), _SKIPPED], None
    try:
        checks = [await _session(conn, masked(url))]
        checks += [await _migrations(conn), await _schema_objects(conn), await _publication(conn)]
        return checks, await _channel_rows(conn)
    finally:
        await conn.close()


async def _session(conn: asyncpg.Connection, shown: str) -> Check:
    name = "database"
    pids = {await conn.fetchval("select pg_backend_pid()") for _ in range(3)}
    if len(pids) > 1:
        message = f"{shown} hands each transaction to another backend: a transaction pooler"
        return problem(name, message, _POOLER_FIX)
    if await conn.fetchval("show transaction_read_only") == "on":
        return problem(
            name,
            f"{shown} is read-only (a standby, or default_transaction_read_only is on)",
            "point DATABASE_URL at the primary, in session mode",
        )
    return ok(name, f"{shown} connects in session mode and is writable")


async def _migrations(conn: asyncpg.Connection) -> Check:
    name, tree = "migrations", migrations.list_migrations()
    apply = "apply them: bridge db apply --database-url URL (or supabase db push)"
    if await conn.fetchval("select to_regclass('supabase_migrations.schema_migrations')") is None:
        return problem(name, f"none of the {len(tree)} migrations is applied", apply)
    try:
        recorded = await conn.fetch(
            "select version, name, statements from supabase_migrations.schema_migrations"
        )
    except asyncpg.UndefinedColumnError:  # recorded by an older Supabase CLI: versions only
        recorded = await conn.fetch(
            "select version, null::text as name, null::text[] as statements"
            " from supabase_migrations.schema_migrations"
        )
    different = migrations.history_problems(recorded, tree)
    if different:
        return problem(
            name,
            _listed(different, 3),
            "reset the database (docs/migrations.md): until the first release migrations are "
            "edited in place",
        )
    done = {r["version"] for r in recorded}
    missing = [m.path.name for m in tree if m.version not in done]
    if missing:
        return problem(name, f"{len(missing)} not applied: {_listed(missing, 3)}", apply)
    return ok(name, f"all {len(tree)} applied, as in supabase/migrations/")


def _listed(items: Sequence[str], most: int) -> str:
    more = f" and {len(items) - most} more" if len(items) > most else ""
    return "; ".join(items[:most]) + more


_CREATED = re.compile(
    r"^\s*create\s+(?:or\s+replace\s+)?(function|table)\s+(?:if\s+not\s+exists\s+)?"
    r"([a-z_][a-z0-9_]*)\.([a-z_][a-z0-9_]*)",
    re.IGNORECASE | re.MULTILINE,
)


async def _schema_objects(conn: asyncpg.Connection) -> Check:
    """Every function and table the migrations create is there (recorded is not present)."""
    objects = sorted(
        {
            (kind.lower(), schema, table)
            for m in migrations.list_migrations()
            for kind, schema, table in _CREATED.findall(m.path.read_text())
        }
    )
    absent = await conn.fetch(
        """
        select kind, nsp, obj from unnest($1::text[], $2::text[], $3::text[]) as o(kind, nsp, obj)
        where case kind
          when 'table' then to_regclass(format('%I.%I', nsp, obj)) is null
          else not exists (select 1 from pg_catalog.pg_proc p
                           join pg_catalog.pg_namespace n on n.oid = p.pronamespace
                           where n.nspname = nsp and p.proname = obj) end
        """,
        *(list(column) for column in zip(*objects, strict=True)),
    )
    if absent:
        names = [f"{r['kind']} {r['nsp']}.{r['obj']}" for r in absent]
        return problem(
            "schema",
            f"recorded as migrated, but missing: {_listed(names, 5)}",
            "someone changed the schema by hand: reset the database and apply the migrations "
            "(docs/migrations.md)",
        )
    return ok("schema", f"all {len(objects)} functions and tables of the migrations exist")


def _published_tables() -> list[str]:
    """The tables the realtime migration adds to supabase_realtime (read from the file)."""
    files = sorted(
        (migrations.SUPABASE_DIR / "migrations").glob("*_add_tables_to_realtime_publication.sql")
    )
    array = re.search(r"array\[(.*?)\]", files[-1].read_text(), re.DOTALL) if files else None
    return re.findall(r"'([a-z_]+)'", array.group(1)) if array else []


async def _publication(conn: asyncpg.Connection) -> Check:
    name = "realtime"
    row = await conn.fetchrow(
        "select puballtables from pg_catalog.pg_publication where pubname = 'supabase_realtime'"
    )
    if row is None:
        return problem(
            name,
            "there is no publication supabase_realtime: the inbox gets no live updates",
            "create publication supabase_realtime; then add the tables (below, once it exists)",
        )
    if row["puballtables"]:
        return ok(name, "supabase_realtime publishes every table")
    present = {
        r["tablename"]
        for r in await conn.fetch(
            "select tablename from pg_catalog.pg_publication_tables"
            " where pubname = 'supabase_realtime' and schemaname = 'public'"
        )
    }
    missing = [t for t in _published_tables() if t not in present]
    if missing:
        tables = ", ".join(f"public.{t}" for t in missing)
        return problem(
            name,
            f"supabase_realtime lacks {tables}: the inbox gets no live updates of them",
            f"alter publication supabase_realtime add table {tables};",
        )
    return ok(name, f"supabase_realtime holds {', '.join(_published_tables())}")


async def _channel_rows(conn: asyncpg.Connection) -> list[ChannelRow] | None:
    if await conn.fetchval("select to_regclass('private.whatsapp_channel_credentials')") is None:
        return None
    rows = await conn.fetch(
        """
        select ch.phone_number_id, ch.provider, ch.api_base_url, cr.access_token, cr.api_key
        from public.whatsapp_channels ch
        left join private.whatsapp_channel_credentials cr on cr.channel_id = ch.id
        order by ch.created_at, ch.phone_number_id
        """
    )
    return [ChannelRow(**dict(r)) for r in rows]
