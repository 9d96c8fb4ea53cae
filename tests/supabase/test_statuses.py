"""Delivery statuses through the signed webhook: one reported for a message whose status is still
unset (a row written without one) is applied, not only counted as applied; stale orphan statuses
expire even when no new orphan arrives."""

from __future__ import annotations

import asyncpg
import pytest

from tests.factories import whatsapp as wa
from tests.fixtures.webhook import MakeChannel, WebhookClient


async def _outbound_without_status(db: asyncpg.Pool, workspace_id: object, pnid: str) -> str:
    sent = wa.wamid()
    conv = await db.fetchval(
        "insert into public.conversations (workspace_id, phone, phone_number_id)"
        " values ($1, $2, $3) returning id",
        workspace_id,
        wa.customer_phone(),
        pnid,
    )
    await db.execute(
        "insert into public.messages (workspace_id, conversation_id, wamid, direction, type,"
        " status) values ($1, $2, $3, 'outbound', 'text', null)",
        workspace_id,
        conv,
        sent,
    )
    return sent


@pytest.mark.parametrize("state", ["sent", "delivered", "read", "failed"])
async def test_a_status_on_a_message_without_one_is_applied(
    webhook: WebhookClient, make_channel: MakeChannel, db: asyncpg.Pool, state: str
) -> None:
    channel = await make_channel()
    sent = await _outbound_without_status(db, channel.workspace_id, channel.phone_number_id)
    status = wa.status(sent, state, recipient=wa.customer_phone())

    response = await webhook.post(wa.body(wa.change(channel.phone_number_id, statuses=[status])))
    assert response.status_code == 200, response.text

    row = await db.fetchrow(
        "select status, status_timestamp from public.messages where wamid = $1", sent
    )
    assert row is not None
    assert row["status"] == state
    assert row["status_timestamp"] is not None
    assert not await db.fetchval(
        "select exists (select 1 from public.message_status_orphans where wamid = $1)", sent
    )


async def test_a_sent_status_never_moves_a_delivered_message_back(
    webhook: WebhookClient, make_channel: MakeChannel, db: asyncpg.Pool
) -> None:
    channel = await make_channel()
    sent = await _outbound_without_status(db, channel.workspace_id, channel.phone_number_id)
    phone = wa.customer_phone()
    statuses = [
        wa.status(sent, "delivered", recipient=phone),
        wa.status(sent, "sent", recipient=phone),
    ]

    response = await webhook.post(wa.body(wa.change(channel.phone_number_id, statuses=statuses)))
    assert response.status_code == 200, response.text
    assert await db.fetchval("select status from public.messages where wamid = $1", sent) == (
        "delivered"
    )


async def test_stale_orphans_expire_when_statuses_keep_applying(
    webhook: WebhookClient, make_channel: MakeChannel, db: asyncpg.Pool
) -> None:
    # Orphans of a channel that stopped producing new ones: the statuses that keep coming all
    # find their message, and the stale orphans must still go.
    channel = await make_channel()
    stale = wa.wamid()
    await db.execute(
        "insert into public.message_status_orphans (wamid, channel_id, status, received_at)"
        " values ($1, $2, 'read', now() - interval '2 days')",
        stale,
        channel.channel_id,
    )
    sent = await _outbound_without_status(db, channel.workspace_id, channel.phone_number_id)
    status = wa.status(sent, "delivered", recipient=wa.customer_phone())

    response = await webhook.post(wa.body(wa.change(channel.phone_number_id, statuses=[status])))
    assert response.status_code == 200, response.text

    assert await db.fetchval("select status from public.messages where wamid = $1", sent) == (
        "delivered"
    )
    assert not await db.fetchval(
        "select exists (select 1 from public.message_status_orphans where wamid = $1)", stale
    )
