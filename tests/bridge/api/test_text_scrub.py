"""The scrub and the raw-body test that lets most webhooks skip it: whenever the scrub would change
a decoded body, the raw body is flagged, however it was encoded."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.api.text_scrub import REPLACEMENT, may_hold_unstorable, scrub

# Text that favours the characters that matter: NUL, surrogates, their neighbours, Hangul.
_chars = st.one_of(
    st.sampled_from(["\x00", "\ud800", "\udbff", "\udc00", "\udfff", "\ud7ff", "\ue000", "한"]),
    st.characters(codec=None),
)
_text = st.text(alphabet=_chars, max_size=12)
_json: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | _text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=12,
)


def _bodies(value: Any) -> list[bytes]:
    """The ways a sender may encode the same JSON: escaped or raw non-ASCII, UTF-8 or UTF-16."""
    raw = json.dumps(value, ensure_ascii=False)
    return [
        json.dumps(value).encode(),
        raw.encode("utf-8", "surrogatepass"),
        raw.encode("utf-16", "surrogatepass"),
    ]


@settings(max_examples=400)
@given(_json)
def test_a_body_whose_decoded_json_needs_the_scrub_is_always_flagged(value: Any) -> None:
    for body in _bodies(value):
        decoded = json.loads(body)
        if scrub(decoded) != decoded:
            assert may_hold_unstorable(body), body


def test_ordinary_webhook_text_is_not_flagged() -> None:
    assert not may_hold_unstorable(json.dumps({"body": "hola, ¿tienen el producto? ñ"}).encode())
    assert not may_hold_unstorable(json.dumps({"b": "hola 👋"}, ensure_ascii=False).encode())
    # An escaped emoji is a surrogate pair: flagged, and the scrub leaves it as it is.
    emoji = json.dumps({"b": "hola 👋"}).encode()
    assert may_hold_unstorable(emoji)
    assert scrub(json.loads(emoji)) == {"b": "hola 👋"}


def test_the_scrub_replaces_nul_and_lone_surrogates_everywhere() -> None:
    value = {"k\x00": ["a\ud800b", {"c": "\udfff"}], "ok": "👋"}
    assert scrub(value) == {
        f"k{REPLACEMENT}": [f"a{REPLACEMENT}b", {"c": REPLACEMENT}],
        "ok": "👋",
    }
    assert may_hold_unstorable(json.dumps(value).encode())
