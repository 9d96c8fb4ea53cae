"""What the stand-ins share while the server runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import asyncpg

from devstack.config import DevstackConfig


@dataclass
class DevstackState:
    config: DevstackConfig
    pool: asyncpg.Pool = field(init=False)
    # Each stand-in keeps its own runtime objects here, under its own key.
    services: dict[str, Any] = field(default_factory=dict)
