"""What the request asks for beyond its arguments: the schema profile, the media type, the count
preference, and the result shaping this stand-in does not do."""

from __future__ import annotations

import re

from starlette.requests import Request

from devstack.postgrest import errors


def schema(request: Request, exposed: tuple[str, ...]) -> tuple[str, bool]:
    """The schema from Content-Profile (writes) or Accept-Profile (reads), else the first one.

    The second value says whether the response names its profile: PostgREST does when the
    client chose one, or when several schemas are exposed.
    """
    writes = request.method in ("POST", "PATCH", "PUT", "DELETE")
    header = "content-profile" if writes else "accept-profile"
    profile = request.headers.get(header)
    if profile is None:
        return exposed[0], len(exposed) != 1
    if profile not in exposed:
        raise errors.unacceptable_schema(profile, exposed)
    return profile, True


# PostgREST's filter syntax in a query value: `eq.5`, `not.is.null`, `in.(1,2)`, `eq(any).{a,b}`.
_FILTER_VALUE = re.compile(
    r"^(not\.)?(eq|neq|gt|gte|lt|lte|like|ilike|match|imatch|in|is|isdistinct|fts|plfts|phfts"
    r"|wfts|cs|cd|ov|sl|sr|nxr|nxl|adj)(\([a-z]+\))?\."
)
_SHAPING_KEYS = ("select", "order", "limit", "offset", "and", "or", "columns", "on_conflict")


def refuse_result_shaping(params: list[tuple[str, str]], *, is_post: bool) -> None:
    """Filters, `select`, `order` and paging on a call's result are PostgREST features this
    stand-in leaves out; refusing them beats silently returning unfiltered rows."""
    shaping = [
        key
        for key, value in params
        if is_post
        or key in _SHAPING_KEYS
        or key.endswith(tuple(f".{k}" for k in _SHAPING_KEYS))
        or _FILTER_VALUE.match(value)
    ]
    if shaping:
        raise errors.not_implemented(
            "The local stand-in does not filter, select, order or page results of a function "
            "call; query parameters given: " + ", ".join(shaping)
        )


def wants_count(prefer: str | None) -> bool:
    """`Prefer: count=exact|planned|estimated`: the total goes into Content-Range."""
    tokens = {t.strip() for t in (prefer or "").split(",")}
    return bool(tokens & {"count=exact", "count=planned", "count=estimated"})


def wants_single_object(accept: str | None) -> bool:
    """Accept negotiation for RPC: JSON, or PostgREST's single-object media type."""
    if not accept:
        return False
    offered: list[str] = []
    for item in accept.split(","):
        media_type = item.split(";", 1)[0].strip().lower()
        if not media_type:
            continue
        offered.append(media_type)
        if media_type in ("application/vnd.pgrst.object+json", "application/vnd.pgrst.object"):
            return True
        if media_type in _JSON_MEDIA_TYPES:
            return False
    raise errors.unavailable_media_types(offered)


_JSON_MEDIA_TYPES = (
    "*/*",
    "application/*",
    "application/json",
    "application/vnd.pgrst.array+json",
    "application/vnd.pgrst.array",
)
