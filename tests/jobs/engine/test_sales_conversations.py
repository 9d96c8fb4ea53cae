"""Golden conversations with the seed playbook: what the customer writes, what comes back
(template keys or texts), the mode, the captured data and the handoff decision."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from jobs.engine.modes import MODES
from jobs.engine.playbook import Playbook
from jobs.engine.sales import SalesEngine
from tests.jobs.engine.conftest import Chat, message, template_keys


def texts(chat: Chat) -> list[str]:
    return [r.text for r in chat.results[-1].replies]


async def test_the_full_purchase_flow(chat: Callable[[], Chat], playbook: Playbook) -> None:
    c = chat()

    greeting_and_price = await c.send("Hola, ¿cuánto vale?")
    assert template_keys(playbook, greeting_and_price) == [
        "hola/es/primera_vez/0",
        "hola/es/primera_vez/1",
        "precio/es/primera_vez/0",
        "precio/es/primera_vez/1",
        "precio/es/primera_vez/2",
    ]
    assert greeting_and_price.intent == "hola+precio"
    assert "$77,900" in texts(c)[2]
    assert "$109,900" in texts(c)[3]
    assert "$139,900" in texts(c)[3]
    assert [r.delay_ms for r in greeting_and_price.replies] == [0, 2000, 0, 3000, 2000]
    assert c.mode == "conversacion"

    wants = await c.send("quiero comprar")
    assert c.mode == "collecting_data"
    assert template_keys(playbook, wants) == [
        "captura_datos_si_compra/es/primera_vez/0",
        "captura_datos_si_compra/es/primera_vez/1",
    ]

    partial = await c.send("Juan Pérez, 300 123 4567")
    assert c.mode == "collecting_data"
    assert texts(c) == ["¡Gracias! Anotado ✍️ Me falta: dirección y ciudad."]
    assert partial.state["data"] == {"nombre": "Juan Pérez", "telefono": "3001234567"}

    complete = await c.send("Calle 10 # 20-30, Bogotá")
    assert c.mode == "ofrecer_promos"
    assert complete.intent == "ofrecer_promos"
    assert texts(c)[0] == "¡Gracias Juan! Ya tengo tus datos ✍️"
    assert "2 frascos: $109,900" in texts(c)[1]
    assert complete.state["data"] == {
        "nombre": "Juan Pérez",
        "telefono": "3001234567",
        "direccion": "Calle 10 # 20-30",
        "ciudad": "Bogotá",
        "departamento": "Bogotá D.C.",
    }

    summary = await c.send("el de dos")
    assert c.mode == "resumen"
    assert summary.state["pack"] == "2x"
    assert template_keys(playbook, summary) == ["resumen_2x/es/primera_vez/0"]
    assert "2 frascos de Somnio: $109,900" in texts(c)[0]
    assert "Dirección: Calle 10 # 20-30" in texts(c)[0]

    confirmed = await c.send("Sí, confirmo")
    assert c.mode == "confirmado"
    assert confirmed.intent == "compra_confirmada"
    assert texts(c) == [
        "¡Pedido confirmado! 🎉 Gracias por tu compra, Juan.",
        "Te llegará a Calle 10 # 20-30, Bogotá, en 2 a 5 días hábiles."
        " Pagas $109,900 al recibirlo 💵",
    ]
    assert confirmed.state["order_confirmed"] is True
    assert not any(r.handoff for r in c.results)
    sent = confirmed.state["templates_sent"]
    assert len(sent) == len(set(sent))


@pytest.mark.parametrize("yes", ["si", "sí", "Si", "SÍ", "si.", "ok", "dale", "confirmo", "👍"])
async def test_a_short_yes_confirms_the_summary(chat: Callable[[], Chat], yes: str) -> None:
    c = chat()
    c.mode = "resumen"
    c.state = {"pack": "1x", "data": {"nombre": "Ana Gómez"}, "intents_seen": ["resumen_1x"]}
    c.is_new = False
    result = await c.send(yes)
    assert (result.mode, result.intent, result.handoff) == (
        "confirmado",
        "compra_confirmada",
        False,
    )
    assert result.replies


async def test_yes_after_the_price_starts_the_order(chat: Callable[[], Chat]) -> None:
    c = chat()
    await c.send("cuánto cuesta?")
    result = await c.send("si")
    assert (result.mode, result.intent) == ("collecting_data", "captura_datos_si_compra")


async def test_a_repeated_question_gets_the_repeat_variant_then_a_short_reminder(
    chat: Callable[[], Chat], playbook: Playbook
) -> None:
    c = chat()
    first = await c.send("precio")
    second = await c.send("y el precio?")
    third = await c.send("cuanto vale?")
    assert template_keys(playbook, first)[0] == "precio/es/primera_vez/0"
    assert template_keys(playbook, second) == ["precio/es/siguientes/0"]
    assert template_keys(playbook, third) == ["repetido/es/primera_vez/0"]
    assert all(r.replies for r in (first, second, third))
    sent = third.state["templates_sent"]
    assert len(sent) == len(set(sent))


async def test_a_request_for_a_person_mid_flow_hands_off(chat: Callable[[], Chat]) -> None:
    c = chat()
    await c.send("quiero comprar")
    await c.send("Juan Pérez, 3001234567")
    result = await c.send("mejor quiero hablar con un asesor")
    assert result.handoff is True
    assert result.mode == "handoff"
    assert result.intent == "asesor"
    assert result.handoff_reason == "customer intent asesor"
    assert result.replies == []  # the worker sends the workspace's handoff message
    assert result.state["data"]["nombre"] == "Juan Pérez"


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("Esto es una estafa, el pedido nunca llegó", "queja"),
        ("quiero poner una queja", "queja"),
        ("quiero cancelar mi pedido", "cancelar"),
        ("I want to talk to a human", "asesor"),
        ("this is a scam", "queja"),
    ],
)
async def test_complaints_and_cancellations_hand_off(
    chat: Callable[[], Chat], text: str, intent: str
) -> None:
    result = await chat().send(text)
    assert (result.handoff, result.mode, result.intent) == (True, "handoff", intent)


@pytest.mark.parametrize(
    "text", ["¿es seguro para una persona con diabetes?", "is it safe for a person my age?"]
)
async def test_a_person_in_a_question_is_not_a_request_for_one(
    chat: Callable[[], Chat], text: str
) -> None:
    result = await chat().send(text)
    assert (result.handoff, result.intent) == (False, "contraindicaciones")


async def test_gibberish_three_times_hands_off_with_fallbacks_before(
    chat: Callable[[], Chat], playbook: Playbook
) -> None:
    c = chat()
    first = await c.send("asdfgh")
    second = await c.send("qwerty zxcv")
    third = await c.send("lkjlkj ñññ")
    assert template_keys(playbook, first) == ["fallback/es/primera_vez/0"]
    assert template_keys(playbook, second) == ["fallback/es/siguientes/0"]
    assert (first.handoff, second.handoff) == (False, False)
    assert third.handoff is True
    assert third.handoff_reason == "3 messages in a row not understood"
    assert first.confidence == 0


async def test_an_understood_message_resets_the_miss_count(chat: Callable[[], Chat]) -> None:
    c = chat()
    await c.send("asdfgh")
    await c.send("qwerty")
    await c.send("precio")
    await c.send("zzzz")
    result = await c.send("xxxx")
    assert result.handoff is False
    assert result.state["not_understood"] == 2


@pytest.mark.parametrize(
    "ack", ["ok", "gracias", "listo", "👍", "jaja", "jajaja", "Ok gracias!", "si"]
)
async def test_acknowledgements_during_data_capture_get_no_reply(
    chat: Callable[[], Chat], ack: str
) -> None:
    c = chat()
    await c.send("quiero comprar")
    await c.send("Juan Pérez, 3001234567")
    before = dict(c.state)
    result = await c.send(ack)
    assert result.replies == []
    assert (result.mode, result.handoff) == ("collecting_data", False)
    assert result.intent == "ack"
    unchanged = {k: v for k, v in result.state.items() if k != "turns"}
    assert unchanged == {k: v for k, v in before.items() if k != "turns"}
    assert result.state["turns"] == before["turns"] + 1


@pytest.mark.parametrize("greeting", ["Buen día", "buenas noches", "Hola Ana"])
async def test_a_greeting_while_collecting_data_is_not_taken_for_a_name(
    chat: Callable[[], Chat], greeting: str
) -> None:
    c = chat()
    await c.send("quiero comprar")
    result = await c.send(greeting)
    assert "nombre" not in result.state["data"]
    assert result.intent == "hola"


async def test_a_burst_is_answered_once(chat: Callable[[], Chat], playbook: Playbook) -> None:
    c = chat()
    result = await c.send("hola", "cuánto cuesta?", "hacen envíos a Cali?")
    assert len(c.results) == 1
    assert result.intent == "hola+precio+envio"
    keys = template_keys(playbook, result)
    assert keys[:2] == ["hola/es/primera_vez/0", "hola/es/primera_vez/1"]
    assert "precio/es/primera_vez/0" in keys
    assert keys[-1] == "envio/es/primera_vez/0"
    assert result.mode == "conversacion"
    assert result.state["data"] == {}  # a city in a question is not an address


async def test_data_in_a_burst_over_three_messages(chat: Callable[[], Chat]) -> None:
    c = chat()
    await c.send("quiero comprar")
    result = await c.send("Ana María López", "315 555 1234", "Cra. 7 #45-12 apto 301, Medellín")
    assert result.mode == "ofrecer_promos"
    assert result.state["data"] == {
        "nombre": "Ana María López",
        "telefono": "3155551234",
        "direccion": "Cra. 7 #45-12 apto 301",
        "ciudad": "Medellín",
        "departamento": "Antioquia",
    }


@pytest.mark.parametrize("media", ["image", "audio", "video", "sticker", "document", "location"])
async def test_non_text_asks_for_text_by_default(
    chat: Callable[[], Chat], playbook: Playbook, media: str
) -> None:
    c = chat()
    first = await c.send(message(None, media))
    second = await c.send(message(None, media))
    for result in (first, second):
        assert result.handoff is False
        assert template_keys(playbook, result) == ["pedir_texto/es/primera_vez/0"]
        assert result.mode == "conversacion"


async def test_a_caption_is_read_as_text(chat: Callable[[], Chat]) -> None:
    result = await chat().send(message("cuánto cuesta?", "image"))
    assert result.intent == "precio"


@pytest.mark.parametrize("media", ["image", "audio", "sticker", "location"])
async def test_non_text_hands_off_under_the_handoff_policy(playbook: Playbook, media: str) -> None:
    from dataclasses import replace

    strict = SalesEngine(
        replace(playbook, settings=replace(playbook.settings, non_text_policy="handoff"))
    )
    c = Chat(strict)
    await c.send("hola")
    result = await c.send(message(None, media))
    assert (result.handoff, result.mode) == (True, "handoff")
    assert result.handoff_reason == f"non-text message ({media})"


async def test_reactions_get_no_reply(chat: Callable[[], Chat]) -> None:
    result = await chat().send(message(None, "reaction", {"emoji": "👍"}))
    assert (result.replies, result.handoff, result.mode) == ([], False, "conversacion")


async def test_an_english_conversation_is_answered_in_english(
    chat: Callable[[], Chat], playbook: Playbook
) -> None:
    c = chat()
    hello = await c.send("Hi! How much is it?")
    assert template_keys(playbook, hello)[:3] == [
        "hola/en/primera_vez/0",
        "hola/en/primera_vez/1",
        "precio/en/primera_vez/0",
    ]
    await c.send("I want to buy")
    assert c.mode == "collecting_data"
    await c.send("My name is John Smith, phone +1 555 123 4567")
    assert texts(c) == ["Thanks! Got it ✍️ I still need: address and city."]
    await c.send("Address: 12 Main Street, City: Austin, State: Texas")
    assert c.mode == "ofrecer_promos"
    summary = await c.send("two bottles")
    assert c.mode == "resumen"
    assert "2 bottles of Somnio: $109,900" in summary.replies[0].text
    assert "City: Austin" in summary.replies[0].text
    done = await c.send("yes")
    assert c.mode == "confirmado"
    assert done.replies[0].text == "Order confirmed! 🎉 Thank you, John."
    assert done.state["language"] == "en"


async def test_a_blocked_move_gets_an_explicit_answer(
    chat: Callable[[], Chat], playbook: Playbook
) -> None:
    c = chat()
    c.mode, c.is_new = "ofrecer_promos", False
    c.state = {"data": {"nombre": "Juan"}, "intents_seen": ["ofrecer_promos"]}
    result = await c.send("confirmo")
    assert result.mode == "ofrecer_promos"
    assert template_keys(playbook, result) == ["bloqueado_ofrecer_promos/es/primera_vez/0"]
    assert "Primero elige tu pack" in result.replies[0].text


async def test_picking_a_pack_before_giving_data_asks_for_the_data(
    chat: Callable[[], Chat],
) -> None:
    c = chat()
    await c.send("quiero comprar")
    result = await c.send("quiero el de 3")
    assert result.mode == "collecting_data"
    assert result.replies[0].text.startswith("Primero necesito tus datos de envío")
    assert "nombre completo" in result.replies[0].text


async def test_a_pack_and_a_yes_together_show_the_summary_first(chat: Callable[[], Chat]) -> None:
    c = chat()
    c.mode, c.is_new = "ofrecer_promos", False
    c.state = {"data": {"nombre": "Juan"}}
    result = await c.send("sí, el de 2")
    assert (result.mode, result.intent) == ("resumen", "resumen_2x")


async def test_a_bare_number_picks_a_pack_only_when_packs_are_offered(
    chat: Callable[[], Chat],
) -> None:
    offered = chat()
    offered.mode, offered.is_new = "ofrecer_promos", False
    assert (await offered.send("3")).state["pack"] == "3x"
    talking = await chat().send("3")
    assert talking.intent == "fallback"


async def test_changing_the_pack_at_the_summary(chat: Callable[[], Chat]) -> None:
    c = chat()
    c.mode, c.is_new = "resumen", False
    c.state = {"pack": "1x", "intents_seen": ["ofrecer_promos", "resumen_1x"]}
    result = await c.send("mejor el de 3 frascos")
    assert (result.mode, result.state["pack"]) == ("resumen", "3x")
    assert "$139,900" in result.replies[0].text


async def test_data_without_being_asked_starts_the_order(chat: Callable[[], Chat]) -> None:
    result = await chat().send("Nombre: Juan Pérez\nTel: 3001234567")
    assert result.mode == "collecting_data"
    assert result.intent == "datos_faltantes"


async def test_a_handed_off_session_answered_again_restarts_instead_of_staying_mute(
    chat: Callable[[], Chat],
) -> None:
    c = chat()
    c.mode, c.is_new = "handoff", False
    c.state = {"data": {"nombre": "Juan"}}
    result = await c.send("hola")
    assert result.mode == "conversacion"
    assert result.replies


async def test_a_new_session_ignores_leftover_state(chat: Callable[[], Chat]) -> None:
    c = chat()
    c.state = {"intents_seen": ["hola"], "templates_sent": ["x"], "not_understood": 2}
    result = await c.send("hola")  # is_new: the first visit again
    assert result.replies[0].text.startswith("¡Hola! 👋")
    assert result.state["not_understood"] == 0


async def test_the_outcome_is_deterministic(engine: SalesEngine) -> None:
    script = ["hola", "precio", "quiero comprar", "Juan Pérez 3001234567", "Calle 1 # 2-3 Cali"]
    runs = []
    for _ in range(2):
        c = Chat(engine)
        for line in script:
            await c.send(line)
        runs.append([(r.mode, r.state, [x.text for x in r.replies]) for r in c.results])
    assert runs[0] == runs[1]
    assert all(mode in MODES for mode, _, _ in runs[0])
