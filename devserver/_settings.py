"""Configuration from the environment (DESIGN.md §4) and the secrets generated into the data dir.

Precedence: built-in defaults < environment variables < ``create_app(test_config)``.
Secrets that are not given are generated once into the data dir (mode 0600)
and read from there on every later start, so pseudonyms stay stable.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._data_dir import DEFAULT_DATA_DIR, DataDir
from .pipeline.backends import BACKEND_NAMES, ComfyUIOptions, OpenAIOptions
from .pipeline.safety import SAFETY_LEVELS

#: app.config key → (environment variable, default). Values from the environment are strings.
ENVIRONMENT: dict[str, tuple[str, Any]] = {
    "DATA_DIR": ("DEVSERVER_DATA_DIR", DEFAULT_DATA_DIR),
    "DATABASE_URL": ("DEVSERVER_DATABASE_URL", None),
    "RESEARCH_TOKEN": ("DEVSERVER_RESEARCH_TOKEN", None),
    "PSEUDONYM_KEY": ("DEVSERVER_PSEUDONYM_KEY", None),
    "BACKEND": ("DEVSERVER_BACKEND", "local"),
    "OLLAMA_HOST": ("OLLAMA_HOST", "http://127.0.0.1:11434"),
    "OLLAMA_MODEL": ("DEVSERVER_OLLAMA_MODEL", "llama3.2"),
    "OLLAMA_TIMEOUT_S": ("DEVSERVER_OLLAMA_TIMEOUT_S", 60.0),
    "OLLAMA_RETRIES": ("DEVSERVER_OLLAMA_RETRIES", 2),
    "OPENAI_BASE_URL": ("DEVSERVER_OPENAI_BASE_URL", None),
    "OPENAI_MODEL": ("DEVSERVER_OPENAI_MODEL", None),
    "OPENAI_API_KEY": ("DEVSERVER_OPENAI_API_KEY", None),
    "OPENAI_TIMEOUT_S": ("DEVSERVER_OPENAI_TIMEOUT_S", 60.0),
    "OPENAI_RETRIES": ("DEVSERVER_OPENAI_RETRIES", 2),
    "OPENAI_TEMPERATURE": ("DEVSERVER_OPENAI_TEMPERATURE", 0.7),
    "COMFYUI_URL": ("DEVSERVER_COMFYUI_URL", None),
    "COMFYUI_TIMEOUT_S": ("DEVSERVER_COMFYUI_TIMEOUT_S", 300.0),
    "COMFYUI_RETRIES": ("DEVSERVER_COMFYUI_RETRIES", 2),
    "CONFIG_DIR": ("DEVSERVER_CONFIG_DIR", None),
    "WORKERS": ("DEVSERVER_WORKERS", 4),
    "QUEUE_SIZE": ("DEVSERVER_QUEUE_SIZE", 32),
    "MAX_INPUT_CHARS": ("DEVSERVER_MAX_INPUT_CHARS", 2000),
    "WAIT_TIMEOUT_S": ("DEVSERVER_WAIT_TIMEOUT_S", 120.0),
    "SHUTDOWN_TIMEOUT_S": ("DEVSERVER_SHUTDOWN_TIMEOUT_S", 30.0),
    "MAX_BODY_BYTES": ("DEVSERVER_MAX_BODY_BYTES", 1 << 20),
    "SAFETY_LEVEL": ("DEVSERVER_SAFETY_LEVEL", "kids"),
    "WORKSHOP": ("DEVSERVER_WORKSHOP", None),
    "RECORDING_NOTICE": ("DEVSERVER_RECORDING_NOTICE", None),
    "JOURNEY_STEP_MS": ("DEVSERVER_JOURNEY_STEP_MS", "900"),
    "EXPORT_LICENCE": ("DEVSERVER_EXPORT_LICENCE", None),
    "EXPORT_ORGANISATION": ("DEVSERVER_EXPORT_ORGANISATION", None),
    "EXPORT_ORGANISATION_URL": ("DEVSERVER_EXPORT_ORGANISATION_URL", None),
    "FEED_POLL_S": ("DEVSERVER_FEED_POLL_S", 0.005),
    "FEED_HEARTBEAT_S": ("DEVSERVER_FEED_HEARTBEAT_S", 15.0),
    "FEED_MAX_SUBSCRIBERS": ("DEVSERVER_FEED_MAX_SUBSCRIBERS", 64),
    "FEED_WRITE_DEADLINE_S": ("DEVSERVER_FEED_WRITE_DEADLINE_S", 10.0),
    "FEED_PROGRESS_S": ("DEVSERVER_FEED_PROGRESS_S", 0.25),
    "EXPORT_THREADS": ("DEVSERVER_EXPORT_THREADS", 2),
    "JOURNAL_INTERVAL_S": ("DEVSERVER_JOURNAL_INTERVAL_S", 0.25),
    "FEED_OTHER_POLL_S": ("DEVSERVER_FEED_OTHER_POLL_S", 0.25),
    # Set by ``serve --workers`` for each worker it starts (0, 1, …); None otherwise.
    "WORKER_INDEX": ("DEVSERVER_WORKER_INDEX", None),
    # OpenTelemetry's own variables (docs/otel.md); their config keys are their names.
    "OTEL_SDK_DISABLED": ("OTEL_SDK_DISABLED", None),
    "OTEL_EXPORTER_OTLP_ENDPOINT": ("OTEL_EXPORTER_OTLP_ENDPOINT", None),
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", None),
    "OTEL_EXPORTER_OTLP_HEADERS": ("OTEL_EXPORTER_OTLP_HEADERS", None),
    "OTEL_EXPORTER_OTLP_TRACES_HEADERS": ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", None),
    "OTEL_SERVICE_NAME": ("OTEL_SERVICE_NAME", None),
    "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": (
        "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT",
        None,
    ),
    "OTEL_QUEUE_SIZE": ("DEVSERVER_OTEL_QUEUE_SIZE", 512),
    "OTEL_EXPORT_TIMEOUT_S": ("DEVSERVER_OTEL_EXPORT_TIMEOUT_S", 5.0),
}


class SettingsError(ValueError):
    """A configuration value that cannot be used; the message names the variable."""


@dataclass(frozen=True, slots=True)
class FeedSettings:
    """The live feed's knobs (``FEED_*`` keys, ``DEVSERVER_FEED_*`` variables)."""

    #: How often the poller looks at live runs' item lists.
    poll_s: float = 0.005
    #: How often a feed of a run another process runs reads its journal file when no
    #: notification said it grew (all the time with SQLite; a safety net with PostgreSQL).
    other_poll_s: float = 0.25
    #: A comment line is sent after this long without an event.
    heartbeat_s: float = 15.0
    #: Streams open at once over all runs; more are refused with 503.
    max_subscribers: int = 64
    #: How long a reader waits for its client to read before it is dropped.
    write_deadline_s: float = 10.0
    #: Least time between two progress frames of one run (coalesced: the latest wins).
    progress_s: float = 0.25


@dataclass(frozen=True, slots=True)
class OtelSettings:
    """The OTLP trace export (docs/otel.md): on when an endpoint is set, unless disabled."""

    #: Where traces are sent (the full ``…/v1/traces`` URL); None: the export is off.
    endpoint: str | None = None
    #: Headers of every export (``Authorization`` for Langfuse); never logged or shown.
    headers: tuple[tuple[str, str], ...] = ()
    service_name: str = "devserver"
    #: Whether the children's texts leave the machine (off unless set to ``true``).
    capture_content: bool = False
    #: Runs waiting to be sent at most; more are dropped and counted.
    queue_size: int = 512
    #: The deadline of one export, retries included; also the most shutdown waits.
    export_timeout_s: float = 5.0
    #: True when OTEL_SDK_DISABLED=true turned an endpoint off.
    disabled: bool = False

    @property
    def enabled(self) -> bool:
        """Whether traces are sent."""
        return self.endpoint is not None

    def export_options(self) -> dict[str, str]:
        """What the ``otlp-json`` export takes, so a file holds the trace the sink sends."""
        return {
            "otel_service_name": self.service_name,
            "otel_capture_content": "true" if self.capture_content else "false",
        }


@dataclass(frozen=True, slots=True)
class Settings:
    """The resolved configuration of one app."""

    data_dir: Path
    #: What the store opens: the SQLite file's path, or a ``postgresql://`` URL.
    database_url: str
    #: The SQLite file (None when the database is a server's).
    database_path: Path | None
    backend: str
    ollama_host: str
    ollama_model: str
    ollama_timeout_s: float
    ollama_retries: int
    #: The OpenAI-compatible server (None: DEVSERVER_OPENAI_BASE_URL unset).
    openai: OpenAIOptions | None
    #: The ComfyUI server (None: DEVSERVER_COMFYUI_URL unset).
    comfyui: ComfyUIOptions | None
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
    feed: FeedSettings
    #: What exports say about the data's licence and who publishes it (``licence``,
    #: ``organisation``, ``organisation_url``; only those that are set). A format uses the
    #: ones it knows (the RO-Crate); docs/exports.md gives the defaults.
    export_options: dict[str, str]
    #: The workshop the page sends as each run's ``session_id`` unless its link names
    #: one (``/?workshop=…``); None: runs carry no workshop.
    workshop: str | None = None
    #: The notice the page shows that runs are recorded for research; None: the page's
    #: own text in its language.
    recording_notice: str | None = None
    #: Milliseconds the page waits between two steps of a journey (0: all at once).
    journey_step_ms: int = 900
    #: How often the in-flight journal writes new items (what another process's feed of
    #: a run waits for at most; ``serve --workers`` makes it 0.025 s unless set).
    journal_interval_s: float = 0.25
    #: This process's place among ``serve --workers`` processes; None when it serves alone.
    worker_index: int | None = None
    #: Each run as an OpenTelemetry trace (off unless an OTLP endpoint is set).
    otel: OtelSettings = OtelSettings()

    @property
    def data(self) -> DataDir:
        """Every path inside the data dir."""
        return DataDir(self.data_dir)


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


#: Longest workshop name (the API's limit on a session id) and recording notice.
MAX_WORKSHOP_CHARS = 128
MAX_NOTICE_CHARS = 500


def _optional_text(config: Mapping[str, Any], key: str, most: int) -> str | None:
    """A text setting: None when unset or blank; too long or unencodable stops the start."""
    value = str(config.get(key) or "").strip()
    if not value:
        return None
    name = ENVIRONMENT[key][0]
    if len(value) > most:
        raise SettingsError(f"{name} must be at most {most} characters, not {len(value)}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise SettingsError(f"{name} must be valid text (it holds a lone surrogate)") from None
    return value


def _step_ms(config: Mapping[str, Any]) -> int:
    """The journey's pace: a whole number of milliseconds from 0 to 10000."""
    value: int = _number(config, "JOURNEY_STEP_MS", int, 0)
    if value > 10_000:
        raise SettingsError(f"DEVSERVER_JOURNEY_STEP_MS must be at most 10000, not {value}")
    return value


#: The least a duration may be where zero would mean "never" or "spin".
_POSITIVE = 1e-6


def _number(config: Mapping[str, Any], key: str, kind: type, minimum: float) -> Any:
    value = config.get(key)
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise SettingsError(f"{ENVIRONMENT[key][0]} must be a number, not {value!r}") from None
    if number < minimum:
        raise SettingsError(f"{ENVIRONMENT[key][0]} must be at least {minimum}, not {value!r}")
    return number


def _database(url: str | None, data: DataDir) -> tuple[str, Path | None]:
    """What the store opens and, for SQLite, the file: from ``DEVSERVER_DATABASE_URL``."""
    if not url:
        return str(data.database), data.database
    prefix = "sqlite:///"
    if url.startswith(prefix) and len(url) > len(prefix):
        path = Path(url[len(prefix) :])
        return str(path), path
    if url.startswith(("postgresql://", "postgres://")):
        return url, None
    raise SettingsError(
        "DEVSERVER_DATABASE_URL: use sqlite:///path/to/file.sqlite3 or "
        "postgresql://user:password@host:port/database"
    )


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


def _export_options(config: Mapping[str, Any]) -> dict[str, str]:
    """The export options that are set, checked now rather than at the first export."""
    options: dict[str, str] = {}
    for key, option in (
        ("EXPORT_LICENCE", "licence"),
        ("EXPORT_ORGANISATION", "organisation"),
        ("EXPORT_ORGANISATION_URL", "organisation_url"),
    ):
        value = config.get(key)
        if value is None:
            continue
        text = str(value).strip()
        if not text:
            raise SettingsError(f"{ENVIRONMENT[key][0]} is set but empty")
        if option == "organisation_url" and not text.startswith(("https://", "http://")):
            raise SettingsError(f"{ENVIRONMENT[key][0]} must be an http(s) URL, not {text!r}")
        options[option] = text
    return options


def database_of(config: Mapping[str, Any]) -> tuple[str, Path | None]:
    """What the store of an app's config opens, and its SQLite file (None for a server's).

    Touches nothing (``resolve`` creates the data dir and secrets; this does not).

    Raises:
        SettingsError: ``DEVSERVER_DATABASE_URL`` names no database this version can use.
    """
    return _database(config.get("DATABASE_URL"), data_dir_of(config))


def _flag(config: Mapping[str, Any], key: str) -> bool:
    """An OpenTelemetry boolean: ``true`` (any case) is true, anything else false (the spec)."""
    return str(config.get(key) or "").strip().lower() == "true"


def _otlp_headers(config: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """``OTEL_EXPORTER_OTLP_HEADERS`` then the traces' own: ``key=value`` pairs joined by
    commas, values percent-encoded (the OpenTelemetry format); the traces' win."""
    headers: dict[str, str] = {}
    for key in ("OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS"):
        text = str(config.get(key) or "").strip()
        for pair in filter(None, (part.strip() for part in text.split(","))):
            name, sep, value = pair.partition("=")
            name = urllib.parse.unquote(name).strip()
            # The value is a secret (Basic auth): the message names the variable only.
            if not sep or not name or not all("!" <= c <= "~" for c in name):
                raise SettingsError(f"{key} must be key=value pairs separated by commas")
            value = urllib.parse.unquote(value).strip()
            if any(c in value for c in "\r\n\0"):
                raise SettingsError(f"{key} holds a value with a line break")
            headers[name.lower()] = value
    return tuple(headers.items())


def _otlp_endpoint(config: Mapping[str, Any]) -> str | None:
    """The traces endpoint as the OpenTelemetry specification resolves it: the traces
    variable as it is, else the general one with ``/v1/traces`` appended."""
    for key, suffix in (
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", ""),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "/v1/traces"),
    ):
        text = str(config.get(key) or "").strip()
        if not text:
            continue
        parts = urllib.parse.urlsplit(text)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SettingsError(f"{key} must be an http(s) URL, not {text!r}")
        return text.rstrip("/") + suffix if suffix else text
    return None


def _otel(config: Mapping[str, Any]) -> OtelSettings:
    endpoint = _otlp_endpoint(config)
    disabled = _flag(config, "OTEL_SDK_DISABLED")
    service = str(config.get("OTEL_SERVICE_NAME") or "").strip() or "devserver"
    return OtelSettings(
        endpoint=None if disabled else endpoint,
        headers=_otlp_headers(config),
        service_name=service,
        capture_content=_flag(config, "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"),
        queue_size=_number(config, "OTEL_QUEUE_SIZE", int, 1),
        export_timeout_s=_number(config, "OTEL_EXPORT_TIMEOUT_S", float, 0.001),
        disabled=disabled and endpoint is not None,
    )


def _server_url(config: Mapping[str, Any], key: str) -> str | None:
    """An http(s) base URL setting: None when unset or blank."""
    value = str(config.get(key) or "").strip()
    if not value:
        return None
    if not value.startswith(("http://", "https://")):
        raise SettingsError(f"{ENVIRONMENT[key][0]} must be an http(s) URL, not {value!r}")
    return value


def _openai(config: Mapping[str, Any]) -> OpenAIOptions | None:
    """The OpenAI-compatible server's options; None when no base URL is set."""
    base_url = _server_url(config, "OPENAI_BASE_URL")
    model = str(config.get("OPENAI_MODEL") or "").strip()
    if base_url is None:
        return None
    if not model:
        raise SettingsError("DEVSERVER_OPENAI_BASE_URL is set, DEVSERVER_OPENAI_MODEL is not")
    key = str(config.get("OPENAI_API_KEY") or "").strip() or None
    if key is not None and not all("!" <= char <= "~" for char in key):
        # Checked without echoing it: the key must never reach a message or a log.
        raise SettingsError("DEVSERVER_OPENAI_API_KEY must be printable ASCII without spaces")
    temperature = _number(config, "OPENAI_TEMPERATURE", float, 0.0)
    return OpenAIOptions(
        base_url=base_url,
        model=model,
        api_key=key,
        timeout_s=_number(config, "OPENAI_TIMEOUT_S", float, 0.001),
        retries=_number(config, "OPENAI_RETRIES", int, 0),
        temperature=temperature,
    )


def _comfyui(config: Mapping[str, Any]) -> ComfyUIOptions | None:
    """The ComfyUI server's options; None when no URL is set."""
    url = _server_url(config, "COMFYUI_URL")
    if url is None:
        return None
    return ComfyUIOptions(
        url=url,
        timeout_s=_number(config, "COMFYUI_TIMEOUT_S", float, 0.001),
        retries=_number(config, "COMFYUI_RETRIES", int, 0),
    )


def data_dir_of(config: Mapping[str, Any]) -> DataDir:
    """The data dir an app's config names (``DATA_DIR``, else the default), made absolute."""
    return DataDir(Path(str(config.get("DATA_DIR") or DEFAULT_DATA_DIR)).resolve())


def resolve(config: Mapping[str, Any]) -> Settings:
    """Settings from an app's config; creates the data dir and missing secrets.

    Raises:
        SettingsError: a value that cannot be used (named by its variable).
    """
    data = data_dir_of(config)
    data_dir = data.root
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    backend = str(config.get("BACKEND") or "local")
    if backend not in BACKEND_NAMES:
        raise SettingsError(
            f"DEVSERVER_BACKEND must be one of {', '.join(BACKEND_NAMES)}, not {backend!r}"
        )
    openai = _openai(config)
    if backend == "openai" and openai is None:
        raise SettingsError(
            "DEVSERVER_BACKEND=openai needs DEVSERVER_OPENAI_BASE_URL and DEVSERVER_OPENAI_MODEL"
        )
    token = config.get("RESEARCH_TOKEN")
    token_file: Path | None = None
    if not token:
        token_file = data.research_token_file
        token = read_or_create_secret(token_file)
    _check_research_token(str(token), token_file)
    key = config.get("PSEUDONYM_KEY") or read_or_create_secret(data.pseudonym_key_file)
    if len(str(key).encode()) < 16:
        raise SettingsError("DEVSERVER_PSEUDONYM_KEY must be at least 16 bytes long")
    config_dir = config.get("CONFIG_DIR")
    database_url, database_path = _database(config.get("DATABASE_URL"), data)
    otel = _otel(config)
    return Settings(
        data_dir=data_dir,
        database_url=database_url,
        database_path=database_path,
        backend=backend,
        ollama_host=str(config.get("OLLAMA_HOST")),
        ollama_model=str(config.get("OLLAMA_MODEL")),
        ollama_timeout_s=_number(config, "OLLAMA_TIMEOUT_S", float, 0.001),
        ollama_retries=_number(config, "OLLAMA_RETRIES", int, 0),
        openai=openai,
        comfyui=_comfyui(config),
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
        export_options={**_export_options(config), **otel.export_options()},
        workshop=_optional_text(config, "WORKSHOP", MAX_WORKSHOP_CHARS),
        recording_notice=_optional_text(config, "RECORDING_NOTICE", MAX_NOTICE_CHARS),
        journey_step_ms=_step_ms(config),
        journal_interval_s=_number(config, "JOURNAL_INTERVAL_S", float, 0.001),
        worker_index=(
            _number(config, "WORKER_INDEX", int, 0)
            if config.get("WORKER_INDEX") not in (None, "")
            else None
        ),
        otel=otel,
        feed=FeedSettings(
            other_poll_s=_number(config, "FEED_OTHER_POLL_S", float, _POSITIVE),
            poll_s=_number(config, "FEED_POLL_S", float, _POSITIVE),
            heartbeat_s=_number(config, "FEED_HEARTBEAT_S", float, _POSITIVE),
            max_subscribers=_number(config, "FEED_MAX_SUBSCRIBERS", int, 1),
            write_deadline_s=_number(config, "FEED_WRITE_DEADLINE_S", float, _POSITIVE),
            progress_s=_number(config, "FEED_PROGRESS_S", float, 0.0),
        ),
    )
