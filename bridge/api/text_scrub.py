"""Make decoded JSON storable in Postgres `jsonb` without losing the message.

JSON allows `\\u0000` and lone surrogates (`\\ud800`); `jsonb` rejects the first and UTF-8 cannot
encode the second, so either would fail the whole batch forever (the provider retries a 503 for
days). Both become U+FFFD, the replacement character, wherever they occur.
"""

from __future__ import annotations

import re
from typing import Any

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
REPLACEMENT = "\ufffd"
# What a raw body must hold for its decoded JSON to hold either: the escapes `\u0000` and
# `\ud800`-`\udfff`, a UTF-8 lead byte of U+D000-U+DFFF (json.loads decodes with surrogatepass),
# or a NUL byte (UTF-16/32 bodies). Bodies without any (no escaped emoji either: a pair is two
# surrogate escapes) skip the walk.
_UNSTORABLE_IN_BODY = re.compile(rb"\\u0000|\\u[dD][89a-fA-F]|\xed|\x00")


def may_hold_unstorable(body: bytes) -> bool:
    """False only when `scrub(json.loads(body))` is surely `json.loads(body)`."""
    return _UNSTORABLE_IN_BODY.search(body) is not None


def scrub(value: Any) -> Any:
    if isinstance(value, str):
        return _UNSTORABLE.sub(REPLACEMENT, value) if _UNSTORABLE.search(value) else value
    if isinstance(value, dict):
        return {scrub(k): scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value
