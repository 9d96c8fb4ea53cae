"""When the customer's data is complete, what is missing, and how it reads in a summary.

Complete = every required field plus at least `min_optional_fields` of the optional ones
(the original engine: 5 critical fields + 3 of 4 optional). "N/A" counts as an answer, so a
customer without an email is not asked forever.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from jobs.engine.playbook import FIELDS, PlaybookSettings

FIELD_LABELS: dict[str, dict[str, str]] = {
    "es": {
        "nombre": "nombre completo",
        "telefono": "teléfono",
        "direccion": "dirección",
        "barrio": "barrio",
        "ciudad": "ciudad",
        "departamento": "departamento",
        "correo": "correo",
        "indicaciones": "indicaciones de entrega",
    },
    "en": {
        "nombre": "full name",
        "telefono": "phone",
        "direccion": "address",
        "barrio": "neighbourhood",
        "ciudad": "city",
        "departamento": "state / region",
        "correo": "email",
        "indicaciones": "delivery notes",
    },
}
_AND = {"es": "y", "en": "and"}
_OR = {"es": "o", "en": "or"}


def _labels(language: str) -> dict[str, str]:
    return FIELD_LABELS.get(language, FIELD_LABELS["es"])


def missing_fields(settings: PlaybookSettings, data: Mapping[str, str]) -> list[str]:
    """What to ask for: the required fields not yet given; once those are in, and only if too
    few optional ones were, the optional ones still open (the customer picks). Asking for the
    optional ones up front would make a short list look long, and a department inferred from
    the city usually settles them."""
    missing = [f for f in settings.required_fields if not data.get(f)]
    if missing:
        return missing
    given = sum(1 for f in settings.optional_fields if data.get(f))
    if given < settings.min_optional_fields:
        return [f for f in settings.optional_fields if not data.get(f)]
    return []


def is_complete(settings: PlaybookSettings, data: Mapping[str, str]) -> bool:
    return not missing_fields(settings, data)


def describe_missing(settings: PlaybookSettings, data: Mapping[str, str], language: str) -> str:
    """ "dirección y ciudad" for required fields; "barrio o correo" when any optional one will
    do."""
    missing = missing_fields(settings, data)
    required = any(f in settings.required_fields for f in missing)
    return describe_fields(missing, language, conjunction=_AND if required else _OR)


def describe_fields(
    fields: Sequence[str], language: str, *, conjunction: Mapping[str, str] = _AND
) -> str:
    """["direccion", "ciudad"] -> "dirección y ciudad"."""
    labels = _labels(language)
    names = [labels.get(f, f) for f in fields]
    if len(names) <= 1:
        return "".join(names)
    return f"{', '.join(names[:-1])} {conjunction.get(language, conjunction['es'])} {names[-1]}"


def summary_lines(data: Mapping[str, str], language: str) -> str:
    labels = _labels(language)
    return "\n".join(
        f"{labels[f][:1].upper()}{labels[f][1:]}: {data[f]}" for f in FIELDS if data.get(f)
    )
