"""Intent detection: keywords and patterns, folded; several intents per message; confidence."""

from __future__ import annotations

import pytest

from jobs.engine.intents import IntentDetector, coverage
from jobs.engine.playbook import IntentRule, Playbook
from jobs.engine.text_normalise import fold, fold_phrase


@pytest.mark.parametrize(
    ("text", "folded"),
    [
        ("Cuánto VALE", "cuanto vale"),
        ("ÑANDÚ", "nandu"),
        ("İstanbul", "istanbul"),
        ("👍 ok", "👍 ok"),
        ("", ""),
    ],
)
def test_fold_strips_accents_and_case_and_keeps_length(text: str, folded: str) -> None:
    assert fold(text) == folded
    assert len(fold(text)) == len(text)


def test_fold_phrase_collapses_whitespace() -> None:
    assert fold_phrase("  Buenos   Días\n") == "buenos dias"


def detector(*rules: IntentRule) -> IntentDetector:
    return IntentDetector(rules)


def test_keywords_match_whole_words_only() -> None:
    d = detector(IntentRule("hola", keywords=("hola",)))
    assert [m.intent for m in d.detect(fold("¡Hola!"), "conversacion")] == ["hola"]
    assert d.detect(fold("cholados"), "conversacion") == []


def test_keywords_written_with_accents_match_text_without_them() -> None:
    d = detector(IntentRule("envio", keywords=("envío",)))
    assert [m.intent for m in d.detect(fold("hacen ENVIO?"), "conversacion")] == ["envio"]


def test_exact_message_is_full_confidence_and_partial_is_less() -> None:
    d = detector(IntentRule("precio", keywords=("precio",)))
    exact = d.detect(fold("¿Precio?"), "conversacion")[0]
    partial = d.detect(fold("y el precio de eso cual es amigo"), "conversacion")[0]
    assert exact.confidence == 100
    assert 70 <= partial.confidence < 100


def test_several_intents_come_in_priority_then_text_order() -> None:
    d = detector(
        IntentRule("precio", keywords=("cuanto vale",)),
        IntentRule("envio", keywords=("envio",)),
        IntentRule("hola", kind="greeting", keywords=("hola",), priority=200),
    )
    found = d.detect(fold("envío? y cuánto vale? hola"), "conversacion")
    assert [m.intent for m in found] == ["hola", "envio", "precio"]
    assert all(m.confidence >= 90 for m in found)  # together they explain the message


def test_rules_limited_to_modes_apply_only_there() -> None:
    d = detector(IntentRule("compra_confirmada", keywords=("si",), modes=frozenset({"resumen"})))
    assert d.detect("si", "conversacion") == []
    assert [m.intent for m in d.detect("si", "resumen")] == ["compra_confirmada"]


def test_patterns_are_regular_expressions_over_folded_text() -> None:
    d = detector(
        IntentRule("resumen_2x", kind="pack", pack="2x", patterns=(r"\bQUIERO (el )?(2|dós)\W*$",))
    )
    assert [m.intent for m in d.detect(fold("Quiero el DOS!"), "ofrecer_promos")] == ["resumen_2x"]
    assert d.detect(fold("quiero el dos pues"), "ofrecer_promos") == []


def test_a_broken_pattern_is_skipped_not_fatal() -> None:
    d = detector(IntentRule("x", patterns=("(unclosed", r"\bok\b")))
    assert [m.intent for m in d.detect("ok", "conversacion")] == ["x"]


def test_excluded_spans_are_not_read_for_intents() -> None:
    d = detector(IntentRule("envio", keywords=("envio",)))
    text = fold("dirección de envío: calle 1 # 2-3")
    assert d.detect(text, "conversacion", excluded=[(0, len(text))]) == []


def test_coverage_ignores_punctuation() -> None:
    assert coverage("hola!!", [(0, 4)]) == 1.0
    assert coverage("...", [(0, 3)]) == 0.0


@pytest.mark.parametrize(
    ("text", "mode", "intents"),
    [
        ("Hola, ¿cuánto vale?", "conversacion", ["hola", "precio"]),
        ("buenas tardes, como se toma?", "conversacion", ["hola", "como_se_toma"]),
        ("hacen envíos a Medellín?", "conversacion", ["envio"]),
        ("tiene registro INVIMA?", "conversacion", ["invima"]),
        ("How much does shipping cost?", "conversacion", ["precio", "envio"]),
        ("quiero el de 2", "ofrecer_promos", ["resumen_2x"]),
        ("combo tres", "ofrecer_promos", ["resumen_3x"]),
        ("1x", "ofrecer_promos", ["resumen_1x"]),
        ("2️⃣", "ofrecer_promos", ["resumen_2x"]),
        ("si", "resumen", ["compra_confirmada", "ack"]),
        ("si", "collecting_data", ["ack"]),
        ("quiero hablar con un asesor", "conversacion", ["asesor"]),
        ("jajaja", "collecting_data", ["ack"]),
    ],
)
def test_seed_intents(playbook: Playbook, text: str, mode: str, intents: list[str]) -> None:
    found = IntentDetector(playbook.rules).detect(fold(text), mode)
    assert [m.intent for m in found] == intents
