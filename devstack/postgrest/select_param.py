"""The `select` query parameter, parsed as PostgREST's `pFieldForest` parses it: `*`, columns,
`alias:column`, and embedded resources `[alias:]relation[!hint][!inner|!left](…)`. JSON paths,
casts, spreads and aggregates are refused with PGRST127; malformed text is PGRST100."""

from __future__ import annotations

from dataclasses import dataclass

from devstack.postgrest import errors
from devstack.postgrest.errors import PostgrestError


@dataclass(frozen=True)
class Field:
    name: str
    alias: str | None = None


@dataclass(frozen=True)
class Embed:
    relation: str
    alias: str | None
    hint: str | None
    inner: bool
    children: tuple[Field | Embed | Star, ...]

    @property
    def key(self) -> str:
        return self.alias or self.relation


@dataclass(frozen=True)
class Star:
    pass


SelectItem = Field | Embed | Star


def parse(text: str) -> tuple[SelectItem, ...]:
    parser = _SelectParser(text)
    items = parser.forest()
    if parser.pos != len(text):
        raise parser.error("unexpected")
    return items


class _SelectParser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def error(self, what: str) -> PostgrestError:
        return PostgrestError(
            400,
            "PGRST100",
            f'"failed to parse select parameter ({self.text})" (line 1, column {self.pos + 1})',
            details=f"{what} {self._next()!r}" if self.pos < len(self.text) else f"{what} end",
        )

    def _next(self) -> str:
        return self.text[self.pos]

    def _peek(self, token: str) -> bool:
        return self.text.startswith(token, self.pos)

    def forest(self) -> tuple[SelectItem, ...]:
        items: list[SelectItem] = []
        if self.pos >= len(self.text) or self._peek(")"):
            return ()
        while True:
            self._spaces()
            items.append(self.item())
            self._spaces()
            if self._peek(","):
                self.pos += 1
                continue
            return tuple(items)

    def item(self) -> SelectItem:
        if self._peek("..."):
            raise _not_served("spread embeds ('...') in select")
        if self._peek("*"):
            self.pos += 1
            return Star()
        name = self.name()
        alias = None
        if self._peek(":") and not self._peek("::"):
            self.pos += 1
            alias, name = name, self.name()
        hint, inner = self._modifiers()
        if self._peek("("):
            if name == "count" or alias == "count":
                raise _not_served("aggregate functions in select")
            self.pos += 1
            children = self.forest()
            if not self._peek(")"):
                raise self.error("expecting ')', unexpected")
            self.pos += 1
            return Embed(name, alias, hint, inner, children)
        if hint is not None or inner:
            raise self.error("expecting '(', unexpected")
        if self._peek("->") or self._peek("::") or self._peek("."):
            raise _not_served("JSON paths, casts and aggregates in select")
        return Field(name, alias)

    def _modifiers(self) -> tuple[str | None, bool]:
        """`!hint`, `!inner`, `!left`, in any order."""
        hint = None
        inner = False
        while self._peek("!"):
            self.pos += 1
            word = self.name()
            if word in ("inner", "left"):
                inner = word == "inner"
            elif hint is None:
                hint = word
            else:
                raise self.error("unexpected")
        return hint, inner

    def name(self) -> str:
        self._spaces()
        if self._peek('"'):
            return self._quoted()
        start = self.pos
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char == "-" and self._peek("->"):
                break
            if char.isalnum() or char in "_$- ":
                self.pos += 1
                continue
            break
        word = self.text[start : self.pos].strip()
        if not word:
            raise self.error("expecting field name (* or [a..z0..9_$]), unexpected")
        return word

    def _quoted(self) -> str:
        self.pos += 1
        out: list[str] = []
        while self.pos < len(self.text):
            char = self.text[self.pos]
            if char == "\\" and self.pos + 1 < len(self.text):
                out.append(self.text[self.pos + 1])
                self.pos += 2
                continue
            if char == '"':
                self.pos += 1
                return "".join(out)
            out.append(char)
            self.pos += 1
        raise self.error("unterminated quoted name,")

    def _spaces(self) -> None:
        while self._peek(" ") or self._peek("\t"):
            self.pos += 1


def _not_served(what: str) -> PostgrestError:
    return errors.not_implemented(f"The local stand-in does not serve {what}")
