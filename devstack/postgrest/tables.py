"""Tables, their columns and their foreign-key relationships, as PostgREST's schema cache holds
them, read from pg_catalog for each request (so a table created a moment ago is found).

Relationships are the ones PostgREST derives from foreign keys between two tables of the exposed
schema: many-to-one from the referencing side, one-to-many (one-to-one when the referencing
columns are unique) from the referenced side. Many-to-many through a junction table and
relationships of views or computed relationships are not derived here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

from devstack.postgrest.catalog import Connection

Cardinality = Literal["many-to-one", "one-to-many", "one-to-one"]


@dataclass(frozen=True)
class Column:
    name: str
    # For casting a filter value: the type without its modifier, as regtype prints it (qualified
    # when its schema is not on the default search path).
    type: str
    # For decoding a JSON body (`json_to_record`): the type with its modifier.
    full_type: str


@dataclass(frozen=True)
class Table:
    schema: str
    name: str
    oid: int
    columns: tuple[Column, ...]

    def column(self, name: str) -> Column | None:
        for column in self.columns:
            if column.name == name:
                return column
        return None


@dataclass(frozen=True)
class Relationship:
    """From the table it was read for (`source`) to `target`."""

    constraint: str
    cardinality: Cardinality
    target: Table
    # (source column, target column) pairs of the foreign key
    pairs: tuple[tuple[str, str], ...]
    # the table holding the foreign key, for PGRST201's details
    fk_table: str
    fk_columns: tuple[str, ...]
    ref_table: str
    ref_columns: tuple[str, ...]

    @property
    def to_one(self) -> bool:
        return self.cardinality != "one-to-many"


_TABLE_SQL = """
select c.oid::bigint as oid, c.relname as name,
  coalesce((
    select pg_catalog.json_agg(pg_catalog.json_build_object(
      'name', a.attname,
      'type', a.atttypid::pg_catalog.regtype::text,
      'full_type', pg_catalog.format_type(a.atttypid, a.atttypmod)) order by a.attnum)
    from pg_catalog.pg_attribute a
    where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
  ), '[]') as columns
from pg_catalog.pg_class c
join pg_catalog.pg_namespace n on n.oid = c.relnamespace
where n.nspname = $1 and c.relname = $2 and c.relkind in ('r', 'v', 'm', 'f', 'p')
"""

_NAMES_SQL = """
select c.relname as name
from pg_catalog.pg_class c
join pg_catalog.pg_namespace n on n.oid = c.relnamespace
where n.nspname = $1 and c.relkind in ('r', 'v', 'm', 'f', 'p')
order by c.relname
"""

# Foreign keys from or to the table, with the other table in the same schema; the columns of
# each in key order. `unique_fk` says whether the referencing columns are unique on their own.
_RELATIONSHIPS_SQL = """
select
  k.conname as constraint_name,
  (select c.relname from pg_catalog.pg_class c where c.oid = k.conrelid) as fk_table,
  (select c.relname from pg_catalog.pg_class c where c.oid = k.confrelid) as ref_table,
  (select pg_catalog.array_agg(a.attname order by u.ord)
     from pg_catalog.unnest(k.conkey) with ordinality u(attnum, ord)
     join pg_catalog.pg_attribute a on a.attrelid = k.conrelid and a.attnum = u.attnum)
    as fk_columns,
  (select pg_catalog.array_agg(a.attname order by u.ord)
     from pg_catalog.unnest(k.confkey) with ordinality u(attnum, ord)
     join pg_catalog.pg_attribute a on a.attrelid = k.confrelid and a.attnum = u.attnum)
    as ref_columns,
  exists (
    select 1 from pg_catalog.pg_index i
    where i.indrelid = k.conrelid and i.indisunique and i.indpred is null
      and (select pg_catalog.array_agg(x order by x) from pg_catalog.unnest(i.indkey::int2[]) x)
        = (select pg_catalog.array_agg(x order by x) from pg_catalog.unnest(k.conkey) x)
  ) as unique_fk
from pg_catalog.pg_constraint k
where k.contype = 'f'
  and (k.conrelid = $1::oid or k.confrelid = $1::oid)
  and (select c.relnamespace from pg_catalog.pg_class c where c.oid = k.conrelid)
    = (select c.relnamespace from pg_catalog.pg_class c where c.oid = k.confrelid)
order by k.conname
"""


async def find_table(conn: Connection, schema: str, name: str) -> Table | None:
    row = await conn.fetchrow(_TABLE_SQL, schema, name)
    if row is None:
        return None
    columns = tuple(
        Column(str(c["name"]), str(c["type"]), str(c["full_type"]))
        for c in json.loads(row["columns"])
    )
    return Table(schema, str(row["name"]), int(row["oid"]), columns)


async def table_names(conn: Connection, schema: str) -> list[str]:
    return [str(r["name"]) for r in await conn.fetch(_NAMES_SQL, schema)]


async def relationships(conn: Connection, table: Table) -> list[Relationship]:
    """Every relationship from `table`, in constraint-name order. A self-referencing key gives
    both directions."""
    found: list[Relationship] = []
    others: dict[str, Table | None] = {table.name: table}
    for row in await conn.fetch(_RELATIONSHIPS_SQL, table.oid):
        fk_table, ref_table = str(row["fk_table"]), str(row["ref_table"])
        fk_columns = tuple(str(c) for c in row["fk_columns"])
        ref_columns = tuple(str(c) for c in row["ref_columns"])
        directions = []
        if fk_table == table.name:
            directions.append((True, ref_table))
        if ref_table == table.name:
            directions.append((False, fk_table))
        for outgoing, other_name in directions:
            if other_name not in others:
                others[other_name] = await find_table(conn, table.schema, other_name)
            target = others[other_name]
            if target is None:
                continue
            if outgoing:
                cardinality: Cardinality = "many-to-one"
                pairs = tuple(zip(fk_columns, ref_columns, strict=True))
            else:
                cardinality = "one-to-one" if row["unique_fk"] else "one-to-many"
                pairs = tuple(zip(ref_columns, fk_columns, strict=True))
            found.append(
                Relationship(
                    constraint=str(row["constraint_name"]),
                    cardinality=cardinality,
                    target=target,
                    pairs=pairs,
                    fk_table=fk_table,
                    fk_columns=fk_columns,
                    ref_table=ref_table,
                    ref_columns=ref_columns,
                )
            )
    return found
