"""The format registry: names to modules, imported lazily on first use (tablib-style).

Each format lives in one module that defines ``name``, ``media_type``,
``extension``, ``description``, ``requires``, ``extra`` and ``export(record,
stream, *, media_dir=None)`` (optionally ``export_batch``). The registry lists
the same descriptive fields so that ``formats()`` answers without importing
any format library; a test checks the two agree.
"""

from __future__ import annotations

import importlib
import importlib.util
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import BinaryIO, Protocol, cast

from execution_history import ExecutionRecord

from ._errors import (
    BatchNotSupportedError,
    ExportError,
    ExportFailedError,
    MissingDependencyError,
    UnknownFormatError,
)


class Pseudonymising(Protocol):
    """Anything that turns raw ids into pseudonyms (``execution_history.Pseudonymiser``)."""

    def user(self, user_id: str) -> str:
        """The pseudonym of a user id."""
        ...

    def session(self, session_id: str) -> str:
        """The pseudonym of a session id."""
        ...

    def device(self, device_id: str) -> str:
        """The pseudonym of a device id."""
        ...


class FormatModule(Protocol):
    """What a format module provides (``export_batch`` is optional)."""

    name: str
    media_type: str
    extension: str
    description: str
    requires: tuple[str, ...]
    extra: str

    def export(
        self,
        record: ExecutionRecord,
        stream: BinaryIO,
        *,
        media_dir: Path | None = None,
        **options: str,
    ) -> None:
        """Write ``record`` to ``stream``; ``options`` only those the module names."""
        ...


@dataclass(frozen=True, slots=True)
class FormatInfo:
    """A registered export format.

    Attributes:
        name: the name ``export()`` takes, e.g. ``"pdf"``.
        media_type: the MIME type of the bytes written.
        extension: the file extension without a dot.
        description: one line for people choosing a format.
        available: whether its module and libraries are installed.
        requires: import names of the optional libraries it needs.
        extra: the pyproject extra that installs them (empty when none are needed).
        batch: whether it can write many runs into one file (``export_batch``).
        batch_media: where a batch ZIP puts the runs' media files: ``"beside"`` (in
            ``runs/<run_id>/media/``), ``"inside"`` (the format's own file holds them, so
            they are not added again) or ``"none"`` (the format has no use for them).
        module: the module that implements it.
    """

    name: str
    media_type: str
    extension: str
    description: str
    available: bool
    requires: tuple[str, ...] = ()
    extra: str = ""
    batch: bool = False
    batch_media: str = "beside"
    module: str = ""


# Adding a format: write exports/_<name>.py and add one line here (docs/exports.md).
_REGISTRY: dict[str, FormatInfo] = {
    info.name: info
    for info in (
        FormatInfo(
            "json",
            "application/json",
            "json",
            "The canonical record as JSON, with its JSON Schema",
            available=True,
            module="exports._json",
        ),
        FormatInfo(
            "xml",
            "application/xml",
            "xml",
            "XML in the urn:execution-history:record:1 namespace, valid against the shipped XSD",
            available=True,
            requires=("lxml",),
            extra="xml",
            module="exports._xml",
        ),
        FormatInfo(
            "pdf",
            "application/pdf",
            "pdf",
            "An A4 report of the whole journey, with images and embedded fonts",
            available=True,
            requires=("reportlab", "PIL"),
            extra="pdf",
            module="exports._pdf",
        ),
        FormatInfo(
            "picturebook",
            "application/pdf",
            "picturebook.pdf",
            "A picture book of the journey for the child: one step per page, big images",
            available=True,
            requires=("reportlab", "PIL"),
            extra="pdf",
            module="exports._picturebook",
        ),
        FormatInfo(
            "docx",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            "docx",
            "An editable Word document of the whole journey, for annotating",
            available=True,
            requires=("docx", "PIL", "lxml", "fontTools"),
            extra="docx",
            module="exports._docx",
        ),
        FormatInfo(
            "qdpx",
            "application/zip",
            "qdpx",
            "REFI-QDA project for ATLAS.ti, MAXQDA, NVivo, QualCoder (cases, transcripts, media)",
            available=True,
            requires=("lxml", "PIL"),
            extra="research",
            batch=True,
            batch_media="inside",
            module="exports._qdpx",
        ),
        FormatInfo(
            "qdc",
            "application/xml",
            "qdc",
            "REFI-QDA codebook: the pipeline stages as a non-codable code group",
            available=True,
            requires=("lxml",),
            extra="research",
            batch=True,
            batch_media="none",
            module="exports._qdc",
        ),
        FormatInfo(
            "csv",
            "application/zip",
            "csv.zip",
            "Tidy tables (items, runs, data dictionary) as UTF-8 CSV files in a zip",
            available=True,
            batch=True,
            module="exports._csv",
        ),
        FormatInfo(
            "xlsx",
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            "xlsx",
            "Tidy tables (items, runs, data dictionary) as sheets of an Excel workbook",
            available=True,
            requires=("openpyxl",),
            extra="research",
            batch=True,
            module="exports._xlsx",
        ),
        FormatInfo(
            "rocrate",
            "application/zip",
            "crate.zip",
            "RO-Crate 1.1 archive package (records, media, W3C PROV) for research repositories",
            available=True,
            requires=("prov",),
            extra="research",
            batch=True,
            batch_media="inside",
            module="exports._rocrate",
        ),
        FormatInfo(
            "otlp-json",
            "application/json",
            "otlp.json",
            "The run as one OpenTelemetry trace in OTLP/JSON (Jaeger, Phoenix, Langfuse import)",
            available=True,
            requires=("opentelemetry.sdk", "opentelemetry.proto"),
            extra="otel",
            batch=True,
            batch_media="none",
            module="exports._otlp_json",
        ),
    )
}

_loaded: dict[str, FormatModule] = {}
_load_lock = threading.Lock()


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _missing_requirement(info: FormatInfo) -> str | None:
    for package in info.requires:
        if not _installed(package):
            return package
    return None


def _with_availability(info: FormatInfo) -> FormatInfo:
    available = _installed(info.module) and _missing_requirement(info) is None
    return replace(info, available=available)


def _normalise_name(name: str) -> str:
    return name.strip().lower() if isinstance(name, str) else name


def formats() -> list[FormatInfo]:
    """Every registered format, in registration order, with whether it is available.

    Imports no format library: availability is looked up, not tried.

    Returns:
        One ``FormatInfo`` per format.
    """
    return [_with_availability(info) for info in _REGISTRY.values()]


def get_format(name: str) -> FormatInfo:
    """The registered format called ``name`` (case-insensitive).

    Args:
        name: a format name such as ``"xml"``.

    Returns:
        Its ``FormatInfo``, with ``available`` looked up now.

    Raises:
        UnknownFormatError: when no format has that name; it lists the known ones.
    """
    info = _REGISTRY.get(_normalise_name(name))
    if info is None:
        raise UnknownFormatError(str(name), _REGISTRY)
    return _with_availability(info)


def load_format(name: str) -> FormatModule:
    """Import the module of format ``name`` once per process and return it.

    Args:
        name: a format name.

    Returns:
        The format module.

    Raises:
        UnknownFormatError: when no format has that name.
        MissingDependencyError: when a library it needs is not installed.
        ExportFailedError: when its module is missing or fails to import.
    """
    key = _normalise_name(name)
    module = _loaded.get(key)
    if module is not None:
        return module
    info = _REGISTRY.get(key)
    if info is None:
        raise UnknownFormatError(str(name), _REGISTRY)
    with _load_lock:
        module = _loaded.get(key)
        if module is None:
            module = _import(info)
            _loaded[key] = module
    return module


def _import(info: FormatInfo) -> FormatModule:
    missing = _missing_requirement(info)
    if missing is not None:
        raise MissingDependencyError(info.name, missing, info.extra)
    if not _installed(info.module):
        raise ExportFailedError(info.name, f"its module {info.module} is not installed")
    try:
        module: ModuleType = importlib.import_module(info.module)
    except ImportError as exc:
        package = (exc.name or "").split(".")[0]
        if package and package != "exports":
            raise MissingDependencyError(info.name, package, info.extra or "all") from exc
        raise ExportFailedError(info.name, f"its module {info.module} cannot be imported") from exc
    except Exception as exc:
        raise ExportFailedError(info.name, f"its module {info.module} cannot be imported") from exc
    return cast(FormatModule, module)


def _taken(module: FormatModule, options: Mapping[str, str] | None) -> dict[str, str]:
    """The options a format module names in its ``options`` tuple, as keyword arguments."""
    if not options:
        return {}
    accepted: tuple[str, ...] = getattr(module, "options", ())
    return {key: value for key, value in options.items() if key in accepted}


def _describe(exc: BaseException) -> str:
    # The type and a bounded message: enough to act on, never a whole prompt.
    text = str(exc)
    if len(text) > 200:
        text = text[:200] + "…"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def export(
    record: ExecutionRecord,
    name: str,
    stream: BinaryIO,
    *,
    media_dir: Path | None = None,
    pseudonymiser: Pseudonymising | None = None,
    options: Mapping[str, str] | None = None,
) -> None:
    """Write one run in format ``name`` to a binary stream.

    The record is pseudonymised first (DESIGN.md §5): raw user and session ids
    never reach a format module; with ``pseudonymiser=None`` they are dropped.
    When it fails, the stream may hold part of the output; write to a buffer or
    a temporary file when that matters.

    Args:
        record: a finished record.
        name: a format name from ``formats()``.
        stream: a writable binary stream.
        media_dir: the run's media folder, for formats that embed images.
        pseudonymiser: turns raw ids into keyed pseudonyms; None drops them.
        options: settings of the deployment, such as ``{"licence": "CC-BY-4.0"}``
            for ``rocrate``; each format takes those it names in its module's
            ``options`` and ignores the rest, so one mapping serves every format.

    Raises:
        UnknownFormatError: when no format has that name.
        MissingDependencyError: when a library the format needs is not installed.
        ExportFailedError: when the format's code fails (or rejects an option's
            value); the cause is chained.
    """
    module = load_format(name)
    fmt = module.name
    try:
        safe = record.pseudonymised(pseudonymiser)
        module.export(safe, stream, media_dir=media_dir, **_taken(module, options))
    except ExportError:
        raise
    except Exception as exc:
        raise ExportFailedError(fmt, _describe(exc)) from exc


def export_batch(
    records: Iterable[tuple[ExecutionRecord, Path | None]],
    name: str,
    stream: BinaryIO,
    *,
    pseudonymiser: Pseudonymising | None = None,
    options: Mapping[str, str] | None = None,
) -> None:
    """Write many runs into one file, for formats that hold several (``FormatInfo.batch``).

    Args:
        records: pairs of a finished record and its media folder (or None).
        name: a format name whose ``batch`` is True.
        stream: a writable binary stream.
        pseudonymiser: as for ``export``; applied to every record.
        options: as for ``export``.

    Raises:
        UnknownFormatError: when no format has that name.
        BatchNotSupportedError: when the format writes one run per file.
        MissingDependencyError: when a library the format needs is not installed.
        ExportFailedError: when the format's code fails; the cause is chained.
    """
    module = load_format(name)
    batch = getattr(module, "export_batch", None)
    if batch is None:
        raise BatchNotSupportedError(module.name)

    def safe_records() -> Iterator[tuple[ExecutionRecord, Path | None]]:
        for record, media_dir in records:
            yield record.pseudonymised(pseudonymiser), media_dir

    try:
        batch(safe_records(), stream, **_taken(module, options))
    except ExportError:
        raise
    except Exception as exc:
        raise ExportFailedError(module.name, _describe(exc)) from exc
