"""The research token: ``Authorization: Bearer <token>`` only, compared in constant time."""

from __future__ import annotations

import functools
import hmac
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from flask import request

from .._state import get_state
from ._errors import ApiError

P = ParamSpec("P")
R = TypeVar("R")

#: Query parameters that people (and some tools) use to pass tokens in URLs. URLs end up
#: in browser histories, proxy logs and shell histories, so a token there is refused.
TOKEN_QUERY_NAMES = frozenset({"token", "access_token", "research_token", "api_key", "key"})

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="research"'}


def check_research_token() -> None:
    """Let the request through only with the research token in its Authorization header.

    Raises:
        ApiError: 400 when a token is passed in the query string; 401 without a
            Bearer token in the header; 403 with a wrong one.
    """
    if TOKEN_QUERY_NAMES.intersection(request.args):
        raise ApiError(
            400,
            "token_in_query",
            "Send the research token in the Authorization header "
            "('Authorization: Bearer <token>'), never in the URL.",
        )
    header = request.headers.get("Authorization", "")
    scheme, _, supplied = header.partition(" ")
    if scheme.lower() != "bearer" or not supplied.strip():
        raise ApiError(
            401,
            "unauthorized",
            "This endpoint needs the research token: 'Authorization: Bearer <token>'.",
            headers=_CHALLENGE,
        )
    expected = get_state().settings.research_token
    # Bytes, because compare_digest refuses non-ASCII str and headers may carry any byte.
    given = supplied.strip().encode("utf-8", "surrogateescape")
    if not hmac.compare_digest(given, expected.encode("utf-8")):
        raise ApiError(403, "forbidden", "The research token is not valid.")


def research_only(view: Callable[P, R]) -> Callable[P, R]:
    """Decorate a view so that it answers only requests holding the research token."""

    @functools.wraps(view)
    def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
        check_research_token()
        return view(*args, **kwargs)

    return guarded
