"""Who listens to what, and fan-out to them.

An audience is `(subtopic, private)`: Realtime keeps public and private channels of the same
name apart (`<tenant>:<sub>` vs `<tenant>-private:<sub>`). Every member of an audience joined the
same topic `realtime:<sub>`, so a broadcast is encoded at most once per serializer and the same
frame is queued to each socket, as Realtime's MessageDispatcher does.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from devstack.realtime import frames
from devstack.realtime.connection import Connection
from devstack.realtime.frames import Vsn


@dataclass(eq=False, slots=True)
class Subscription:
    """One joined channel of one socket."""

    connection: Connection
    topic: str
    private: bool
    join_ref: str | None
    self_broadcast: bool
    ack: bool
    access_token: str
    claims: Mapping[str, Any]
    # Private channels only: may this socket broadcast here? Checked on the first broadcast
    # and again after a token change, as Realtime caches its write policy per channel.
    can_write: bool | None = None
    expiry: asyncio.TimerHandle | None = None

    @property
    def sub_topic(self) -> str:
        return self.topic.removeprefix("realtime:")


class JsonBroadcast:
    """A `Phoenix.Socket.Broadcast`: a JSON payload map, text frames for both serializers."""

    __slots__ = ("_frames", "payload", "topic")

    def __init__(self, topic: str, payload: Any) -> None:
        self.topic = topic
        self.payload = payload
        self._frames: dict[Vsn, str] = {}

    def frame_for(self, vsn: Vsn) -> str | bytes | None:
        frame = self._frames.get(vsn)
        if frame is None:
            frame = frames.encode(vsn, self.topic, "broadcast", self.payload)
            self._frames[vsn] = frame
        return frame


class UserBroadcast:
    """Realtime's `UserBroadcast` (from a kind 3 push or the single-message REST endpoint):
    binary kind 4 for v2 sockets; v1 sockets get it converted to a JSON broadcast, or not at
    all when the payload is raw bytes (V1 cannot carry them)."""

    __slots__ = ("_frames", "_parsed", "body", "event", "json_encoded", "topic")

    def __init__(
        self,
        topic: str,
        event: str,
        body: bytes,
        *,
        json_encoded: bool,
        parsed: Any = None,
    ) -> None:
        self.topic = topic
        self.event = event
        self.body = body
        self.json_encoded = json_encoded
        self._parsed = parsed
        self._frames: dict[Vsn, str | bytes | None] = {}

    def frame_for(self, vsn: Vsn) -> str | bytes | None:
        if vsn in self._frames:
            return self._frames[vsn]
        frame: str | bytes | None
        if vsn is Vsn.V2:
            frame = frames.encode_user_broadcast(
                self.topic, self.event, self.body, json_encoded=self.json_encoded
            )
        elif not self.json_encoded:
            frame = None
        else:
            parsed = self._parsed if self._parsed is not None else json.loads(self.body)
            payload = {"event": self.event, "payload": parsed, "type": "broadcast"}
            frame = frames.encode(vsn, self.topic, "broadcast", payload)
        self._frames[vsn] = frame
        return frame


Outbound = JsonBroadcast | UserBroadcast


@dataclass
class Hub:
    _audiences: dict[tuple[str, bool], dict[Subscription, None]] = field(default_factory=dict)

    def add(self, subscription: Subscription) -> None:
        key = (subscription.sub_topic, subscription.private)
        self._audiences.setdefault(key, {})[subscription] = None

    def remove(self, subscription: Subscription) -> None:
        key = (subscription.sub_topic, subscription.private)
        members = self._audiences.get(key)
        if members is None:
            return
        members.pop(subscription, None)
        if not members:
            del self._audiences[key]

    def broadcast(
        self,
        sub_topic: str,
        private: bool,
        message: Outbound,
        sender: Subscription | None = None,
    ) -> int:
        """Queue `message` to every member (the sender only with `self`); returns how many."""
        members = self._audiences.get((sub_topic, private))
        if not members:
            return 0
        delivered = 0
        # A copy: a send may close a slow socket, whose cleanup leaves this audience.
        for member in tuple(members):
            if member is sender and not member.self_broadcast:
                continue
            frame = message.frame_for(member.connection.vsn)
            if frame is None:
                continue
            member.connection.send(frame)
            delivered += 1
        return delivered
