"""The agent turn: what happens after a message is stored.

One job per inbound message rings the doorbell; whoever takes the conversation's lock drains
every unprocessed inbound message as ONE turn (a burst gets one answer); unlocking says whether
messages arrived meanwhile, and if so the conversation is taken again, so no wake-up is lost. A
job that finds the lock busy, or nothing to do, exits: the holder will drain its message too.

    take (lock + fence + verdict, one call) → while the verdict asks:
      resume   send what an interrupted turn left (a reply in flight → a human checks)
      wait     the reply window is open
      off      mark the messages processed (the agent is off, or paused: a human took over)
      handoff  hand them to a human (the agent kept failing)
      run      typing START → engine → commit the decision (turns, outbox rows, state,
               processed marks: one transaction) → send in order with delays → typing STOP
               (finally) → handoff if the engine asked
    → unlock (messages, or a member's queued reply, waiting? take it again)

A member's reply (public.send_message) is an outbox row like the bot's: the `resume` verdict
sends it, even when the agent is off.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass

import asyncpg
from redis.exceptions import RedisError

from bridge.metrics import Metrics
from bridge.queue import JobQueue
from bridge.settings import Settings
from jobs import outbox, turn_store
from jobs.checkpoints import checkpoint
from jobs.engine.protocol import EngineConfigurationError, TurnInput
from jobs.engine.registry import EngineRegistry
from jobs.lock import ConversationLock, LockSession
from jobs.metrics import HandoffReason
from jobs.retry import ThrottleBackoff
from jobs.turn_store import Conversation, OutboxRow, Verdict
from jobs.typing_broadcast import TypingBroadcaster, private_channel
from jobs.whatsapp_api import Channel, SendError, WhatsAppClient

log = logging.getLogger(__name__)

INTERRUPTED_SEND = "a reply's delivery is unknown: the worker stopped while sending it"


@dataclass
class TurnDeps:
    """What every turn of a worker shares, built at its start-up."""

    settings: Settings
    db: asyncpg.Pool  # every statement: the turn's, the engines' (playbooks), the crons'
    locks: LockSession  # the one session holding this worker's advisory locks
    engines: EngineRegistry
    whatsapp: WhatsAppClient
    typing: TypingBroadcaster
    jobs: JobQueue  # takes the jobs of messages a turn answered off the queue
    holder: str  # this worker, for the fence's observability
    metrics: Metrics  # jobs.metrics.WORKER_METRICS


@dataclass
class TurnOutcome:
    busy: bool = False
    turns: int = 0
    processed: int = 0
    handoffs: int = 0


def channel_for(conversation: Conversation, settings: Settings) -> Channel:
    """The channel's endpoint and credential. The operator's default token is offered to Meta
    channels only; the client still sends it nowhere but `WHATSAPP_API_BASE_URL`."""
    if conversation.provider == "360dialog":
        base = conversation.api_base_url or settings.WHATSAPP_360DIALOG_BASE_URL
        credential = conversation.api_key or conversation.access_token
    else:
        base = conversation.api_base_url or settings.WHATSAPP_API_BASE_URL
        credential = conversation.access_token
        if credential is None and settings.WHATSAPP_ACCESS_TOKEN is not None:
            credential = settings.WHATSAPP_ACCESS_TOKEN.get_secret_value()
    return Channel(
        conversation.provider, conversation.phone_number_id or "", base, credential or ""
    )


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
    handing_off = handoff_reason is not None
    while True:
        taken = await turn_store.begin(
            deps.locks, deps.db, conversation_id, deps.holder, handing_off=handing_off
        )
        if taken is None:
            deps.metrics.inc("jobs_lock_busy_total")
            outcome.busy = outcome.turns == 0
            return outcome
        lock, verdict = taken
        try:
            checkpoint("locked")
            if verdict.conversation is None:
                log.warning(
                    "jobs.turn.no_conversation", extra={"conversation_id": str(conversation_id)}
                )
            else:
                turn = ConversationTurn(
                    deps,
                    lock,
                    verdict.conversation,
                    outcome,
                    job_message_id=job_message_id,
                    handoff_reason=handoff_reason,
                )
                await turn.drain(verdict)
        finally:
            # A message stored between our last check and the unlock found the lock busy and
            # its job exited: the unlock says whether one is waiting.
            waiting = await lock.release()
        if not waiting:
            return outcome


class ConversationTurn:
    """One taken conversation and what its steps share: the lock, the channel replies go out
    on, the customer they go to, and the counts the job reports."""

    def __init__(
        self,
        deps: TurnDeps,
        lock: ConversationLock,
        conversation: Conversation,
        outcome: TurnOutcome,
        *,
        job_message_id: uuid.UUID | None,
        handoff_reason: str | None,
    ) -> None:
        self.deps = deps
        self.lock = lock
        self.outcome = outcome
        self.job_message_id = job_message_id
        self.handoff_reason = handoff_reason
        self._use(conversation)

    def _use(self, conversation: Conversation) -> None:
        self.conversation = conversation
        self.channel = channel_for(conversation, self.deps.settings)

    async def drain(self, verdict: Verdict) -> None:
        """Do what each verdict asks until the conversation is answered (or idle)."""
        handing_off = self.handoff_reason is not None
        while True:
            if verdict.conversation is None:
                return  # deleted meanwhile
            self._use(verdict.conversation)
            match verdict.kind:
                case "resume":
                    await self._resume(verdict)
                case "wait":
                    await asyncio.sleep(verdict.wait_ms / 1000)
                case "idle":
                    return
                case "off":
                    await self._drained(verdict)
                    await turn_store.skip_turn(self.lock, verdict.message_ids)
                    return
                case "handoff":
                    await self._drained(verdict)
                    assert self.handoff_reason is not None
                    await self._hand_off(self.handoff_reason, verdict.message_ids, "agent_failed")
                    return
                case "run":
                    await self._drained(verdict)
                    await self._answer(verdict)
                    return
            verdict = await turn_store.verdict(self.lock, handing_off=handing_off)
        # Messages that arrived during this turn are answered by the next one: unlocking says
        # whether there are any, and run_conversation takes the conversation again for them.

    async def _drained(self, verdict: Verdict) -> None:
        """The verdict's messages are this turn's: count them and withdraw their queued jobs.
        The job running this turn stays until the turn is done (a failure retries it, a dead
        worker's is run again), and it covers every message drained here: the other messages'
        queued jobs would only find the lock busy or nothing to do. A turn of the job's own
        message alone, the usual one, has none to withdraw and skips the round trip. Failing to
        withdraw them costs only their runs, so it never fails the turn."""
        self.outcome.processed += len(verdict.messages)
        others = [str(i) for i in verdict.message_ids if i != self.job_message_id]
        if not others:
            return
        try:
            await self.deps.jobs.withdraw_inbound(others)
        except (RedisError, OSError, TimeoutError) as exc:
            log.info("jobs.turn.withdraw_failed", extra={"detail": str(exc)})

    async def _resume(self, verdict: Verdict) -> None:
        """Finish what a worker that died mid-turn had decided. A reply it was sending has an
        unknown fate: it is not re-sent, and a human is asked to check the conversation."""
        # The dead one's START, stopped at once: this turn shows no typing.
        await self.deps.typing.send(
            self.lock.conversation_id, False, private=private_channel(self.conversation.config)
        )
        interrupted = await self._recover() if verdict.outbox_sending else 0
        if interrupted and verdict.agent_on:
            await self._hand_off(INTERRUPTED_SEND, [], "send_interrupted")
        else:
            await self._send()

    async def _recover(self) -> int:
        """Rows left `sending`, once no send can still be in flight: a worker that lost only
        its lock (its database connection dropped) finishes its send within the send timeout
        and records the outcome, so its row is not called unknown meanwhile."""
        in_flight_ms = outbox.in_flight_ms(self.deps.settings.WHATSAPP_SEND_TIMEOUT_SECONDS)
        recovered = 0
        while True:
            count, wait_ms = await turn_store.recover_interrupted(self.lock, in_flight_ms)
            recovered += count
            if not wait_ms:
                return recovered
            await asyncio.sleep(wait_ms / 1000)

    async def _answer(self, verdict: Verdict) -> None:
        conversation = self.conversation
        assert verdict.session is not None
        self.outcome.turns += 1
        started = time.monotonic()
        await self.deps.typing.send(
            self.lock.conversation_id, True, private=private_channel(conversation.config)
        )
        try:
            checkpoint("typing_started")
            try:
                engine = await self.deps.engines.build(
                    verdict.session.agent_id,
                    workspace_id=conversation.workspace_id,
                    pool=self.deps.db,
                )
            except EngineConfigurationError as exc:
                log.error("jobs.turn.engine_misconfigured", extra={"detail": str(exc)})
                await self._hand_off(
                    f"engine configuration: {exc}", verdict.message_ids, "engine_misconfigured"
                )
                return
            result = await engine.decide(
                TurnInput(
                    workspace_id=conversation.workspace_id,
                    conversation_id=conversation.conversation_id,
                    contact=verdict.contact,
                    session=verdict.session,
                    messages=list(verdict.messages),
                    settings=conversation.config,
                )
            )
            last = verdict.messages[-1]
            if (
                result.replies
                and conversation.config.get("whatsapp_typing_indicator")
                and last.wamid
            ):
                await self._show_whatsapp_typing(last.wamid)
            rows = await turn_store.commit_decision(
                self.lock, verdict.session, verdict.messages, result
            )
            checkpoint("decided")
            log.info(
                "jobs.turn.decided",
                extra={
                    "conversation_id": str(self.lock.conversation_id),
                    "replies": len(result.replies),
                    "intent": result.intent,
                    "handoff": result.handoff,
                },
            )
            await self._send(rows)
        finally:
            await self.deps.typing.send(
                self.lock.conversation_id, False, private=private_channel(conversation.config)
            )
            self.deps.metrics.inc("jobs_turns_total")
            self.deps.metrics.observe("jobs_turn_duration_seconds", time.monotonic() - started)
        if result.handoff:
            await self._hand_off(result.handoff_reason or "engine request", [], "engine_request")

    async def _show_whatsapp_typing(self, wamid: str) -> None:
        try:
            await self.deps.whatsapp.send_typing(self.channel, wamid)
        except SendError as exc:
            log.info("jobs.turn.whatsapp_typing_failed", extra={"detail": str(exc)})

    async def _send(self, rows: list[OutboxRow] | None = None) -> None:
        report = await outbox.send_pending(
            self.lock,
            self.deps.whatsapp,
            self.channel,
            self.conversation.recipient,
            response_speed=self.conversation.response_speed,
            throttle=ThrottleBackoff(
                self.deps.settings.JOBS_SEND_BACKOFF_SECONDS,
                self.deps.settings.JOBS_THROTTLE_SPAN_SECONDS,
            ),
            rows=rows,
            group=self.conversation.group_id is not None,
        )
        for outcome in ("sent", "skipped", "failed", "unknown"):
            if count := getattr(report, outcome):
                self.deps.metrics.inc("jobs_sends_total", count, outcome=outcome)
        if report.sent or report.skipped or report.failed or report.unknown:
            log.info(
                "jobs.outbox.sent",
                extra={"conversation_id": str(self.lock.conversation_id), **report.__dict__},
            )
        if report.unanswered:
            # The customer may have got no answer: a human checks. Once: the handoff turns the
            # bot off, and its own message is not a reply.
            reason = report.unanswered[0]
            log.warning(
                "jobs.outbox.reply_not_delivered",
                extra={"conversation_id": str(self.lock.conversation_id), "reason": reason},
            )
            await self._hand_off(reason, [], "reply_not_delivered")

    async def _hand_off(
        self, reason: str, message_ids: list[uuid.UUID], cause: HandoffReason
    ) -> None:
        """One transaction in the database, then the handoff message goes out through the
        outbox like any reply."""
        result = await turn_store.hand_off(self.lock, reason, message_ids)
        checkpoint("handoff_committed")
        self.outcome.handoffs += 1
        self.deps.metrics.inc("jobs_handoffs_total", reason=cause)
        log.info(
            "jobs.turn.handoff",
            extra={
                "conversation_id": str(self.lock.conversation_id),
                "reason": reason,
                "result": result,
            },
        )
        await self._send()
