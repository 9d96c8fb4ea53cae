"""The sales engine's per-session state: the JSON kept in `agent_sessions.state`.

    {
      "version": 1,
      "language": "es",                      # the conversation's language, once known
      "intents_seen": ["hola", "precio"],    # first-visit vs repeat templates
      "templates_sent": ["<template id>"],   # never the same template twice
      "data": {"nombre": "Juan Pérez", ...}, # captured customer data
      "pack": "2x",                          # the pack chosen, if any
      "not_understood": 0,                   # consecutive messages not understood
      "turns": 7,                            # turns decided in this session
      "order_confirmed": false               # the customer confirmed the summary
    }

The engine keeps nothing else between turns. Reading is forgiving: a state written by an older
version, edited by hand or simply `{}` yields a usable state instead of an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from jobs.engine.playbook import FIELDS, PACKS

STATE_VERSION = 1


@dataclass
class SalesState:
    language: str | None = None
    intents_seen: list[str] = field(default_factory=list)
    templates_sent: list[str] = field(default_factory=list)
    data: dict[str, str] = field(default_factory=dict)
    pack: str | None = None
    not_understood: int = 0
    turns: int = 0
    order_confirmed: bool = False

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> SalesState:
        data = raw.get("data")
        pack = raw.get("pack")
        language = raw.get("language")
        return cls(
            language=language if isinstance(language, str) and language else None,
            intents_seen=_strings(raw.get("intents_seen")),
            templates_sent=_strings(raw.get("templates_sent")),
            data={
                k: v
                for k, v in (data.items() if isinstance(data, Mapping) else ())
                if k in FIELDS and isinstance(v, str) and v
            },
            pack=pack if pack in PACKS else None,
            not_understood=_count(raw.get("not_understood")),
            turns=_count(raw.get("turns")),
            order_confirmed=raw.get("order_confirmed") is True,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "language": self.language,
            "intents_seen": list(self.intents_seen),
            "templates_sent": list(self.templates_sent),
            "data": dict(self.data),
            "pack": self.pack,
            "not_understood": self.not_understood,
            "turns": self.turns,
            "order_confirmed": self.order_confirmed,
        }


def _strings(value: object) -> list[str]:
    if not isinstance(value, list):
        return []
    return [item for item in value if isinstance(item, str)]


def _count(value: object) -> int:
    # bool is an int in Python; a flag is not a count.
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
