"""The stand-ins' JWT check and its cache: a remembered token is still refused once it expires,
and only under the secret it was verified with."""

from __future__ import annotations

import time

import jwt
import pytest

from devstack import auth

SECRET = "test-secret-with-at-least-32-bytes-of-key"


def _token(**claims: object) -> str:
    return jwt.encode(claims, SECRET, algorithm="HS256")


def test_a_verified_token_is_refused_once_it_expires() -> None:
    token = _token(role="service_role", exp=int(time.time()) + 1)
    assert auth.decode(token, SECRET).role == "service_role"
    assert auth.decode(token, SECRET).role == "service_role"  # now answered from the cache
    time.sleep(2.1)
    for _ in range(2):
        with pytest.raises(auth.JWTError) as raised:
            auth.decode(token, SECRET)
        assert raised.value.code == "PGRST303"


def test_a_remembered_token_counts_only_under_its_own_secret() -> None:
    token = _token(role="anon", exp=int(time.time()) + 60)
    assert auth.decode(token, SECRET).claims["role"] == "anon"
    with pytest.raises(auth.JWTError) as raised:
        auth.decode(token, "another-secret-also-at-least-32-bytes")
    assert raised.value.code == "PGRST301"


def test_a_bad_token_is_refused_every_time() -> None:
    bad = _token(role="anon")[:-3] + "abc"
    for _ in range(2):
        with pytest.raises(auth.JWTError) as raised:
            auth.decode(bad, SECRET)
        assert raised.value.code == "PGRST301"


def test_a_token_without_exp_stays_valid() -> None:
    token = _token(role="authenticated", sub="u1")
    assert auth.decode(token, SECRET).claims == {"role": "authenticated", "sub": "u1"}
    assert auth.decode(token, SECRET).claims["sub"] == "u1"
