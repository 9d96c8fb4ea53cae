"""What a socket's frames mean: Phoenix socket routing plus Realtime's channel (join, broadcast,
leave, access_token, presence), for one connection."""

from __future__ import annotations

import asyncio
import json
import time
import zlib
from collections.abc import Mapping
from typing import Any

from devstack.realtime import frames, policies, tokens
from devstack.realtime.connection import Connection
from devstack.realtime.frames import Inbound, UserPush
from devstack.realtime.hub import JsonBroadcast, Subscription, UserBroadcast
from devstack.realtime.runtime import RealtimeRuntime

TOPIC_PREFIX = "realtime:"


def _flag(value: Any, default: bool) -> bool:
    """Realtime's join payload booleans: JSON booleans or case-insensitive "true"/"false";
    anything else is logged by Realtime and replaced by the default."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return default


def _section(config: dict[str, Any], key: str) -> dict[str, Any]:
    value = config.get(key)
    return value if isinstance(value, dict) else {}


def _binding_id(binding: Any) -> int:
    # Realtime uses :erlang.phash2(params), a 27-bit hash; any stable small int will do.
    return zlib.crc32(frames.dumps(binding).encode()) & 0x7FFFFFF


class Channels:
    def __init__(self, connection: Connection, runtime: RealtimeRuntime) -> None:
        self.connection = connection
        self.runtime = runtime
        self.hub = runtime.hub
        self.jwt_secret = runtime.jwt_secret
        self.joined: dict[str, Subscription] = {}

    # -- frames out -------------------------------------------------------------------------

    def _reply(self, msg: Inbound, status: str, response: dict[str, Any]) -> None:
        self.connection.send(
            frames.encode_reply(
                self.connection.vsn,
                msg.topic,
                status,
                response,
                ref=msg.ref,
                join_ref=msg.join_ref,
            )
        )

    def _push(self, sub: Subscription, event: str, payload: dict[str, Any]) -> None:
        # A channel push: ref null, join_ref the channel's (V1 drops join_ref anyway)
        self.connection.send(
            frames.encode(self.connection.vsn, sub.topic, event, payload, join_ref=sub.join_ref)
        )

    def _send_close(self, sub: Subscription) -> None:
        self.connection.send(
            frames.encode(
                self.connection.vsn,
                sub.topic,
                "phx_close",
                {},
                ref=sub.join_ref,
                join_ref=sub.join_ref,
            )
        )

    # -- routing ----------------------------------------------------------------------------

    async def handle(self, data: str | bytes) -> None:
        msg = frames.decode(self.connection.vsn, data)
        if msg.topic == "phoenix" and msg.event == "heartbeat":
            self.connection.send(
                frames.encode_reply(
                    self.connection.vsn, "phoenix", "ok", {}, ref=msg.ref, join_ref=None
                )
            )
            return
        if msg.event == "phx_join":
            await self._join(msg)
            return
        sub = self.joined.get(msg.topic)
        if sub is None:
            if msg.event == "phx_leave":
                self._reply(msg, "ok", {})
            else:
                self._reply(msg, "error", {"reason": "unmatched topic"})
            return
        if sub.join_ref is not None and msg.join_ref != sub.join_ref:
            # Phoenix ignores messages for an earlier join of the topic (a client race).
            return
        if msg.event == "broadcast":
            await self._broadcast(sub, msg)
        elif msg.event == "phx_leave":
            self._leave(sub, msg)
        elif msg.event == "access_token":
            await self._access_token(sub, msg)
        elif msg.event == "presence":
            if isinstance(msg.payload, dict):
                self._reply(msg, "ok", {})
            else:
                self._reply(msg, "error", {"reason": "Presence track payload must be a map"})
        else:
            # Realtime logs unknown events and says nothing; an error reply makes a client's
            # mistake visible during development instead of silently doing nothing.
            self._reply(msg, "error", {"reason": f"unknown event {msg.event!r}"})

    def close_all(self) -> None:
        """The socket is gone: leave every channel without telling anyone."""
        for sub in self.joined.values():
            self._forget(sub)
        self.joined.clear()

    # -- join / leave -----------------------------------------------------------------------

    async def _can_read(self, sub_topic: str, claims: Mapping[str, Any]) -> bool:
        pool = self.runtime.pool
        return pool is not None and await policies.can_read(pool, sub_topic, claims)

    async def _join(self, msg: Inbound) -> None:
        if not msg.topic.startswith(TOPIC_PREFIX):
            self._reply(msg, "error", {"reason": "unmatched topic"})
            return
        previous = self.joined.pop(msg.topic, None)
        if previous is not None:
            # Phoenix: a duplicate join closes the existing channel before joining anew.
            self._forget(previous)
            self._send_close(previous)
        if msg.topic == TOPIC_PREFIX:
            self._reply(
                msg, "error", {"reason": "TopicNameRequired: You must provide a topic name"}
            )
            return
        if len(self.joined) >= self.connection.limits.max_channels_per_client:
            self._reply(msg, "error", {"reason": "ChannelRateLimitReached: Too many channels"})
            return
        params = msg.payload
        if not isinstance(params, dict):
            self._reply(
                msg,
                "error",
                {"reason": "UnknownErrorOnChannel: the join payload must be an object"},
            )
            return
        config = _section(params, "config")
        broadcast = _section(config, "broadcast")
        token = params.get("access_token") or params.get("user_token")
        if not isinstance(token, str) or token.startswith("sb_"):
            # Realtime falls back to the socket's apikey for missing or opaque `sb_` tokens.
            token = self.connection.apikey
        try:
            claims = tokens.verify(token, self.jwt_secret)
        except tokens.TokenError as exc:
            self._reply(msg, "error", {"reason": exc.reason})
            return
        sub = Subscription(
            connection=self.connection,
            topic=msg.topic,
            private=_flag(config.get("private"), False),
            join_ref=msg.join_ref,
            self_broadcast=_flag(broadcast.get("self"), False),
            ack=_flag(broadcast.get("ack"), False),
            access_token=token,
            claims=claims,
        )
        if sub.private and not await self._can_read(sub.sub_topic, claims):
            reason = f"You do not have permissions to read from this Channel topic: {sub.sub_topic}"
            self._reply(msg, "error", {"reason": f"Unauthorized: {reason}"})
            return
        self.joined[msg.topic] = sub
        self.hub.add(sub)
        self._schedule_expiry(sub, tokens.expires_at(claims))
        if not await self._subscribe_changes(sub, msg, config.get("postgres_changes")):
            return
        presence = _section(config, "presence")
        if _flag(presence.get("enabled"), False):
            # Presence state is not tracked here; an empty state keeps presence clients in sync.
            self._push(sub, "presence_state", {})

    async def _subscribe_changes(self, sub: Subscription, msg: Inbound, bindings: Any) -> bool:
        """Reply to the join, echoing the postgres_changes bindings with their ids, and
        subscribe them; False if the channel went away meanwhile."""
        wanted: list[tuple[Any, int]] = []
        if isinstance(bindings, list):
            wanted = [(b, _binding_id(b)) for b in bindings if isinstance(b, dict)]
        subscribed = None
        if wanted:
            subscribed = await self.runtime.pg_subscriptions.subscribe(sub, wanted)
            if self.joined.get(msg.topic) is not sub:
                self.runtime.pg_subscriptions.forget(sub)  # left or closed meanwhile
                return False
        self._reply(msg, "ok", {"postgres_changes": [{**b, "id": i} for b, i in wanted]})
        if subscribed is not None:
            # Realtime subscribes after the reply and says how it went in a `system` push.
            self._push(sub, "system", subscribed)
        return True

    def _leave(self, sub: Subscription, msg: Inbound) -> None:
        self._forget(sub)
        del self.joined[sub.topic]
        self._reply(msg, "ok", {})
        self._send_close(sub)

    def _forget(self, sub: Subscription) -> None:
        self.hub.remove(sub)
        self.runtime.pg_subscriptions.forget(sub)
        if sub.expiry is not None:
            sub.expiry.cancel()
            sub.expiry = None

    def _shutdown(self, sub: Subscription, message: str) -> None:
        """Realtime's `shutdown_response`: a system error, then the channel stops (phx_close)."""
        if self.joined.get(sub.topic) is not sub:
            return
        self._push(
            sub,
            "system",
            {
                "extension": "system",
                "status": "error",
                "message": message,
                "channel": sub.sub_topic,
            },
        )
        self._forget(sub)
        del self.joined[sub.topic]
        self._send_close(sub)

    # -- tokens -----------------------------------------------------------------------------

    def _schedule_expiry(self, sub: Subscription, exp: int) -> None:
        if sub.expiry is not None:
            sub.expiry.cancel()
        delay = max(0.0, exp - time.time())
        sub.expiry = asyncio.get_running_loop().call_later(
            delay, self._shutdown, sub, "Token has expired 0 seconds ago"
        )

    async def _access_token(self, sub: Subscription, msg: Inbound) -> None:
        payload = msg.payload
        token = payload.get("access_token") if isinstance(payload, dict) else None
        if not isinstance(token, str) or token.startswith("sb_") or token == sub.access_token:
            return
        try:
            claims = tokens.verify(token, self.jwt_secret)
        except tokens.TokenError as exc:
            self._shutdown(sub, exc.message)
            return
        sub.access_token = token
        sub.claims = claims
        sub.can_write = None
        self._schedule_expiry(sub, tokens.expires_at(claims))
        if sub.private and not await self._can_read(sub.sub_topic, claims):
            self._shutdown(
                sub,
                f"You no longer have permission to read from this Channel topic: {sub.sub_topic}",
            )
            return
        # Realtime subscribes the bindings again with the new claims.
        subscribed = await self.runtime.pg_subscriptions.resubscribe(sub)
        if subscribed is not None and self.joined.get(sub.topic) is sub:
            self._push(sub, "system", subscribed)

    # -- broadcast --------------------------------------------------------------------------

    async def _may_write(self, sub: Subscription) -> bool:
        if not sub.private:
            return True
        if sub.can_write is None:
            pool = self.runtime.pool
            allowed = pool is not None and await policies.can_write(pool, sub.sub_topic, sub.claims)
            sub.can_write = allowed
        return sub.can_write

    async def _broadcast(self, sub: Subscription, msg: Inbound) -> None:
        payload = msg.payload
        outbound: JsonBroadcast | UserBroadcast
        if isinstance(payload, UserPush):
            parsed: Any = None
            if payload.json_encoded:
                try:
                    parsed = json.loads(payload.body)
                except (ValueError, RecursionError):
                    # Forwarding it would break every realtime-js receiver's JSON.parse.
                    self._reply(msg, "error", {"reason": "invalid JSON payload"})
                    return
            outbound = UserBroadcast(
                sub.topic,
                payload.event,
                payload.body,
                json_encoded=payload.json_encoded,
                parsed=parsed,
            )
        elif isinstance(payload, dict):
            # Forwarded verbatim, as Realtime re-broadcasts the client's map.
            outbound = JsonBroadcast(sub.topic, payload)
        else:
            self._reply(msg, "error", {"reason": "broadcast payload must be an object"})
            return
        if not await self._may_write(sub) or self.joined.get(sub.topic) is not sub:
            # Realtime drops unauthorised pushes on private channels without a word, ack or not.
            return
        if msg.size > self.connection.limits.max_payload_bytes:
            if sub.ack:
                self._reply(msg, "error", {"reason": "payload_size_exceeded"})
            return
        self.hub.broadcast(sub.sub_topic, sub.private, outbound, sender=sub)
        if sub.ack:
            self._reply(msg, "ok", {})
