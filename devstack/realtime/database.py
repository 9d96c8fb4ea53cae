"""Broadcast from the database: `realtime.send()` rows reach subscribers after commit.

Supabase reads `realtime.messages` inserts through logical replication. Here `realtime.send()`
also does `pg_notify('realtime:broadcast', {id, topic, event, private})`, and NOTIFY, like
replication, is delivered only once the transaction commits (never if it rolls back). A dedicated
connection LISTENs, loads each row by id and fans it out, one at a time so that order is kept.
If that connection drops, it is opened again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

import asyncpg

from devstack.realtime.hub import Hub, JsonBroadcast, UserBroadcast
from devstack.realtime.listening import Listener

log = logging.getLogger("devstack.realtime")

CHANNEL = "realtime:broadcast"
APPLICATION_NAME = "devstack realtime listener"

_ROW_SQL = """
select topic, event, private, payload::text as payload, binary_payload
from realtime.messages
where id = $1::uuid and extension = 'broadcast'
limit 1
"""


class DatabaseBroadcasts(Listener[str]):
    application_name = APPLICATION_NAME
    what = "database broadcasts"
    ready_timeout = 5.0

    def __init__(self, database_url: str, hub: Hub) -> None:
        super().__init__(database_url)
        self.hub = hub

    def _on_notify(
        self,
        _conn: asyncpg.Connection | asyncpg.pool.PoolConnectionProxy,
        _pid: int,
        _channel: str,
        payload: object,
    ) -> None:
        try:
            note = json.loads(str(payload))
            message_id = str(note["id"])
        except (ValueError, KeyError, TypeError):
            log.warning("realtime: ignoring a malformed %s notification", CHANNEL)
            return
        self._pending.append(message_id)
        self._wakeup.set()

    async def _serve(self, conn: asyncpg.Connection) -> None:
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _c: lost.set())
        await conn.add_listener(CHANNEL, self._on_notify)
        self.listening.set()
        while not lost.is_set():
            if not self._pending:
                self._wakeup.clear()
                # Wake up now and then: a dead peer is not always reported at once.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), 1.0)
                if conn.is_closed():
                    return
                continue
            message_id = self._pending[0]
            try:
                row = await conn.fetchrow(_ROW_SQL, message_id)
            except asyncpg.PostgresError:
                if conn.is_closed():
                    # Kept at the head of the queue: loaded again after reconnecting.
                    raise
                log.exception("realtime: cannot load broadcast %s; skipping it", message_id)
                self._pending.popleft()
                continue
            self._pending.popleft()
            if row is not None:
                try:
                    self._deliver(message_id, dict(row))
                except ValueError:
                    # e.g. a binary row whose event is too long for the binary frame
                    log.exception("realtime: cannot deliver broadcast %s", message_id)

    def _deliver(self, message_id: str, row: dict[str, Any]) -> None:
        topic, event, private = row["topic"], row["event"], bool(row["private"])
        if row["payload"] is not None:
            payload = {
                "type": "broadcast",
                "event": event,
                "payload": json.loads(row["payload"]),
                "meta": {"id": message_id},
            }
            self.hub.broadcast(topic, private, JsonBroadcast(f"realtime:{topic}", payload))
        elif row["binary_payload"] is not None:
            self.hub.broadcast(
                topic,
                private,
                UserBroadcast(
                    f"realtime:{topic}",
                    event or "",
                    bytes(row["binary_payload"]),
                    json_encoded=False,
                ),
            )
