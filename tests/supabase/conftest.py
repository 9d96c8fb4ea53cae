"""Connections for the schema tests. Each test builds its own tenants with random ids."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest


@pytest.fixture(scope="session")
async def conn(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """One superuser connection: arranges data (committed) and runs role-scoped checks
    through `acting_as` (rolled back)."""
    connection = await asyncpg.connect(database_url)
    try:
        yield connection
    finally:
        await connection.close()
