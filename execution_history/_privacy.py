"""Keyed pseudonyms for the people in the data (DESIGN.md §5)."""

from __future__ import annotations

import hashlib
import hmac


class Pseudonymiser:
    """HMAC-SHA256 pseudonyms: stable for one key, not reversible without it.

    Args:
        key: the secret (``DEVSERVER_PSEUDONYM_KEY``); at least 16 bytes.

    Raises:
        ValueError: when the key is too short to be a secret.
    """

    __slots__ = ("_key",)

    def __init__(self, key: str | bytes) -> None:
        raw = key.encode("utf-8") if isinstance(key, str) else bytes(key)
        if len(raw) < 16:
            raise ValueError("the pseudonym key must be at least 16 bytes long")
        self._key = raw

    def _digest(self, kind: str, value: str) -> str:
        message = f"{kind}\x00{value}".encode("utf-8", "surrogatepass")
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()[:24]

    def user(self, user_id: str) -> str:
        """The pseudonym of a user id, e.g. ``user-3f2a…``."""
        return "user-" + self._digest("user", user_id)

    def session(self, session_id: str) -> str:
        """The pseudonym of a session id, e.g. ``session-9c41…``."""
        return "session-" + self._digest("session", session_id)

    def device(self, device_id: str) -> str:
        """The pseudonym of a device id (the page's random id), e.g. ``device-7b0e…``."""
        return "device-" + self._digest("device", device_id)

    def __repr__(self) -> str:  # never show the key
        return "Pseudonymiser(<key hidden>)"
