"""One conversation and one contact per customer, whatever identifiers arrive and in whatever
order: the phone (`wa_id`), the business-scoped user id (BSUID, `user_id`) or both; a `system`
number change links the new number. End to end through the signed webhook."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest

from tests.factories import whatsapp as wa
from tests.fixtures.webhook import MakeChannel, WebhookClient


@dataclass(frozen=True)
class Customer:
    phone: str
    bsuid: str

    def writes(self, shape: str, body: str, ts: int) -> dict[str, Any]:
        """A message naming the customer by phone ('P'), BSUID ('B', a username withholds the
        phone) or both ('PB'), with the `contacts` entry the Cloud API sends with it."""
        msg: dict[str, Any] = {
            "id": wa.wamid(),
            "timestamp": str(ts),
            "type": "text",
            "text": {"body": body},
        }
        contact: dict[str, Any] = {"profile": {"name": "Ana"}}
        if "P" in shape:
            msg["from"] = contact["wa_id"] = self.phone
        if "B" in shape:
            msg["from_user_id"] = contact["user_id"] = self.bsuid
        return {"message": msg, "contacts": [contact]}


def new_customer() -> Customer:
    return Customer(wa.customer_phone(), f"CO.{uuid.uuid4().int % 10**16:016d}")


def post_body(pnid: str, written: dict[str, Any]) -> dict[str, Any]:
    return wa.body(wa.change(pnid, messages=[written["message"]], contacts=written["contacts"]))


async def conversations_of(db: asyncpg.Pool, workspace_id: uuid.UUID) -> list[asyncpg.Record]:
    return list(
        await db.fetch(
            "select * from public.conversations where workspace_id = $1 and group_id is null",
            workspace_id,
        )
    )


async def bodies(db: asyncpg.Pool, conversation_id: uuid.UUID) -> list[str]:
    rows = await db.fetch(
        "select content from public.messages where conversation_id = $1"
        " order by timestamp, received_seq",
        conversation_id,
    )
    return [json.loads(r["content"]).get("body") for r in rows]


async def add_contact(
    db: asyncpg.Pool, workspace_id: uuid.UUID, phone: str | None, bsuid: str | None, name: str
) -> uuid.UUID:
    contact_id: uuid.UUID = await db.fetchval(
        "insert into public.contacts (workspace_id, name, phone, bsuid) values ($1, $2, $3, $4)"
        " returning id",
        workspace_id,
        name,
        phone,
        bsuid,
    )
    return contact_id


@pytest.mark.parametrize("order", list(itertools.permutations(["P", "B", "PB"])))
async def test_every_order_of_phone_bsuid_and_both_makes_one_conversation_and_contact(
    db: asyncpg.Pool, webhook: WebhookClient, make_channel: MakeChannel, order: tuple[str, ...]
) -> None:
    channel = await make_channel()
    ana = new_customer()
    # The CRM knows her twice already: once by phone, once by BSUID (each created on its own).
    by_phone = await add_contact(db, channel.workspace_id, ana.phone, None, "Ana (teléfono)")
    by_bsuid = await add_contact(db, channel.workspace_id, None, ana.bsuid, "Ana (usuario)")
    now = int(time.time())
    for i, shape in enumerate(order):
        written = ana.writes(shape, f"mensaje {shape}", now + i)
        response = await webhook.post(post_body(channel.phone_number_id, written))
        assert response.status_code == 200, response.text
        assert response.json().get("failed") is not True, response.text

    convs = await conversations_of(db, channel.workspace_id)
    assert len(convs) == 1
    conv = convs[0]
    assert (conv["phone"], conv["bsuid"]) == (ana.phone, ana.bsuid)
    assert await bodies(db, conv["id"]) == [f"mensaje {s}" for s in order]
    assert conv["unread_count"] == 3
    assert conv["last_message_preview"] == f"mensaje {order[-1]}"

    contacts = await db.fetch(
        "select * from public.contacts where workspace_id = $1", channel.workspace_id
    )
    assert len(contacts) == 1
    # The older contact survives, with both identifiers, linked to the conversation.
    assert contacts[0]["id"] == by_phone != by_bsuid
    assert (contacts[0]["phone"], contacts[0]["bsuid"]) == (ana.phone, ana.bsuid)
    assert conv["contact_id"] == by_phone

    merges = await db.fetch(
        "select * from public.conversation_merges where workspace_id = $1 order by created_at",
        channel.workspace_id,
    )
    assert {(m["kind"], m["merged_id"]) for m in merges if m["kind"] == "contact"} == {
        ("contact", by_bsuid)
    }
    conversation_merges = [m for m in merges if m["kind"] == "conversation"]
    # Two conversations exist only when the phone and the BSUID both came alone first.
    assert len(conversation_merges) == (1 if order[-1] == "PB" else 0)
    for merge in conversation_merges:
        assert merge["survivor_id"] == conv["id"]
        assert merge["reason"] == "same_customer"
        assert json.loads(merge["moved"])["messages"] == 1

    # Every event was processed, none kept as failed.
    assert not await db.fetchval(
        "select exists (select 1 from public.whatsapp_webhook_events"
        " where status = 'failed' and $1 = any(phone_number_ids))",
        channel.phone_number_id,
    )


async def test_the_three_shapes_delivered_concurrently_make_one_conversation(
    db: asyncpg.Pool, webhook: WebhookClient, make_channel: MakeChannel
) -> None:
    channel = await make_channel()
    now = int(time.time())
    customers = [new_customer() for _ in range(6)]
    known: dict[str, uuid.UUID] = {}
    for ana in customers:
        # Each already known twice to the CRM: the concurrent deliveries merge the two contacts.
        known[ana.phone] = await add_contact(db, channel.workspace_id, ana.phone, None, "Ana")
        await add_contact(db, channel.workspace_id, None, ana.bsuid, "Ana (usuario)")
    for round_, ana in enumerate(customers):
        shapes = list(itertools.permutations(["P", "B", "PB"]))[round_]
        posts = [
            webhook.post(post_body(channel.phone_number_id, ana.writes(s, f"{ana.phone} {s}", now)))
            for s in shapes
        ]
        responses = await asyncio.gather(*posts)
        assert [r.status_code for r in responses] == [200, 200, 200]
        assert all(r.json().get("failed") is not True for r in responses)

    convs = await conversations_of(db, channel.workspace_id)
    assert len(convs) == len(customers)
    by_phone = {c["phone"]: c for c in convs}
    for ana in customers:
        conv = by_phone[ana.phone]
        assert conv["bsuid"] == ana.bsuid
        assert sorted(await bodies(db, conv["id"])) == sorted(
            f"{ana.phone} {s}" for s in ("P", "B", "PB")
        )
        assert conv["contact_id"] == known[ana.phone]
    contacts = await db.fetch(
        "select phone, bsuid from public.contacts where workspace_id = $1", channel.workspace_id
    )
    assert sorted((c["phone"], c["bsuid"]) for c in contacts) == sorted(
        (a.phone, a.bsuid) for a in customers
    )


def number_change(old: str, new: str, ts: int, *, new_bsuid: str | None = None) -> dict[str, Any]:
    """Meta's `system` message: sent from the old number, without a contacts array."""
    system: dict[str, Any] = {
        "body": f"User Ana changed from {old} to {new}",
        "new_wa_id": new,
        "type": "user_changed_number",
    }
    if new_bsuid is not None:
        system["user_id"] = new_bsuid
    return {"from": old, "id": wa.wamid(), "timestamp": str(ts), "type": "system", "system": system}


@pytest.mark.parametrize("new_number_wrote_first", [False, True])
async def test_a_number_change_links_the_new_number_to_the_same_conversation(
    db: asyncpg.Pool,
    webhook: WebhookClient,
    make_channel: MakeChannel,
    new_number_wrote_first: bool,
) -> None:
    channel = await make_channel()
    pnid = channel.phone_number_id
    old, new = wa.customer_phone(), wa.customer_phone()
    now = int(time.time())
    contact = await add_contact(db, channel.workspace_id, old, None, "Ana")

    async def post(*messages: dict[str, Any]) -> None:
        response = await webhook.post(wa.body(wa.change(pnid, messages=list(messages))))
        assert response.status_code == 200
        assert response.json().get("failed") is not True

    await post(wa.text("hola desde el viejo", sender=old, ts=now))
    if new_number_wrote_first:
        await post(wa.text("hola desde el nuevo", sender=new, ts=now + 1))
    await post(number_change(old, new, now + 2))
    await post(wa.text("sigo aquí", sender=new, ts=now + 3))

    convs = await conversations_of(db, channel.workspace_id)
    assert len(convs) == 1
    conv = convs[0]
    assert conv["phone"] == new
    expected = ["hola desde el viejo"]
    expected += ["hola desde el nuevo"] if new_number_wrote_first else []
    expected += [f"User Ana changed from {old} to {new}", "sigo aquí"]
    assert await bodies(db, conv["id"]) == expected
    # The notice is stored, never handed to the agent.
    assert await db.fetchval(
        "select processed_by_agent from public.messages where conversation_id = $1"
        " and type = 'system'",
        conv["id"],
    )
    contacts = await db.fetch(
        "select * from public.contacts where workspace_id = $1", channel.workspace_id
    )
    assert [(c["id"], c["phone"]) for c in contacts] == [(contact, new)]
    assert conv["contact_id"] == contact
    change = await db.fetchrow(
        "select * from public.conversation_merges where workspace_id = $1"
        " and reason = 'number_changed' and merged_id is null",
        channel.workspace_id,
    )
    assert change is not None
    assert change["survivor_id"] == conv["id"]
    assert json.loads(change["identifiers"])["previous"]["phone"] == old
    assert json.loads(change["identifiers"])["new"]["phone"] == new


async def test_a_bsuid_change_links_the_new_bsuid(
    db: asyncpg.Pool, webhook: WebhookClient, make_channel: MakeChannel
) -> None:
    channel = await make_channel()
    ana = new_customer()
    new_bsuid = f"CO.{uuid.uuid4().int % 10**16:016d}"
    now = int(time.time())
    first = ana.writes("B", "hola", now)
    assert (await webhook.post(post_body(channel.phone_number_id, first))).status_code == 200
    notice = {
        "id": wa.wamid(),
        "timestamp": str(now + 1),
        "type": "system",
        "system": {
            "body": "User Ana changed their user id",
            "type": "user_changed_user_id",
            "user_id": new_bsuid,
            "previous_user_id": ana.bsuid,
        },
    }
    body = wa.body(wa.change(channel.phone_number_id, messages=[notice], contacts=[]))
    response = await webhook.post(body)
    assert response.status_code == 200
    assert response.json().get("failed") is not True
    later = Customer(ana.phone, new_bsuid).writes("B", "sigo aquí", now + 2)
    assert (await webhook.post(post_body(channel.phone_number_id, later))).status_code == 200

    convs = await conversations_of(db, channel.workspace_id)
    assert len(convs) == 1
    assert convs[0]["bsuid"] == new_bsuid
    assert await bodies(db, convs[0]["id"]) == [
        "hola",
        "User Ana changed their user id",
        "sigo aquí",
    ]


async def test_batches_naming_two_customers_in_opposite_orders_do_not_deadlock(
    db: asyncpg.Pool, webhook: WebhookClient, make_channel: MakeChannel
) -> None:
    channel = await make_channel()
    pnid = channel.phone_number_id
    now = int(time.time())
    for _ in range(5):
        ana, beto = new_customer(), new_customer()
        for who, shape in ((ana, "P"), (beto, "B")):
            assert (
                await webhook.post(post_body(pnid, who.writes(shape, "hola", now)))
            ).status_code == 200

        def batch(*written: dict[str, Any]) -> dict[str, Any]:
            messages = [w["message"] for w in written]
            contacts = [c for w in written for c in w["contacts"]]
            return wa.body(wa.change(pnid, messages=messages, contacts=contacts))

        first = batch(ana.writes("PB", "a1", now + 1), beto.writes("PB", "b1", now + 1))
        second = batch(beto.writes("P", "b2", now + 2), ana.writes("B", "a2", now + 2))
        responses = await asyncio.gather(webhook.post(first), webhook.post(second))
        assert [r.status_code for r in responses] == [200, 200]
        assert all(r.json().get("failed") is not True for r in responses)
        for who in (ana, beto):
            rows = await db.fetch(
                "select id, phone, bsuid from public.conversations"
                " where workspace_id = $1 and (phone = $2 or bsuid = $3)",
                channel.workspace_id,
                who.phone,
                who.bsuid,
            )
            assert [(r["phone"], r["bsuid"]) for r in rows] == [(who.phone, who.bsuid)]
            assert len(await bodies(db, rows[0]["id"])) == 3
