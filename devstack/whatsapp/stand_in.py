"""The WhatsApp stand-in's runtime state, kept in `DevstackState.services["whatsapp"]`."""

from __future__ import annotations

from dataclasses import dataclass, field

from devstack.state import DevstackState
from devstack.whatsapp.faults import FaultQueue
from devstack.whatsapp.recorder import RequestLog
from devstack.whatsapp.status_webhooks import StatusWebhooks

_KEY = "whatsapp"


@dataclass
class WhatsAppStandIn:
    webhooks: StatusWebhooks
    requests: RequestLog = field(default_factory=RequestLog)
    faults: FaultQueue = field(default_factory=FaultQueue)


def of(state: DevstackState) -> WhatsAppStandIn:
    stand_in = state.services.get(_KEY)
    if stand_in is None:
        config = state.config
        stand_in = WhatsAppStandIn(
            webhooks=StatusWebhooks(config.whatsapp_webhook_url, config.whatsapp_app_secret)
        )
        state.services[_KEY] = stand_in
    assert isinstance(stand_in, WhatsAppStandIn)
    return stand_in


async def stop(state: DevstackState) -> None:
    stand_in = state.services.get(_KEY)
    if isinstance(stand_in, WhatsAppStandIn):
        await stand_in.webhooks.stop()
