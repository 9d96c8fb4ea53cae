"""supabase/seed.sql's demo users as Supabase Auth needs them to sign in, and its second
workspace."""

from __future__ import annotations

from uuid import UUID

import asyncpg
import bcrypt

DEMO_PASSWORD = "demo-password"  # README and the seed's header name it
TOKEN_COLUMNS = (
    "confirmation_token",
    "recovery_token",
    "email_change_token_new",
    "email_change",
    "email_change_token_current",
    "phone_change",
    "phone_change_token",
    "reauthentication_token",
)
DEMO_STORE = UUID("10000000-0000-4000-8000-000000000001")
OTHER_SHOP = UUID("10000000-0000-4000-8000-000000000002")


async def test_every_demo_user_can_sign_in_with_the_demo_password(
    conn: asyncpg.Connection,
) -> None:
    rows = await conn.fetch(
        "select email, instance_id, aud, encrypted_password, email_confirmed_at,"
        f" {', '.join(TOKEN_COLUMNS)} from auth.users"
        " where email like '%@demo-store.test' or email like '%@other-shop.test'"
    )
    assert len(rows) == 5
    for row in rows:
        assert row["instance_id"] == UUID(int=0), row["email"]
        assert row["aud"] == "authenticated"
        assert row["email_confirmed_at"] is not None
        assert bcrypt.checkpw(DEMO_PASSWORD.encode(), row["encrypted_password"].encode())
        # Auth answers 500 for a user with NULL in any of these
        assert all(row[c] == "" for c in TOKEN_COLUMNS), row["email"]


async def test_the_two_demo_workspaces_have_separate_members(conn: asyncpg.Connection) -> None:
    members = {
        r["workspace_id"]: r["emails"]
        for r in await conn.fetch(
            "select m.workspace_id, array_agg(u.email order by u.email) as emails"
            " from public.workspace_members m join auth.users u on u.id = m.user_id"
            " where m.workspace_id in ($1, $2) group by m.workspace_id",
            DEMO_STORE,
            OTHER_SHOP,
        )
    }
    assert members[OTHER_SHOP] == ["dave@other-shop.test"]
    assert "dave@other-shop.test" not in members[DEMO_STORE]
    assert len(members[DEMO_STORE]) == 4
