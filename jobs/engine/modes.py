"""The sales engine's modes and the rule for moving between them.

    conversacion -> collecting_data -> ofrecer_promos -> resumen -> confirmado
                                         ^---------------'
    any mode -> handoff (terminal for the session)

Which moves are allowed comes from the playbook (`agent_mode_transitions`); the defaults below
are the original engine's table plus confirmado -> collecting_data (a second order).
"""

from __future__ import annotations

from collections.abc import Set

CONVERSACION = "conversacion"
COLLECTING_DATA = "collecting_data"
OFRECER_PROMOS = "ofrecer_promos"
RESUMEN = "resumen"
CONFIRMADO = "confirmado"
HANDOFF = "handoff"

MODES: tuple[str, ...] = (
    CONVERSACION,
    COLLECTING_DATA,
    OFRECER_PROMOS,
    RESUMEN,
    CONFIRMADO,
    HANDOFF,
)
INITIAL_MODE = CONVERSACION

DEFAULT_TRANSITIONS: frozenset[tuple[str, str]] = frozenset(
    {
        (CONVERSACION, COLLECTING_DATA),
        (COLLECTING_DATA, OFRECER_PROMOS),
        (OFRECER_PROMOS, RESUMEN),
        (RESUMEN, CONFIRMADO),
        (RESUMEN, OFRECER_PROMOS),
        (CONFIRMADO, CONVERSACION),
        (CONFIRMADO, COLLECTING_DATA),
    }
)


def can_move(transitions: Set[tuple[str, str]], from_mode: str, to_mode: str) -> bool:
    """Staying is not a move, and handoff is always reachable: a playbook that forgot a handoff
    row must not trap a customer who asks for a person."""
    if from_mode == to_mode or to_mode == HANDOFF:
        return True
    return (from_mode, to_mode) in transitions


def starting_mode(mode: str) -> str:
    """The mode a turn starts from. An unknown mode, or `handoff` on a session the bot is asked
    to answer again (a person switched it back on), restarts the conversation instead of
    leaving the bot mute forever in a terminal mode."""
    if mode not in MODES or mode == HANDOFF:
        return INITIAL_MODE
    return mode
