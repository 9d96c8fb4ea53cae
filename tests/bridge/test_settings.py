"""One Settings for every process: every key is documented in `.env.example`, and a key left
empty there is unset, never a value."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.settings import Settings

ROOT = Path(__file__).resolve().parent.parent.parent


def _example_keys() -> dict[str, str]:
    """Each key of .env.example with the comment line just above it."""
    keys: dict[str, str] = {}
    previous = ""
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            keys[line.split("=", 1)[0]] = previous
        previous = line
    return keys


def test_every_setting_is_in_the_example_file_with_a_comment() -> None:
    keys = _example_keys()
    assert set(Settings.model_fields) == set(keys)
    assert all(comment.startswith("# ") for comment in keys.values()), keys


def test_keys_left_empty_in_a_dotenv_file_take_their_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(name, raising=False)
    dotenv = tmp_path / ".env"
    dotenv.write_text("ANTHROPIC_API_KEY=\nBRIDGE_LLM_MAX_TOKENS=\nJOBS_MAX_JOBS=7\n")
    settings = Settings(_env_file=dotenv)
    assert settings.ANTHROPIC_API_KEY is None
    assert settings.BRIDGE_LLM_MAX_TOKENS is None
    assert settings.JOBS_MAX_JOBS == 7


def test_the_example_file_loads_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in Settings.model_fields:
        monkeypatch.delenv(name, raising=False)
    settings = Settings(_env_file=ROOT / ".env.example")
    assert settings.ANTHROPIC_API_KEY is None
    assert settings.WHATSAPP_APP_SECRET is not None
