"""Template variables and rendering: `{{precio_2x}}` -> "$109,900".

A variable the engine knows but has no value for renders empty (a template may mention the
neighbourhood before the customer gave one); an unknown name stays as written, so a typo in
the playbook shows up in testing instead of silently vanishing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal

from jobs.engine.customer_data import describe_missing, summary_lines
from jobs.engine.playbook import FIELDS, PACKS, PlaybookSettings
from jobs.engine.state import SalesState

_VARIABLE = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")


def format_price(amount: Decimal, symbol: str) -> str:
    if amount == amount.to_integral_value():
        return f"{symbol}{int(amount):,}"
    return f"{symbol}{amount:,.2f}"


def variables(
    settings: PlaybookSettings, state: SalesState, contact_name: str, language: str
) -> dict[str, str]:
    values = {name: "" for name in FIELDS}
    values.update(state.data)
    name = state.data.get("nombre") or contact_name.strip()
    pack = state.pack or ""
    for option in PACKS:
        price = settings.prices.get(option)
        values[f"precio_{option}"] = (
            format_price(price, settings.currency_symbol) if price is not None else ""
        )
    values.update(
        producto=settings.product_name,
        precio=values[f"precio_{pack or '1x'}"],
        pack=pack,
        cantidad=pack[:1],
        nombre=name,
        primer_nombre=name.split()[0] if name.split() else "",
        faltantes=describe_missing(settings, state.data, language),
        datos=summary_lines(state.data, language),
    )
    return values


def render(content: str, values: Mapping[str, str]) -> str:
    def substitute(match: re.Match[str]) -> str:
        value = values.get(match.group(1))
        return match.group(0) if value is None else value

    return _VARIABLE.sub(substitute, content).strip()
