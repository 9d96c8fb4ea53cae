"""The soak's invariants, read from the database and the WhatsApp stand-in's request log once
the stack has drained. Each customer message's text is unique (`<phone>-m<seq>`), and the
diagnostic engine quotes what it answered ("Recibido (n): a | b"), so every reply says which
messages it answered and in what order it read them."""

from __future__ import annotations

import argparse
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx

from bench.harness import percentile

ANSWERED = ("sent", "delivered", "read")


@dataclass(frozen=True)
class Sent:
    phone: str
    wamid: str
    text: str


@dataclass
class Report:
    counts: dict[str, int] = field(default_factory=dict)
    must_be_zero: dict[str, int] = field(default_factory=dict)
    turn_p50: float = float("nan")
    turn_p99: float = float("nan")
    ack_p50: float = float("nan")
    ack_p99: float = float("nan")
    drained: bool = False
    exits: dict[str, int] = field(default_factory=dict)
    rss: dict[str, float] = field(default_factory=dict)
    faults: list[str] = field(default_factory=list)
    seconds: float = 0.0
    # A few offending items per must-be-zero row, to start the investigation from.
    examples: dict[str, list[str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.drained and not any(self.must_be_zero.values())


def _seq(token: str) -> int:
    return int(token.rsplit("-m", 1)[1].split()[0])


def _quoted(reply: str) -> list[str]:
    if not reply.startswith("Recibido ("):
        return []
    return [t.strip() for t in reply.split(": ", 1)[1].split(" | ")]


async def _deliveries(devstack_url: str) -> list[dict[str, Any]]:
    """Sends that went out: answered, or answered late after the client gave up."""
    async with httpx.AsyncClient(timeout=30) as client:
        entries = (
            await client.get(f"{devstack_url}/whatsapp/_control/requests", params={"kind": "send"})
        ).json()["requests"]
    out = []
    for e in entries:
        fault = e.get("fault")
        if fault is None or (fault["kind"] == "timeout" and fault.get("then") == "answer"):
            out.append(e)
    return out


async def check(
    database_url: str,
    devstack_url: str,
    sent: list[Sent],
    *,
    toggled: set[str],
    acked_at: dict[str, float],
) -> Report:
    report = Report()
    conn = await asyncpg.connect(database_url)
    try:
        inbound = await conn.fetch(
            "select m.wamid, m.content ->> 'body' as body, c.phone, m.processed_by_agent,"
            " extract(epoch from m.created_at) as at from public.messages m"
            " join public.conversations c on c.id = m.conversation_id"
            " where m.direction = 'inbound'"
        )
        outbound = await conn.fetch(
            "select c.phone, m.content ->> 'body' as body, m.status, m.outbox_kind, m.skip_reason,"
            " extract(epoch from m.timestamp) as at, extract(epoch from m.created_at) as decided"
            " from public.messages m join public.conversations c on c.id = m.conversation_id"
            " where m.direction = 'outbound' order by m.created_at, m.outbox_position"
        )
        handoffs = await conn.fetch(
            "select c.phone from public.tasks t"
            " join public.conversations c on c.id = t.conversation_id where t.type = 'handoff'"
        )
    finally:
        await conn.close()
    handed = Counter(h["phone"] for h in handoffs)
    report.counts["handoff tasks"] = len(handoffs)
    # A handoff switches the bot off for the conversation; a member switching it on again (the
    # toggled customers) makes a later handoff a new one.
    twice = {p: n for p, n in handed.items() if n > 1 and p not in toggled}
    report.must_be_zero["duplicate handoff tasks"] = sum(n - 1 for n in twice.values())
    report.examples["duplicate handoff tasks"] = [f"{p} ({n} tasks)" for p, n in twice.items()]
    _intake(report, sent, inbound)
    answered_in = _replies(report, outbound, inbound, handed, toggled)
    _order(report, sent, answered_in, acked_at, handed, toggled)
    for example in report.examples.get("later first", [])[:2]:
        phone = example.split("-m", 1)[0]
        report.examples.setdefault("replies of a later-first conversation", []).append(
            " / ".join(f"{r['body']} [{r['status']}]" for r in outbound if r["phone"] == phone)
        )
    _sends(report, outbound, await _deliveries(devstack_url))
    return report


def _intake(report: Report, sent: list[Sent], inbound: list[asyncpg.Record]) -> None:
    stored = {r["wamid"] for r in inbound}
    bodies = Counter(r["body"] for r in inbound)
    report.counts["messages got a 200"] = len(sent)
    report.counts["stored"] = sum(1 for s in sent if s.wamid in stored)
    lost = [f"{s.wamid} {s.text}" for s in sent if s.wamid not in stored]
    report.must_be_zero["lost"] = len(lost)
    report.examples["lost"] = lost[:5]
    report.must_be_zero["stored twice"] = sum(1 for s in sent if bodies[s.text] > 1)
    report.must_be_zero["unprocessed"] = sum(1 for r in inbound if not r["processed_by_agent"])


def _replies(
    report: Report,
    outbound: list[asyncpg.Record],
    inbound: list[asyncpg.Record],
    handed: Counter[str],
    toggled: set[str],
) -> dict[str, tuple[int, float]]:
    """Which reply answered each message: its index in the conversation's outbox order and
    when it was decided. A reply of unknown fate found after a member switched the bot off (the
    toggled customers) is left to that member: no handoff is asked for a conversation a human
    already holds."""
    stored_at = {r["body"]: float(r["at"]) for r in inbound}
    per_phone: Counter[str] = Counter()
    answered_in: dict[str, tuple[int, float]] = {}
    latency: list[float] = []
    out_of_order = unresolved = replies = 0
    for r in outbound:
        if r["outbox_kind"] != "reply":
            continue
        replies += 1
        index = per_phone[r["phone"]]
        per_phone[r["phone"]] += 1
        tokens = _quoted(r["body"] or "")
        if [_seq(t) for t in tokens] != sorted(_seq(t) for t in tokens):
            out_of_order += 1
            report.examples.setdefault("messages read out of customer order", []).append(r["body"])
        if (
            r["status"] in ("unknown", "failed")
            and not handed[r["phone"]]
            and (r["phone"] not in toggled)
        ):
            unresolved += 1
            report.examples.setdefault("unknown or failed replies without a handoff", []).append(
                f"{r['phone']} {r['status']}"
            )
        for t in tokens:
            # A reply skipped because the customer wrote again is superseded by the next turn's,
            # which reads the conversation on from there: the message was not ignored. Nothing
            # went out, so it answered nothing ahead of an earlier message (decided: never).
            superseded = r["status"] == "skipped" and r["skip_reason"] == "newer inbound message"
            if r["status"] in (*ANSWERED, "unknown") or superseded:
                decided = float("-inf") if superseded else float(r["decided"])
                answered_in.setdefault(t, (index, decided))
            if r["status"] in ANSWERED and r["at"] is not None and t in stored_at:
                latency.append(float(r["at"]) - stored_at[t])
    report.counts["replies"] = replies
    report.must_be_zero["unknown or failed replies without a handoff"] = unresolved
    report.must_be_zero["messages read out of customer order"] = out_of_order
    report.turn_p50 = percentile(latency, 50)
    report.turn_p99 = percentile(latency, 99)
    return answered_in


def _order(
    report: Report,
    sent: list[Sent],
    answered_in: dict[str, tuple[int, float]],
    acked_at: dict[str, float],
    handed: Counter[str],
    toggled: set[str],
) -> None:
    """Unanswered messages, and earlier messages answered after a later one although they were
    committed (their webhook had its 200) before that later one's answer was decided: one
    delivered late by the provider, or still being stored, was not visible yet, and is no
    violation."""
    per_phone: dict[str, list[Sent]] = defaultdict(list)
    for s in sent:
        per_phone[s.phone].append(s)
    unanswered = later_first = 0
    for phone, msgs in per_phone.items():
        answered: list[tuple[str, int, float]] = []
        for s in sorted(msgs, key=lambda s: _seq(s.text)):
            if s.text in answered_in:
                answered.append((s.text, *answered_in[s.text]))
            elif phone not in toggled and not handed[phone] and "#handoff" not in s.text:
                unanswered += 1
                report.examples.setdefault("unanswered", []).append(s.text)
        for i, (earlier, index, _) in enumerate(answered):
            overtaken = [
                later
                for later, later_index, decided in answered[i + 1 :]
                if later_index < index and acked_at.get(earlier, float("inf")) < decided
            ]
            if overtaken:
                later_first += 1
                report.examples.setdefault("later first", []).append(
                    f"{earlier} answered after {overtaken[0]}"
                )
    report.must_be_zero["unanswered (no reply, no handoff, agent on)"] = unanswered
    report.must_be_zero["later message answered while an earlier waited"] = later_first


def _sends(
    report: Report, outbound: list[asyncpg.Record], deliveries: list[dict[str, Any]]
) -> None:
    # Rows of one text to one customer (the handoff message after each handoff) may each go out
    # once: more sends than rows is a row sent twice.
    outbox = Counter((r["phone"], r["body"]) for r in outbound)
    went_out = Counter(
        (e["to"], ((e.get("body") or {}).get("text") or {}).get("body")) for e in deliveries
    )
    report.counts["sends that went out"] = sum(went_out.values())
    twice = {
        key: n - outbox[key] for key, n in went_out.items() if key in outbox and n > outbox[key]
    }
    report.must_be_zero["rows sent twice"] = sum(twice.values())
    report.examples["rows sent twice"] = [
        f"{to}: {body!r} x{n + 1}" for (to, body), n in twice.items()
    ]
    report.must_be_zero["sends without an outbox row"] = sum(
        n for key, n in went_out.items() if key not in outbox
    )


def print_table(report: Report, args: argparse.Namespace) -> None:
    faults = Counter(report.faults)
    print(
        f"soak: {report.seconds:.0f} s, {args.customers} customers, {args.rate:g} webhooks/s,"
        f" {args.api_workers} API workers, {args.workers} arq workers, {len(report.faults)}"
        f" faults ({', '.join(f'{k} {v}' for k, v in sorted(faults.items())) or 'none'})"
    )
    print("| row | value |")
    print("|---|---|")
    for name, value in report.counts.items():
        print(f"| {name} | {value} |")
    for name, value in report.must_be_zero.items():
        print(f"| {name} (must be 0) | {value} |")
    print(f"| drained within the drain time | {'yes' if report.drained else 'NO'} |")
    print(
        f"| webhook ack p50 / p99 | {report.ack_p50 * 1000:.0f} / {report.ack_p99 * 1000:.0f} ms |"
    )
    print(f"| turn (stored → sent) p50 / p99 | {report.turn_p50:.2f} / {report.turn_p99:.2f} s |")
    print(f"| process exits (restarted) | {report.exits} |")
    print(
        "| peak RSS | "
        + ", ".join(f"{k} {v:.0f} MB" for k, v in sorted(report.rss.items()) if v)
        + " |"
    )
    for row, items in report.examples.items():
        if items:
            print(f"{row}, e.g.: {'; '.join(items[:5])}")
