"""The Realtime stand-in's live objects, kept in `state.services["realtime"]`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import asyncpg

from devstack.realtime.connection import Connection, Limits
from devstack.realtime.hub import Hub
from devstack.realtime.pg_subscriptions import Registry
from devstack.state import DevstackState

if TYPE_CHECKING:
    from devstack.realtime.database import DatabaseBroadcasts
    from devstack.realtime.pg_changes import PostgresChanges

SERVICE_KEY = "realtime"


@dataclass
class RealtimeRuntime:
    jwt_secret: str
    limits: Limits = field(default_factory=Limits)
    hub: Hub = field(default_factory=Hub)
    connections: set[Connection] = field(default_factory=set)
    # The server pool (set at start): private-channel policy checks run on it.
    pool: asyncpg.Pool | None = None
    database: DatabaseBroadcasts | None = None
    # Postgres Changes: the channels' subscriptions, and the task delivering changes to them
    pg_subscriptions: Registry = field(default_factory=Registry)
    pg_changes: PostgresChanges | None = None


def runtime_of(state: DevstackState) -> RealtimeRuntime:
    runtime = state.services.get(SERVICE_KEY)
    if runtime is None:
        runtime = RealtimeRuntime(jwt_secret=state.config.jwt_secret)
        state.services[SERVICE_KEY] = runtime
    assert isinstance(runtime, RealtimeRuntime)
    return runtime
