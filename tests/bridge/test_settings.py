"""One Settings for every process: every key is documented in `.env.example`, and a key left
empty there is unset, never a value."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from bridge.settings import LOCAL_SERVICE_ROLE_KEY, Settings

ROOT = Path(__file__).resolve().parent.parent.parent


# A key shown but commented out (`# KEY=`): documented, and unset in a copy of the file.
_COMMENTED_KEY = re.compile(r"# ([A-Z][A-Z0-9_]*)=")


def _example_lines() -> list[tuple[str, str, str, bool]]:
    """Each key of .env.example: its name, value, the comment line above it, and whether the
    key itself is commented out."""
    found = []
    previous = ""
    for line in (ROOT / ".env.example").read_text().splitlines():
        commented = _COMMENTED_KEY.match(line)
        if commented:
            found.append((commented[1], line.split("=", 1)[1], previous, True))
        elif line and not line.startswith("#"):
            name, value = line.split("=", 1)
            found.append((name, value, previous, False))
        previous = line
    return found


def _example_keys() -> dict[str, str]:
    """Each key of .env.example with the comment line just above it."""
    return {name: comment for name, _, comment, _ in _example_lines()}


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


def _secret_fields() -> list[str]:
    return [
        name
        for name, field in Settings.model_fields.items()
        if SecretStr in (field.annotation, *getattr(field.annotation, "__args__", ()))
    ]


def test_the_example_file_carries_no_blank_secret() -> None:
    # A copied .env.example must not hand anyone a key: a secret is either given a value or
    # shown commented out.
    secrets = set(_secret_fields())
    assert {"WHATSAPP_APP_SECRET", "WHATSAPP_360DIALOG_WEBHOOK_SECRET"} <= secrets
    blank = [
        name
        for name, value, _, commented in _example_lines()
        if name in secrets and not commented and not value.strip()
    ]
    assert blank == []


@pytest.mark.parametrize("blank", ["", "  ", "\t"], ids=["empty", "spaces", "tab"])
def test_blank_secrets_are_unset_wherever_they_come_from(
    blank: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = _secret_fields()
    for name in Settings.model_fields:
        monkeypatch.delenv(name, raising=False)
    as_text: dict[str, Any] = {name: blank for name in names}
    as_secrets: dict[str, Any] = {name: SecretStr(blank) for name in names}
    from_init = Settings(_env_file=None, **as_text)
    from_secretstr = Settings(_env_file=None, **as_secrets)
    for name in names:
        monkeypatch.setenv(name, blank)
    from_env = Settings(_env_file=None)
    for name in names:
        monkeypatch.delenv(name)
    dotenv = tmp_path / ".env"
    dotenv.write_text("".join(f'{name}="{blank}"\n' for name in names))
    from_dotenv = Settings(_env_file=dotenv)
    for settings in (from_init, from_secretstr, from_env, from_dotenv):
        assert settings.WHATSAPP_APP_SECRET is None
        assert settings.WHATSAPP_360DIALOG_WEBHOOK_SECRET is None
        assert settings.WHATSAPP_VERIFY_TOKEN is None
        assert settings.WHATSAPP_ACCESS_TOKEN is None
        assert settings.BRIDGE_METRICS_TOKEN is None
        # Unset takes the default: the well-known local key, never an empty one.
        assert settings.SUPABASE_SERVICE_ROLE_KEY.get_secret_value() == LOCAL_SERVICE_ROLE_KEY
