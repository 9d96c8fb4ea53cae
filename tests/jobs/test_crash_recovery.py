"""The worker killed (SIGKILL, no cleanup) at each step of a turn, then restarted: every inbound
message is answered exactly once or handed off, nothing is sent twice, and typing ends."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid

import asyncpg
import pytest

from jobs.checkpoints import POINTS
from tests.factories import whatsapp as wa
from tests.fixtures.webhook import WebhookClient
from tests.fixtures.worker import (
    TurnStack,
    TypingWatcher,
    WhatsAppRecorder,
    Worker,
    make_workspace,
)

HANDOFF_TEXT = "Un asesor te atiende enseguida"
# The arq job of the killed worker is re-run once its in-progress key expires
# (job timeout + 10 s); the sweeper finds what that job would find sooner. A row the killed
# worker claimed is called unknown once no send can be in flight (the send timeout + 2 s after
# its claim), which the recovering job must be able to wait for.
CRASH_ENV = {
    "JOBS_JOB_TIMEOUT_SECONDS": "4",
    "JOBS_SWEEP_AFTER_SECONDS": "0",
    "WHATSAPP_SEND_TIMEOUT_SECONDS": "1",
}


async def _crash_then_recover(
    point: str,
    turn_stack: TurnStack,
    turn_db: asyncpg.Pool,
    inbox: WebhookClient,
    whatsapp: WhatsAppRecorder,
    typing_watcher: TypingWatcher,
) -> tuple[str, uuid.UUID, str]:
    text = "#handoff por favor" if point == "handoff_committed" else f"hola {point}"
    phone, conv, wamid = await _customer_writes(text, turn_db, inbox, typing_watcher)
    worker = Worker(turn_stack, inbox_queue(inbox), CRASH_ENV)

    code = await worker.burst(within=30, JOBS_CRASH_AT=point)
    assert code == -signal.SIGKILL, f"the worker did not reach {point}"
    assert await worker.burst(within=60) == 0
    return phone, conv, wamid


async def _customer_writes(
    text: str, turn_db: asyncpg.Pool, inbox: WebhookClient, typing_watcher: TypingWatcher
) -> tuple[str, uuid.UUID, str]:
    """A customer of a new workspace writes `text`; its conversation's typing is watched."""
    ws = await make_workspace(turn_db, handoff_message=HANDOFF_TEXT)
    phone = wa.customer_phone()
    msg = wa.text(text, sender=phone, ts=int(time.time()))
    response = await inbox.post(wa.body(wa.change(ws.phone_number_id, messages=[msg])))
    assert response.status_code == 200
    conv: uuid.UUID = await turn_db.fetchval(
        "select id from public.conversations where workspace_id = $1", ws.id
    )
    await typing_watcher.watch(conv)
    return phone, conv, msg["id"]


def inbox_queue(inbox: WebhookClient) -> str:
    queue: str = inbox.app.state.runtime.settings.ARQ_QUEUE_NAME
    return queue


@pytest.mark.parametrize("point", POINTS)
async def test_killed_worker_recovers_without_losing_or_repeating(
    point: str,
    turn_stack: TurnStack,
    turn_db: asyncpg.Pool,
    inbox: WebhookClient,
    whatsapp: WhatsAppRecorder,
    typing_watcher: TypingWatcher,
) -> None:
    phone, conv, wamid = await _crash_then_recover(
        point, turn_stack, turn_db, inbox, whatsapp, typing_watcher
    )

    inbound = await turn_db.fetchrow("select * from public.messages where wamid = $1", wamid)
    assert inbound is not None
    assert inbound["processed_by_agent"] is True
    texts = await whatsapp.texts(phone)
    handed_off = await turn_db.fetchval(
        "select count(*) from public.tasks where conversation_id = $1", conv
    )
    replies = [t for t in texts if t.startswith("Recibido")]
    assert len(texts) == len(set(texts)), f"sent twice: {texts}"
    assert handed_off <= 1
    # Answered exactly once, or handed to a human (who gets the conversation with a task).
    assert len(replies) == 1 or handed_off == 1, (texts, handed_off)
    if handed_off:
        assert texts.count(HANDOFF_TEXT) == 1
    assert (
        await turn_db.fetchval(
            "select count(*) from public.messages where conversation_id = $1"
            " and status in ('pending', 'sending')",
            conv,
        )
        == 0
    )
    # Typing ends: the last broadcast is a STOP, and every START carried an expiry.
    await asyncio.sleep(0.3)
    events = typing_watcher.events[str(conv)]
    if events:
        assert events[-1]["isTyping"] is False
        assert all(e["expiresAt"] for e in events if e["isTyping"])


async def test_a_dead_workers_typing_stops_within_about_15_s(
    turn_stack: TurnStack,
    turn_db: asyncpg.Pool,
    inbox: WebhookClient,
    whatsapp: WhatsAppRecorder,
    typing_watcher: TypingWatcher,
) -> None:
    _, conv, _ = await _customer_writes("hola", turn_db, inbox, typing_watcher)
    # The default sweep, and arq's own re-run of the killed job a minute away: only the sweep
    # can bring the typing indicator down in time.
    env = {"JOBS_JOB_TIMEOUT_SECONDS": "60", "WHATSAPP_SEND_TIMEOUT_SECONDS": "1"}
    worker = Worker(turn_stack, inbox_queue(inbox), env)
    assert await worker.burst(within=30, JOBS_CRASH_AT="sending") == -signal.SIGKILL
    killed = time.monotonic()
    assert typing_watcher.events[str(conv)][-1]["isTyping"] is True
    proc = await worker.start()
    try:
        while typing_watcher.events[str(conv)][-1]["isTyping"]:
            assert time.monotonic() - killed < 16, "typing still on"
            await asyncio.sleep(0.1)
    finally:
        proc.terminate()
        await proc.wait()
