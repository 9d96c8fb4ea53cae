"""Intent detection from playbook rules: keywords and patterns over accent/case-folded text.
Patterns are tenant-written and run through RE2 (`jobs.engine.patterns`), in linear time.

One message may carry several intents ("hola, cuánto vale?" = hola + precio); each gets a
confidence 0..100: 100 when the whole message is one of its keywords, otherwise a base for the
kind of match (a pattern is written for one intent, a keyword may be incidental) raised by how
much of the message the turn explains at all (every intent's matches plus captured data).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from itertools import islice

from jobs.engine.patterns import Pattern, PatternError
from jobs.engine.playbook import IntentRule
from jobs.engine.text_normalise import fold_phrase

log = logging.getLogger(__name__)

Span = tuple[int, int]

_KEYWORD_BASE = 70
_PATTERN_BASE = 85
_COVERAGE_WEIGHT = 29  # a partial match never reaches the 100 of an exact one
# Matches kept per rule: enough to score a message, and a pasted wall of text repeating a
# keyword a hundred times costs no more than one that says it eight times.
_MAX_SPANS_PER_RULE = 8
# Compiled size all of a playbook's patterns may add up to (the seed's take about a fifth): the
# worst-case matching time of a message grows with it.
MAX_PLAYBOOK_PROGRAM = 100_000
MAX_PLAYBOOK_PATTERNS = 200  # each may keep a matching cache of its own
_PUNCTUATION = re.compile(r"[\s.,;:!?¡¿\"'()*_~\-]+")
# A keyword can only match where its first token (a run of word characters, or one other
# symbol such as an emoji) is a token of the text: the index of first tokens lets `detect`
# skip the rules that cannot match, most of them for a short message.
_TOKEN = re.compile(r"\w+|[^\w\s]")


@dataclass(frozen=True)
class IntentMatch:
    rule: IntentRule
    position: int  # first match in the text: orders intents of equal priority
    spans: tuple[Span, ...]
    exact: bool
    by_pattern: bool
    confidence: int = 0

    @property
    def intent(self) -> str:
        return self.rule.intent


@dataclass(frozen=True)
class _CompiledRule:
    rule: IntentRule
    keywords: re.Pattern[str] | None
    first_tokens: frozenset[str]
    exact: frozenset[str]
    patterns: tuple[Pattern, ...]


def _keyword_regex(keywords: Iterable[str]) -> re.Pattern[str] | None:
    phrases = sorted({fold_phrase(k) for k in keywords if k.strip()}, key=len, reverse=True)
    if not phrases:
        return None
    alternation = "|".join(re.escape(p).replace(r"\ ", r"\s+") for p in phrases)
    return re.compile(rf"(?<!\w)(?:{alternation})(?!\w)")


class _PatternBudget:
    """What a playbook's patterns may add up to: `MAX_PLAYBOOK_PATTERNS` patterns of
    `MAX_PLAYBOOK_PROGRAM` compiled size together."""

    def __init__(self) -> None:
        self.left = MAX_PLAYBOOK_PROGRAM
        self.count = MAX_PLAYBOOK_PATTERNS

    def compile(self, rule: IntentRule, source: str) -> Pattern | None:
        try:
            if self.count == 0:
                raise PatternError("over the playbook's budget of patterns")
            pattern = Pattern(source)
            if pattern.size > self.left:
                raise PatternError("over the playbook's budget of compiled patterns")
        except PatternError as exc:
            # A pattern RE2 cannot match safely is skipped: it must not take a turn down.
            log.error(
                "engine.intents.bad_pattern",
                extra={"intent": rule.intent, "pattern": source[:200], "error": str(exc)},
            )
            return None
        self.left -= pattern.size
        self.count -= 1
        return pattern


def _compile(rule: IntentRule, budget: _PatternBudget) -> _CompiledRule:
    compiled = (budget.compile(rule, source) for source in rule.patterns)
    patterns = [p for p in compiled if p is not None]
    phrases = [fold_phrase(k) for k in rule.keywords if k.strip()]
    first_tokens = frozenset(m.group() for p in phrases if (m := _TOKEN.search(p)))
    exact = frozenset(_core(p) for p in phrases)
    return _CompiledRule(rule, _keyword_regex(rule.keywords), first_tokens, exact, tuple(patterns))


def _core(folded: str) -> str:
    """The text without punctuation or surrounding space: "¡Hola!" and "hola" are equal."""
    return _PUNCTUATION.sub(" ", folded).strip()


def _inside(span: Span, excluded: Sequence[Span]) -> bool:
    return any(start <= span[0] and span[1] <= end for start, end in excluded)


def _content_length(text: str) -> int:
    return len(text) - sum(len(m) for m in _PUNCTUATION.findall(text))


def coverage(folded: str, spans: Iterable[Span]) -> float:
    """The share of the message's non-punctuation characters inside `spans`."""
    total = _content_length(folded)
    if total == 0:
        return 0.0
    inside = 0
    reached = 0
    for start, end in sorted(spans):  # count each character once where spans overlap
        start = max(start, reached)
        if end > start:
            inside += _content_length(folded[start:end])
            reached = end
    return inside / total


class IntentDetector:
    """Compiled once per playbook; `detect` is pure and cheap."""

    def __init__(self, rules: Iterable[IntentRule]) -> None:
        budget = _PatternBudget()
        self._rules = tuple(_compile(rule, budget) for rule in rules)
        self._by_first_token: dict[str, list[int]] = {}
        self._always: list[int] = []  # rules with patterns: no index can rule them out
        for i, compiled in enumerate(self._rules):
            if compiled.patterns:
                self._always.append(i)
            for token in compiled.first_tokens:
                self._by_first_token.setdefault(token, []).append(i)

    def detect(
        self, folded: str, mode: str, *, excluded: Sequence[Span] = (), covered: Sequence[Span] = ()
    ) -> list[IntentMatch]:
        """Every intent found in `folded` for `mode`, best rule per intent, ordered by priority
        then position. `excluded` spans (captured data such as "dirección de envío: …") are
        not read for intents; `covered` spans count as explained when scoring confidence."""
        core = _core(folded)
        best: dict[str, IntentMatch] = {}
        candidates = set(self._always)
        for token in set(_TOKEN.findall(folded)):
            candidates.update(self._by_first_token.get(token, ()))
        for i in sorted(candidates):  # playbook order: results do not depend on set order
            compiled = self._rules[i]
            rule = compiled.rule
            if rule.modes and mode not in rule.modes:
                continue
            match = self._match(compiled, folded, core, excluded)
            if match is None:
                continue
            previous = best.get(rule.intent)
            best[rule.intent] = match if previous is None else _merge(previous, match)
        matches = _unshadowed(list(best.values()))
        explained = coverage(folded, [s for m in matches for s in m.spans] + list(covered))
        scored = [_scored(m, explained) for m in matches]
        scored.sort(key=lambda m: (-m.rule.priority, m.position))
        return scored

    @staticmethod
    def _match(
        compiled: _CompiledRule, folded: str, core: str, excluded: Sequence[Span]
    ) -> IntentMatch | None:
        spans: list[Span] = []
        by_pattern = False
        if compiled.keywords is not None:
            found = (m.span() for m in compiled.keywords.finditer(folded))
            spans.extend(
                islice((s for s in found if not _inside(s, excluded)), _MAX_SPANS_PER_RULE)
            )
        for pattern in compiled.patterns:
            found = (s for s in pattern.spans(folded) if s[1] > s[0])
            kept = list(islice((s for s in found if not _inside(s, excluded)), _MAX_SPANS_PER_RULE))
            if kept:
                by_pattern = True
                spans.extend(kept)
        if not spans:
            return None
        return IntentMatch(
            rule=compiled.rule,
            position=min(s[0] for s in spans),
            spans=tuple(spans),
            exact=core in compiled.exact,
            by_pattern=by_pattern,
        )


def _unshadowed(matches: list[IntentMatch]) -> list[IntentMatch]:
    """Drop matches inside a longer match of another intent: the "vale" of "cuánto vale" is
    not an "ok", the "gracias" of "no gracias" is not a thank-you."""
    spans = [(m.intent, s) for m in matches for s in m.spans]

    def shadowed(intent: str, span: Span) -> bool:
        return any(
            other != intent
            and start <= span[0]
            and span[1] <= end
            and end - start > span[1] - span[0]
            for other, (start, end) in spans
        )

    kept: list[IntentMatch] = []
    for m in matches:
        own = tuple(s for s in m.spans if not shadowed(m.intent, s))
        if own == m.spans:
            kept.append(m)
        elif own:
            kept.append(replace(m, spans=own, position=min(s[0] for s in own)))
    return kept


def _merge(a: IntentMatch, b: IntentMatch) -> IntentMatch:
    """Two rules of one intent (say, Spanish and English): keep the stronger rule, all spans."""
    stronger = (
        a if (a.exact, a.by_pattern, -a.position) >= (b.exact, b.by_pattern, -b.position) else b
    )
    return IntentMatch(
        rule=stronger.rule,
        position=min(a.position, b.position),
        spans=a.spans + b.spans,
        exact=a.exact or b.exact,
        by_pattern=a.by_pattern or b.by_pattern,
    )


def _scored(match: IntentMatch, explained: float) -> IntentMatch:
    if match.exact:
        confidence = 100
    else:
        base = _PATTERN_BASE if match.by_pattern else _KEYWORD_BASE
        confidence = min(99, base + round(_COVERAGE_WEIGHT * explained))
    return replace(match, confidence=confidence)
