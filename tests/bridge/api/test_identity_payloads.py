"""A `system` notice's new identifiers, as the intake receives them from `Webhook.normalise`:
`new_wa_id` (older payloads) or `wa_id`, a regenerated `user_id`, and the `previous_user_id`
that names the customer of a BSUID change."""

from __future__ import annotations

from typing import Any

import pytest

from bridge.api.payloads import Webhook
from tests.factories import whatsapp as wa


def normalised(message: dict[str, Any]) -> dict[str, Any]:
    body = wa.body(wa.change("100", messages=[message], contacts=[]))
    (row,) = Webhook.model_validate(body).normalise().messages
    return row


def notice(system: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return {
        "id": wa.wamid(),
        "timestamp": "1700000000",
        "type": "system",
        "system": system,
        **fields,
    }


@pytest.mark.parametrize("key", ["new_wa_id", "wa_id"])
def test_a_number_change_gives_the_new_number(key: str) -> None:
    row = normalised(notice({"type": "user_changed_number", key: 573002}, **{"from": "573001"}))
    assert (row["phone"], row["new_phone"], row["new_bsuid"]) == ("573001", "573002", None)


def test_a_bsuid_change_names_the_customer_by_the_previous_bsuid() -> None:
    row = normalised(
        notice({"type": "user_changed_user_id", "user_id": "CO.new", "previous_user_id": "CO.old"})
    )
    assert (row["bsuid"], row["new_bsuid"], row["new_phone"]) == ("CO.old", "CO.new", None)


@pytest.mark.parametrize(
    "system",
    [
        {"type": "customer_identity_changed", "identity": "abc"},
        {"type": "user_changed_number", "new_wa_id": "573001"},  # the number it came from
        {"type": "user_changed_number", "new_wa_id": ["not", "a", "number"]},
        "not an object",
    ],
)
def test_a_notice_without_a_new_identifier_changes_nothing(system: Any) -> None:
    row = normalised(notice(system, **{"from": "573001"}))
    assert "new_phone" not in row
    assert row["phone"] == "573001"
