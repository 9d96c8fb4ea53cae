"""A table request resolved against the schema cache: every column and relationship named in the
query string looked up, with PostgREST's errors for what is not there.

Unknown columns are Postgres's own 42703 (`column <table>.<name> does not exist`, HTTP 400), as
PostgREST passes the names to the database; here they are found missing before any SQL is made,
so no name from the request ever reaches the SQL text. A relationship that is missing is
PGRST200, an ambiguous one PGRST201, a filter on a resource that is not embedded PGRST108.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from devstack.postgrest import resolution
from devstack.postgrest.catalog import Connection
from devstack.postgrest.errors import PostgrestError
from devstack.postgrest.query_params import Filter, Logic, OrderTerm, QueryParams
from devstack.postgrest.select_param import Embed, Field, Star
from devstack.postgrest.tables import Column, Relationship, Table, relationships


@dataclass(frozen=True)
class ColumnItem:
    key: str
    column: Column


@dataclass(frozen=True)
class EmbedItem:
    key: str
    node: Node
    relationship: Relationship
    inner: bool


@dataclass(frozen=True)
class ResolvedFilter:
    column: Column
    filter: Filter


@dataclass(frozen=True)
class ResolvedLogic:
    conjunction: str
    negated: bool
    children: tuple[ResolvedFilter | ResolvedLogic, ...]


@dataclass(frozen=True)
class ResolvedOrder:
    column: Column
    term: OrderTerm


@dataclass
class Node:
    table: Table
    # The name Postgres would report for this level's table in a 42703.
    label: str
    items: list[ColumnItem | EmbedItem] = field(default_factory=list)
    filters: list[ResolvedFilter] = field(default_factory=list)
    logic: list[ResolvedLogic] = field(default_factory=list)
    order: list[ResolvedOrder] = field(default_factory=list)
    limit: int | None = None
    offset: int | None = None


async def resolve(conn: Connection, table: Table, params: QueryParams) -> Node:
    node = await _node(conn, table, table.name, params.select, params, ())
    _refuse_unembedded(node, params)
    return node


async def _node(
    conn: Connection,
    table: Table,
    label: str,
    select: tuple[Field | Embed | Star, ...],
    params: QueryParams,
    path: tuple[str, ...],
) -> Node:
    node = Node(table=table, label=label)
    rels: list[Relationship] | None = None
    for item in select:
        if isinstance(item, Star):
            node.items.extend(ColumnItem(c.name, c) for c in table.columns)
        elif isinstance(item, Field):
            node.items.append(ColumnItem(item.alias or item.name, _column(node, item.name)))
        else:
            if rels is None:
                rels = await relationships(conn, table)
            relationship = _relationship(table, item, rels)
            child_label = f"{relationship.target.name}_{len(path) + 1}"
            child = await _node(
                conn,
                relationship.target,
                child_label,
                item.children,
                params,
                (*path, item.key),
            )
            node.items.append(EmbedItem(item.key, child, relationship, item.inner))
    shaping = params.at(path)
    node.filters = [ResolvedFilter(_column(node, f.column), f) for f in shaping.filters]
    node.logic = [_logic(node, tree) for tree in shaping.logic]
    node.order = [ResolvedOrder(_column(node, t.column), t) for t in shaping.order or []]
    node.limit, node.offset = shaping.limit, shaping.offset
    return node


def _logic(node: Node, tree: Logic) -> ResolvedLogic:
    children: list[ResolvedFilter | ResolvedLogic] = []
    for child in tree.children:
        if isinstance(child, Logic):
            children.append(_logic(node, child))
        else:
            children.append(ResolvedFilter(_column(node, child.column), child))
    return ResolvedLogic(tree.conjunction, tree.negated, tuple(children))


def _column(node: Node, name: str) -> Column:
    column = node.table.column(name)
    if column is None:
        raise PostgrestError(400, "42703", f"column {node.label}.{name} does not exist")
    return column


def _relationship(table: Table, embed: Embed, rels: list[Relationship]) -> Relationship:
    candidates = [r for r in rels if r.target.name == embed.relation]
    if embed.hint is not None:
        candidates = [r for r in candidates if _matches_hint(r, embed.hint)]
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise _no_relationship(table, embed, rels)
    raise PostgrestError(
        300,
        "PGRST201",
        f"Could not embed because more than one relationship was found for '{table.name}' and "
        f"'{embed.relation}'",
        details=[
            {
                "cardinality": r.cardinality,
                "embedding": f"{table.name} with {r.target.name}",
                "relationship": f"{r.constraint} using {r.fk_table}({', '.join(r.fk_columns)})"
                f" and {r.ref_table}({', '.join(r.ref_columns)})",
            }
            for r in candidates
        ],
        hint=f"Try changing '{embed.relation}' to one of the following: "
        + ", ".join(f"'{embed.relation}!{r.constraint}'" for r in candidates)
        + ". Find the desired relationship in the 'details' key.",
    )


def _matches_hint(relationship: Relationship, hint: str) -> bool:
    # The constraint's name, or a column of the foreign key on either side.
    return (
        hint == relationship.constraint
        or hint in relationship.fk_columns
        or hint in relationship.ref_columns
    )


def _no_relationship(table: Table, embed: Embed, rels: list[Relationship]) -> PostgrestError:
    hint_part = f"' using the hint '{embed.hint}" if embed.hint is not None else ""
    targets = sorted({r.target.name for r in rels})
    suggestion = None
    if embed.relation not in targets:
        best = resolution.closest(embed.relation, targets, minimum=0.75)
        if best is not None:
            suggestion = f"Perhaps you meant '{best}' instead of '{embed.relation}'."
    return PostgrestError(
        400,
        "PGRST200",
        f"Could not find a relationship between '{table.name}' and '{embed.relation}' in the "
        "schema cache",
        details=f"Searched for a foreign key relationship between '{table.name}' and "
        f"'{embed.relation}{hint_part}' in the schema '{table.schema}', but no matches were found.",
        hint=suggestion,
    )


def _refuse_unembedded(node: Node, params: QueryParams) -> None:
    for path in params.levels:
        if path and _find(node, path) is None:
            resource = path[-1]
            raise PostgrestError(
                400,
                "PGRST108",
                f"'{resource}' is not an embedded resource in this request",
                hint=f"Verify that '{resource}' is included in the 'select' query parameter.",
            )


def _find(node: Node, path: tuple[str, ...]) -> Node | None:
    if not path:
        return node
    for item in node.items:
        if isinstance(item, EmbedItem) and item.key == path[0]:
            return _find(item.node, path[1:])
    return None
