"""The transaction-local settings PostgREST makes before the call (`PostgREST.Query.PreQuery`).

In PostgREST's order: `search_path` (the request schema, then db-extra-search-path), the role's
own settings from `ALTER ROLE … SET` (SET ROLE alone would not apply them), `role`,
`request.jwt.claims`, `request.method`, `request.path`, `request.headers`, `request.cookies`.
All with `set_config(…, true)`, so they end with the transaction and never leak to the next
request on the pooled connection.

They are made by one prepared statement, the first of the call's transaction, which also reads
what the call depends on: the catalog version of the function (see `schema_cache`) and whether
the connecting role may become the requested one. Like PostgREST's own pre-request query, it
relies on Postgres evaluating a select list from left to right, so the checks are read before
anything is set and the settings are made in the order above.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from devstack.postgrest.catalog import Connection, version_sql
from devstack.postgrest.errors import PostgrestError
from devstack.postgrest.query import ident

# The role PostgREST connects as on Supabase; it may only become roles granted to it.
_CONNECTING_ROLE = "authenticator"

# The stand-in connects as a superuser, which may become any role, so the check Postgres makes
# for `authenticator` on Supabase is made here. A role that does not exist passes: it is left to
# `set_config('role', …)`, which fails with 22023 like it does behind PostgREST.
_MAY_SWITCH = f"""coalesce((
    select pg_catalog.pg_has_role('{_CONNECTING_ROLE}', r.oid, 'MEMBER')
    from pg_catalog.pg_roles r
    where r.rolname = $2::text
      and exists (select 1 from pg_catalog.pg_roles where rolname = '{_CONNECTING_ROLE}')
  ), true)"""

# `ALTER ROLE … SET` settings, global ones first so that `ALTER ROLE … IN DATABASE` ones win.
# The ORDER BY subquery is not flattened, so the settings are made in that order; none is made
# for a role the connecting role may not become (the call ends in a 403 before it starts).
_ROLE_SETTINGS = f"""(
    select pg_catalog.count(pg_catalog.set_config(
      pg_catalog.split_part(s.setting, '=', 1),
      pg_catalog.substr(s.setting, pg_catalog.strpos(s.setting, '=') + 1),
      true))
    from (
      select c.setting
      from pg_catalog.pg_db_role_setting d
      cross join lateral pg_catalog.unnest(d.setconfig) with ordinality as c(setting, ord)
      where d.setrole = (select oid from pg_catalog.pg_roles where rolname = $2::text)
        and d.setdatabase in (0, (select oid from pg_catalog.pg_database
                                  where datname = pg_catalog.current_database()))
        and {_MAY_SWITCH}
      order by d.setdatabase, c.ord
    ) s
  )"""

# $1 search_path, $2 role, $3 claims, $4 method, $5 path, $6 headers, $7 cookies,
# $8 schema and $9 name of the function (for its catalog version).
APPLY_SQL = f"""select
  {version_sql("$8", "$9")} as routines_version,
  {_MAY_SWITCH} as may_switch,
  pg_catalog.set_config('search_path', $1::text, true),
  {_ROLE_SETTINGS},
  pg_catalog.set_config('role', $2::text, true),
  pg_catalog.set_config('request.jwt.claims', $3::text, true),
  pg_catalog.set_config('request.method', $4::text, true),
  pg_catalog.set_config('request.path', $5::text, true),
  pg_catalog.set_config('request.headers', $6::text, true),
  pg_catalog.set_config('request.cookies', $7::text, true)"""


@dataclass(frozen=True)
class RequestContext:
    schema: str
    role: str
    claims: Mapping[str, Any]
    method: str
    path: str
    headers: Mapping[str, str]
    cookies: Mapping[str, str]


@dataclass(frozen=True)
class Applied:
    routines_version: str  # the function's catalog version, as of this transaction
    may_switch: bool  # False: PostgREST refuses the role (403); the call must not go on


async def apply(
    conn: Connection, context: RequestContext, extra_search_path: Sequence[str], function: str
) -> Applied:
    """Makes the settings in the open transaction and reads what the call depends on."""
    search_path = ", ".join(ident(s) for s in (context.schema, *extra_search_path))
    row = await conn.fetchrow(
        APPLY_SQL,
        search_path,
        context.role,
        _json(context.claims),
        context.method,
        context.path,
        _json(context.headers),
        _json(context.cookies),
        context.schema,
        function,
    )
    assert row is not None
    return Applied(str(row["routines_version"]), bool(row["may_switch"]))


def forbidden_role(role: str) -> PostgrestError:
    return PostgrestError(403, "42501", f'permission denied to set role "{role}"')


def _json(value: Mapping[str, Any]) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
