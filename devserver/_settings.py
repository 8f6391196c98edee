"""Configuration from the environment (DESIGN.md §4) and the secrets generated into the data dir.

Precedence: built-in defaults < environment variables < ``create_app(test_config)``.
Secrets that are not given are generated once into the data dir (mode 0600)
and read from there on every later start, so pseudonyms stay stable.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .safety import SAFETY_LEVELS

#: app.config key → (environment variable, default). Values from the environment are strings.
ENVIRONMENT: dict[str, tuple[str, Any]] = {
    "DATA_DIR": ("DEVSERVER_DATA_DIR", "./instance"),
    "DATABASE_URL": ("DEVSERVER_DATABASE_URL", None),
    "RESEARCH_TOKEN": ("DEVSERVER_RESEARCH_TOKEN", None),
    "PSEUDONYM_KEY": ("DEVSERVER_PSEUDONYM_KEY", None),
    "BACKEND": ("DEVSERVER_BACKEND", "local"),
    "OLLAMA_HOST": ("OLLAMA_HOST", "http://127.0.0.1:11434"),
    "OLLAMA_MODEL": ("DEVSERVER_OLLAMA_MODEL", "llama3.2"),
    "OLLAMA_TIMEOUT_S": ("DEVSERVER_OLLAMA_TIMEOUT_S", 60.0),
    "OLLAMA_RETRIES": ("DEVSERVER_OLLAMA_RETRIES", 2),
    "CONFIG_DIR": ("DEVSERVER_CONFIG_DIR", None),
    "WORKERS": ("DEVSERVER_WORKERS", 4),
    "QUEUE_SIZE": ("DEVSERVER_QUEUE_SIZE", 32),
    "MAX_INPUT_CHARS": ("DEVSERVER_MAX_INPUT_CHARS", 2000),
    "WAIT_TIMEOUT_S": ("DEVSERVER_WAIT_TIMEOUT_S", 120.0),
    "SHUTDOWN_TIMEOUT_S": ("DEVSERVER_SHUTDOWN_TIMEOUT_S", 30.0),
    "MAX_BODY_BYTES": ("DEVSERVER_MAX_BODY_BYTES", 1 << 20),
    "SAFETY_LEVEL": ("DEVSERVER_SAFETY_LEVEL", "kids"),
    "EXPORT_THREADS": ("DEVSERVER_EXPORT_THREADS", 2),
}

RESEARCH_TOKEN_FILE = "research_token"
PSEUDONYM_KEY_FILE = "pseudonym_key"


class SettingsError(ValueError):
    """A configuration value that cannot be used; the message names the variable."""


@dataclass(frozen=True, slots=True)
class Settings:
    """The resolved configuration of one app."""

    data_dir: Path
    database_path: Path
    backend: str
    ollama_host: str
    ollama_model: str
    ollama_timeout_s: float
    ollama_retries: int
    config_dir: Path | None
    workers: int
    queue_size: int
    max_input_chars: int
    #: Longest request body taken; longer ones are answered 413 before anything reads them.
    max_body_bytes: int
    #: The workshop's age level: a run asks for it or a stricter one; a less protective
    #: one needs the research token.
    safety_level: str
    wait_timeout_s: float
    shutdown_timeout_s: float
    #: Batch exports produced at once, each on a dedicated export thread (0: on the
    #: request thread, as before; see _export_pool for why).
    export_threads: int
    research_token: str
    research_token_file: Path | None
    pseudonym_key: str

    @property
    def media_root(self) -> Path:
        """``<data_dir>/media``: one folder per run id inside."""
        return self.data_dir / "media"

    @property
    def last_resort_dirs(self) -> list[Path]:
        """Where runs go at shutdown that neither the store nor the quarantine took."""
        return last_resort_dirs(self.data_dir, Path(tempfile.gettempdir()))


def last_resort_dirs(data_dir: Path, temp_root: Path) -> list[Path]:
    """``<data_dir>/unwritten``, then a folder of this data dir's own under ``temp_root``.

    The second is named after the data dir's path, so that a start imports
    only its own runs from it, never another data dir's.
    """
    key = hashlib.sha256(str(data_dir.resolve()).encode("utf-8", "surrogatepass")).hexdigest()
    return [data_dir / "unwritten", temp_root / "devserver-unwritten" / key[:16]]


def defaults_from_environment(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The config keys of ``ENVIRONMENT``, from the environment where set, else the defaults."""
    environ = os.environ if environ is None else environ
    return {key: environ.get(var, default) for key, (var, default) in ENVIRONMENT.items()}


def _safety_level(config: Mapping[str, Any]) -> str:
    value = str(config.get("SAFETY_LEVEL") or "").strip()
    if value not in SAFETY_LEVELS:
        raise SettingsError(
            f"DEVSERVER_SAFETY_LEVEL must be one of {', '.join(SAFETY_LEVELS)}, not {value!r}"
        )
    return value


def _number(config: Mapping[str, Any], key: str, kind: type, minimum: float) -> Any:
    value = config.get(key)
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise SettingsError(f"{ENVIRONMENT[key][0]} must be a number, not {value!r}") from None
    if number < minimum:
        raise SettingsError(f"{ENVIRONMENT[key][0]} must be at least {minimum}, not {value!r}")
    return number


def _database_path(url: str | None, data_dir: Path) -> Path:
    if not url:
        return data_dir / "history.sqlite3"
    prefix = "sqlite:///"
    if not url.startswith(prefix) or len(url) == len(prefix):
        raise SettingsError(
            "DEVSERVER_DATABASE_URL: only SQLite URLs (sqlite:///path/to/file.sqlite3) "
            "are supported by this version"
        )
    return Path(url[len(prefix) :])


def read_or_create_secret(path: Path) -> str:
    """The secret in ``path``; created with 32 random bytes (mode 0600) when missing.

    Safe when several processes start at once: the file is created exclusively,
    and a process that loses the race reads the winner's secret.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        # Tighten a secret that someone made readable for others.
        with contextlib.suppress(OSError):
            if path.stat().st_mode & 0o077:
                path.chmod(0o600)
        for _ in range(50):  # the winner may still be writing
            value = path.read_text(encoding="utf-8").strip()
            if value:
                return value
            time.sleep(0.01)
        raise SettingsError(f"{path} is empty; delete it to generate a new secret") from None
    value = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(value + "\n")
    return value


#: Shortest research token accepted: it guards children's data, so it must not be guessable.
MIN_RESEARCH_TOKEN_CHARS = 32


def _check_research_token(token: str, token_file: Path | None) -> None:
    """Refuse a research token that is short or cannot travel in an HTTP header."""
    source = str(token_file) if token_file is not None else "DEVSERVER_RESEARCH_TOKEN"
    if len(token) < MIN_RESEARCH_TOKEN_CHARS:
        raise SettingsError(
            f"the research token in {source} has {len(token)} characters; at least "
            f"{MIN_RESEARCH_TOKEN_CHARS} are required (generate one with: python -c "
            "'import secrets; print(secrets.token_urlsafe(32))')"
        )
    if not all("!" <= char <= "~" for char in token):
        raise SettingsError(
            f"the research token in {source} must be printable ASCII without spaces, "
            "so that it can be sent in an Authorization header"
        )


def resolve(config: Mapping[str, Any]) -> Settings:
    """Settings from an app's config; creates the data dir and missing secrets.

    Raises:
        SettingsError: a value that cannot be used (named by its variable).
    """
    data_dir = Path(str(config.get("DATA_DIR") or "./instance")).resolve()
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    backend = str(config.get("BACKEND") or "local")
    if backend not in ("local", "ollama"):
        raise SettingsError(f"DEVSERVER_BACKEND must be 'local' or 'ollama', not {backend!r}")
    token = config.get("RESEARCH_TOKEN")
    token_file: Path | None = None
    if not token:
        token_file = data_dir / RESEARCH_TOKEN_FILE
        token = read_or_create_secret(token_file)
    _check_research_token(str(token), token_file)
    key = config.get("PSEUDONYM_KEY") or read_or_create_secret(data_dir / PSEUDONYM_KEY_FILE)
    if len(str(key).encode()) < 16:
        raise SettingsError("DEVSERVER_PSEUDONYM_KEY must be at least 16 bytes long")
    config_dir = config.get("CONFIG_DIR")
    return Settings(
        data_dir=data_dir,
        database_path=_database_path(config.get("DATABASE_URL"), data_dir),
        backend=backend,
        ollama_host=str(config.get("OLLAMA_HOST")),
        ollama_model=str(config.get("OLLAMA_MODEL")),
        ollama_timeout_s=_number(config, "OLLAMA_TIMEOUT_S", float, 0.001),
        ollama_retries=_number(config, "OLLAMA_RETRIES", int, 0),
        config_dir=Path(config_dir) if config_dir else None,
        workers=_number(config, "WORKERS", int, 1),
        queue_size=_number(config, "QUEUE_SIZE", int, 0),
        max_input_chars=_number(config, "MAX_INPUT_CHARS", int, 1),
        max_body_bytes=_number(config, "MAX_BODY_BYTES", int, 1024),
        safety_level=_safety_level(config),
        wait_timeout_s=_number(config, "WAIT_TIMEOUT_S", float, 0.0),
        shutdown_timeout_s=_number(config, "SHUTDOWN_TIMEOUT_S", float, 0.0),
        export_threads=_number(config, "EXPORT_THREADS", int, 0),
        research_token=str(token),
        research_token_file=token_file,
        pseudonym_key=str(key),
    )
