"""`python -m devstack` options that shape the stand-in (`devstack.__main__`)."""

from __future__ import annotations

from devstack.__main__ import _parse
from devstack.config import DevstackConfig


def test_db_pool_sets_the_most_connections_of_the_postgrest_stand_in() -> None:
    config = _parse(["--database-url", "postgresql://db", "--db-pool", "3"])
    assert config.pool_max_size == 3


def test_db_pool_defaults_to_postgrests_default() -> None:
    config = _parse(["--database-url", "postgresql://db"])
    assert config.pool_max_size == DevstackConfig.pool_max_size == 10
