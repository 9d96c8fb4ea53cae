"""Functions as PostgREST's schema cache describes them, read from pg_catalog.

The selection follows PostgREST's: plain functions (no procedures or aggregates), no trigger
functions, and only functions whose unnamed parameters are at most one json/jsonb/text/xml/bytea
parameter. Each read also returns the *version* of the name: the OID and xmin of every pg_proc row
so named in the schema. CREATE OR REPLACE, ALTER FUNCTION, DROP and a new overload all change it,
so `schema_cache` can keep what it read and still see a change by the very next request.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

import asyncpg

# A plain or a pooled connection (the pool hands out proxies).
Connection = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy

Volatility = Literal["immutable", "stable", "volatile"]

_VOLATILITY: dict[str, Volatility] = {"i": "immutable", "s": "stable", "v": "volatile"}

# PostgREST casts to the variable-length twin of types that would silently truncate input
# (`'abc'::character` is 'a').
_UNPADDED = {
    "character": "character varying",
    "character[]": "character varying[]",
    "bit": "bit varying",
    "bit[]": "bit varying[]",
}


@dataclass(frozen=True)
class Param:
    name: str  # "" for an unnamed parameter
    type: str  # as `regtype::text` prints it, e.g. "integer", "timestamp with time zone"
    required: bool  # no DEFAULT
    variadic: bool

    @property
    def cast_type(self) -> str:
        return _UNPADDED.get(self.type, self.type)


@dataclass(frozen=True)
class Routine:
    schema: str
    name: str
    params: tuple[Param, ...]
    volatility: Volatility
    returns_set: bool
    returns_composite: bool  # a row type, RETURNS TABLE, or OUT/INOUT parameters
    returns_void: bool
    isolation: str | None  # a `SET default_transaction_isolation` on the function

    @property
    def returns_scalar(self) -> bool:
        return not self.returns_composite

    @property
    def returns_single(self) -> bool:
        return not self.returns_set

    def signature(self) -> str:
        """`schema.fn(a => integer, b => text)`, the form of PostgREST's PGRST203 message."""
        params = ", ".join(f"{p.name} => {p.type}" for p in self.params)
        return f"{self.schema}.{self.name}({params})"


def version_sql(schema_param: str, name_param: str) -> str:
    """An expression for the version of `schema.name`, from two query parameters ("$1", "$2").

    xmin changes with every new row version, so any DDL on one of the rows shows; a false change
    (VACUUM FREEZE rewrites xmin) only costs one more catalog read.
    """
    return (
        "(select coalesce(pg_catalog.string_agg(v.oid::text || ':' || v.xmin::text, ','"
        " order by v.oid), '')"
        " from pg_catalog.pg_proc v"
        f" where v.proname = {name_param}::text"
        " and v.pronamespace = (select n.oid from pg_catalog.pg_namespace n"
        f" where n.nspname = {schema_param}::text))"
    )


_ROUTINES_SQL = """
select
  p.proname as name,
  p.provolatile::text as volatility,
  p.proretset as returns_set,
  coalesce(bt.typtype, rt.typtype) = 'c'
    or coalesce(p.proargmodes::text[] && '{t,b,o}', false) as returns_composite,
  p.prorettype = 'pg_catalog.void'::pg_catalog.regtype as returns_void,
  (select split_part(split_part(c, '=', 2), ',', 1)
     from pg_catalog.unnest(p.proconfig) c
    where c like 'default_transaction_isolation=%') as isolation,
  coalesce(args.params, '[]') as params,
  <version> as version
from pg_catalog.pg_proc p
join pg_catalog.pg_type rt on rt.oid = p.prorettype
left join pg_catalog.pg_type bt on rt.typtype = 'd' and bt.oid = rt.typbasetype
left join lateral (
  select
    pg_catalog.json_agg(pg_catalog.json_build_object(
      'name', coalesce(i.name, ''),
      'type', pg_catalog.format_type(i.type, null),
      'required', i.position <= p.pronargs - p.pronargdefaults,
      'variadic', i.mode = 'v'
    ) order by i.position) as params,
    count(*) filter (where coalesce(i.name, '') = '') as unnamed,
    (pg_catalog.array_agg(i.type order by i.position))[1] as first_type
  from (
    select a.type, coalesce(a.mode, 'i') as mode, a.name,
           row_number() over (order by a.ord) as position
    -- unqualified: only `unnest(a, b, c)` gets the multi-array (zip) form
    from unnest(
      coalesce(p.proallargtypes, p.proargtypes::oid[]), p.proargmodes::text[], p.proargnames
    ) with ordinality as a(type, mode, name, ord)
    where coalesce(a.mode, 'i') in ('i', 'b', 'v')
  ) i
) args on true
where p.pronamespace = (select oid from pg_catalog.pg_namespace where nspname = $1)
  and p.prokind = 'f'
  and p.prorettype <> 'pg_catalog.trigger'::pg_catalog.regtype
  and ($2::text is null or p.proname = $2)
  and (coalesce(args.unnamed, 0) = 0
       or (args.unnamed = 1 and args.first_type in ('pg_catalog.bytea'::pg_catalog.regtype,
           'pg_catalog.json'::pg_catalog.regtype, 'pg_catalog.jsonb'::pg_catalog.regtype,
           'pg_catalog.text'::pg_catalog.regtype, 'pg_catalog.xml'::pg_catalog.regtype)))
order by p.oid
""".replace("<version>", version_sql("$1", "$2"))


@dataclass(frozen=True)
class Overloads:
    routines: tuple[Routine, ...]
    version: str


async def routines_named(conn: Connection, schema: str, name: str) -> Overloads:
    """Every overload of `schema.name` PostgREST could call, with the version they were read at.

    One statement, so the version and the routines come from the same snapshot.
    """
    rows = await conn.fetch(_ROUTINES_SQL, schema, name)
    # No rows, no version: nothing callable is cached, so it is never compared.
    version = str(rows[0]["version"]) if rows else ""
    return Overloads(tuple(_routine(schema, r) for r in rows), version)


async def routine_names(conn: Connection, schema: str) -> list[str]:
    """The names of all callable functions of a schema (for "Perhaps you meant…" hints)."""
    rows = await conn.fetch(_ROUTINES_SQL, schema, None)
    return sorted({str(r["name"]) for r in rows})


def _routine(schema: str, row: asyncpg.Record) -> Routine:
    params = tuple(
        Param(
            name=str(p["name"]),
            type=str(p["type"]),
            required=bool(p["required"]),
            variadic=bool(p["variadic"]),
        )
        for p in json.loads(row["params"])
    )
    isolation = row["isolation"]
    return Routine(
        schema=schema,
        name=str(row["name"]),
        params=params,
        volatility=_VOLATILITY[str(row["volatility"])],
        returns_set=bool(row["returns_set"]),
        returns_composite=bool(row["returns_composite"]),
        returns_void=bool(row["returns_void"]),
        isolation=str(isolation) if isolation else None,
    )
