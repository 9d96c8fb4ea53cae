"""Whatever arrives, the engine returns a valid result: no crash, a known mode, non-empty
replies, a confidence within 0..100, and a state it can read back."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobs.engine.modes import MODES
from jobs.engine.protocol import TurnResult
from jobs.engine.sales import SalesEngine
from jobs.engine.state import SalesState
from tests.jobs.engine.conftest import message, turn_input

MESSAGE_TYPES = [
    "text",
    "image",
    "audio",
    "video",
    "sticker",
    "document",
    "location",
    "contacts",
    "reaction",
    "interactive",
    "button",
    "system",
    "unsupported",
    "order",
    "",
]
SEED_PHRASES = [
    "hola",
    "cuánto vale",
    "quiero comprar",
    "Juan Pérez 3001234567",
    "Calle 10 # 20-30, Bogotá",
    "el de dos",
    "si",
    "ok",
    "asesor",
    "2",
    "👍",
]

texts = st.one_of(st.text(), st.sampled_from(SEED_PHRASES), st.just(""), st.just("   \n\t"))
messages = st.builds(
    lambda kind, text: message(text, kind),
    st.sampled_from(MESSAGE_TYPES),
    st.one_of(st.none(), texts),
)
states = st.one_of(
    st.just({}),
    st.dictionaries(
        st.sampled_from(
            ["intents_seen", "templates_sent", "data", "pack", "not_understood", "turns", "x"]
        ),
        st.one_of(
            st.none(),
            st.integers(),
            st.booleans(),
            st.text(max_size=5),
            st.lists(st.text(max_size=5), max_size=3),
            st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3),
        ),
    ),
)
modes = st.one_of(st.sampled_from(MODES), st.text(max_size=12))


def assert_valid(result: TurnResult) -> None:
    assert result.mode in MODES
    assert all(isinstance(r.text, str) and r.text.strip() for r in result.replies)
    assert all(r.delay_ms >= 0 for r in result.replies)
    if result.confidence is not None:
        assert 0 <= result.confidence <= 100
    assert result.handoff == (result.mode == "handoff")
    assert result.handoff_reason is None or result.handoff
    json.dumps(result.state)  # stored as jsonb
    assert SalesState.from_json(result.state).to_json() == result.state


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=st.lists(messages, min_size=1, max_size=4), mode=modes, state=states)
def test_any_input_gives_a_valid_result(
    engine: SalesEngine, batch: list[Any], mode: str, state: dict[str, Any]
) -> None:
    assert_valid(engine.decide_now(turn_input(batch, mode=mode, state=state)))


@settings(max_examples=40, deadline=None)
@given(script=st.lists(st.lists(messages, min_size=1, max_size=3), min_size=1, max_size=12))
def test_any_sequence_of_turns_stays_valid(engine: SalesEngine, script: list[Any]) -> None:
    state: dict[str, Any] = {}
    mode, is_new = "conversacion", True
    for batch in script:
        result = engine.decide_now(turn_input(batch, mode=mode, state=state, is_new=is_new))
        assert_valid(result)
        sent = result.state["templates_sent"]
        assert len(sent) == len(set(sent))
        if result.handoff:
            mode, state, is_new = "conversacion", {}, True  # the worker starts a new session
        else:
            mode, state, is_new = result.mode, result.state, False


def test_a_100k_character_message_is_answered_quickly(engine: SalesEngine) -> None:
    import time

    text = ("hola cuánto vale el envío a Bogotá? " * 3000)[:100_000]
    started = time.perf_counter()
    result = engine.decide_now(turn_input([message(text)]))
    assert_valid(result)
    assert "precio" in str(result.intent)
    assert time.perf_counter() - started < 1.0


def test_empty_and_whitespace_text_get_no_reply(engine: SalesEngine) -> None:
    for text in ("", "   ", "\n\n"):
        result = engine.decide_now(turn_input([message(text)]))
        assert_valid(result)
        assert (result.replies, result.handoff) == ([], False)
