"""A `postgres_changes` binding of a join payload, read as Realtime reads it.

`{"event": "INSERT", "schema": "public", "table": "messages", "filter": "conversation_id=eq.42"}`
becomes an action (`*`, INSERT, UPDATE, DELETE), a schema and table pattern (`*` matches any),
a list of filters ANDed together and an optional column selection. The filter grammar is
PostgREST's: `column=[not.]op.value`, segments split on commas outside parentheses and quotes,
`in.(a,b)` turned into the array literal `{a,b}`, a double-quoted value unquoted. The error
messages are Realtime's, since clients show them in the `system` message they get back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

OPERATORS = (
    "eq",
    "neq",
    "lt",
    "lte",
    "gt",
    "gte",
    "in",
    "like",
    "ilike",
    "is",
    "match",
    "imatch",
    "isdistinct",
)


class ParamsError(Exception):
    """The binding cannot be read; the message is what Realtime reports."""


@dataclass(frozen=True, slots=True)
class Filter:
    column: str
    op: str
    value: str
    negate: bool


@dataclass(frozen=True, slots=True)
class Params:
    action: str  # *, INSERT, UPDATE or DELETE
    schema: str
    table: str
    filters: tuple[Filter, ...]
    select: tuple[str, ...] | None

    def describe(self) -> str:
        """Realtime's rendering of the parameters in subscription errors."""
        filters = [(f.column, f.op, f.value, f.negate) for f in self.filters]
        select = None if self.select is None else list(self.select)
        return (
            f"event: {self.action}, schema: {self.schema}, table: {self.table}, "
            f"filters: {inspect(filters)}, select: {inspect(select)}"
        )


def inspect(value: Any) -> str:
    """Elixir's `inspect` for the few shapes Realtime puts in its messages."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace('"', '\\"')
        return f'"{escaped}"'
    if isinstance(value, tuple):
        return "{" + ", ".join(inspect(v) for v in value) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(inspect(v) for v in value) + "]"
    if isinstance(value, dict):
        items = ", ".join(f"{inspect(k)} => {inspect(v)}" for k, v in value.items())
        return "%{" + items + "}"
    return str(value)


def parse(params: Any) -> Params:
    """The binding as Realtime's `parse_subscription_params` reads it."""
    if not isinstance(params, dict):
        raise ParamsError(_no_params(params))
    action = _action(params.get("event"))
    select = _select(params)
    schema, table, filter_ = params.get("schema"), params.get("table"), params.get("filter")
    if isinstance(schema, str) and isinstance(table, str) and isinstance(filter_, str):
        filters = parse_filters(filter_)
    elif isinstance(schema, str) and isinstance(table, str) and "filter" not in params:
        filters = ()
    elif isinstance(schema, str) and "table" not in params and "filter" not in params:
        table, filters = "*", ()
    elif isinstance(table, str) and "schema" not in params and "filter" not in params:
        schema, filters = "public", ()
    else:
        raise ParamsError(_no_params(params))
    if select is not None and "*" in (schema, table):
        raise ParamsError(
            "Column selection is not supported for wildcard subscriptions. "
            "Provide an explicit schema and table name."
        )
    assert isinstance(schema, str)
    assert isinstance(table, str)
    return Params(action, schema, table, filters, select)


def _no_params(params: Any) -> str:
    shown = (
        "<redacted>"
        if isinstance(params, dict) and ("user_token" in params or "auth_token" in params)
        else inspect(params)
    )
    return (
        "No subscription params provided. Please provide at least a `schema` or `table` "
        f"to subscribe to: {shown}"
    )


def _action(event: Any) -> str:
    if isinstance(event, str) and event.upper() in ("INSERT", "UPDATE", "DELETE"):
        return event.upper()
    return "*"


def _select(params: dict[str, Any]) -> tuple[str, ...] | None:
    value = params.get("select")
    if isinstance(value, list):
        columns = tuple(c for c in value if isinstance(c, str))
        return columns or None
    if isinstance(value, str):
        raise ParamsError(
            "Error parsing `select` params: expected a list of column name strings, "
            'e.g. select: ["col1", "col2"]'
        )
    return None


def parse_filters(text: str) -> tuple[Filter, ...]:
    trimmed = text.strip()
    if not trimmed:
        return ()
    try:
        return tuple(_segment(s) for s in _split_top_level(trimmed))
    except ParamsError as exc:
        raise ParamsError(f"Error parsing `filter` params: {exc}") from None


def _split_top_level(text: str) -> list[str]:
    """Commas separate filters, except inside parentheses (`in` lists) or double quotes; a
    quote opens only right after `.`, `(` or `,`."""
    segments: list[str] = []
    current: list[str] = []
    depth, quoted, prev, i = 0, False, "", 0
    while i < len(text):
        char = text[i]
        if quoted:
            if char == "\\" and i + 1 < len(text):
                current.append(text[i : i + 2])
                prev = text[i + 1]
                i += 2
                continue
            quoted = char != '"'
        elif char == '"' and prev in (".", "(", ","):
            quoted = True
        elif char == "(":
            depth += 1
        elif char == ")":
            depth = max(0, depth - 1)
        elif char == "," and depth == 0:
            segments.append("".join(current))
            current, prev, i = [], "", i + 1
            continue
        current.append(char)
        prev = char
        i += 1
    segments.append("".join(current))
    return segments


def _segment(segment: str) -> Filter:
    trimmed = segment.strip()
    if not trimmed:
        raise ParamsError("filter must not contain empty segments (check for extra commas)")
    column, eq, rest = trimmed.partition("=")
    if not eq:
        raise ParamsError(inspect([trimmed]))
    negate = rest.startswith("not.")
    op_value = rest.removeprefix("not.")
    op, dot, value = op_value.partition(".")
    if not dot:
        raise ParamsError(inspect([op_value]))
    if op not in OPERATORS:
        raise ParamsError(inspect([op, value]))
    if op == "in":
        if len(value) < 2 or not (value.startswith("(") and value.endswith(")")):
            raise ParamsError("`in` filter value must be wrapped by parentheses")
        value = "{" + value[1:-1] + "}"
    else:
        value = _unquote(value)
    return Filter(column, op, value, negate)


def _unquote(value: str) -> str:
    """`"a,b"` → `a,b` (backslash escapes the next character); anything malformed stays as is."""
    if not value.startswith('"'):
        return value
    out: list[str] = []
    i = 1
    while i < len(value):
        char = value[i]
        if char == '"':
            return "".join(out) if i == len(value) - 1 else value
        if char == "\\" and i + 1 < len(value):
            out.append(value[i + 1])
            i += 2
            continue
        out.append(char)
        i += 1
    return value
