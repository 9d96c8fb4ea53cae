"""The transaction-local settings PostgREST makes before the call (`PostgREST.Query.PreQuery`).

In PostgREST's order: `search_path` (the request schema, then db-extra-search-path), the role's
own settings from `ALTER ROLE … SET` (SET ROLE alone would not apply them), `role`,
`request.jwt.claims`, `request.method`, `request.path`, `request.headers`, `request.cookies`.
All with `set_config(…, true)`, so they end with the transaction and never leak to the next
request on the pooled connection.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from devstack.postgrest.catalog import Connection
from devstack.postgrest.errors import PostgrestError
from devstack.postgrest.query import Statement, ident

# The role PostgREST connects as on Supabase; it may only become roles granted to it.
_CONNECTING_ROLE = "authenticator"

_ROLE_SQL = """
select
  exists (select 1 from pg_catalog.pg_roles where rolname = $1) as role_exists,
  coalesce((
    select pg_catalog.pg_has_role($2, r.oid, 'MEMBER')
    from pg_catalog.pg_roles r
    where r.rolname = $1 and exists (select 1 from pg_catalog.pg_roles where rolname = $2)
  ), true) as may_switch,
  coalesce((
    select pg_catalog.array_agg(s.setting order by d.setdatabase, s.ord)
    from pg_catalog.pg_db_role_setting d
    cross join lateral pg_catalog.unnest(d.setconfig) with ordinality as s(setting, ord)
    where d.setrole = (select oid from pg_catalog.pg_roles where rolname = $1)
      and d.setdatabase in (0, (select oid from pg_catalog.pg_database
                                where datname = pg_catalog.current_database()))
  ), '{}') as settings
"""


@dataclass(frozen=True)
class RequestContext:
    schema: str
    role: str
    claims: Mapping[str, Any]
    method: str
    path: str
    headers: Mapping[str, str]
    cookies: Mapping[str, str]


async def role_settings(conn: Connection, role: str) -> list[tuple[str, str]]:
    """The role's `ALTER ROLE … SET` settings; refuses roles PostgREST could not switch to.

    The stand-in connects as a superuser, which may become any role, so the check that Postgres
    makes for `authenticator` on Supabase is made here (a role that does not exist is left to
    `set_config('role', …)`, which fails with 22023 like it does behind PostgREST).
    """
    row = await conn.fetchrow(_ROLE_SQL, role, _CONNECTING_ROLE)
    assert row is not None
    if row["role_exists"] and not row["may_switch"]:
        raise PostgrestError(403, "42501", f'permission denied to set role "{role}"')
    pairs = []
    for setting in row["settings"]:
        name, _, value = str(setting).partition("=")
        pairs.append((name, value))
    return pairs


def settings_statement(
    context: RequestContext,
    extra_search_path: Sequence[str],
    role_settings: Sequence[tuple[str, str]],
) -> Statement:
    pairs: list[tuple[str, str]] = [
        ("search_path", ", ".join(ident(s) for s in (context.schema, *extra_search_path))),
        *role_settings,
        ("role", context.role),
        ("request.jwt.claims", _json(context.claims)),
        ("request.method", context.method),
        ("request.path", context.path),
        ("request.headers", _json(context.headers)),
        ("request.cookies", _json(context.cookies)),
    ]
    calls = ", ".join(
        f"pg_catalog.set_config(${2 * i + 1}, ${2 * i + 2}, true)" for i in range(len(pairs))
    )
    args = tuple(item for pair in pairs for item in pair)
    return Statement(f"SELECT {calls}", args)


def _json(value: Mapping[str, Any]) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
