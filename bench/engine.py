"""The default sales engine's decide() latency, playbook preloaded (no database I/O timed).

Chats are drawn from scripted mixes (purchase flows, questions, bursts, acknowledgements,
gibberish, English, media, the odd pasted wall of text); each turn carries the state of the
previous one, as the worker does. Goal: p99 <= 1 ms.

    uv run python -m bench engine [--turns 10000] [--database-url URL] [--seed 7]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import uuid
from collections.abc import Sequence
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from typing import Any

import asyncpg

from bench.harness import bench_database, percentile
from jobs.engine.playbook_store import load_playbook
from jobs.engine.protocol import Contact, InboundMessage, Session, TurnInput
from jobs.engine.sales import SalesEngine

AGENT_ID = "somnio-sales-v1"
WALL_OF_TEXT = "Hola, les cuento que llevo meses sin dormir bien y quisiera saber " * 60

# A turn is a list of (type, text) messages: one message, or a burst.
Script = list[list[tuple[str, str | None]]]
SCRIPTS: list[Script] = [
    [
        [("text", "Hola, ¿cuánto vale?")],
        [("text", "quiero comprar")],
        [("text", "Juan Pérez, 300 123 4567")],
        [("text", "ok")],
        [("text", "Calle 10 # 20-30, Bogotá")],
        [("text", "el de dos")],
        [("text", "sí")],
        [("text", "gracias")],
    ],
    [
        [("text", "buenas"), ("text", "cómo se toma?"), ("text", "hacen envíos a Cali?")],
        [("text", "y el precio?")],
        [("text", "precio")],
        [("text", "tiene invima?")],
        [("text", "no gracias")],
    ],
    [
        [("text", "Hi! How much is it?")],
        [("text", "I want to buy")],
        [("text", "My name is John Smith, phone +1 555 123 4567")],
        [("text", "Address: 12 Main Street, City: Austin, State: Texas")],
        [("text", "two bottles")],
        [("text", "yes")],
    ],
    [
        [("text", "asdfgh")],
        [("image", None)],
        [("text", "qwerty")],
        [("text", "cuánto cuesta el envío")],
        [("audio", None)],
        [("text", "👍")],
    ],
    [
        [("text", "quiero el combo de 3")],
        [("text", "si")],
        [("text", "Nombre: Ana María López\nTel: 315 555 1234\nDir: Cra 7 #45-12, Medellín")],
        [("text", "3")],
        [("text", "confirmo")],
    ],
    [
        [("text", WALL_OF_TEXT)],
        [("text", "quiero hablar con un asesor")],
    ],
]


def _message(kind: str, text: str | None) -> InboundMessage:
    return InboundMessage(
        message_id=uuid.uuid4(),
        wamid=None,
        type=kind,
        text=text,
        content={},
        timestamp=datetime(2026, 11, 24, tzinfo=UTC),
    )


async def _run(engine: SalesEngine, turns: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    contact = Contact(id=uuid.uuid4(), name="Cliente", phone="573000000000")
    latencies: list[float] = []
    while len(latencies) < turns:
        # The wall of text is rare, as on WhatsApp: 1 chat in 50.
        script = SCRIPTS[-1] if rng.random() < 0.02 else rng.choice(SCRIPTS[:-1])
        state: dict[str, Any] = {}
        mode, is_new = "conversacion", True
        for batch in script:
            turn = TurnInput(
                workspace_id=uuid.uuid4(),
                conversation_id=uuid.uuid4(),
                contact=contact,
                session=Session(uuid.uuid4(), AGENT_ID, mode, state, 1, is_new),
                messages=[_message(kind, text) for kind, text in batch],
            )
            started = time.perf_counter()
            result = await engine.decide(turn)
            latencies.append(time.perf_counter() - started)
            if result.handoff:
                break
            mode, state, is_new = result.mode, result.state, False
    return latencies[:turns]


def _report(latencies: Sequence[float]) -> str:
    us = [v * 1_000_000 for v in latencies]
    return (
        f"decide(): p50 {percentile(us, 50):.0f} us, p99 {percentile(us, 99):.0f} us,"
        f" max {max(us):.0f} us over {len(us)} turns ({len(us) / sum(latencies):,.0f} turns/s)"
    )


async def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench engine")
    parser.add_argument("--turns", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--database-url", help="a migrated, seeded database (default: a throwaway one)"
    )
    args = parser.parse_args(argv)

    async with AsyncExitStack() as stack:
        url = args.database_url or await stack.enter_async_context(bench_database())
        pool = await asyncpg.create_pool(url, min_size=1, max_size=1)
        try:
            playbook = await load_playbook(pool, AGENT_ID, None)
        finally:
            await pool.close()
    engine = SalesEngine(playbook)
    await _run(engine, 500, args.seed + 1)  # warm the regex and fold caches
    latencies = await _run(engine, args.turns, args.seed)
    sys.stdout.write(_report(latencies) + "\n")
