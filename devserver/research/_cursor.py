"""Opaque pagination cursors: the keyset position and the query's filters, encrypted and signed.

A cursor carries the position (``started_at``, ``run_id``) of the last row of
a page *and* the filters of the query, so a ``next`` link is just
``?cursor=…&limit=…``: a raw ``session_id`` or ``device_id`` that a researcher filtered by
never appears in an answer, not even inside a link. The payload is encrypted
with HMAC-SHA256 in counter mode (a keystream from a pseudo-random function,
with a random nonce per cursor) and authenticated with a second HMAC key
(encrypt-then-MAC); both keys are derived from a server secret. A cursor that
was altered, forged or made by another server is refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import re
from typing import Any

from execution_history import is_run_id

#: The fixed-width UTC text the store keeps in ``started_at`` (``utc_text``).
_STARTED_AT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")
#: Longest cursor accepted; one with every filter at its longest stays below this.
MAX_CURSOR_CHARS = 2048
_NONCE_BYTES = 12
_MAC_BYTES = 16
_REFUSED = "the cursor is not one this server issued"


class CursorError(ValueError):
    """A cursor that this server did not issue (forged, damaged, or from another server)."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    if not text.isascii():
        raise ValueError("not base64")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class CursorCodec:
    """Makes and opens cursors with keys derived from a server secret.

    Args:
        secret: a server secret (the pseudonym key). Separate keys are derived
            from it, so a cursor reveals nothing about the secret.
    """

    __slots__ = ("_enc", "_mac")

    def __init__(self, secret: str) -> None:
        root = secret.encode("utf-8")
        self._enc = hmac.new(root, b"devserver cursor encryption v1", hashlib.sha256).digest()
        self._mac = hmac.new(root, b"devserver cursor authentication v1", hashlib.sha256).digest()

    def _keystream(self, nonce: bytes, length: int) -> bytes:
        blocks = []
        for counter in range((length + 31) // 32):
            message = nonce + counter.to_bytes(4, "big")
            blocks.append(hmac.new(self._enc, message, hashlib.sha256).digest())
        return b"".join(blocks)[:length]

    def _sign(self, data: bytes) -> bytes:
        return hmac.new(self._mac, data, hashlib.sha256).digest()[:_MAC_BYTES]

    def encode(self, position: tuple[str, str], filters: dict[str, Any]) -> str:
        """The cursor for the page after ``position`` of a query with ``filters``.

        Args:
            position: ``(started_at, run_id)`` of the last row returned.
            filters: the query's filters as JSON-compatible values.

        Returns:
            A URL-safe opaque string.
        """
        plain = json.dumps(
            {"p": list(position), "f": filters}, separators=(",", ":"), sort_keys=True
        ).encode("utf-8", "surrogatepass")
        nonce = os.urandom(_NONCE_BYTES)
        cipher = bytes(
            a ^ b for a, b in zip(plain, self._keystream(nonce, len(plain)), strict=True)
        )
        sealed = nonce + cipher
        return _b64(sealed + self._sign(sealed))

    def decode(self, cursor: str) -> tuple[tuple[str, str], dict[str, Any]]:
        """The keyset position and the filters in ``cursor``.

        Raises:
            CursorError: when the cursor is malformed or was not made by this server.
        """
        if len(cursor) > MAX_CURSOR_CHARS:
            raise CursorError(_REFUSED)
        try:
            raw = _unb64(cursor)
        except (binascii.Error, ValueError):
            raise CursorError(_REFUSED) from None
        if len(raw) < _NONCE_BYTES + _MAC_BYTES + 2:
            raise CursorError(_REFUSED)
        sealed, signature = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
        if not hmac.compare_digest(signature, self._sign(sealed)):
            raise CursorError(_REFUSED)
        nonce, cipher = sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:]
        plain = bytes(
            a ^ b for a, b in zip(cipher, self._keystream(nonce, len(cipher)), strict=True)
        )
        try:
            content = json.loads(plain.decode("utf-8", "surrogatepass"))
            (started_at, run_id), filters = content["p"], content["f"]
        except (ValueError, TypeError, KeyError):
            raise CursorError(_REFUSED) from None
        valid = (
            isinstance(started_at, str)
            and _STARTED_AT.fullmatch(started_at) is not None
            and is_run_id(run_id)
            and isinstance(filters, dict)
        )
        if not valid:
            raise CursorError(_REFUSED)
        return (started_at, run_id), filters
