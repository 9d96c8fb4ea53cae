"""Intent patterns written by tenants (`agent_intents.patterns`), matched in linear time.

A backtracking engine (Python's `re`) can spend exponential time on a pattern such as
`^(a+)+$`, and the engine runs on the worker's event loop, shared by every tenant. Patterns are
therefore compiled with RE2, whose matching time grows linearly with the text, within a memory
and program-size budget; only the first `MAX_MATCHED_CHARS` of a text are read. What RE2 cannot
match in linear time (backreferences, lookaround, atomic groups, possessive quantifiers) raises
`PatternError`; the migration refuses the first three on write.

The syntax is Python's as far as RE2 shares it, and Python's meaning is kept where RE2's differs:
`\\w`, `\\d`, `\\s` and their negations match any script's letters, digits and spaces (RE2's own
are ASCII), `\\Z`, `{,n}`, `\\uXXXX` are translated, and `(?<!\\w)` opening and `(?!\\w)` closing a
pattern (whole-word guards, as in the seed) are matched as a non-word character or the text's
edge. What remains different: `\\b` and `\\B` see ASCII word characters only, `\\W` and `\\S`
inside brackets are ASCII, and `$` matches only at the very end (the engine's texts are trimmed).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import re2

from jobs.engine.text_normalise import strip_accents

MAX_PATTERN_CHARS = 500  # as the migration's check
# Patterns recognise short requests ("quiero el 2"): a longer text is matched on its start.
MAX_MATCHED_CHARS = 1024
MAX_MATCHES = 64  # per text: the engine scores a message on a few
# Memory RE2 may use for one pattern (its program and its matching cache); a pattern that
# needs more does not compile.
MAX_PATTERN_MEMORY = 512 << 10
# RE2's time per character grows with the size of the compiled program at worst (when its DFA
# gives up): a pattern past this size is refused, and a playbook's patterns share a budget.
MAX_PROGRAM_SIZE = 10_000

# What Python's `re` calls a word character, a decimal digit and a space for str patterns
# (str.isalnum() or "_", Unicode category Nd, str.isspace()).
_WORD = r"\p{L}\p{N}_"
_DIGIT = r"\p{Nd}"
_SPACE = r"\t\n\x0b\x0c\r\x1c-\x1f \x85\xa0\x{1680}\x{2000}-\x{200a}\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}"
# Case-sensitive inside: Python's classes ignore the case flag (RE2 would add case variants).
_OUTSIDE = {
    "w": f"(?-i:[{_WORD}])",
    "W": f"(?-i:[^{_WORD}])",
    "d": _DIGIT,
    "D": r"\P{Nd}",
    "s": f"[{_SPACE}]",
    "S": f"[^{_SPACE}]",
    "Z": r"\z",
}
_INSIDE = {"w": _WORD, "d": _DIGIT, "D": r"\P{Nd}", "s": _SPACE}
_HEX = "0123456789abcdefABCDEF"
_NOT_AFTER_WORD = "(?<!\\w)"
_NOT_BEFORE_WORD = "(?!\\w)"
_EMPTY_MINIMUM = re.compile(r"\{,\d*\}")  # Python's {,n}: RE2 reads it as text


class PatternError(ValueError):
    """The pattern cannot be matched safely; the message says why."""


def translate(source: str) -> str:
    """`source` in RE2's syntax, with Python's meaning of the Unicode classes, `\\Z`, `{,n}`
    and `\\uXXXX` / `\\UXXXXXXXX` escapes; anything else is passed on for RE2 to judge."""
    out: list[str] = []
    i, n = 0, len(source)
    in_class = False
    while i < n:
        c = source[i]
        if c == "\\" and i + 1 < n:
            text, i = _escape(source, i, in_class)
        elif in_class:
            text, i = _in_class(source, i)
            in_class = c != "]"
        elif c == "[":
            text, i = _class_start(source, i)
            in_class = True
        elif _EMPTY_MINIMUM.match(source, i):
            text, i = "{0,", i + 2
        else:
            text, i = c, i + 1
        out.append(text)
    return "".join(out)


def _escape(source: str, i: int, in_class: bool) -> tuple[str, int]:
    """The escape at `i` (a backslash and what follows), and the index after it."""
    e = source[i + 1]
    table = _INSIDE if in_class else _OUTSIDE
    if e in table:
        return table[e], i + 2
    width = {"u": 4, "U": 8}.get(e)
    if width is not None:
        digits = source[i + 2 : i + 2 + width]
        if len(digits) == width and all(d in _HEX for d in digits):
            return f"\\x{{{digits}}}", i + 2 + width
    return source[i : i + 2], i + 2


def _in_class(source: str, i: int) -> tuple[str, int]:
    """One item inside brackets: a POSIX class such as [:alpha:] whole, else one character."""
    if source.startswith("[:", i):
        end = source.find(":]", i + 2)
        if end != -1:
            return source[i : end + 2], end + 2
    return source[i], i + 1


def _class_start(source: str, i: int) -> tuple[str, int]:
    """The opening of a bracket class: "[", "^" if negated, and a leading "]" (a literal)."""
    start = i + 1
    if source.startswith("^", start):
        start += 1
    if source.startswith("]", start):
        start += 1
    return source[i:start], start


def word_guards(source: str) -> tuple[bool, str, bool]:
    """Python's `(?<!\\w)` opening and `(?!\\w)` closing a pattern without a top-level "|"
    (a whole word: the seed's laughter patterns): RE2 has no lookaround, so they are split off
    and matched as a character, or the text's edge, on each side of the core."""
    before = source.startswith(_NOT_AFTER_WORD)
    core = source[len(_NOT_AFTER_WORD) :] if before else source
    after = core.endswith(_NOT_BEFORE_WORD) and not _escaped(
        core, len(core) - len(_NOT_BEFORE_WORD)
    )
    core = core[: -len(_NOT_BEFORE_WORD)] if after else core
    if (before or after) and _has_top_level_bar(core):
        return False, source, False
    return before, core, after


def _escaped(source: str, i: int) -> bool:
    """The character at `i` follows an odd run of backslashes."""
    run = len(source[:i]) - len(source[:i].rstrip("\\"))
    return run % 2 == 1


def _has_top_level_bar(source: str) -> bool:
    depth, i, in_class = 0, 0, False
    while i < len(source):
        c = source[i]
        if c == "\\":
            i += 2
            continue
        if in_class:
            _, i = _in_class(source, i)
            in_class = c != "]"
            continue
        if c == "[":
            _, i = _class_start(source, i)
            in_class = True
            continue
        depth += {"(": 1, ")": -1}.get(c, 0)
        if c == "|" and depth == 0:
            return True
        i += 1
    return False


class Pattern:
    """One compiled pattern; `spans` finds its matches in the start of a text."""

    def __init__(self, source: str) -> None:
        if len(source) > MAX_PATTERN_CHARS:
            raise PatternError(f"longer than {MAX_PATTERN_CHARS} characters")
        options = re2.Options()
        options.case_sensitive = False
        options.max_mem = MAX_PATTERN_MEMORY
        options.log_errors = False
        # The text is folded; the pattern loses only its accents (lowercasing it would turn
        # \W into \w), and matching ignores case.
        before, core, after = word_guards(strip_accents(source))
        self._guarded = before
        compiled = "".join(
            (
                f"(?:\\A|(?-i:[^{_WORD}]))" if before else "",
                f"({translate(core)})",
                f"(?:(?-i:[^{_WORD}])|\\z)" if after else "",
            )
        )
        try:
            self._regexp: Any = re2.compile(compiled, options)
        except (re2.error, ValueError) as exc:  # ValueError: text RE2 cannot take (surrogates)
            raise PatternError(str(exc) or "not a pattern RE2 can match") from None
        self.size = int(self._regexp.programsize)
        if self.size > MAX_PROGRAM_SIZE:
            raise PatternError(f"too large once compiled ({self.size} > {MAX_PROGRAM_SIZE})")
        self.source = source

    def spans(self, text: str) -> Iterator[tuple[int, int]]:
        """Start and end of each match in the first MAX_MATCHED_CHARS of `text`, in order (at
        most MAX_MATCHES)."""
        text = text[:MAX_MATCHED_CHARS]
        start_from = 0  # where the next match may begin, as in re.finditer
        for _ in range(MAX_MATCHES):
            # A guarded pattern reads the character before its match.
            pos = start_from - 1 if self._guarded and start_from > 0 else start_from
            if pos > len(text):
                return
            match = self._regexp.search(text, pos)
            if match is None:
                return
            start, end = (int(x) for x in match.span(1))
            yield start, end
            start_from = end if end > start else end + 1
