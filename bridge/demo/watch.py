"""What happens in the demo conversation, as the inbox sees it: typing broadcasts on the Realtime
channel `conversation:<id>`, Postgres Changes of its messages, tasks and conversation row, and a
PostgREST read every second in case a change was missed (the service role reads every row)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from realtime import AsyncRealtimeChannel, AsyncRealtimeClient, RealtimePostgresChangesListenEvent
from realtime.types import BroadcastPayload, PostgresChangesPayload
from supabase import AsyncClient

POLL_SECONDS = 1.0
# Statuses only move forward; a read that lags behind a change never moves one back.
_RANK = {
    None: 0,
    "pending": 1,
    "sending": 2,
    "sent": 3,
    "delivered": 4,
    "read": 5,
    "played": 5,
    "failed": 6,
    "unknown": 6,
    "skipped": 6,
}
DELIVERED = frozenset({"sent", "delivered", "read", "played"})
SETTLED = DELIVERED | {"failed", "unknown", "skipped"}

Row = dict[str, Any]


@dataclass
class Message:
    id: str
    direction: str
    text: str
    wamid: str | None
    status: str | None
    agent_turn_id: str | None
    outbox_kind: str | None
    seen_at: float  # loop time it was first seen
    sent_at: float | None = None  # loop time it was first seen sent (or further)


class Listener(Protocol):
    def message(self, message: Message, before: str | None) -> None: ...
    def typing(self, on: bool) -> None: ...


def _text(content: Any) -> str:
    if isinstance(content, dict):
        return str(content.get("body") or content.get("caption") or "")
    return ""


class Watch:
    def __init__(
        self, supabase: AsyncClient, realtime: AsyncRealtimeClient, listener: Listener
    ) -> None:
        self._supabase = supabase
        self._realtime = realtime
        self._listener = listener
        self._changed = asyncio.Event()
        self._poller: asyncio.Task[None] | None = None
        self._channels: list[AsyncRealtimeChannel] = []
        self.conversation_id: str | None = None
        self.messages: dict[str, Message] = {}
        self.typing: list[tuple[float, bool]] = []
        self.conversation: Row = {}
        self.tasks: dict[str, Row] = {}
        self.poll_error: str | None = None

    async def select(self, table: str, columns: str, column: str, value: str) -> list[Row]:
        """`table` rows whose `column` equals `value`, through PostgREST."""
        response = await self._supabase.table(table).select(columns).eq(column, value).execute()
        return [dict(row) for row in response.data if isinstance(row, dict)]

    async def conversation_of(self, wamid: str) -> str | None:
        rows = await self.select("messages", "conversation_id", "wamid", wamid)
        return str(rows[0]["conversation_id"]) if rows else None

    async def follow(self, conversation_id: str, *, private: bool) -> None:
        """Subscribes to the conversation (typing first: a turn may already be starting)."""
        self.conversation_id = conversation_id
        typing = self._realtime.channel(
            f"conversation:{conversation_id}",
            {"config": {"broadcast": None, "presence": None, "private": private}},
        )
        typing.on_broadcast("typing", self._on_typing)
        await typing.subscribe()
        changes = self._realtime.channel(f"demo:{conversation_id}")
        for table, column in (("messages", "conversation_id"), ("tasks", "conversation_id")):
            changes.on_postgres_changes(
                RealtimePostgresChangesListenEvent.All,
                self._on_change,
                table=table,
                schema="public",
                filter=f"{column}=eq.{conversation_id}",
            )
        changes.on_postgres_changes(
            RealtimePostgresChangesListenEvent.Update,
            self._on_change,
            table="conversations",
            schema="public",
            filter=f"id=eq.{conversation_id}",
        )
        await changes.subscribe()
        self._channels = [typing, changes]
        await self.refresh()
        self._poller = asyncio.create_task(self._poll())

    async def typing_private(self, workspace_id: str) -> bool:
        """Whether the workspace puts typing on the private Realtime channel."""
        configs = await self.select(
            "workspace_agent_config", "typing_channel_private", "workspace_id", workspace_id
        )
        return bool(configs and configs[0].get("typing_channel_private"))

    async def refresh(self) -> None:
        cid = self.conversation_id
        if cid is None:
            return
        messages = await self.select("messages", "*", "conversation_id", cid)
        tasks = await self.select("tasks", "*", "conversation_id", cid)
        conversation = await self.select("conversations", "*", "id", cid)
        for row in sorted(messages, key=lambda r: (r["timestamp"], r["received_seq"])):
            self._apply("messages", row)
        for row in tasks:
            self._apply("tasks", row)
        for row in conversation:
            self._apply("conversations", row)

    async def until(self, check: Callable[[], bool], within: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while not check():
            left = deadline - loop.time()
            if left <= 0:
                return False
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(left, POLL_SECONDS))
        return True

    async def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
        for channel in self._channels:
            with contextlib.suppress(Exception):
                await channel.unsubscribe()

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(POLL_SECONDS)
            try:
                await self.refresh()
                self.poll_error = None
            except Exception as exc:  # shown when a step times out; the next read may work
                self.poll_error = f"{type(exc).__name__}: {exc}"

    def _on_typing(self, message: BroadcastPayload) -> None:
        on = message["payload"].get("isTyping") is True
        self.typing.append((asyncio.get_running_loop().time(), on))
        self._listener.typing(on)
        self._changed.set()

    def _on_change(self, payload: PostgresChangesPayload) -> None:
        data = payload["data"]
        record = data.get("record")
        if isinstance(record, dict):
            self._apply(str(data["table"]), record)

    def _apply(self, table: str, row: Row) -> None:
        if table == "messages":
            self._apply_message(row)
        elif table == "tasks":
            self.tasks[str(row["id"])] = row
        elif table == "conversations":
            self.conversation = row
        self._changed.set()

    def _apply_message(self, row: Row) -> None:
        if str(row.get("conversation_id")) != self.conversation_id:
            return
        now = asyncio.get_running_loop().time()
        status = row.get("status")
        key = str(row["id"])
        known = self.messages.get(key)
        if known is None:
            known = Message(
                id=key,
                direction=str(row["direction"]),
                text=_text(row.get("content")),
                wamid=row.get("wamid"),
                status=status,
                agent_turn_id=row.get("agent_turn_id"),
                outbox_kind=row.get("outbox_kind"),
                seen_at=now,
                sent_at=now if status in DELIVERED else None,
            )
            self.messages[key] = known
            self._listener.message(known, None)
            return
        known.agent_turn_id = known.agent_turn_id or row.get("agent_turn_id")
        known.wamid = known.wamid or row.get("wamid")
        before = known.status
        if _RANK.get(status, 0) > _RANK.get(before, 0):
            known.status = status
            if status in DELIVERED and known.sent_at is None:
                known.sent_at = now
            self._listener.message(known, before)
