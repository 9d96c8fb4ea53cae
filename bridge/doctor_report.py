"""What `bridge doctor` says of one check: its status, message and fix, and how to show a
secret or a URL without giving the secret away."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

Status = Literal["ok", "warning", "problem", "skipped"]
_LABELS: dict[Status, str] = {
    "ok": "ok",
    "warning": "warning",
    "problem": "PROBLEM",
    "skipped": "skipped",
}


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    message: str
    fix: str | None = None

    def line(self) -> str:
        fix = f" Fix: {self.fix}" if self.fix else ""
        return f"{_LABELS[self.status]:<8} {self.name}: {self.message}{fix}"


def ok(name: str, message: str) -> Check:
    return Check(name, "ok", message)


def problem(name: str, message: str, fix: str) -> Check:
    return Check(name, "problem", message, fix)


def tail(secret: str) -> str:
    """At most a secret's last four characters, and none of a short one."""
    return f"…{secret[-4:]}" if len(secret) >= 16 else f"({len(secret)} characters)"


def masked(url: str) -> str:
    """`url` without its password."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        host = parts.netloc.rpartition("@")[2]
        return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))
    except ValueError:
        return "(not a URL)"
