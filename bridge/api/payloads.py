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
    group_id: str | None = None  # set when the message was written in a WhatsApp group


class Echo(Message):
    """A message the business sent from the WhatsApp Business app (`smb_message_echoes`)."""

    to: str | None = None
    to_user_id: str | None = None


class HistoryContext(_Lenient):
    status: Any = None  # delivery state of a backfilled message; read only when it is text


class HistoryMessage(Echo):
    """A message of a coexistence history backfill: `from` is the business number for one the
    business sent (then `to` names the customer), else the customer's."""

    history_context: HistoryContext | None = None


class HistoryThread(_Lenient):
    id: str | None = None  # the customer's phone number
    messages: list[HistoryMessage] = Field(default_factory=list)


class HistoryChunk(_Lenient):
    threads: list[HistoryThread] = Field(default_factory=list)


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
    history: list[HistoryChunk] = Field(default_factory=list)


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
                batch.add_change(change.value, field=change.field)
        return batch


class NormalisedBatch:
    """What one POST carries, flattened across every entry and change, in arrival order.
    Every value bound for a SQL number is one Postgres accepts (`sane_timestamp`), and every
    JSON value one `jsonb` holds (`storable_json`)."""

    def __init__(self, received_at: float | None = None) -> None:
        self.received_at = time.time() if received_at is None else received_at
        self.messages: list[dict[str, Any]] = []
        self.statuses: list[dict[str, Any]] = []

    def add_change(self, value: Value, *, field: str | None = None) -> None:
        if value.metadata is None:
            if value.messages or value.statuses or value.message_echoes or value.history:
                raise ValueError(
                    "a change with messages or statuses has no metadata.phone_number_id"
                )
            return
        pnid = value.metadata.phone_number_id
        contacts = value.contacts
        # A `history` change is a backfill of what was written before the bridge was connected:
        # stored for the record, never answered.
        backfill = field == "history"
        for msg in value.messages:
            row = _inbound_row(pnid, msg, _contact_for(contacts, msg), self.received_at)
            self.messages.append({**row, "history": True} if backfill else row)
        for echo in value.message_echoes:
            self.messages.append(_echo_row(pnid, echo, self.received_at))
        business = value.metadata.display_phone_number
        for chunk in value.history:
            for thread in chunk.threads:
                for old in thread.messages:
                    self.messages.append(
                        _history_row(pnid, business, thread, old, self.received_at)
                    )
        for status in value.statuses:
            # A call's statuses (RINGING, ACCEPTED, ...) name a call, not a message: the raw
            # event keeps them.
            if field == "calls" or (status.model_extra or {}).get("type") == "call":
                continue
            self.statuses.append(_status_row(pnid, status, self.received_at))


def _contact_for(contacts: list[Contact], msg: Message) -> Contact | None:
    """The sender's contact: matched by wa_id or BSUID, else the only one given unless its
    identifiers name someone else (taking them would tie a BSUID to another customer's phone,
    and identities merge on them)."""
    for contact in contacts:
        if (msg.from_ and contact.wa_id == msg.from_) or (
            msg.from_user_id and contact.user_id == msg.from_user_id
        ):
            return contact
    if len(contacts) != 1:
        return None
    only = contacts[0]
    foreign = (msg.from_ and only.wa_id and only.wa_id != msg.from_) or (
        msg.from_user_id and only.user_id and only.user_id != msg.from_user_id
    )
    return None if foreign else only


def _content(msg: Message, timestamp: int | None) -> dict[str, Any]:
    raw = msg.model_dump(mode="json", by_alias=True, exclude_none=True)
    content: dict[str, Any] = storable_json(content_for(msg.type, raw))
    if timestamp is None and msg.timestamp not in (None, ""):
        # Stored as the receive time: the value given is kept with the message.
        content["raw"]["timestamp"] = storable_json(msg.timestamp)
    return content


def _target_wamid(msg: Message) -> str | None:
    """The message a reaction, an edit or a revoke acts on."""
    obj = (msg.model_extra or {}).get(msg.type)
    if not isinstance(obj, dict):
        return None
    target = obj.get("message_id") if msg.type == "reaction" else obj.get("original_message_id")
    return target if isinstance(target, str) and target else None


def _inbound_row(
    pnid: str, msg: Message, contact: Contact | None, received_at: float
) -> dict[str, Any]:
    phone = msg.from_ or (contact.wa_id if contact else None)
    bsuid = msg.from_user_id or (contact.user_id if contact else None)
    timestamp = sane_timestamp(msg.timestamp, now=received_at)
    change = _identity_change(msg)
    if change is not None and change["previous_bsuid"]:
        # A notice of a changed BSUID names the customer by the one they had.
        bsuid = change["previous_bsuid"]
    return {
        **_identity_fields(change),
        "history": False,
        "group_id": msg.group_id or None,
        "target_wamid": _target_wamid(msg),
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


def _identifier(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    return str(value).strip() or None


def _identity_change(msg: Message) -> dict[str, str | None] | None:
    """The identifiers a `system` notice gives the customer (user_changed_number: `new_wa_id`,
    or `wa_id` in newer versions, and a regenerated `user_id`; user_changed_user_id: `user_id`
    with `previous_user_id`), else None."""
    if msg.type != "system":
        return None
    notice = (msg.model_extra or {}).get("system")
    if not isinstance(notice, dict):
        return None
    new_phone = _identifier(notice.get("new_wa_id")) or _identifier(notice.get("wa_id"))
    new_bsuid = _identifier(notice.get("user_id"))
    previous_bsuid = _identifier(notice.get("previous_user_id"))
    if new_phone == (msg.from_ or None):
        new_phone = None
    if new_bsuid == (previous_bsuid or msg.from_user_id or None):
        new_bsuid = None
    if new_phone is None and new_bsuid is None:
        return None
    return {"new_phone": new_phone, "new_bsuid": new_bsuid, "previous_bsuid": previous_bsuid}


def _identity_fields(change: dict[str, str | None] | None) -> dict[str, Any]:
    if change is None:
        return {}
    return {"new_phone": change["new_phone"], "new_bsuid": change["new_bsuid"]}


def _echo_row(pnid: str, echo: Echo, received_at: float) -> dict[str, Any]:
    timestamp = sane_timestamp(echo.timestamp, now=received_at)
    return {
        "history": False,
        "group_id": None,
        "target_wamid": None,
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


def _digits(number: str | None) -> str:
    return re.sub(r"[^0-9]", "", number or "")


def _history_row(
    pnid: str, business: str | None, thread: HistoryThread, msg: HistoryMessage, received_at: float
) -> dict[str, Any]:
    # A thread is one customer's (its id their number): what they did not write, the business
    # sent (`to` then names them). Without a thread id, `from` is compared with the business's.
    if msg.to:
        outbound = True
    elif thread.id and msg.from_:
        outbound = _digits(msg.from_) != _digits(thread.id)
    else:
        outbound = business is not None and _digits(msg.from_) == _digits(business)
    customer = (msg.to if msg.to else thread.id) if outbound else (msg.from_ or thread.id)
    timestamp = sane_timestamp(msg.timestamp, now=received_at)
    context = msg.history_context
    return {
        "history": True,
        "group_id": None,
        "target_wamid": None,
        "direction": "outbound" if outbound else "inbound",
        "phone_number_id": pnid,
        "wamid": msg.id,
        "phone": customer,
        "bsuid": (msg.to_user_id if outbound else msg.from_user_id) or None,
        "profile_name": None,
        "type": msg.type,
        "content": _content(msg, timestamp),
        "timestamp": timestamp,
        "context_wamid": msg.context.id if msg.context else None,
        "status": context.status.lower() if context and isinstance(context.status, str) else None,
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
