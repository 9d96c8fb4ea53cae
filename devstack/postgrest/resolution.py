"""Choosing the overload to call from the argument names, as PostgREST's `findProc` does.

A function matches when its required parameters ⊆ the argument names ⊆ all its parameters. When
no function matches by name, a function with a single unnamed parameter of the body's media type
(json/jsonb for JSON, text, xml, bytea) receives the whole body. No match is a 404 PGRST202, more
than one a 300 PGRST203.
"""

from __future__ import annotations

from collections.abc import Sequence

from devstack.postgrest.catalog import Routine
from devstack.postgrest.errors import PostgrestError

# Content media type → the type a single unnamed parameter must have to receive the raw body.
_RAW_BODY_TYPES = {
    "application/json": ("json", "jsonb"),
    "text/plain": ("text",),
    "text/xml": ("xml",),
    "application/octet-stream": ("bytea",),
}
_RAW_ONLY_MEDIA = ("text/plain", "text/xml", "application/octet-stream")


def find_routine(
    overloads: Sequence[Routine], keys: frozenset[str], media_type: str, *, is_post: bool
) -> Routine | None:
    """The routine to call, None when nothing matches; raises PGRST203 when ambiguous."""
    by_name = [r for r in overloads if _matches_keys(r, keys, media_type, is_post=is_post)]
    fallback = [
        r for r in overloads if r not in by_name and _takes_raw_body(r, media_type, is_post=is_post)
    ]
    candidates = by_name or fallback
    if len(candidates) > 1:
        raise PostgrestError(
            300,
            "PGRST203",
            "Could not choose the best candidate function between: "
            + ", ".join(r.signature() for r in candidates),
            hint="Try renaming the parameters or the function itself in the database so function "
            "overloading can be resolved",
        )
    return candidates[0] if candidates else None


def _matches_keys(
    routine: Routine, keys: frozenset[str], media_type: str, *, is_post: bool
) -> bool:
    if not routine.params:
        return not keys and not (is_post and media_type in _RAW_ONLY_MEDIA)
    required = {p.name for p in routine.params if p.required}
    optional = {p.name for p in routine.params if not p.required}
    return (keys - optional) == required


def _takes_raw_body(routine: Routine, media_type: str, *, is_post: bool) -> bool:
    if not is_post or len(routine.params) != 1 or routine.params[0].name:
        return False
    return routine.params[0].type in _RAW_BODY_TYPES.get(media_type, ())


def not_found(
    schema: str,
    name: str,
    keys: frozenset[str],
    media_type: str,
    *,
    is_post: bool,
    overloads: Sequence[Routine],
    schema_functions: Sequence[str],
) -> PostgrestError:
    """PGRST202 with PostgREST's message, details and "Perhaps you meant…" hint."""
    function = f"{schema}.{name}"
    arguments = sorted(keys)
    raw_only = is_post and media_type in _RAW_ONLY_MEDIA
    if raw_only:
        message = f"Could not find the function {function} in the schema cache"
    elif arguments:
        message = (
            f"Could not find the function {function}({', '.join(arguments)}) in the schema cache"
        )
    else:
        message = f"Could not find the function {function} without parameters in the schema cache"
    if not arguments:
        searched = " without parameters"
    else:
        plural = "s" if len(arguments) > 1 else ""
        searched = f" with parameter{plural} {', '.join(arguments)}"
    if raw_only:
        searched = f" with a single unnamed {_RAW_BODY_TYPES[media_type][0]} parameter"
    elif is_post and media_type == "application/json":
        searched += " or with a single unnamed json/jsonb parameter"
    details = (
        f"Searched for the function {function}{searched}, "
        "but no matches were found in the schema cache."
    )
    hint = None if raw_only else _hint(schema, name, arguments, overloads, schema_functions)
    return PostgrestError(404, "PGRST202", message, details=details, hint=hint)


def _hint(
    schema: str,
    name: str,
    arguments: list[str],
    overloads: Sequence[Routine],
    schema_functions: Sequence[str],
) -> str | None:
    prefix = f"Perhaps you meant to call the function {schema}."
    if not overloads:
        best = closest(name, schema_functions, minimum=0.75)
        return prefix + best if best is not None else None
    signatures = [_param_list(sorted(p.name for p in r.params)) for r in overloads]
    best = closest(_param_list(arguments), signatures, minimum=0.33)
    return prefix + name + best if best is not None else None


def _param_list(names: list[str]) -> str:
    return "(" + ", ".join(names) + ")"


def closest(word: str, candidates: Sequence[str], *, minimum: float) -> str | None:
    """The most similar candidate by normalised edit distance (PostgREST uses a fuzzy set whose
    final score is the same Levenshtein ratio; the gram pre-filter is not reproduced)."""
    best: tuple[float, str] | None = None
    for candidate in candidates:
        score = _similarity(word.lower(), candidate.lower())
        if score >= minimum and (best is None or score > best[0]):
            best = (score, candidate)
    return best[1] if best is not None else None


def _similarity(a: str, b: str) -> float:
    if not a and not b:
        return 1.0
    return 1.0 - _levenshtein(a, b) / max(len(a), len(b))


def _levenshtein(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, start=1):
        current = [i]
        for j, char_b in enumerate(b, start=1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char_a != char_b))
            )
        previous = current
    return previous[-1]
