"""Access tokens as Supabase Auth issues them, signed with the local stack's JWT secret."""

from __future__ import annotations

import time
import uuid

import jwt

from devstack.config import LOCAL_JWT_SECRET


def user_token(user_id: uuid.UUID) -> str:
    """An access token of a signed-in user, valid for an hour."""
    now = int(time.time())
    claims = {
        "aud": "authenticated",
        "role": "authenticated",
        "sub": str(user_id),
        "iat": now,
        "exp": now + 3600,
    }
    return jwt.encode(claims, LOCAL_JWT_SECRET, algorithm="HS256")
