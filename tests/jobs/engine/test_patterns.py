"""Tenant-written intent patterns: matched by RE2 in linear time, with the seed's patterns matching
exactly what Python's `re` matched; what RE2 cannot match safely is skipped, never fatal."""

from __future__ import annotations

import logging
import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobs.engine.intents import MAX_PLAYBOOK_PATTERNS, MAX_PLAYBOOK_PROGRAM, IntentDetector
from jobs.engine.patterns import (
    MAX_MATCHED_CHARS,
    MAX_PATTERN_CHARS,
    Pattern,
    PatternError,
    translate,
)
from jobs.engine.playbook import IntentRule, Playbook
from jobs.engine.text_normalise import fold, strip_accents


def _python_spans(source: str, text: str) -> list[tuple[int, int]]:
    """What the engine matched before RE2: Python's `re`, accents off, case ignored."""
    regexp = re.compile(strip_accents(source), re.IGNORECASE)
    return [m.span() for m in regexp.finditer(text) if m.end() > m.start()]


def _spans(source: str, text: str) -> list[tuple[int, int]]:
    return [s for s in Pattern(source).spans(text) if s[1] > s[0]]


@pytest.mark.parametrize("length", [27, 40, MAX_MATCHED_CHARS - 1])
def test_a_catastrophic_pattern_is_matched_in_linear_time(length: int) -> None:
    # Python's `re` needs about 2**length steps to reject this text.
    text = "a" * length + "!"
    started = time.perf_counter()
    assert _spans(r"^(a+)+$", text) == []
    assert _spans(r"(x+x+)+y", "x" * length) == []
    assert _spans(r"((a*)*)*b", text) == []
    assert time.perf_counter() - started < 0.5


def test_a_detector_with_a_hostile_rule_answers_at_once() -> None:
    detector = IntentDetector(
        [
            IntentRule("trampa", patterns=(r"^(a+)+$", r"^(\w+\s?)*$")),
            IntentRule("precio", keywords=("precio",)),
        ]
    )
    text = fold("a" * 40 + "! ¿precio? " + "palabra " * 400)
    started = time.perf_counter()
    assert [m.intent for m in detector.detect(text, "conversacion")] == ["precio"]
    assert time.perf_counter() - started < 0.5


def test_seed_patterns_are_all_usable(playbook: Playbook) -> None:
    sources = [p for rule in playbook.rules for p in rule.patterns]
    assert len(sources) >= 15
    for source in sources:
        Pattern(source)  # raises if RE2 could not take it


_WORDS = [
    "quiero",
    "el",
    "la",
    "los",
    "de",
    "pack",
    "paquete",
    "combo",
    "1",
    "2",
    "3",
    "uno",
    "una",
    "dos",
    "tres",
    "one",
    "two",
    "three",
    "i'll",
    "ill",
    "take",
    "i want",
    "give me",
    "the",
    "ja",
    "je",
    "jaja",
    "jajaja",
    "jsjs",
    "haha",
    "hahah",
    "js",
    "j",
    "Quiéro",
    "DOS",
    "ÚNA",
    "jajá",
]
_GLUE = ["", " ", "  ", "!", "?", "¿", "¡", ".", ",", "\n", "👍", "😂", "-", "_", "x", "9"]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(_WORDS), st.sampled_from(_GLUE)), max_size=8))
def test_seed_patterns_match_what_pythons_re_matched(
    playbook: Playbook, parts: list[tuple[str, str]]
) -> None:
    text = fold("".join(word + glue for word, glue in parts))
    for rule in playbook.rules:
        for source in rule.patterns:
            assert _spans(source, text) == _python_spans(source, text), (source, text)


@pytest.mark.parametrize(
    ("source", "text"),
    [
        (r"(?<!\w)j[aeiou]j[aeiouj]*(?!\w)", "jaja jeje, xjaja jajax ja-jaja"),
        (r"(?<!\w)(ha){2,}h?(?!\w)", "hahah haha! ahaha hahax _haha"),
        (r"(?<!\w)\d+\.", "1.2.3. a4. 5."),  # a match may end where the next begins
        (r"(?<!\w)\$\d+(?!\w)", "cuesta $50, $60x o $70"),
        (r"(?<!\w)jaja", "jajajaja jaja"),
        (r"\bquiero\b", "quiero, quieroo, yo quiero"),
        (r"^\W*(2|dos|two)\W*$", "  dos!! "),
        (r"\w+", "niño Ωμέγα кот 123 ٣ _x ²"),  # letters and digits of any script
        (r"\d+", "12 ٣٤ ²"),
        (r"\s+", "a\u00a0b\u2003c\u3000d\x1ce\x0bf"),
        (r"[\w]+", "кот_1"),
        (r"[^\w\s]+", "¿qué? 👍👍"),
        (r"\W+", "¿qué? 👍👍"),
        (r"a{,2}b", "aaab"),
        (r"\u00f1|\U0001F44D", "n 👍"),
        (r"caf\Z", "cafe caf"),
        (r"(?P<n>precio)s?", "precios"),
        (r"[]a]+", "]a]"),
        (r"[[:alpha:]]+", "abc1"),
    ],
)
def test_python_syntax_keeps_its_meaning(source: str, text: str) -> None:
    text = fold(text)
    if "[:" in source:  # POSIX classes are RE2's own (Python reads them as plain characters)
        assert _spans(source, text) == [(0, 3)]
        return
    assert _spans(source, text) == _python_spans(source, text)


def test_unicode_classes_are_pythons() -> None:
    sample = [chr(c) for c in range(0, 0x3100)] + ["\U0001d7d8", "\U00010348", "\U0001f600"]
    for name in ("w", "W", "d", "D", "s", "S"):
        python = re.compile(rf"\{name}")
        ours = Pattern(rf"\{name}")
        for char in sample:
            expected = python.fullmatch(char) is not None
            found = [s for s in ours.spans(char) if s == (0, 1)] != []
            assert found == expected, (name, hex(ord(char)))


def test_translation_leaves_escaped_backslashes_and_classes_alone() -> None:
    assert translate(r"\\w") == r"\\w"
    assert translate(r"[\\]w") == r"[\\]w"
    assert translate(r"a{,3}") == "a{0,3}"
    assert translate(r"{,x}") == "{,x}"


@pytest.mark.parametrize(
    "source",
    [
        r"(a)\1",  # backreference
        r"(?P<x>a)(?P=x)",
        r"a(?=b)",  # lookahead inside a pattern
        r"(?<=a)b",
        r"a(?<!\w)b",
        r"(?<!\w)a|b(?!\w)",  # a guard over a top-level alternation is not a whole-word guard
        r"(?>a+)b",  # atomic group
        r"a++",  # possessive
        r"(?(1)a|b)",
        r"(unclosed",
        r"\w{1000}",  # too large once compiled
        "a" * (MAX_PATTERN_CHARS + 1),
    ],
)
def test_what_re2_cannot_match_safely_is_a_pattern_error(source: str) -> None:
    with pytest.raises(PatternError):
        Pattern(source)


def test_a_bad_pattern_is_skipped_with_an_error_naming_its_intent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="jobs.engine.intents"):
        detector = IntentDetector([IntentRule("eco", patterns=(r"(\w+) \1", r"\bok\b"))])
    assert [m.intent for m in detector.detect("ok", "conversacion")] == ["eco"]
    [record] = [r for r in caplog.records if r.getMessage() == "engine.intents.bad_pattern"]
    assert record.levelno == logging.ERROR
    assert record.__dict__["intent"] == "eco"


def test_only_the_start_of_a_long_text_is_matched() -> None:
    text = "x " * MAX_MATCHED_CHARS + "quiero el dos"
    assert _spans(r"quiero el dos", text) == []
    assert _spans(r"quiero el dos", "quiero el dos " + text) == [(0, 13)]


def test_a_playbook_shares_one_budget_of_compiled_patterns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    big = r"(.{0,40}){20}y"
    size = Pattern(big).size
    count = MAX_PLAYBOOK_PROGRAM // size + 3
    rules = [IntentRule(f"r{i}", patterns=(big + "z" * i,)) for i in range(count)]
    with caplog.at_level(logging.ERROR, logger="jobs.engine.intents"):
        IntentDetector(rules)
    over = [r for r in caplog.records if "budget" in str(r.__dict__.get("error"))]
    assert len(over) >= 3


def test_a_playbook_shares_one_budget_of_patterns(caplog: pytest.LogCaptureFixture) -> None:
    rules = [
        IntentRule(f"r{i}", patterns=(rf"\bp{i}\b",)) for i in range(MAX_PLAYBOOK_PATTERNS + 5)
    ]
    with caplog.at_level(logging.ERROR, logger="jobs.engine.intents"):
        detector = IntentDetector(rules)
    over = [r for r in caplog.records if "budget of patterns" in str(r.__dict__.get("error"))]
    assert len(over) == 5
    assert [m.intent for m in detector.detect("p0 p199 p200", "conversacion")] == ["r0", "r199"]
