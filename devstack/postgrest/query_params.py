"""The query string of a table request, parsed as PostgREST's `ApiRequest.QueryParams` parses it.

`select` (`select_param`), filters `[embed.]column=[not.]op.value`,
`[embed.]order=col[.asc|.desc][.nullsfirst|.nullslast]`, `[embed.]limit`, `[embed.]offset` and
logic trees `[embed.][not.]or=(…)` / `and=(…)`. What PostgREST accepts but this stand-in does not
serve (JSON paths, full-text and quantified operators, `columns`, `on_conflict`) is refused with
PGRST127, never ignored. Malformed input is PGRST100.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from devstack.postgrest import errors, select_param
from devstack.postgrest.errors import PostgrestError
from devstack.postgrest.select_param import SelectItem

# Operators and the SQL they become; the value is cast to the column's type, except for the
# pattern operators, whose right side is text.
SIMPLE_OPERATORS = {
    "eq": "=",
    "neq": "<>",
    "gt": ">",
    "gte": ">=",
    "lt": "<",
    "lte": "<=",
    "cs": "@>",
    "cd": "<@",
    "ov": "&&",
    "sl": "<<",
    "sr": ">>",
    "nxr": "&<",
    "nxl": "&>",
    "adj": "-|-",
}
PATTERN_OPERATORS = {"like": "LIKE", "ilike": "ILIKE", "match": "~", "imatch": "~*"}
IS_VALUES = {
    "null": "IS NULL",
    "not_null": "IS NOT NULL",
    "true": "IS TRUE",
    "false": "IS FALSE",
    "unknown": "IS UNKNOWN",
}
_UNSERVED_OPERATORS = ("fts", "plfts", "phfts", "wfts", "isdistinct")
_EMBEDDABLE_KEYS = ("order", "limit", "offset", "and", "or")
_RESERVED = ("select", "columns", "on_conflict")


@dataclass(frozen=True)
class Filter:
    column: str
    operator: str  # a key of SIMPLE_OPERATORS / PATTERN_OPERATORS, or "in" / "is"
    negated: bool
    value: str | None = None  # for the single-value operators
    values: tuple[str, ...] = ()  # for "in"


@dataclass(frozen=True)
class Logic:
    """`or=(…)` / `and=(…)` (`not.or`, nested `and(…)`): filters joined by OR or AND."""

    conjunction: str  # "AND" or "OR"
    negated: bool
    children: tuple[Filter | Logic, ...]


@dataclass(frozen=True)
class OrderTerm:
    column: str
    descending: bool
    nulls: str | None  # "first", "last" or None


@dataclass
class Shaping:
    """What applies to one level: the top (path ()) or an embedded resource (its key path)."""

    filters: list[Filter] = field(default_factory=list)
    logic: list[Logic] = field(default_factory=list)
    order: list[OrderTerm] | None = None
    limit: int | None = None
    offset: int | None = None


@dataclass
class QueryParams:
    select: tuple[SelectItem, ...]
    levels: dict[tuple[str, ...], Shaping]

    def at(self, path: tuple[str, ...]) -> Shaping:
        return self.levels.get(path) or Shaping()


def parse(params: list[tuple[str, str]]) -> QueryParams:
    select_text = "*"
    levels: dict[tuple[str, ...], Shaping] = {}
    for key, value in params:
        if key == "select":
            select_text = value
            continue
        if key in _RESERVED:
            raise _not_served(f"the '{key}' query parameter")
        *path_list, last = key.split(".")
        path = tuple(path_list)
        if last in ("and", "or"):
            negated = bool(path) and path[-1] == "not"
            path = path[:-1] if negated else path
            if value != "":
                tree = _logic(last, negated, value, key)
                levels.setdefault(path, Shaping()).logic.append(tree)
            continue
        if last in _EMBEDDABLE_KEYS:
            if value == "":
                continue
            shaping = levels.setdefault(path, Shaping())
            _embeddable(shaping, last, value)
            continue
        if value == "":
            # An empty value is no filter at all (PostgREST drops empty parameters).
            continue
        if "->" in last or "::" in last:
            raise _not_served("JSON paths and casts in filters")
        levels.setdefault(path, Shaping()).filters.append(_filter(last, value))
    return QueryParams(select=select_param.parse(select_text), levels=levels)


# -- logic trees -------------------------------------------------------------------------------


def _logic(operator: str, negated: bool, text: str, key: str) -> Logic:
    """`(a.eq.1,and(b.is.null,c.gt.2))`: elements split on the commas outside parentheses and
    double quotes."""
    if not (text.startswith("(") and text.endswith(")")):
        raise _logic_error(key, text)
    children: list[Filter | Logic] = []
    for element in _split_elements(text[1:-1], key, text):
        children.append(_logic_element(element, key, text))
    if not children:
        raise _logic_error(key, text)
    return Logic("AND" if operator == "and" else "OR", negated, tuple(children))


def _logic_element(element: str, key: str, whole: str) -> Filter | Logic:
    rest, negated = element, False
    if rest.startswith("not.") and rest[4:].startswith(("and(", "or(")):
        rest, negated = rest[4:], True
    for operator in ("and", "or"):
        if rest.startswith(f"{operator}("):
            return _logic(operator, negated, rest[len(operator) :], key)
    column, dot, condition = element.partition(".")
    if not dot or not column:
        raise _logic_error(key, whole)
    if "->" in column or "::" in column:
        raise _not_served("JSON paths and casts in filters")
    parsed = _filter(column, condition)
    if (
        parsed.value is not None
        and len(parsed.value) >= 2
        and parsed.value[0] == '"' == parsed.value[-1]
    ):
        parsed = Filter(parsed.column, parsed.operator, parsed.negated, value=parsed.value[1:-1])
    return parsed


def _split_elements(body: str, key: str, whole: str) -> list[str]:
    elements: list[str] = []
    depth, quoted, start = 0, False, 0
    for i, char in enumerate(body):
        if char == '"':
            quoted = not quoted
        elif quoted:
            continue
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise _logic_error(key, whole)
        elif char == "," and depth == 0:
            elements.append(body[start:i])
            start = i + 1
    if depth != 0 or quoted:
        raise _logic_error(key, whole)
    elements.append(body[start:])
    return [e.strip() for e in elements]


def _logic_error(key: str, text: str) -> PostgrestError:
    return PostgrestError(
        400,
        "PGRST100",
        f'"failed to parse logic tree ({text})" (line 1, column 1)',
        details=f"in the '{key}' query parameter",
    )


# -- filters -----------------------------------------------------------------------------------


def _filter(column: str, text: str) -> Filter:
    rest = text
    negated = False
    if rest.startswith("not."):
        negated, rest = True, rest[4:]
    operator, dot, value = rest.partition(".")
    if "(" in operator:
        raise _not_served(f"quantified or language-qualified operators ({operator})")
    if not dot:
        raise _filter_error(text, "expecting delimiter (.)")
    if operator == "in":
        return Filter(column, "in", negated, values=_list_values(text, value))
    if operator == "is":
        if value.lower() not in IS_VALUES:
            raise _filter_error(text, "expecting isVal: (null, not_null, true, false, unknown)")
        return Filter(column, "is", negated, value=value.lower())
    if operator in SIMPLE_OPERATORS or operator in PATTERN_OPERATORS:
        return Filter(column, operator, negated, value=value)
    if operator in _UNSERVED_OPERATORS:
        raise _not_served(f"the '{operator}' operator")
    raise _filter_error(text, 'expecting "not" or operator (eq, gt, ...)')


def _list_values(text: str, value: str) -> tuple[str, ...]:
    inner = value.strip()
    if not (inner.startswith("(") and inner.endswith(")")):
        raise _filter_error(text, "expecting (")
    body = inner[1:-1]
    values: list[str] = []
    i = 0
    while True:
        if i < len(body) and body[i] == '"':
            j, out = i + 1, []
            while j < len(body) and body[j] != '"':
                if body[j] == "\\" and j + 1 < len(body):
                    j += 1
                out.append(body[j])
                j += 1
            if j >= len(body):
                raise _filter_error(text, "unterminated quoted value")
            values.append("".join(out))
            i = j + 1
        else:
            j = i
            while j < len(body) and body[j] != ",":
                j += 1
            values.append(body[i:j])
            i = j
        if i >= len(body):
            return tuple(values)
        if body[i] != ",":
            raise _filter_error(text, "expecting , or )")
        i += 1


def _embeddable(shaping: Shaping, key: str, value: str) -> None:
    if key == "order":
        shaping.order = [_order_term(value, term) for term in value.split(",")]
        return
    try:
        number = int(value)
    except ValueError:
        raise PostgrestError(
            400, "PGRST100", f'"failed to parse {key} parameter ({value})"'
        ) from None
    if number < 0:
        raise PostgrestError(
            416,
            "PGRST103",
            "Requested range not satisfiable",
            details="Limit should be greater than or equal to zero.",
        )
    if key == "limit":
        shaping.limit = number
    else:
        shaping.offset = number


def _order_term(whole: str, term: str) -> OrderTerm:
    parts = term.strip().split(".")
    column = parts[0]
    if not column or "(" in column or "->" in column:
        if "(" in column:
            raise _not_served("ordering by an embedded resource's column")
        raise PostgrestError(400, "PGRST100", f'"failed to parse order ({whole})"')
    descending = False
    nulls: str | None = None
    modifiers = parts[1:]
    if modifiers and modifiers[0] in ("asc", "desc"):
        descending = modifiers.pop(0) == "desc"
    if modifiers and modifiers[0] in ("nullsfirst", "nullslast"):
        nulls = modifiers.pop(0).removeprefix("nulls")
    if modifiers:
        raise PostgrestError(
            400,
            "PGRST100",
            f'"failed to parse order ({whole})"',
            details='expecting "asc", "desc", "nullsfirst" or "nullslast"',
        )
    return OrderTerm(column, descending, nulls)


def _filter_error(text: str, details: str) -> PostgrestError:
    return PostgrestError(400, "PGRST100", f'"failed to parse filter ({text})"', details=details)


def _not_served(what: str) -> PostgrestError:
    return errors.not_implemented(f"The local stand-in does not serve {what}")
