"""The demo in the terminal: a live view (rich) that updates statuses in place, or plain lines
for logs and pipes (`--plain`, or whenever stdout is not a terminal)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import IO

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from bridge.demo.watch import Message

_TICKS = {
    "pending": "· pending",
    "sending": "· sending",
    "sent": "✓ sent",
    "delivered": "✓✓ delivered",
    "read": "✓✓ read",
    "played": "✓✓ played",
}


def _clock() -> float:
    return asyncio.get_running_loop().time()


@dataclass
class _Line:
    at: float
    who: str  # "step", "customer", "bot", "note"
    text: str
    message_id: str | None = None
    delay: float | None = None


@dataclass
class View:
    """What was seen, in order; subclasses show it."""

    started: float = field(default_factory=_clock)
    lines: list[_Line] = field(default_factory=list)
    statuses: dict[str, str] = field(default_factory=dict)
    shown: set[str] = field(default_factory=set)  # outbound messages on screen
    customer_at: float = 0.0  # when the customer's latest message was posted
    is_typing: bool = False
    waiting_for: str = ""

    def elapsed(self, at: float | None = None) -> float:
        return (_clock() if at is None else at) - self.started

    def step(self, number: int, total: int, title: str) -> None:
        self._add(_Line(_clock(), "step", f"step {number}/{total}: {title}"))

    def customer(self, text: str) -> None:
        self.customer_at = _clock()
        self._add(_Line(self.customer_at, "customer", text))

    def message(self, message: Message, before: str | None) -> None:
        if message.direction == "inbound":
            if before is None:
                self._add(_Line(message.seen_at, "stored", message.text, message.id))
            return
        if message.status is not None:
            self.statuses[message.id] = message.status
        if message.id in self.shown:
            self._status(message, before)
        elif message.sent_at is not None:
            # Shown once it went out, as the customer sees it: its delay is the bot's answer time.
            self.shown.add(message.id)
            delay = message.sent_at - self.customer_at
            self._add(_Line(message.sent_at, "bot", message.text, message.id, delay))
        elif message.status in ("failed", "unknown", "skipped"):
            self.shown.add(message.id)
            self._add(_Line(_clock(), "bot", f"(not sent: {message.status}) {message.text}"))

    def typing(self, on: bool) -> None:
        self.is_typing = on
        self._add(_Line(_clock(), "typing", "bot is typing…" if on else "bot stopped typing"))

    def waiting(self, what: str) -> None:
        self.waiting_for = what
        self._refresh()

    def note(self, text: str) -> None:
        self._add(_Line(_clock(), "note", text))

    def result(self, ok: bool, text: str) -> None:
        self._add(_Line(_clock(), "ok" if ok else "failed", text))

    def close(self) -> None:
        self.waiting_for = ""
        self.is_typing = False
        self._refresh()

    def _add(self, line: _Line) -> None:
        self.lines.append(line)

    def _status(self, message: Message, before: str | None) -> None:
        self._refresh()

    def _refresh(self) -> None:
        pass


_PLAIN_WHO = {
    "customer": "customer →",
    "stored": "  stored  ",
    "bot": "bot      ←",
    "typing": "typing    ",
    "status": "status    ",
    "note": "          ",
    "ok": "ok        ",
    "failed": "FAILED    ",
}


@dataclass
class PlainView(View):
    """One line per event, as it happens."""

    out: IO[str] | None = None

    def _add(self, line: _Line) -> None:
        super()._add(line)
        self._print(line.at, line.who, line.text, line.delay, line.message_id)

    def _status(self, message: Message, before: str | None) -> None:
        text = f"{_short(message.text)}: {before or '-'} → {message.status}"
        self._print(_clock(), "status", text, None, None)

    def _print(
        self, at: float, who: str, text: str, delay: float | None, message_id: str | None
    ) -> None:
        if who == "step":
            if self.out is not None:
                self.out.write(f"\n== {text} ==\n")
            return
        head = f"{self.elapsed(at):6.1f}s {_PLAIN_WHO.get(who, who)} {text}"
        if delay is not None:
            head += f"  (+{delay:.1f} s)"
        if message_id is not None and who == "bot":
            head += f"  [{self.statuses.get(message_id, '-')}]"
        if self.out is not None:
            self.out.write(head.replace("\n", "\n" + " " * 19) + "\n")
            self.out.flush()


@dataclass
class LiveView(View):
    """The transcript as a table whose statuses change in place, under a typing indicator."""

    console: Console | None = None
    _live: Live | None = None

    def start(self) -> None:
        self._live = Live(
            self._render(), console=self.console, refresh_per_second=10, transient=False
        )
        self._live.start()

    def close(self) -> None:
        super().close()
        if self._live is not None:
            self._live.update(self._render(), refresh=True)
            self._live.stop()

    def _add(self, line: _Line) -> None:
        super()._add(line)
        self._refresh()

    def _refresh(self) -> None:
        if self._live is not None:
            self._live.update(self._render())

    def _render(self) -> RenderableType:
        table = Table(expand=True, show_edge=False, box=None, pad_edge=False)
        table.add_column("t", justify="right", style="dim", width=6)
        table.add_column("", width=9)
        table.add_column("message", ratio=1)
        table.add_column("delay", justify="right", width=7)
        table.add_column("status", width=13)
        for line in self.lines:
            if line.who == "step":
                table.add_row("", "", Text(line.text, style="bold magenta"), "", "")
                continue
            if line.who in ("typing", "stored"):
                continue  # the footer shows typing; a stored message gets its tick below
            who, style = {
                "customer": ("customer", "cyan"),
                "bot": ("bot", "green"),
                "ok": ("✓", "bold green"),
                "failed": ("✗", "bold red"),
            }.get(line.who, ("", "dim"))
            status = ""
            if line.who == "customer":
                status = "✓ stored" if self._stored(line) else "· sending"
            elif line.message_id is not None:
                status = _TICKS.get(self.statuses.get(line.message_id, ""), "")
            delay = f"+{line.delay:.1f}s" if line.delay is not None else ""
            table.add_row(
                f"{self.elapsed(line.at):.1f}",
                Text(who, style=style),
                Text(line.text, style=style if line.who in ("ok", "failed") else ""),
                delay,
                Text(status, style="blue" if "read" in status else ""),
            )
        footer: list[RenderableType] = []
        if self.is_typing:
            footer.append(Spinner("dots", Text(" bot is typing…", style="italic green")))
        elif self.waiting_for:
            footer.append(Spinner("line", Text(f" waiting for {self.waiting_for}", style="dim")))
        return Group(table, *footer)

    def _stored(self, line: _Line) -> bool:
        return any(
            other.who == "stored" and other.text == line.text and other.at >= line.at - 0.001
            for other in self.lines
        )


def _short(text: str, width: int = 40) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"
