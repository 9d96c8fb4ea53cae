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


def scrub(value: Any) -> Any:
    if isinstance(value, str):
        return _UNSTORABLE.sub(REPLACEMENT, value) if _UNSTORABLE.search(value) else value
    if isinstance(value, dict):
        return {scrub(k): scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value
