"""Customer data from free text, and when it is complete."""

from __future__ import annotations

import time

import pytest

from jobs.engine.capture import capture_data
from jobs.engine.customer_data import describe_missing, is_complete, missing_fields
from jobs.engine.playbook import PlaybookSettings


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Nombre: Juan Pérez\nTel: 300-123-4567\nDirección: Cra. 7 #45-12 apto 301, Medellín\n"
            "Barrio: Chapinero\nCorreo: juan@example.com",
            {
                "nombre": "Juan Pérez",
                "telefono": "3001234567",
                "direccion": "Cra. 7 #45-12 apto 301",
                "ciudad": "Medellín",
                "departamento": "Antioquia",
                "barrio": "Chapinero",
                "correo": "juan@example.com",
            },
        ),
        (
            "Me llamo Ana María López, mi celular es 315 555 1234 y vivo en Cali",
            {
                "nombre": "Ana María López",
                "telefono": "3155551234",
                "ciudad": "Cali",
                "departamento": "Valle del Cauca",
            },
        ),
        (
            "Calle 45 # 12-30 barrio El Prado, Barranquilla",
            {
                "direccion": "Calle 45 # 12-30",
                "barrio": "El Prado",
                "ciudad": "Barranquilla",
                "departamento": "Atlántico",
            },
        ),
        (
            "Calle 10 # 20-30 3001234567",
            {"direccion": "Calle 10 # 20-30", "telefono": "3001234567"},
        ),
        (
            "My name is John Smith, phone +1 555 123 4567",
            {"nombre": "John Smith", "telefono": "+15551234567"},
        ),
        (
            "Address: 12 Main Street, City: Austin, State: Texas",
            {"direccion": "12 Main Street", "ciudad": "Austin", "departamento": "Texas"},
        ),
        (
            "ciudad: Cali, departamento: Valle",
            {"ciudad": "Cali", "departamento": "Valle del Cauca"},
        ),
    ],
)
def test_labelled_and_shaped_data_is_always_read(text: str, expected: dict[str, str]) -> None:
    captured = capture_data(text, expecting=False, known={})
    assert captured.values == expected
    assert captured.strong


@pytest.mark.parametrize(
    "text",
    [
        "hacen envíos a Cali?",
        "cuánto cuesta? 109.900?",
        "dirección de la tienda?",
        "dirección de la tienda",
        "soy de Bogotá",
        "hola quiero comprar",
        "el de 2",
        "",
    ],
)
def test_questions_and_chatter_are_not_data_outside_data_capture(text: str) -> None:
    assert capture_data(text, expecting=False, known={}).values == {}


def test_guesses_count_while_collecting_data() -> None:
    captured = capture_data("Juan Pérez\nBogotá", expecting=True, known={})
    assert captured.values == {
        "nombre": "Juan Pérez",
        "ciudad": "Bogotá",
        "departamento": "Bogotá D.C.",
    }
    assert not captured.strong


def test_a_guessed_name_never_replaces_a_known_one() -> None:
    captured = capture_data("Pedro Páramo", expecting=True, known={"nombre": "Juan Pérez"})
    assert "nombre" not in captured.values


@pytest.mark.parametrize(
    "text", ["gracias", "ok listo", "ya le envío", "buenas tardes", "el de dos"]
)
def test_sentences_are_not_names(text: str) -> None:
    assert "nombre" not in capture_data(text, expecting=True, known={}).values


def test_the_department_is_inferred_from_a_known_city() -> None:
    captured = capture_data("Cali", expecting=True, known={})
    assert captured.values["departamento"] == "Valle del Cauca"
    later = capture_data("ok", expecting=True, known={"ciudad": "Medellín"})
    assert later.values == {"departamento": "Antioquia"}


def test_completeness_needs_the_required_fields_and_some_optional_ones() -> None:
    settings = PlaybookSettings(
        required_fields=("nombre", "telefono"),
        optional_fields=("barrio", "correo"),
        min_optional_fields=1,
    )
    assert missing_fields(settings, {}) == ["nombre", "telefono"]
    assert describe_missing(settings, {}, "es") == "nombre completo y teléfono"
    data = {"nombre": "Juan", "telefono": "300"}
    assert not is_complete(settings, data)
    assert describe_missing(settings, data, "en") == "neighbourhood or email"
    assert is_complete(settings, {**data, "correo": "N/A"})


@pytest.mark.parametrize(
    "text",
    [
        "1" * 40 + "a",  # a phone that is not one: each split of the digits was tried
        "3" * 4095 + "x",
        "(300" * 1024,
        "a" * 4096,  # an email without its "@": each start was scanned to the end
        "1." * 2048,
    ],
)
def test_any_customer_text_is_read_in_linear_time(text: str) -> None:
    started = time.perf_counter()
    for expecting in (False, True):
        capture_data(text, expecting=expecting, known={})
    assert time.perf_counter() - started < 0.5
