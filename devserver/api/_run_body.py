"""Validation of the body of ``POST /api/runs``; every refusal says which field and why."""

from __future__ import annotations

import secrets
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from ..pipeline._configs import PipelineConfig
from ..pipeline._orchestrator import RunRequest
from ..pipeline.safety import SAFETY_LEVELS
from ._errors import ApiError

FIELDS = (
    "config",
    "input",
    "safety_level",
    "user_id",
    "session_id",
    "device_id",
    "language",
    "seed",
)
MAX_ID_CHARS = 128
MAX_SEED = 2**31 - 1
#: The strictest safety level: the workshop's level when the server sets none.
DEFAULT_SAFETY_LEVEL = "kids"
#: What ``str.strip()`` removes, as the inside of a regex class (``\\uXXXX`` escapes read
#: alike by Python, JSON Schema validators and browsers).
SPACE_CLASS = "".join(f"\\u{c:04x}" for c in range(0x3001) if chr(c).isspace())
#: Something besides white space: the rule for ``input`` and the ids, as /api/openapi.json
#: publishes it (unanchored: the text contains such a character).
NOT_BLANK = f"[^{SPACE_CLASS}]"


def less_protective(level: str, than: str) -> bool:
    """Whether ``level`` protects less than ``than`` (levels in ``SAFETY_LEVELS`` order)."""
    return SAFETY_LEVELS.index(level) > SAFETY_LEVELS.index(than)


@dataclass(frozen=True, slots=True)
class RunBody:
    """A validated body: the run request and the (raw) ids of the person."""

    request: RunRequest
    user_id: str | None
    session_id: str | None
    device_id: str | None = None
    #: Whether the body named a safety level (else the workshop's applies).
    level_asked: bool = False


def _bad(code: str, message: str) -> ApiError:
    return ApiError(400, code, message)


def _optional_id(body: Mapping[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_ID_CHARS:
        raise _bad(
            f"invalid_{name}",
            f"'{name}' must be a non-empty string of at most {MAX_ID_CHARS} characters.",
        )
    return value


def parse_run_body(
    body: Any,
    configs: Mapping[str, PipelineConfig],
    *,
    languages: Collection[str],
    max_input_chars: int,
    default_level: str = DEFAULT_SAFETY_LEVEL,
) -> RunBody:
    """Validate a ``POST /api/runs`` body.

    Args:
        body: the decoded JSON.
        configs: the known pipeline configs.
        languages: language codes the backend can take as the prompt's language.
        max_input_chars: the longest prompt accepted.
        default_level: the level when the body names none (the workshop's).

    Raises:
        ApiError: 400 with a code naming the problem (``invalid_body``,
            ``unknown_field``, ``unknown_config``, ``invalid_input``,
            ``invalid_safety_level``, ``invalid_user_id``, ``invalid_session_id``,
            ``invalid_device_id``, ``invalid_language``, ``invalid_seed``).
    """
    if not isinstance(body, dict):
        raise _bad("invalid_body", "The body must be a JSON object.")
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise _bad(
            "unknown_field",
            f"Unknown field(s): {', '.join(map(str, unknown))}. Known: {', '.join(FIELDS)}.",
        )
    name = body.get("config")
    if not isinstance(name, str) or name not in configs:
        raise ApiError(
            400,
            "unknown_config",
            f"'config' must be one of: {', '.join(sorted(configs))}.",
            details={"configs": sorted(configs)},
        )
    text = body.get("input")
    if not isinstance(text, str) or not text.strip():
        raise _bad("invalid_input", "'input' must be a non-empty text.")
    if len(text) > max_input_chars:
        raise _bad(
            "invalid_input",
            f"'input' is {len(text)} characters long; at most {max_input_chars} are accepted.",
        )
    if "\x00" in text:
        raise _bad("invalid_input", "'input' must not contain NUL characters.")
    level = body.get("safety_level", default_level)
    if level not in SAFETY_LEVELS:
        raise _bad(
            "invalid_safety_level", f"'safety_level' must be one of: {', '.join(SAFETY_LEVELS)}."
        )
    language = body.get("language")
    if language is not None and language not in languages:
        raise _bad(
            "invalid_language", f"'language' must be one of: {', '.join(sorted(languages))}."
        )
    seed = body.get("seed")
    if isinstance(seed, float) and seed.is_integer():
        # JSON has one kind of number: 7.0 is the integer 7 to JSON Schema (and to the spec).
        seed = int(seed)
    if seed is None:
        seed = secrets.randbelow(MAX_SEED + 1)
    elif isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise _bad("invalid_seed", f"'seed' must be a whole number from 0 to {MAX_SEED}.")
    request = RunRequest(configs[name], text.strip(), level, seed, language)
    return RunBody(
        request,
        _optional_id(body, "user_id"),
        _optional_id(body, "session_id"),
        _optional_id(body, "device_id"),
        level_asked="safety_level" in body,
    )
