"""The default sales engine: deterministic, no network, configured by the playbook.

One turn, in order:

1. Non-text messages follow the workspace's policy (ask for text, or hand off).
2. Customer data is captured from the text; intents are detected in the rest.
3. A handoff intent (asesor, queja, cancelar, ...) hands off at once. Nothing understood counts
   towards `max_not_understood` consecutive misses, which hand off; before that the customer
   gets the `fallback` template. Only acknowledgements ("ok", "gracias", "👍") get no reply.
4. Intents move the mode when the transition table allows it; a move it forbids is answered
   explicitly (`bloqueado_<mode>` templates: "pick a pack first"), never silently dropped.
5. Complete data moves collecting_data on to ofrecer_promos; partial data asks for the rest.
6. Templates are chosen per intent: first-visit or repeat variant, never one already sent
   (unless marked repeatable); an intent with nothing left to say gets `repetido`.

The engine writes nothing and remembers nothing outside the returned state.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from jobs.engine.burst import combine
from jobs.engine.capture import Captured, capture_data
from jobs.engine.customer_data import is_complete
from jobs.engine.intents import IntentDetector, IntentMatch, coverage
from jobs.engine.modes import (
    COLLECTING_DATA,
    CONFIRMADO,
    CONVERSACION,
    HANDOFF,
    OFRECER_PROMOS,
    can_move,
    starting_mode,
)
from jobs.engine.playbook import FIRST_VISIT, REPEAT_VISIT, Playbook, Template
from jobs.engine.protocol import Reply, TurnInput, TurnResult
from jobs.engine.state import SalesState
from jobs.engine.templates import render, variables
from jobs.engine.text_normalise import fold

MAX_INTENTS_PER_TURN = 3
_DROP_ORDER = ("opcional", "complementaria")

# Said only when the playbook has no template for a reply that is due: a configuration gap must
# not turn into silence.
_LAST_RESORT = {
    "es": "Disculpa, no te entendí bien. ¿Me lo puedes escribir de otra forma?",
    "en": "Sorry, I didn't quite get that. Could you put it another way?",
}


@dataclass
class _Plan:
    """What the turn will answer, in order: intents (detected or the engine's own)."""

    mode: str
    intents: list[str] = field(default_factory=list)
    confidences: list[float] = field(default_factory=list)
    blocked: tuple[str, str] | None = None  # (from mode, to mode) of a forbidden move
    answers_question: bool = False  # something beyond a greeting was answered


class SalesEngine:
    def __init__(self, playbook: Playbook, *, agent_id: str | None = None) -> None:
        self.agent_id = agent_id or playbook.agent_id
        self.playbook = playbook
        self._detector = IntentDetector(playbook.rules)

    async def decide(self, turn: TurnInput) -> TurnResult:
        return self.decide_now(turn)

    def decide_now(self, turn: TurnInput) -> TurnResult:
        """`decide` without the coroutine: the engine never awaits anything."""
        settings = self.playbook.settings
        state = SalesState() if turn.session.is_new else SalesState.from_json(turn.session.state)
        mode = starting_mode(turn.session.mode)
        state.turns += 1
        language = state.language or settings.default_language

        burst = combine(turn.messages)
        if burst.media_types and settings.non_text_policy == "handoff":
            return self._handoff(turn, state, f"non-text message ({burst.media_types[0]})")
        if not burst.text:
            if burst.media_types:
                plan = _Plan(mode=mode, intents=["pedir_texto"], confidences=[100.0])
                return self._answer(turn, state, plan, language)
            return _silence(state, mode, intent=None, confidence=None)

        folded = fold(burst.text)
        # Intents first, so a greeting is never guessed to be a name; then again without the
        # text read as data, so "dirección de envío: …" is not a shipping question.
        detected = self._detector.detect(folded, mode)
        captured = capture_data(
            burst.text,
            folded=folded,
            expecting=mode == COLLECTING_DATA,
            known=state.data,
            reserved=[span for m in detected for span in m.spans],
        )
        if captured.spans:
            detected = self._detector.detect(
                folded, mode, excluded=captured.spans, covered=captured.spans
            )
        matches = [m for m in detected if m.confidence >= settings.min_confidence]
        handoffs = [m for m in matches if m.rule.handoff]
        if handoffs:
            state.data.update(captured.values)
            first = handoffs[0]
            _remember(state, [first.intent])
            return self._handoff(
                turn, state, f"customer intent {first.intent}", first.intent, first.confidence
            )
        if not matches and not captured.values:
            state.not_understood += 1
            if state.not_understood >= settings.max_not_understood:
                return self._handoff(
                    turn, state, f"{state.not_understood} messages in a row not understood"
                )
            plan = _Plan(mode=mode, intents=["fallback"], confidences=[0.0])
            return self._answer(turn, state, plan, language)
        state.not_understood = 0

        answerable = [m for m in matches if m.rule.kind != "ack"]
        if not answerable and not captured.values:
            return _silence(
                state, mode, intent="ack", confidence=min(m.confidence for m in matches)
            )

        language = _language(matches, state.language) or settings.default_language
        state.language = language
        plan = self._plan(state, mode, answerable[:MAX_INTENTS_PER_TURN], captured, folded)
        return self._answer(turn, state, plan, language)

    def _plan(
        self,
        state: SalesState,
        mode: str,
        matches: list[IntentMatch],
        captured: Captured,
        folded: str,
    ) -> _Plan:
        transitions = self.playbook.transitions
        plan = _Plan(mode=mode)
        if captured.values:
            state.data.update(captured.values)
            if (
                captured.strong
                and mode == CONVERSACION
                and can_move(transitions, mode, COLLECTING_DATA)
            ):
                # Data without being asked ("implicit yes"): the customer is ordering.
                plan.mode = COLLECTING_DATA
        moved = False
        for match in matches:
            rule = match.rule
            target = rule.next_mode if rule.next_mode != plan.mode else None
            if target and moved:
                # One step per turn: "el de 2, sí" picks the pack and shows the summary; the
                # "sí" must not confirm an order the customer has not seen yet.
                continue
            if target and not can_move(transitions, plan.mode, target):
                plan.blocked = plan.blocked or (plan.mode, target)
                continue
            if target:
                plan.mode, moved = target, True
            if rule.pack:
                state.pack = rule.pack
            plan.intents.append(rule.intent)
            plan.confidences.append(match.confidence)
            plan.answers_question = plan.answers_question or rule.kind != "greeting"
        self._plan_data_moves(state, plan, captured, folded)
        if plan.mode == CONFIRMADO and mode != CONFIRMADO:
            state.order_confirmed = True
        if plan.blocked and not plan.answers_question:
            plan.intents.append(self._blocked_intent(*plan.blocked))
            plan.confidences.append(100.0)
        return plan

    def _plan_data_moves(
        self, state: SalesState, plan: _Plan, captured: Captured, folded: str
    ) -> None:
        settings = self.playbook.settings
        data_confidence = float(max(50, round(100 * coverage(folded, captured.spans))))
        if plan.mode == COLLECTING_DATA:
            if is_complete(settings, state.data):
                if can_move(self.playbook.transitions, plan.mode, OFRECER_PROMOS):
                    plan.mode = OFRECER_PROMOS
                    plan.intents.append("ofrecer_promos")
                    plan.confidences.append(data_confidence)
                    plan.answers_question = True
            elif captured.values and not plan.answers_question:
                plan.intents.append("datos_faltantes")
                plan.confidences.append(data_confidence)
                plan.answers_question = True
        elif captured.values and not plan.intents:
            plan.intents.append("datos_actualizados")
            plan.confidences.append(data_confidence)
            plan.answers_question = True

    def _blocked_intent(self, from_mode: str, to_mode: str) -> str:
        for intent in (f"bloqueado_{from_mode}_{to_mode}", f"bloqueado_{from_mode}"):
            if self.playbook.has_templates(intent):
                return intent
        return "bloqueado"

    def _answer(self, turn: TurnInput, state: SalesState, plan: _Plan, language: str) -> TurnResult:
        values = variables(
            self.playbook.settings, state, (turn.contact.name if turn.contact else ""), language
        )
        seen = set(state.intents_seen)
        sent = set(state.templates_sent)
        chosen: list[tuple[Template | None, Reply]] = []
        repeated = False
        for intent in plan.intents:
            templates = self._fresh(
                intent, language, REPEAT_VISIT if intent in seen else FIRST_VISIT, sent
            )
            if not templates and intent in seen and not repeated:
                templates = self._fresh("repetido", language, FIRST_VISIT, sent)
                repeated = True
            for template in templates:
                text = render(template.content, values)
                if text:
                    chosen.append((template, Reply(text, template.delay_ms, template.id)))
        chosen = _cap(chosen, self.playbook.settings.max_replies_per_turn)
        if not chosen:
            chosen = [(None, Reply(_LAST_RESORT.get(language, _LAST_RESORT["es"])))]
        for sent_template, _ in chosen:
            if sent_template is not None and not sent_template.repeatable:
                state.templates_sent.append(sent_template.id)
        _remember(state, plan.intents)
        return TurnResult(
            replies=[reply for _, reply in chosen],
            mode=plan.mode,
            state=state.to_json(),
            intent="+".join(plan.intents) or None,
            confidence=min(plan.confidences, default=0.0),
        )

    def _fresh(self, intent: str, language: str, visit_type: str, sent: set[str]) -> list[Template]:
        return [
            t
            for t in self.playbook.templates_for(intent, language, visit_type)
            if t.repeatable or t.id not in sent
        ]

    def _handoff(
        self,
        turn: TurnInput,
        state: SalesState,
        reason: str,
        intent: str | None = None,
        confidence: float | None = None,
    ) -> TurnResult:
        # The customer hears the workspace's handoff message from the worker; the engine adds
        # only what the playbook says for this intent (nothing, in the seed), so the customer
        # does not get two "a person will be with you" texts.
        replies: list[Reply] = []
        if intent is not None:
            language = state.language or self.playbook.settings.default_language
            values = variables(
                self.playbook.settings,
                state,
                (turn.contact.name if turn.contact else ""),
                language,
            )
            for template in self.playbook.templates_for(intent, language, FIRST_VISIT):
                text = render(template.content, values)
                if text:
                    replies.append(Reply(text, template.delay_ms, template.id))
        return TurnResult(
            replies=replies,
            mode=HANDOFF,
            state=state.to_json(),
            intent=intent,
            confidence=confidence,
            handoff=True,
            handoff_reason=reason,
        )


def _silence(
    state: SalesState, mode: str, *, intent: str | None, confidence: float | None
) -> TurnResult:
    return TurnResult(
        replies=[], mode=mode, state=state.to_json(), intent=intent, confidence=confidence
    )


def _remember(state: SalesState, intents: list[str]) -> None:
    for intent in intents:
        if intent not in state.intents_seen:
            state.intents_seen.append(intent)


def _language(matches: list[IntentMatch], current: str | None) -> str | None:
    """The language most matched rules are written in; language-neutral rules ("ok", "👍")
    and ties keep the conversation's language."""
    counts = Counter(m.rule.language for m in matches if m.rule.language != "any")
    if not counts:
        return current
    ranked = counts.most_common()
    if len(ranked) > 1 and ranked[0][1] == ranked[1][1] and current in counts:
        return current
    return ranked[0][0]


def _cap(
    chosen: list[tuple[Template | None, Reply]], limit: int
) -> list[tuple[Template | None, Reply]]:
    """At most `limit` replies: drop optional ones first, then complementary ones, latest first.
    Dropped templates are not marked sent, so they can still go out later."""
    kept = list(chosen)
    for priority in _DROP_ORDER:
        for i in range(len(kept) - 1, -1, -1):
            if len(kept) <= limit:
                return kept
            template = kept[i][0]
            if template is not None and template.priority == priority:
                del kept[i]
    return kept[:limit]
