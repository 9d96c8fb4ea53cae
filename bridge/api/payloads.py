"""Typed models of WhatsApp Cloud API webhook bodies (Meta's, and 360dialog's, which forwards
Meta's format unchanged).

The models are strict about the envelope a batch must have (`object`, `entry[].changes[]`, ids)
and lenient about everything else: unknown keys are kept, and a message of a type we have never
seen is still a message. `Webhook.normalise()` turns a body into the rows the intake stores.
"""

from __future__ import annotations

import json
import math
import re
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from bridge.api.message_content import content_for

# The window of believable message times (unix seconds): anything else, or anything that is not
# an integer, is stored as the time the bridge received it (the database's now()), and the value
# given stays in the stored raw event and in the message's `content.raw`. Postgres would store a
# BC date or reject a huge value, and the worker could not read either back.
EARLIEST_TIMESTAMP = 946_684_800  # 2000-01-01T00:00:00Z
MAX_CLOCK_AHEAD_SECONDS = 86_400
_INTEGER = re.compile(r"[+-]?[0-9]{1,20}")
# Longer integers stay text: Python refuses to convert very long digit strings.
_MAX_INT_DIGITS = 1000


def sane_timestamp(value: Any, *, now: float | None = None) -> int | None:
    """Unix seconds within the believable window, else None (the receive time)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
        value = int(value.strip())
    if not isinstance(value, int):
        return None
    latest = (time.time() if now is None else now) + MAX_CLOCK_AHEAD_SECONDS
    return value if EARLIEST_TIMESTAMP <= value <= latest else None


def storable_json(value: Any) -> Any:
    """`value` with every number JSON text and Postgres `jsonb` can hold: a float Python decoded
    as infinity or NaN (`1e400`, `NaN`) becomes its text, so the message is stored instead of
    failing every retry. Other values are returned as they are."""
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, dict):
        return {k: storable_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [storable_json(v) for v in value]
    return value


def loads_storable(body: bytes | str) -> Any:
    """`json.loads` for a webhook body whose decoded value must be stored whole: numbers
    Python would turn into infinity or NaN stay their source text, and integers longer than
    Python converts (a ValueError, not a JSONDecodeError) stay their digits."""
    return json.loads(body, parse_constant=str, parse_float=_float_or_text, parse_int=_int_or_text)


def _float_or_text(text: str) -> float | str:
    value = float(text)
    return value if math.isfinite(value) else text


def _int_or_text(text: str) -> int | str:
    return int(text) if len(text) <= _MAX_INT_DIGITS else text


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class Metadata(_Lenient):
    phone_number_id: str
    display_phone_number: str | None = None


class Profile(_Lenient):
    name: str | None = None


class Contact(_Lenient):
    wa_id: str | None = None
    user_id: str | None = None  # the business-scoped user id (BSUID)
    profile: Profile | None = None


class Context(_Lenient):
    id: str | None = None


class Message(_Lenient):
    id: str = Field(min_length=1)
    from_: str | None = Field(default=None, alias="from")
    from_user_id: str | None = None
    timestamp: Any = None  # read by `sane_timestamp`: a bad one never rejects the message
    type: str = Field(default="unknown", min_length=1)
    context: Context | None = None


class Echo(Message):
    """A message the business sent from the WhatsApp Business app (`smb_message_echoes`)."""

    to: str | None = None
    to_user_id: str | None = None


class StatusError(_Lenient):
    # Stored as text, whatever JSON type they came as.
    code: Any = None
    title: Any = None
    message: Any = None


class Status(_Lenient):
    id: str = Field(min_length=1)
    status: str = Field(min_length=1)
    timestamp: Any = None  # read by `sane_timestamp`
    recipient_id: str | None = None
    errors: list[StatusError] = Field(default_factory=list)


class Value(_Lenient):
    metadata: Metadata | None = None
    contacts: list[Contact] = Field(default_factory=list)
    messages: list[Message] = Field(default_factory=list)
    statuses: list[Status] = Field(default_factory=list)
    message_echoes: list[Echo] = Field(default_factory=list)


class Change(_Lenient):
    field: str | None = None
    value: Value


class Entry(_Lenient):
    id: str | None = None
    changes: list[Change] = Field(default_factory=list)


class Webhook(_Lenient):
    object: str
    entry: list[Entry]

    def normalise(self, *, now: float | None = None) -> NormalisedBatch:
        """The rows to store; timestamps are judged against `now` (the receive time)."""
        batch = NormalisedBatch(time.time() if now is None else now)
        for entry in self.entry:
            for change in entry.changes:
                batch.add_change(change.value)
        return batch


class NormalisedBatch:
    """What one POST carries, flattened across every entry and change, in arrival order.
    Every value bound for a SQL number is one Postgres accepts (`sane_timestamp`), and every
    JSON value one `jsonb` holds (`storable_json`)."""

    def __init__(self, received_at: float | None = None) -> None:
        self.received_at = time.time() if received_at is None else received_at
        self.messages: list[dict[str, Any]] = []
        self.statuses: list[dict[str, Any]] = []

    def add_change(self, value: Value) -> None:
        if value.metadata is None:
            if value.messages or value.statuses or value.message_echoes:
                raise ValueError(
                    "a change with messages or statuses has no metadata.phone_number_id"
                )
            return
        pnid = value.metadata.phone_number_id
        contacts = value.contacts
        for msg in value.messages:
            self.messages.append(
                _inbound_row(pnid, msg, _contact_for(contacts, msg), self.received_at)
            )
        for echo in value.message_echoes:
            self.messages.append(_echo_row(pnid, echo, self.received_at))
        for status in value.statuses:
            self.statuses.append(_status_row(pnid, status, self.received_at))


def _contact_for(contacts: list[Contact], msg: Message) -> Contact | None:
    # A batch may carry several senders; match by wa_id or BSUID, else the only contact given.
    for contact in contacts:
        if (msg.from_ and contact.wa_id == msg.from_) or (
            msg.from_user_id and contact.user_id == msg.from_user_id
        ):
            return contact
    return contacts[0] if len(contacts) == 1 else None


def _content(msg: Message, timestamp: int | None) -> dict[str, Any]:
    raw = msg.model_dump(mode="json", by_alias=True, exclude_none=True)
    content: dict[str, Any] = storable_json(content_for(msg.type, raw))
    if timestamp is None and msg.timestamp not in (None, ""):
        # Stored as the receive time: the value given is kept with the message.
        content["raw"]["timestamp"] = storable_json(msg.timestamp)
    return content


def _inbound_row(
    pnid: str, msg: Message, contact: Contact | None, received_at: float
) -> dict[str, Any]:
    phone = msg.from_ or (contact.wa_id if contact else None)
    bsuid = msg.from_user_id or (contact.user_id if contact else None)
    timestamp = sane_timestamp(msg.timestamp, now=received_at)
    return {
        "direction": "inbound",
        "phone_number_id": pnid,
        "wamid": msg.id,
        "phone": phone,
        "bsuid": bsuid,
        "profile_name": contact.profile.name if contact and contact.profile else None,
        "type": msg.type,
        "content": _content(msg, timestamp),
        "timestamp": timestamp,
        "context_wamid": msg.context.id if msg.context else None,
    }


def _echo_row(pnid: str, echo: Echo, received_at: float) -> dict[str, Any]:
    timestamp = sane_timestamp(echo.timestamp, now=received_at)
    return {
        "direction": "outbound",
        "phone_number_id": pnid,
        "wamid": echo.id,
        "phone": echo.to,
        "bsuid": echo.to_user_id,
        "profile_name": None,
        "type": echo.type,
        "content": _content(echo, timestamp),
        "timestamp": timestamp,
        "context_wamid": echo.context.id if echo.context else None,
    }


def _text(value: Any) -> str | None:
    return None if value is None or value == "" else str(storable_json(value))


def _status_row(pnid: str, status: Status, received_at: float) -> dict[str, Any]:
    first_error = status.errors[0] if status.errors else None
    return {
        "phone_number_id": pnid,
        "wamid": status.id,
        "status": status.status,
        "timestamp": sane_timestamp(status.timestamp, now=received_at),
        "recipient_id": status.recipient_id,
        "error_code": None if first_error is None else _text(first_error.code),
        "error_title": None
        if first_error is None
        else _text(first_error.title) or _text(first_error.message),
    }
