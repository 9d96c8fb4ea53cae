"""The playbook: everything the sales engine says and recognises, as data.

A playbook is one agent's rows from `agent_intents`, `agent_templates`,
`agent_mode_transitions` and `agent_playbook_settings`, merged for one workspace: rows with a
null workspace are the global default, and a workspace's own rows replace the default for the
same key (an intent's rules, a template group, the whole transition table, a settings field).
`playbook_store` loads and merges them; this module only holds the result.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from jobs.engine.modes import DEFAULT_TRANSITIONS

FIRST_VISIT = "primera_vez"
REPEAT_VISIT = "siguientes"

PACKS: tuple[str, ...] = ("1x", "2x", "3x")

# Customer data the engine can capture, in the order a summary lists them.
FIELDS: tuple[str, ...] = (
    "nombre",
    "telefono",
    "direccion",
    "barrio",
    "ciudad",
    "departamento",
    "correo",
    "indicaciones",
)

# Intent kinds with a meaning to the engine: `ack` alone gets no reply, `pack` picks a pack.
# The others (greeting, info, purchase, confirm, decline, handoff) describe the intent for
# people editing the playbook; what they do comes from next_mode and handoff.
KINDS: tuple[str, ...] = (
    "greeting",
    "info",
    "purchase",
    "pack",
    "confirm",
    "decline",
    "ack",
    "handoff",
)

# Intents the engine answers on its own initiative; they have templates but no rules.
SYSTEM_INTENTS: tuple[str, ...] = (
    "ofrecer_promos",  # the customer's data is complete: offer the packs
    "datos_faltantes",  # some data arrived, more is needed ({{faltantes}})
    "datos_actualizados",  # data arrived after it was complete
    "fallback",  # not understood
    "repetido",  # asked again after every variant was sent
    "pedir_texto",  # a non-text message under the ask_text policy
    "bloqueado",  # a move the mode table forbids; also bloqueado_<mode>, bloqueado_<mode>_<to>
)


@dataclass(frozen=True)
class IntentRule:
    intent: str
    kind: str = "info"
    language: str = "es"  # "any" for language-neutral rules (emoji, "ok")
    keywords: tuple[str, ...] = ()  # phrases, matched on word boundaries, accents/case folded
    patterns: tuple[str, ...] = ()  # regular expressions (RE2) over the folded text
    modes: frozenset[str] = frozenset()  # where the rule applies; empty = every mode
    priority: int = 100  # higher first when one message has several intents
    next_mode: str | None = None
    pack: str | None = None
    handoff: bool = False


@dataclass(frozen=True)
class Template:
    id: str
    intent: str
    content: str
    language: str = "es"
    visit_type: str = FIRST_VISIT
    orden: int = 0
    delay_ms: int = 0
    priority: str = "core"  # core | complementaria | opcional: what a full turn drops first
    repeatable: bool = False  # may go out more than once per session (prompts, fallbacks)


@dataclass(frozen=True)
class PlaybookSettings:
    product_name: str = "Somnio"
    currency_symbol: str = "$"
    prices: Mapping[str, Decimal] = field(
        default_factory=lambda: {
            "1x": Decimal("77900"),
            "2x": Decimal("109900"),
            "3x": Decimal("139900"),
        }
    )
    default_language: str = "es"
    max_not_understood: int = 3
    min_confidence: int = 50
    non_text_policy: str = "ask_text"  # or "handoff"
    required_fields: tuple[str, ...] = ("nombre", "telefono", "direccion", "ciudad")
    optional_fields: tuple[str, ...] = ("departamento", "barrio", "correo", "indicaciones")
    min_optional_fields: int = 1
    max_replies_per_turn: int = 6
    llm_model: str | None = None
    llm_max_tokens: int | None = None


@dataclass(frozen=True)
class Playbook:
    agent_id: str
    workspace_id: uuid.UUID | None = None
    rules: tuple[IntentRule, ...] = ()
    # (intent, language, visit_type) -> templates sorted by orden
    templates: Mapping[tuple[str, str, str], tuple[Template, ...]] = field(default_factory=dict)
    transitions: frozenset[tuple[str, str]] = DEFAULT_TRANSITIONS
    settings: PlaybookSettings = field(default_factory=PlaybookSettings)

    def templates_for(self, intent: str, language: str, visit_type: str) -> tuple[Template, ...]:
        """The templates of one intent in `language` (else the default language), for the visit
        type; an intent without repeat-visit rows reuses its first-visit rows."""
        for lang in dict.fromkeys((language, self.settings.default_language)):
            found = self.templates.get((intent, lang, visit_type))
            if found is None and visit_type == REPEAT_VISIT:
                found = self.templates.get((intent, lang, FIRST_VISIT))
            if found:
                return found
        return ()

    def has_templates(self, intent: str) -> bool:
        return any(key[0] == intent for key in self.templates)


def group_templates(
    templates: list[Template],
) -> dict[tuple[str, str, str], tuple[Template, ...]]:
    groups: dict[tuple[str, str, str], list[Template]] = {}
    for template in templates:
        key = (template.intent, template.language, template.visit_type)
        groups.setdefault(key, []).append(template)
    return {key: tuple(sorted(group, key=lambda t: t.orden)) for key, group in groups.items()}
