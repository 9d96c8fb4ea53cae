"""The probes and the metrics endpoint tell outsiders no more than they need."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from tests.fixtures.devstack import free_port
from tests.fixtures.webhook import WebhookClient, open_webhook_client, settings_for


async def test_readyz_says_only_unavailable_when_supabase_is_away(
    redis_url: str, queue_name: str
) -> None:
    # Nothing listens there: the client's error text names the host, port and errno.
    dead = f"http://127.0.0.1:{free_port()}"
    client, close = await open_webhook_client(settings_for(dead, redis_url, queue_name))
    try:
        response = await client.http.get("/readyz")
    finally:
        await close()
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable"}


async def test_readyz_says_ok_when_supabase_answers(webhook: WebhookClient) -> None:
    response = await webhook.http.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_metrics_without_a_token_setting_stay_open(webhook: WebhookClient) -> None:
    response = await webhook.http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Bearer wrong-token",
        "Basic bWV0cmljcy10b2tlbg==",
        "metrics-token",
    ],
    ids=["none", "empty", "scheme_only", "scheme_space", "wrong", "basic", "no_scheme"],
)
async def test_metrics_with_a_token_setting_refuse_anyone_without_it(
    devstack_url: str, redis_url: str, queue_name: str, authorization: str | None
) -> None:
    settings = settings_for(
        devstack_url, redis_url, queue_name, BRIDGE_METRICS_TOKEN=SecretStr("metrics-token")
    )
    client, close = await open_webhook_client(settings)
    try:
        headers = {} if authorization is None else {"authorization": authorization}
        refused = await client.http.get("/metrics", headers=headers)
        allowed = await client.http.get(
            "/metrics", headers={"authorization": "Bearer metrics-token"}
        )
    finally:
        await close()
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == "Bearer"
    assert "bridge_" not in refused.text
    assert allowed.status_code == 200
    assert allowed.headers["content-type"].startswith("text/plain")


async def test_a_blank_metrics_token_leaves_metrics_open(
    devstack_url: str, redis_url: str, queue_name: str
) -> None:
    settings = settings_for(
        devstack_url, redis_url, queue_name, BRIDGE_METRICS_TOKEN=SecretStr(" ")
    )
    client, close = await open_webhook_client(settings)
    try:
        response = await client.http.get("/metrics")
    finally:
        await close()
    assert response.status_code == 200
