"""The agent turn: what happens after a message is stored.

One job per inbound message rings the doorbell; whoever takes the conversation's lock drains
every unprocessed inbound message as ONE turn (a burst gets one answer); unlocking says whether
messages arrived meanwhile, and if so the conversation is taken again, so no wake-up is lost. A
job that finds the lock busy, or nothing to do, exits: the holder will drain its message too.

    lock + fence + snapshot (+ contact, session when the turn can start at once: one call)
    → resume an interrupted outbox → [reply window] → unprocessed inbound (withdraw their
    other queued jobs)
    → agent on? (no: mark processed) → contact → session → typing START → engine
    → commit decision (turns, outbox rows, state, processed marks: one transaction)
    → send in order with delays
    → typing STOP (finally) → handoff if asked → unlock (messages waiting? again)
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta

import asyncpg
from redis.exceptions import RedisError

from bridge.queue import Withdrawer
from bridge.settings import Settings
from jobs import outbox, turn_store
from jobs.checkpoints import checkpoint
from jobs.engine.protocol import (
    Contact,
    Engine,
    EngineConfigurationError,
    Session,
    TurnInput,
)
from jobs.engine.registry import build_engine
from jobs.lock import ConversationLock
from jobs.typing_broadcast import TypingBroadcaster
from jobs.whatsapp_api import Channel, SendError, WhatsAppClient

log = logging.getLogger(__name__)


@dataclass
class TurnDeps:
    settings: Settings
    db: asyncpg.Pool  # for engine data (playbooks)
    lock_pool: asyncpg.Pool  # dedicated connections that hold advisory locks
    whatsapp: WhatsAppClient
    typing: TypingBroadcaster
    jobs: Withdrawer  # takes the jobs of messages a turn answered off the queue
    holder: str  # this worker, for the fence's observability


@dataclass
class TurnOutcome:
    busy: bool = False
    turns: int = 0
    processed: int = 0
    handoffs: int = 0


class AgentFailed(Exception):
    """The engine failed in a way a retry may fix (the job retries, then hands off)."""


def channel_for(ctx: turn_store.ConversationContext, settings: Settings) -> Channel:
    if ctx.provider == "360dialog":
        base = ctx.api_base_url or settings.WHATSAPP_360DIALOG_BASE_URL
        credential = ctx.api_key or ctx.access_token
    else:
        base = ctx.api_base_url or settings.WHATSAPP_API_BASE_URL
        credential = ctx.access_token
    if credential is None and settings.WHATSAPP_ACCESS_TOKEN is not None:
        credential = settings.WHATSAPP_ACCESS_TOKEN.get_secret_value()
    return Channel(ctx.provider, ctx.phone_number_id, base, credential or "")


async def run_conversation(
    deps: TurnDeps,
    conversation_id: uuid.UUID,
    *,
    job_message_id: uuid.UUID | None = None,
    handoff_reason: str | None = None,
) -> TurnOutcome:
    """Take the conversation if free and drain it. `job_message_id` is the message whose job
    runs this (its job is not withdrawn: it is the one running). With `handoff_reason` the
    pending messages are handed to a human instead of the engine (the agent kept failing)."""
    outcome = TurnOutcome()
    while True:
        begun = await turn_store.begin(
            deps.lock_pool, conversation_id, deps.holder, prepare=handoff_reason is None
        )
        if begun is None:
            outcome.busy = outcome.turns == 0
            return outcome
        lock = begun.lock
        try:
            checkpoint("locked")
            await _drain(deps, begun, outcome, job_message_id, handoff_reason)
        finally:
            # A message stored between our last check and the unlock found the lock busy and
            # its job exited: the unlock says whether one is waiting.
            waiting = await lock.release()
        if not waiting:
            return outcome


async def _drain(
    deps: TurnDeps,
    begun: turn_store.Begun,
    outcome: TurnOutcome,
    job_message_id: uuid.UUID | None,
    handoff_reason: str | None,
) -> None:
    lock, snap, prepared = begun.lock, begun.snapshot, begun.prepared
    if snap is None:
        log.warning(
            "jobs.turn.no_conversation", extra={"conversation_id": str(lock.conversation_id)}
        )
        return
    channel = channel_for(snap.context, deps.settings)
    to = snap.context.phone or snap.context.bsuid or ""
    if snap.outbox_sending or snap.outbox_pending:
        await _resume(deps, lock, snap, channel, to)
        snap, prepared = await _refresh(lock), None
    waited = await _wait_reply_window(lock, snap)
    if waited is not snap:
        snap, prepared = waited, None
    messages = snap.messages
    if not messages:
        return
    outcome.processed += len(messages)
    ids = [m.message_id for m in messages]
    # The job running this turn stays until the turn is done (a failure retries it, a dead
    # worker's is run again), and it covers every message drained here: the other messages'
    # queued jobs would only find the lock busy or nothing to do. A turn of the job's own
    # message alone, the usual one, has none to withdraw and skips the round trip.
    await _withdraw_jobs(deps, [i for i in ids if i != job_message_id])
    if not snap.enabled:
        await turn_store.mark_processed(lock, ids)
    elif handoff_reason is not None:
        await _handoff(deps, lock, snap.context, channel, to, handoff_reason, ids)
        outcome.handoffs += 1
    else:
        outcome.turns += 1
        if prepared is None:
            prepared = await turn_store.prepare(lock, snap.context.agent_id)
        await _turn(deps, lock, snap, prepared, channel, to, outcome)
    # Messages that arrived during this turn are answered by the next one: unlocking says
    # whether there are any, and run_conversation takes the conversation again for them.


async def _refresh(lock: ConversationLock) -> turn_store.Snapshot:
    snap = await turn_store.snapshot(lock.conn, lock.conversation_id)
    if snap is None:
        raise LookupError(f"conversation {lock.conversation_id} disappeared")
    return snap


async def _resume(
    deps: TurnDeps, lock: ConversationLock, snap: turn_store.Snapshot, channel: Channel, to: str
) -> None:
    """Finish what a worker that died mid-turn had decided. A reply it was sending has an unknown
    fate: it is not re-sent, and a human is asked to check the conversation instead."""
    try:
        interrupted = await outbox.recover_interrupted(lock) if snap.outbox_sending else 0
        if interrupted and snap.enabled:
            await _handoff(
                deps,
                lock,
                snap.context,
                channel,
                to,
                "a reply's delivery is unknown: the worker stopped while sending it",
                [],
            )
        else:
            await _send(deps, lock, snap.context, channel, to)
    finally:
        await deps.typing.send(lock.conversation_id, False)  # the dead worker's START


async def _turn(
    deps: TurnDeps,
    lock: ConversationLock,
    snap: turn_store.Snapshot,
    prepared: tuple[Contact, Session],
    channel: Channel,
    to: str,
    outcome: TurnOutcome,
) -> None:
    ctx, messages = snap.context, snap.messages
    contact, session = prepared
    await deps.typing.send(lock.conversation_id, True)
    try:
        checkpoint("typing_started")
        try:
            engine: Engine = await build_engine(
                ctx.agent_id, workspace_id=ctx.workspace_id, pool=deps.db
            )
        except EngineConfigurationError as exc:
            log.error("jobs.turn.engine_misconfigured", extra={"detail": str(exc)})
            await _handoff(
                deps,
                lock,
                ctx,
                channel,
                to,
                f"engine configuration: {exc}",
                [m.message_id for m in messages],
            )
            outcome.handoffs += 1
            return
        turn = TurnInput(
            workspace_id=ctx.workspace_id,
            conversation_id=ctx.conversation_id,
            contact=contact,
            session=session,
            messages=messages,
            settings=ctx.config,
        )
        try:
            result = await engine.decide(turn)
        except Exception as exc:
            raise AgentFailed(f"{type(exc).__name__}: {exc}") from exc
        if result.replies and ctx.config.get("whatsapp_typing_indicator") and messages[-1].wamid:
            try:
                await deps.whatsapp.send_typing(channel, messages[-1].wamid)
            except SendError as exc:
                log.info("jobs.turn.whatsapp_typing_failed", extra={"detail": str(exc)})
        outbox_ids = await turn_store.commit_decision(lock, session, messages, result)
        checkpoint("decided")
        log.info(
            "jobs.turn.decided",
            extra={
                "conversation_id": str(lock.conversation_id),
                "replies": len(result.replies),
                "intent": result.intent,
                "handoff": result.handoff,
            },
        )
        # The rows just committed are the conversation's whole outbox (earlier ones were
        # resumed before this turn): no need to read them back.
        rows = [
            outbox.OutboxRow(row_id, "reply", reply.text, reply.delay_ms)
            for row_id, reply in zip(outbox_ids, result.replies, strict=True)
        ]
        await _send(deps, lock, ctx, channel, to, rows)
    finally:
        await deps.typing.send(lock.conversation_id, False)
    if result.handoff:
        await _handoff(deps, lock, ctx, channel, to, result.handoff_reason or "engine request", [])
        outcome.handoffs += 1


async def _send(
    deps: TurnDeps,
    lock: ConversationLock,
    ctx: turn_store.ConversationContext,
    channel: Channel,
    to: str,
    rows: list[outbox.OutboxRow] | None = None,
) -> None:
    report = await outbox.send_pending(
        lock,
        deps.whatsapp,
        channel,
        to,
        response_speed=ctx.response_speed,
        backoff_seconds=deps.settings.JOBS_SEND_BACKOFF_SECONDS,
        rows=rows,
    )
    if report.sent or report.skipped or report.failed or report.unknown:
        log.info(
            "jobs.outbox.sent",
            extra={"conversation_id": str(lock.conversation_id), **report.__dict__},
        )


async def _handoff(
    deps: TurnDeps,
    lock: ConversationLock,
    ctx: turn_store.ConversationContext,
    channel: Channel,
    to: str,
    reason: str,
    message_ids: list[uuid.UUID],
) -> None:
    """One transaction (processed marks + private.handoff_conversation), then the handoff
    message goes out through the outbox like any reply."""
    async with lock.conn.transaction():
        await lock.assert_fence()
        if message_ids:
            await lock.conn.execute(
                "update public.messages set processed_by_agent = true where id = any($1)",
                message_ids,
            )
        result = await lock.conn.fetchval(
            "select private.handoff_conversation($1, $2, $3)",
            lock.conversation_id,
            reason,
            lock.epoch,
        )
    checkpoint("handoff_committed")
    log.info(
        "jobs.turn.handoff",
        extra={"conversation_id": str(lock.conversation_id), "reason": reason, "result": result},
    )
    await _send(deps, lock, ctx, channel, to)


async def _withdraw_jobs(deps: TurnDeps, message_ids: list[uuid.UUID]) -> None:
    """Failing to withdraw the jobs costs only their runs, so it never fails the turn."""
    if not message_ids:
        return
    try:
        await deps.jobs.withdraw_inbound([str(i) for i in message_ids])
    except (RedisError, OSError, TimeoutError) as exc:
        log.info("jobs.turn.withdraw_failed", extra={"detail": str(exc)})


async def _wait_reply_window(
    lock: ConversationLock, snap: turn_store.Snapshot
) -> turn_store.Snapshot:
    """Optional debounce: answer only once the customer paused for `reply_window_ms`."""
    window_ms = snap.context.reply_window_ms
    while window_ms > 0 and snap.newest_age_ms is not None and snap.newest_age_ms < window_ms:
        await asyncio.sleep((window_ms - snap.newest_age_ms) / 1000)
        snap = await _refresh(lock)
    return snap


def retry_delay(job_try: int, base_seconds: float) -> timedelta:
    return timedelta(seconds=base_seconds * (2 ** (job_try - 1)))
