"""The SQL of a table read or update, shaped like PostgREST's (`Query.QueryBuilder`).

Safety: table and column identifiers come from the schema cache (`tables`), quoted; every value
from the request (filter values, limits, the JSON body, and the keys of the response objects,
aliases included) is a query parameter. Table aliases are generated (`pgrst_0`, `pgrst_1`, …).

Each row becomes a JSON object: `row_to_json` of its columns (and embedded resources) when every
key is a name from the schema cache, as PostgREST builds it; with an alias, from the parameter
array of its keys and an array of its values (`to_json` of each column), so values serialise
the same, key order is the select order, and no request text names anything in the SQL. One statement answers the request: the rows (`body`),
their number (`page_total`), the exact total when counted, and the `response.*` settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from devstack.postgrest.query import ident
from devstack.postgrest.query_params import IS_VALUES, PATTERN_OPERATORS, SIMPLE_OPERATORS
from devstack.postgrest.table_plan import (
    ColumnItem,
    EmbedItem,
    Node,
    ResolvedFilter,
    ResolvedLogic,
)
from devstack.postgrest.tables import Column, Table

# PGRST_DB_MAX_ROWS as the Supabase CLI sets it: no response holds more rows.
MAX_ROWS = 1000

_GUCS = (
    "nullif(pg_catalog.current_setting('response.headers', true), '') AS response_headers, "
    "nullif(pg_catalog.current_setting('response.status', true), '') AS response_status"
)


@dataclass(frozen=True)
class Statement:
    sql: str
    args: tuple[object, ...]


@dataclass
class _Builder:
    args: list[object] = field(default_factory=list)
    aliases: int = 0

    def param(self, value: object, cast: str) -> str:
        self.args.append(value)
        return f"${len(self.args)}::{cast}"

    def alias(self) -> str:
        name = f"pgrst_{self.aliases}"
        self.aliases += 1
        return name


def read(node: Node, *, single: bool, count: bool) -> Statement:
    """Columns: page_total, body (JSON text), total (or NULL), response_headers/status."""
    b = _Builder()
    alias = b.alias()
    row = _row_json(b, node, alias)
    where = _where(b, node, alias)
    order = _order_by(node, alias)
    page = _page(b, node.limit, node.offset, top=True)
    total = "NULL::bigint"
    if count:
        total = f"(SELECT pg_catalog.count(*) FROM {_table(node.table)} AS {alias}{where})"
    sql = (
        "WITH pgrst_source AS ("
        f"SELECT {row} AS pgrst_row, pg_catalog.row_number() OVER ({order}) AS pgrst_n"
        f" FROM {_table(node.table)} AS {alias}{where}{_order_clause(order)}{page}) "
        f"SELECT pg_catalog.count(*) AS page_total, {_body(single)} AS body, {total} AS total, "
        f"{_GUCS} FROM pgrst_source"
    )
    return Statement(sql, tuple(b.args))


def update(
    node: Node, columns: list[Column], body: str, *, single: bool, representation: bool
) -> Statement:
    """An UPDATE of `columns` from the JSON object `body` on the rows the filters pick; the
    updated rows shaped by `node`'s select when `representation`."""
    b = _Builder()
    alias = b.alias()
    target = _table(node.table)
    if not columns:
        # PostgREST's answer to an empty body: nothing is updated, nothing is returned.
        source = f"SELECT {alias}.* FROM {target} AS {alias} WHERE false"
    else:
        payload = b.param(body, "json")
        sets = ", ".join(f"{ident(c.name)} = pgrst_body.{ident(c.name)}" for c in columns)
        typed = ", ".join(f"{ident(c.name)} {c.full_type}" for c in columns)
        # The caller makes sure there is a filter (Supabase's pg-safeupdate refuses an UPDATE
        # without WHERE); embedded `!inner` resources shape the answer, not the update.
        where = _where(b, node, alias, embeds=False)
        source = (
            f"UPDATE {target} AS {alias} SET {sets} "
            f"FROM (SELECT * FROM pg_catalog.json_to_record({payload}) AS _({typed})) pgrst_body"
            f"{where} RETURNING {alias}.*"
        )
    if representation:
        out = b.alias()
        row = _row_json(b, node, out)
        rows = f"SELECT {row} AS pgrst_row, pg_catalog.row_number() OVER () AS pgrst_n"
        rows += f" FROM pgrst_source AS {out}"
    else:
        rows = "SELECT NULL::json AS pgrst_row, 1 AS pgrst_n FROM pgrst_source"
    sql = (
        f"WITH pgrst_source AS ({source}), pgrst_rows AS ({rows}) "
        f"SELECT pg_catalog.count(*) AS page_total, {_body(single)} AS body, "
        f"NULL::bigint AS total, {_GUCS} FROM pgrst_rows AS pgrst_source"
    )
    return Statement(sql, tuple(b.args))


def _body(single: bool) -> str:
    agg = "pg_catalog.json_agg(pgrst_source.pgrst_row ORDER BY pgrst_source.pgrst_n)"
    if single:
        return f"coalesce(({agg})->0, 'null')::text"
    return f"coalesce({agg}, '[]')::text"


def _row_json(b: _Builder, node: Node, alias: str) -> str:
    """A JSON object of one row of `alias`, keys in select order."""
    if not node.items:
        return "'{}'::json"
    if all(item.key == _catalog_name(item) for item in node.items):
        # Every key is a name from the schema cache: `row_to_json` of a row with those column
        # names, byte for byte what PostgREST answers.
        columns = ", ".join(
            f"{alias}.{ident(item.column.name)}"
            if isinstance(item, ColumnItem)
            else f"{_embedded(b, item, alias)} AS {ident(_catalog_name(item))}"
            for item in node.items
        )
        return f"(SELECT pg_catalog.row_to_json(pgrst_r) FROM (SELECT {columns}) pgrst_r)"
    # An alias is the request's text: the keys go in as a parameter, never as SQL.
    keys = b.param([item.key for item in node.items], "text[]")
    values = ", ".join(_value(b, item, alias) for item in node.items)
    return (
        "(SELECT coalesce(pg_catalog.json_object_agg(pgrst_kv.k, pgrst_kv.v ORDER BY pgrst_kv.n),"
        " '{}'::json) FROM ROWS FROM ("
        f"pg_catalog.unnest({keys}), pg_catalog.unnest(ARRAY[{values}]::json[])"
        ") WITH ORDINALITY AS pgrst_kv(k, v, n))"
    )


def _catalog_name(item: ColumnItem | EmbedItem) -> str:
    if isinstance(item, ColumnItem):
        return item.column.name
    return item.relationship.target.name


def _value(b: _Builder, item: ColumnItem | EmbedItem, alias: str) -> str:
    if isinstance(item, ColumnItem):
        return f"pg_catalog.to_json({alias}.{ident(item.column.name)})"
    return _embedded(b, item, alias)


def _embedded(b: _Builder, item: EmbedItem, parent: str) -> str:
    child = item.node
    alias = b.alias()
    join = " AND ".join(
        f"{alias}.{ident(target)} = {parent}.{ident(source)}"
        for source, target in item.relationship.pairs
    )
    where = _where(b, child, alias, extra=join)
    row = _row_json(b, child, alias)
    table = _table(child.table)
    if item.relationship.to_one:
        return f"(SELECT {row} FROM {table} AS {alias}{where} LIMIT 1)"
    order = _order_by(child, alias)
    page = _page(b, child.limit, child.offset, top=False)
    return (
        "(SELECT coalesce(pg_catalog.json_agg(pgrst_e.j ORDER BY pgrst_e.n), '[]'::json) FROM ("
        f"SELECT {row} AS j, pg_catalog.row_number() OVER ({order}) AS n"
        f" FROM {table} AS {alias}{where}{_order_clause(order)}{page}) pgrst_e)"
    )


def _where(b: _Builder, node: Node, alias: str, *, extra: str = "", embeds: bool = True) -> str:
    conditions = [extra] if extra else []
    conditions += [_condition(b, f, alias) for f in node.filters]
    conditions += [_tree(b, tree, alias) for tree in node.logic]
    # `!inner`: a parent row without a matching embedded row is left out.
    for item in node.items if embeds else ():
        if isinstance(item, EmbedItem) and item.inner:
            child = item.node
            inner_alias = b.alias()
            join = " AND ".join(
                f"{inner_alias}.{ident(target)} = {alias}.{ident(source)}"
                for source, target in item.relationship.pairs
            )
            inner_where = _where(b, child, inner_alias, extra=join)
            conditions.append(
                f"EXISTS (SELECT 1 FROM {_table(child.table)} AS {inner_alias}{inner_where})"
            )
    return " WHERE " + " AND ".join(conditions) if conditions else ""


def _tree(b: _Builder, tree: ResolvedLogic, alias: str) -> str:
    parts = [
        _tree(b, child, alias) if isinstance(child, ResolvedLogic) else _condition(b, child, alias)
        for child in tree.children
    ]
    joined = "(" + f" {tree.conjunction} ".join(parts) + ")"
    return f"NOT {joined}" if tree.negated else joined


def _condition(b: _Builder, resolved: ResolvedFilter, alias: str) -> str:
    f = resolved.filter
    column = f"{alias}.{ident(resolved.column.name)}"
    if f.operator == "is":
        assert f.value is not None
        expression = f"{column} {IS_VALUES[f.value]}"
    elif f.operator == "in":
        values = b.param(list(f.values), f"text[]::{resolved.column.type}[]")
        expression = f"{column} = ANY ({values})"
    elif f.operator in PATTERN_OPERATORS:
        assert f.value is not None
        pattern = f.value.replace("*", "%") if f.operator in ("like", "ilike") else f.value
        expression = f"{column} {PATTERN_OPERATORS[f.operator]} {b.param(pattern, 'text')}"
    else:
        value = b.param(f.value, f"text::{resolved.column.type}")
        expression = f"{column} {SIMPLE_OPERATORS[f.operator]} {value}"
    return f"NOT ({expression})" if f.negated else expression


def _order_by(node: Node, alias: str) -> str:
    terms = []
    for resolved in node.order:
        term = resolved.term
        sql = f"{alias}.{ident(resolved.column.name)} {'DESC' if term.descending else 'ASC'}"
        if term.nulls is not None:
            sql += f" NULLS {term.nulls.upper()}"
        terms.append(sql)
    return "ORDER BY " + ", ".join(terms) if terms else ""


def _order_clause(order: str) -> str:
    return f" {order}" if order else ""


def _page(b: _Builder, limit: int | None, offset: int | None, *, top: bool) -> str:
    if top:
        limit = MAX_ROWS if limit is None else min(limit, MAX_ROWS)
    sql = ""
    if limit is not None:
        sql += f" LIMIT {b.param(limit, 'bigint')}"
    if offset:
        sql += f" OFFSET {b.param(offset, 'bigint')}"
    return sql


def _table(table: Table) -> str:
    return f"{ident(table.schema)}.{ident(table.name)}"
