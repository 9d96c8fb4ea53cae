"""The LLM engine against a mock Messages API (no network): good answers become replies and
token counts; errors, timeouts and unusable output hand off."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

pytest.importorskip("anthropic")  # the optional `llm` extra

import httpx2  # anthropic's HTTP client: its transports are the test seam

from jobs.engine.claude import ClaudeEngine, ClaudeSettings, create_client
from jobs.engine.playbook import Playbook
from jobs.engine.protocol import TurnResult
from tests.jobs.engine.conftest import message, turn_input

Handler = Callable[[httpx2.Request], Any]


def api_message(text: str, input_tokens: int = 321, output_tokens: int = 54) -> dict[str, Any]:
    return {
        "id": "msg_test",
        "type": "message",
        "role": "assistant",
        "model": "claude-haiku-4-5",
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
    }


def answer(**fields: Any) -> str:
    base: dict[str, Any] = {
        "intent": "precio",
        "confidence": 92,
        "mode": "conversacion",
        "replies": ["El frasco cuesta $77,900 💰"],
        "data": {},
        "pack": None,
        "handoff": False,
        "handoff_reason": None,
    }
    return json.dumps({**base, **fields}, ensure_ascii=False)


class MockApi:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.handler: Handler = lambda request: httpx2.Response(200, json=api_message(answer()))

    async def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(json.loads(request.content))
        response = self.handler(request)
        if asyncio.iscoroutine(response):
            response = await response
        assert isinstance(response, httpx2.Response)
        return response


@pytest.fixture
async def api() -> MockApi:
    return MockApi()


@pytest.fixture
async def make_engine(
    api: MockApi, playbook: Playbook
) -> AsyncIterator[Callable[..., ClaudeEngine]]:
    clients: list[Any] = []

    def make(timeout_s: float = 5.0) -> ClaudeEngine:
        settings = ClaudeSettings(api_key="test-key", max_retries=0, timeout_s=timeout_s)
        client = create_client(
            settings, http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(api))
        )
        clients.append(client)
        return ClaudeEngine(
            "claude-sales-v1", playbook, client, model=settings.model, timeout_s=timeout_s
        )

    yield make
    for client in clients:
        await client.close()


async def decide(engine: ClaudeEngine, text: str, **session: Any) -> TurnResult:
    return await engine.decide(turn_input([message(text)], **session))


async def test_a_good_answer_becomes_replies_and_counts_tokens(
    api: MockApi, make_engine: Callable[..., ClaudeEngine]
) -> None:
    result = await decide(make_engine(), "cuánto cuesta?", is_new=True)
    assert [r.text for r in result.replies] == ["El frasco cuesta $77,900 💰"]
    assert (result.intent, result.confidence, result.mode) == ("precio", 92.0, "conversacion")
    assert result.tokens_used == 321 + 54
    assert result.handoff is False
    request = api.requests[0]
    assert request["model"] == "claude-haiku-4-5"
    assert "$109,900" in request["system"]  # the playbook's prices are the facts
    assert request["messages"][-1]["role"] == "user"
    assert "cuánto cuesta?" in request["messages"][-1]["content"]


async def test_captured_data_and_allowed_moves_are_kept_and_history_carried(
    api: MockApi, make_engine: Callable[..., ClaudeEngine]
) -> None:
    engine = make_engine()
    api.handler = lambda request: httpx2.Response(
        200,
        json=api_message(
            answer(
                intent="captura_datos_si_compra",
                mode="collecting_data",
                replies=["¡Perfecto! ¿Me das tus datos?"],
                data={"nombre": "Juan Pérez", "ciudad": "Cali", "secreto": "x", "telefono": 3},
            )
        ),
    )
    first = await decide(engine, "quiero comprar, soy Juan Pérez de Cali", is_new=True)
    assert first.mode == "collecting_data"
    assert first.state["data"] == {"nombre": "Juan Pérez", "ciudad": "Cali"}
    assert [h["role"] for h in first.state["history"]] == ["user", "assistant"]

    api.handler = lambda request: httpx2.Response(
        200, json=api_message(answer(mode="confirmado", replies=["¡Listo!"]))
    )
    second = await decide(engine, "confirmo", mode=first.mode, state=first.state)
    assert second.mode == "collecting_data"  # collecting_data -> confirmado is not allowed
    assert len(api.requests[1]["messages"]) == 3


async def test_the_model_asking_for_a_person_hands_off(
    api: MockApi, make_engine: Callable[..., ClaudeEngine]
) -> None:
    api.handler = lambda request: httpx2.Response(
        200,
        json=api_message(
            answer(intent="queja", replies=[], handoff=True, handoff_reason="complaint")
        ),
    )
    result = await decide(make_engine(), "esto es una estafa")
    assert (result.handoff, result.mode, result.handoff_reason) == (
        True,
        "handoff",
        "LLM: complaint",
    )
    assert result.tokens_used == 375


@pytest.mark.parametrize("status", [500, 529, 429, 401])
async def test_api_errors_hand_off(
    api: MockApi, make_engine: Callable[..., ClaudeEngine], status: int
) -> None:
    api.handler = lambda request: httpx2.Response(
        status, json={"type": "error", "error": {"type": "api_error", "message": "boom"}}
    )
    result = await decide(make_engine(), "hola")
    assert (result.handoff, result.mode, result.replies) == (True, "handoff", [])
    assert str(result.handoff_reason).startswith("LLM error:")


async def test_a_slow_answer_hands_off_at_the_hard_timeout(
    api: MockApi, make_engine: Callable[..., ClaudeEngine]
) -> None:
    async def slow(request: httpx2.Request) -> httpx2.Response:
        await asyncio.sleep(5)
        return httpx2.Response(200, json=api_message(answer()))

    api.handler = slow
    started = asyncio.get_running_loop().time()
    result = await decide(make_engine(timeout_s=0.1), "hola")
    assert asyncio.get_running_loop().time() - started < 2
    assert result.handoff is True
    assert "timed out" in str(result.handoff_reason)


@pytest.mark.parametrize(
    "text",
    [
        "Claro, el precio es $77,900",
        "{not json}",
        '["a", "list"]',
        '{"replies": "not a list"}',
        "",
    ],
)
async def test_unusable_output_hands_off(
    api: MockApi, make_engine: Callable[..., ClaudeEngine], text: str
) -> None:
    api.handler = lambda request: httpx2.Response(200, json=api_message(text))
    result = await decide(make_engine(), "hola")
    assert result.handoff is True
    assert str(result.handoff_reason).startswith("LLM output unusable")
    assert result.tokens_used == 375


async def test_json_wrapped_in_prose_or_fences_is_accepted(
    api: MockApi, make_engine: Callable[..., ClaudeEngine]
) -> None:
    api.handler = lambda request: httpx2.Response(
        200, json=api_message("```json\n" + answer(confidence=250) + "\n```")
    )
    result = await decide(make_engine(), "precio")
    assert result.handoff is False
    assert result.confidence == 100.0


async def test_non_text_is_handled_without_calling_the_model(
    api: MockApi, make_engine: Callable[..., ClaudeEngine]
) -> None:
    result = await make_engine().decide(turn_input([message(None, "image")]))
    assert api.requests == []
    assert "texto" in result.replies[0].text
    assert result.handoff is False
