"""Apply the Supabase schema to a database the way the Supabase CLI does.

`supabase/bootstrap.sql` first, only where Supabase's own objects (roles, `auth`, `realtime`) are
missing, then every `supabase/migrations/*.sql` not yet recorded in
`supabase_migrations.schema_migrations`, each in its own transaction, in file-name order. Running
it twice is a no-op; concurrent runs serialise on an advisory lock.

A database whose recorded migrations are not the tree's files (one recorded with other statements,
or whose file is gone) is refused: until the first release migrations are edited in place
(docs/migrations.md), so such a database is reset, not migrated.
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
  and to_regclass('auth.refresh_tokens') is not null
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


_RESET_HOW = (
    "Reset the local database: `supabase db reset` on a Supabase CLI stack; otherwise drop and"
    " re-create the database, then run `bridge db apply --database-url URL --seed`."
    " Until the first release, migrations are edited in place (docs/migrations.md)."
)


class MigrationHistoryMismatch(RuntimeError):
    """Raised by `apply` when the database was built from other migration files than the tree's:
    a recorded migration has no file any more, or was recorded with other statements than its
    file holds. Nothing is applied."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(
            "the database was built from other migration files than this tree's:\n  "
            + "\n  ".join(problems)
            + "\n"
            + _RESET_HOW
        )


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


def _same_statements(recorded: list[str], sql: str) -> bool:
    """Whether `recorded` are the statements of `sql`, in order: the whole text as one (how
    `apply` records a file), or split as the Supabase CLI records it (each statement trimmed,
    without its terminating semicolon). Only whitespace and semicolons may lie between them."""
    if recorded == [sql]:
        return True
    pos = 0
    for statement in recorded:
        while pos < len(sql) and (sql[pos].isspace() or sql[pos] == ";"):
            pos += 1
        if not sql.startswith(statement, pos):
            return False
        pos += len(statement)
    return all(c.isspace() or c == ";" for c in sql[pos:])


def history_problems(recorded: list[asyncpg.Record], tree: list[Migration]) -> list[str]:
    """What sets the recorded migrations (version, name, statements) apart from the tree's files.
    A row without statements is taken on trust."""
    files = {m.version: m for m in tree}
    problems: list[str] = []
    for row in sorted(recorded, key=lambda r: r["version"]):
        label = f"{row['version']}_{row['name'] or '?'}"
        migration = files.get(row["version"])
        if migration is None:
            problems.append(f"{label}: applied, but no migration file has version {row['version']}")
        elif row["statements"] is not None and not _same_statements(
            row["statements"], migration.path.read_text()
        ):
            problems.append(f"{label}: applied with other statements than {migration.path.name}")
    return problems


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
        recorded = await conn.fetch(
            "select version, name, statements from supabase_migrations.schema_migrations"
        )
        tree = list_migrations(supabase_dir)
        problems = history_problems(recorded, tree)
        if problems:
            raise MigrationHistoryMismatch(problems)
        done = {r["version"] for r in recorded}
        applied: list[str] = []
        for migration in tree:
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
