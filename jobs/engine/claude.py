"""The LLM sales engine (`claude-sales-v1`): Claude reads the turn and drafts the replies.

The playbook still rules what it may say: product, prices, data to capture, the allowed modes
and the first-visit templates go into the system prompt as facts; the model answers with one
JSON object (intent, confidence, mode, replies, captured data, pack, handoff). Whatever the
model says is checked: a mode the transition table forbids is not taken, unknown fields are
dropped, replies are trimmed and capped. Any failure (API error, hard timeout, output that is
not that JSON) hands the conversation to a person with the reason, never a guess.

`anthropic` is the optional `llm` extra and is imported only when a client is made.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from jobs.engine.burst import combine
from jobs.engine.modes import CONFIRMADO, HANDOFF, MODES, can_move, starting_mode
from jobs.engine.playbook import FIELDS, FIRST_VISIT, PACKS, Playbook
from jobs.engine.protocol import EngineConfigurationError, Reply, TurnInput, TurnResult
from jobs.engine.state import SalesState
from jobs.engine.templates import render, variables

if TYPE_CHECKING:
    from anthropic import AsyncAnthropic
    from anthropic.types import Message, MessageParam

log = logging.getLogger(__name__)

DEFAULT_MODEL = "claude-haiku-4-5"
MAX_REPLIES = 5
MAX_REPLY_CHARS = 4096
HISTORY_TURNS = 10  # customer/assistant pairs kept in the state for the next prompt
_HISTORY_ENTRY_CHARS = 2000


@dataclass(frozen=True)
class ClaudeSettings:
    api_key: str
    model: str = DEFAULT_MODEL
    max_tokens: int = 1024
    timeout_s: float = 20.0
    max_retries: int = 1
    base_url: str | None = None


def create_client(settings: ClaudeSettings, **options: Any) -> AsyncAnthropic:
    """An `AsyncAnthropic` client; `options` go to its constructor (tests pass http_client)."""
    try:
        from anthropic import AsyncAnthropic
    except ImportError as exc:
        raise EngineConfigurationError(
            "the LLM engine needs the `llm` extra (the anthropic package): uv sync --extra llm"
        ) from exc
    return AsyncAnthropic(
        api_key=settings.api_key,
        base_url=settings.base_url,
        timeout=settings.timeout_s,
        max_retries=settings.max_retries,
        **options,
    )


class ModelOutputError(ValueError):
    """The model's answer is not the JSON object the prompt asks for."""


class ClaudeEngine:
    def __init__(
        self,
        agent_id: str,
        playbook: Playbook,
        client: AsyncAnthropic,
        *,
        model: str = DEFAULT_MODEL,
        max_tokens: int = 1024,
        timeout_s: float = 20.0,
    ) -> None:
        self.agent_id = agent_id
        self.playbook = playbook
        self._client = client
        self.model = playbook.settings.llm_model or model
        self.max_tokens = playbook.settings.llm_max_tokens or max_tokens
        self.timeout_s = timeout_s

    async def decide(self, turn: TurnInput) -> TurnResult:
        import anthropic

        raw_state = {} if turn.session.is_new else turn.session.state
        state = SalesState.from_json(raw_state)
        history = _history(raw_state.get("history"))
        mode = starting_mode(turn.session.mode)
        state.turns += 1
        burst = combine(turn.messages)
        policy = self.playbook.settings.non_text_policy
        if burst.media_types and policy == "handoff":
            return _handoff(state, history, f"non-text message ({burst.media_types[0]})")
        if not burst.text:
            return self._ask_for_text(turn, state, history, mode, bool(burst.media_types))

        messages: list[MessageParam] = [
            *history,
            {"role": "user", "content": _user_prompt(mode, state, burst.text)},
        ]
        tokens = 0
        try:
            async with asyncio.timeout(self.timeout_s):
                message = await self._client.messages.create(
                    model=self.model,
                    max_tokens=self.max_tokens,
                    system=_system_prompt(
                        self.playbook, (turn.contact.name if turn.contact else "")
                    ),
                    messages=messages,
                )
            tokens = _tokens(message)
            output = _parse(_text_of(message))
        except TimeoutError:
            return _handoff(state, history, f"LLM timed out after {self.timeout_s:g} s", tokens)
        except anthropic.APIError as exc:
            log.warning("engine.claude.api_error", extra={"error": repr(exc)})
            return _handoff(state, history, f"LLM error: {type(exc).__name__}", tokens)
        except ModelOutputError as exc:
            log.warning("engine.claude.bad_output", extra={"error": str(exc)})
            return _handoff(state, history, f"LLM output unusable: {exc}", tokens)
        return self._result(state, history, mode, burst.text, output, tokens)

    def _result(
        self,
        state: SalesState,
        history: list[MessageParam],
        mode: str,
        text: str,
        output: Mapping[str, Any],
        tokens: int,
    ) -> TurnResult:
        data = output.get("data")
        if isinstance(data, Mapping):
            for name, value in data.items():
                if name in FIELDS and isinstance(value, str) and value.strip():
                    state.data[name] = value.strip()[:200]
        if output.get("pack") in PACKS:
            state.pack = output["pack"]
        replies = _replies(output.get("replies"))
        intent = output.get("intent") if isinstance(output.get("intent"), str) else None
        confidence = _confidence(output.get("confidence"))
        history = _remember(history, text, replies)
        if output.get("handoff") is True:
            reason = output.get("handoff_reason")
            return _handoff(
                state,
                history,
                f"LLM: {reason}"
                if isinstance(reason, str) and reason
                else "LLM asked for a person",
                tokens,
                replies=replies,
                intent=intent,
                confidence=confidence,
            )
        wanted = output.get("mode")
        next_mode = mode
        if isinstance(wanted, str) and wanted in MODES and wanted != HANDOFF:
            if can_move(self.playbook.transitions, mode, wanted):
                next_mode = wanted
            else:
                log.info("engine.claude.mode_refused", extra={"from": mode, "to": wanted})
        if next_mode == CONFIRMADO and mode != CONFIRMADO:
            state.order_confirmed = True
        state.not_understood = 0
        return TurnResult(
            replies=[Reply(r) for r in replies],
            mode=next_mode,
            state={**state.to_json(), "history": history},
            intent=intent,
            confidence=confidence,
            tokens_used=tokens,
        )

    def _ask_for_text(
        self,
        turn: TurnInput,
        state: SalesState,
        history: list[MessageParam],
        mode: str,
        had_media: bool,
    ) -> TurnResult:
        replies: list[Reply] = []
        if had_media:
            language = state.language or self.playbook.settings.default_language
            values = variables(
                self.playbook.settings,
                state,
                (turn.contact.name if turn.contact else ""),
                language,
            )
            replies = [
                Reply(text, t.delay_ms, t.id)
                for t in self.playbook.templates_for("pedir_texto", language, FIRST_VISIT)
                if (text := render(t.content, values))
            ]
        return TurnResult(replies=replies, mode=mode, state={**state.to_json(), "history": history})


def _system_prompt(playbook: Playbook, contact_name: str) -> str:
    settings = playbook.settings
    language = settings.default_language
    values = variables(settings, SalesState(), contact_name, language)
    facts = []
    for (intent, lang, visit), templates in sorted(playbook.templates.items()):
        if lang == language and visit == FIRST_VISIT and not intent.startswith("bloqueado"):
            text = " ".join(render(t.content, values) for t in templates)
            facts.append(f"- {intent}: {text}")
    moves = ", ".join(f"{a}->{b}" for a, b in sorted(playbook.transitions))
    return "\n".join(
        [
            f"You are the WhatsApp sales assistant for {settings.product_name}.",
            "Answer in the customer's language, briefly and warmly, like a person on WhatsApp.",
            f"Packs: 1x = {values['precio_1x']}, 2x = {values['precio_2x']},"
            f" 3x = {values['precio_3x']}.",
            f"Modes: {', '.join(m for m in MODES if m != HANDOFF)}. Allowed moves: {moves}.",
            "Flow: answer questions; when the customer wants to buy, collect their data "
            f"({', '.join(settings.required_fields)}), then offer the packs, then summarise "
            "the order and ask for confirmation.",
            "Say nothing (empty replies) to a bare acknowledgement while collecting data.",
            "Set handoff to true when the customer asks for a person, complains, wants to "
            "cancel, or you cannot help. Never invent facts beyond these:",
            *facts,
            "Reply with ONE JSON object and nothing else:",
            '{"intent": str, "confidence": 0-100, "mode": str, "replies": [str], '
            '"data": {field: str}, "pack": "1x"|"2x"|"3x"|null, "handoff": bool, '
            '"handoff_reason": str|null}',
            f"Data fields: {', '.join(FIELDS)}.",
        ]
    )


def _user_prompt(mode: str, state: SalesState, text: str) -> str:
    context = {"mode": mode, "data": state.data, "pack": state.pack}
    return f"Context: {json.dumps(context, ensure_ascii=False)}\nCustomer:\n{text}"


def _text_of(message: Message) -> str:
    return "".join(block.text for block in message.content if block.type == "text")


def _tokens(message: Message) -> int:
    usage = message.usage
    counted = [
        usage.input_tokens,
        usage.output_tokens,
        usage.cache_creation_input_tokens,
        usage.cache_read_input_tokens,
    ]
    return sum(n for n in counted if isinstance(n, int))


def _parse(text: str) -> dict[str, Any]:
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        raise ModelOutputError("no JSON object in the answer")
    try:
        value = json.loads(text[start : end + 1])
    except json.JSONDecodeError as exc:
        raise ModelOutputError(f"invalid JSON ({exc.msg})") from exc
    if not isinstance(value, dict):
        raise ModelOutputError("the answer is not a JSON object")
    if not isinstance(value.get("replies", []), list):
        raise ModelOutputError("replies is not a list")
    return value


def _replies(value: object) -> list[str]:
    if not isinstance(value, list):
        return []
    texts = [v.strip()[:MAX_REPLY_CHARS] for v in value if isinstance(v, str) and v.strip()]
    return texts[:MAX_REPLIES]


def _confidence(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    return float(min(100.0, max(0.0, value)))


def _history(value: object) -> list[MessageParam]:
    if not isinstance(value, list):
        return []
    entries: list[MessageParam] = []
    for item in value:
        if (
            isinstance(item, Mapping)
            and item.get("role") in ("user", "assistant")
            and isinstance(item.get("content"), str)
        ):
            entries.append({"role": item["role"], "content": item["content"]})
    # The API wants user and assistant turns alternating from a user turn.
    while entries and entries[0]["role"] != "user":
        entries.pop(0)
    if len(entries) % 2:
        entries.pop()
    return entries


def _remember(history: list[MessageParam], text: str, replies: list[str]) -> list[MessageParam]:
    entries: list[MessageParam] = [
        *history,
        {"role": "user", "content": text[:_HISTORY_ENTRY_CHARS]},
        {"role": "assistant", "content": "\n".join(replies)[:_HISTORY_ENTRY_CHARS] or "(no reply)"},
    ]
    return entries[-2 * HISTORY_TURNS :]


def _handoff(
    state: SalesState,
    history: list[MessageParam],
    reason: str,
    tokens: int = 0,
    *,
    replies: list[str] | None = None,
    intent: str | None = None,
    confidence: float | None = None,
) -> TurnResult:
    return TurnResult(
        replies=[Reply(r) for r in replies or []],
        mode=HANDOFF,
        state={**state.to_json(), "history": history},
        intent=intent,
        confidence=confidence,
        tokens_used=tokens,
        handoff=True,
        handoff_reason=reason,
    )
