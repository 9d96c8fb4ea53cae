"""Typed models of WhatsApp Cloud API webhook bodies (Meta's, and 360dialog's, which forwards
Meta's format unchanged).

The models are strict about the envelope a batch must have (`object`, `entry[].changes[]`, ids)
and lenient about everything else: unknown keys are kept, and a message of a type we have never
seen is still a message. `Webhook.normalise()` turns a body into the rows the intake stores.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bridge.api.message_content import content_for


def _blank_is_none(value: Any) -> Any:
    # Meta sends unix seconds as a string; an empty one means "not given".
    return None if value == "" else value


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
    timestamp: int | None = None
    type: str = Field(default="unknown", min_length=1)
    context: Context | None = None

    _timestamp = field_validator("timestamp", mode="before")(_blank_is_none)


class Echo(Message):
    """A message the business sent from the WhatsApp Business app (`smb_message_echoes`)."""

    to: str | None = None
    to_user_id: str | None = None


class StatusError(_Lenient):
    code: int | str | None = None
    title: str | None = None
    message: str | None = None


class Status(_Lenient):
    id: str = Field(min_length=1)
    status: str = Field(min_length=1)
    timestamp: int | None = None
    recipient_id: str | None = None
    errors: list[StatusError] = Field(default_factory=list)

    _timestamp = field_validator("timestamp", mode="before")(_blank_is_none)


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

    def normalise(self) -> NormalisedBatch:
        batch = NormalisedBatch()
        for entry in self.entry:
            for change in entry.changes:
                batch.add_change(change.value)
        return batch


class NormalisedBatch:
    """What one POST carries, flattened across every entry and change, in arrival order."""

    def __init__(self) -> None:
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
            self.messages.append(_inbound_row(pnid, msg, _contact_for(contacts, msg)))
        for echo in value.message_echoes:
            self.messages.append(_echo_row(pnid, echo))
        for status in value.statuses:
            self.statuses.append(_status_row(pnid, status))


def _contact_for(contacts: list[Contact], msg: Message) -> Contact | None:
    # A batch may carry several senders; match by wa_id or BSUID, else the only contact given.
    for contact in contacts:
        if (msg.from_ and contact.wa_id == msg.from_) or (
            msg.from_user_id and contact.user_id == msg.from_user_id
        ):
            return contact
    return contacts[0] if len(contacts) == 1 else None


def _inbound_row(pnid: str, msg: Message, contact: Contact | None) -> dict[str, Any]:
    raw = msg.model_dump(mode="json", by_alias=True, exclude_none=True)
    phone = msg.from_ or (contact.wa_id if contact else None)
    bsuid = msg.from_user_id or (contact.user_id if contact else None)
    return {
        "direction": "inbound",
        "phone_number_id": pnid,
        "wamid": msg.id,
        "phone": phone,
        "bsuid": bsuid,
        "profile_name": contact.profile.name if contact and contact.profile else None,
        "type": msg.type,
        "content": content_for(msg.type, raw),
        "timestamp": msg.timestamp,
        "context_wamid": msg.context.id if msg.context else None,
    }


def _echo_row(pnid: str, echo: Echo) -> dict[str, Any]:
    raw = echo.model_dump(mode="json", by_alias=True, exclude_none=True)
    return {
        "direction": "outbound",
        "phone_number_id": pnid,
        "wamid": echo.id,
        "phone": echo.to,
        "bsuid": echo.to_user_id,
        "profile_name": None,
        "type": echo.type,
        "content": content_for(echo.type, raw),
        "timestamp": echo.timestamp,
        "context_wamid": echo.context.id if echo.context else None,
    }


def _status_row(pnid: str, status: Status) -> dict[str, Any]:
    first_error = status.errors[0] if status.errors else None
    return {
        "phone_number_id": pnid,
        "wamid": status.id,
        "status": status.status,
        "timestamp": status.timestamp,
        "recipient_id": status.recipient_id,
        "error_code": None
        if first_error is None or first_error.code is None
        else str(first_error.code),
        "error_title": first_error.title or first_error.message if first_error else None,
    }
