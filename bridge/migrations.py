"""Apply the Supabase schema to a database the way the Supabase CLI does.

`supabase/bootstrap.sql` first, only where Supabase's own objects (roles, `auth`, `realtime`) are
missing, then every `supabase/migrations/*.sql` not yet recorded in
`supabase_migrations.schema_migrations`, each in its own transaction, in file-name order. Running
it twice is a no-op; concurrent runs serialise on an advisory lock.
"""

from __future__ import annotations

import logging
import tomllib
from dataclasses import dataclass
from pathlib import Path

import asyncpg

SUPABASE_DIR = Path(__file__).resolve().parent.parent / "supabase"

log = logging.getLogger(__name__)

# Any fixed number: only `bridge db apply` takes it, to keep two appliers from interleaving.
_APPLY_LOCK_KEY = 7_406_190_001

_SUPABASE_OBJECTS_PRESENT = """
select
  (select count(*) from pg_roles
    where rolname in ('anon', 'authenticated', 'service_role', 'authenticator')) = 4
  and to_regprocedure('auth.uid()') is not null
  and to_regprocedure('auth.jwt()') is not null
  and to_regprocedure('auth.role()') is not null
  and to_regclass('auth.users') is not null
  and to_regclass('realtime.messages') is not null
  and to_regprocedure('realtime.send(jsonb, text, text, boolean)') is not null
  and exists (select 1 from pg_namespace where nspname = 'extensions')
"""

_HISTORY_TABLE = """
create schema if not exists supabase_migrations;
create table if not exists supabase_migrations.schema_migrations (version text primary key);
alter table supabase_migrations.schema_migrations add column if not exists statements text[];
alter table supabase_migrations.schema_migrations add column if not exists name text;
"""


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    path: Path

    @classmethod
    def from_path(cls, path: Path) -> Migration:
        version, _, name = path.stem.partition("_")
        if not version.isdigit():
            raise ValueError(f"migration file name must start with a timestamp: {path.name}")
        return cls(version=version, name=name, path=path)


@dataclass(frozen=True)
class ApplyReport:
    bootstrapped: bool
    applied: list[str]
    seeded: bool


def seed_files(supabase_dir: Path = SUPABASE_DIR) -> list[Path]:
    """The seed files in the order the Supabase CLI loads them: `[db.seed] sql_paths` of
    config.toml (globs relative to supabase/, each glob sorted), else `seed.sql`."""
    config_path = supabase_dir / "config.toml"
    patterns = ["./seed.sql"]
    if config_path.exists():
        seed = tomllib.loads(config_path.read_text()).get("db", {}).get("seed", {})
        if seed.get("enabled", True) is False:
            return []
        patterns = list(seed.get("sql_paths", patterns))
    files: list[Path] = []
    for pattern in patterns:
        for path in sorted(supabase_dir.glob(pattern.removeprefix("./"))):
            if path not in files:
                files.append(path)
    return files


def list_migrations(supabase_dir: Path = SUPABASE_DIR) -> list[Migration]:
    return [Migration.from_path(p) for p in sorted((supabase_dir / "migrations").glob("*.sql"))]


async def apply(
    database_url: str, *, seed: bool = False, supabase_dir: Path = SUPABASE_DIR
) -> ApplyReport:
    """Bring the database at `database_url` to the schema in `supabase_dir`."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("select pg_advisory_lock($1)", _APPLY_LOCK_KEY)
        bootstrapped = False
        if not await conn.fetchval(_SUPABASE_OBJECTS_PRESENT):
            await conn.execute((supabase_dir / "bootstrap.sql").read_text())
            bootstrapped = True
        await conn.execute(_HISTORY_TABLE)
        done = {
            r["version"]
            for r in await conn.fetch("select version from supabase_migrations.schema_migrations")
        }
        applied: list[str] = []
        for migration in list_migrations(supabase_dir):
            if migration.version in done:
                continue
            sql = migration.path.read_text()
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute(
                    "insert into supabase_migrations.schema_migrations (version, name, statements)"
                    " values ($1, $2, $3)",
                    migration.version,
                    migration.name,
                    [sql],
                )
            log.info("applied migration %s", migration.path.name)
            applied.append(migration.version)
        if seed:
            for path in seed_files(supabase_dir):
                await conn.execute(path.read_text())
        return ApplyReport(bootstrapped=bootstrapped, applied=applied, seeded=seed)
    finally:
        await conn.close()
