"""The demo conversation: what a new customer writes, step by step, chosen to trigger the seed's
sales playbook (supabase/seeds/playbook.sql) the way a real customer would."""

from __future__ import annotations

import random
from dataclasses import dataclass

FIRST_NAMES = ("Laura", "Camila", "Andrés", "Valentina", "Santiago", "Mariana", "Julián")
LAST_NAMES = ("Gómez", "Rodríguez", "Martínez", "López", "Restrepo", "Cardona", "Ospina")


@dataclass(frozen=True)
class Customer:
    phone: str  # wa_id: country code and number, digits only
    name: str  # the WhatsApp profile name

    @property
    def local_number(self) -> str:
        return self.phone.removeprefix("57")


@dataclass(frozen=True)
class Step:
    title: str
    texts: tuple[str, ...]  # more than one: sent within a second, to be answered as one turn
    handoff: bool = False  # the step ends with the conversation handed to a human

    @property
    def burst(self) -> bool:
        return len(self.texts) > 1


def new_customer(rng: random.Random | None = None) -> Customer:
    """A customer nobody has seen: a random Colombian mobile number (a new conversation)."""
    rng = rng or random.SystemRandom()
    phone = f"573{rng.randrange(10**9):09d}"
    return Customer(phone=phone, name=f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}")


def conversation(customer: Customer) -> list[Step]:
    """Greeting, price, a burst (purchase + shipping + payment in three quick messages), the
    shipping data the playbook asks for, and a request for a person."""
    return [
        Step("greeting", ("hola",)),
        Step("price question", ("¿cuánto cuesta?",)),
        Step(
            "burst: three messages within a second",
            ("me interesa 🙌", "¿hacen envíos a Medellín?", "¿y cómo se paga?"),
        ),
        Step(
            "data capture",
            (
                f"Soy {customer.name}, mi cel es {customer.local_number}, vivo en la "
                "Calle 10 # 20-30 barrio Laureles, Medellín",
            ),
        ),
        Step("request for a human", ("prefiero hablar con un asesor, por favor",), handoff=True),
    ]
