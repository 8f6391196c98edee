"""REFI-QDA project (qdpx): runs as a project that ATLAS.ti, MAXQDA, NVivo and QualCoder import.

A ``.qdpx`` file is a zip holding ``project.qde`` (QDA-XML 1.0, namespace
``urn:QDA-XML:project:1.0``, UTF-8 without BOM) and the internal sources in
``sources/<guid>.<ext>``. The mapping:

- each pseudonymous participant is a ``Case`` with variables (safety levels,
  session pseudonyms, configs, number of runs) and a reference to each source
  of their runs; a run without a pseudonym belongs to no case;
- each run is a ``TextSource`` transcript (``sources/<guid>.txt``): input,
  translation, every interception iteration, safety verdicts and outputs in
  journey order, each passage marked by an uncoded ``PlainTextSelection``
  whose description carries model, backend, duration and parameters; the run's
  header travels as variables of the source (status, config, safety level,
  times, versions);
- each image is a ``PictureSource`` (PNG or JPEG, cleaned by the image
  normaliser; a drawn placeholder when the file is missing), each audio or
  music file an ``AudioSource``, each video a ``VideoSource``;
- a ``Note`` per run lists every item with its model, parameters and timings;
  its text is a file (``plainTextPath``), because importers drop inline note
  text, and no ``NoteRef`` points to it, because an importer that meets a
  ``NoteRef`` on a source drops the note (it arrives as a journal instead);
- ``Links`` follow the chain from each text to the next (input → translation →
  iteration 1 … n → final → each output's safety verdict → its media);
- a ``Set`` per config groups the sources and notes of its runs (a set per run
  became one attribute column per run in an importer); run facts are variables;
- media source names end in the file's extension and hold no character a
  Windows file name cannot (importers save the file under that name);
- the codebook holds one non-codable group "Pipeline stages" (stages 0 to 5,
  all non-codable), so researchers start their own codes from a clean slate.

GUIDs are UUIDv5 derived from the run id and the object's role, so exporting
a run twice gives the same GUIDs, and a participant's case has the same GUID
in every export. Line breaks inside texts are normalised to LF in the
transcript, and selection offsets count Unicode code points (0-based, end
exclusive) in that transcript as written.

``qdc`` (``exports/_qdc.py``) is the codebook alone (``Codebook.xsd``).
"""

from __future__ import annotations

import logging
import mimetypes
import os
import re
import shutil
import tempfile
import time
import uuid
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, BinaryIO
from xml.sax.saxutils import quoteattr

from execution_history import (
    STAGE_NAMES,
    ExecutionItem,
    ExecutionRecord,
    ItemType,
    MediaType,
    open_media,
)

from ._images import normalise_image, resolve_media
from ._journey import Iteration, Output, build_journey, safety_verdict, type_name
from ._tables import json_text
from ._text import sanitise
from ._timefmt import duration_human, utc_iso

if TYPE_CHECKING:
    from lxml.etree import _Element

logger = logging.getLogger("exports")

name = "qdpx"
media_type = "application/zip"
extension = "qdpx"
description = "REFI-QDA project for ATLAS.ti, MAXQDA, NVivo, QualCoder (cases, transcripts, media)"
requires: tuple[str, ...] = ("lxml", "PIL")
extra = "research"

PROJECT_NS = "urn:QDA-XML:project:1.0"
CODEBOOK_NS = "urn:QDA-XML:codebook:1.0"
#: The root of every GUID this exporter derives (UUIDv5); never change it, or
#: re-exported projects stop matching earlier ones.
GUID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:execution-history:refi-qda:1")
#: Longest side of a picture source; generated images are far smaller, so this
#: only bounds pathological files.
PICTURE_MAX_PX = 4096
#: Audio and video containers QDA tools play, by file extension.
_AUDIO_EXTENSIONS = frozenset({"mp3", "wav", "m4a", "aac", "ogg", "oga", "flac", "wma", "opus"})
_VIDEO_EXTENSIONS = frozenset({"mp4", "m4v", "mov", "avi", "wmv", "webm", "mkv", "mpg", "mpeg"})
_SAFE_EXTENSION = re.compile(r"[a-z0-9]{1,5}")
_NEWLINES = re.compile(r"\r\n?")
#: Characters a Windows file name cannot hold (and controls): importers that save
#: a source under its name fail or rename on them.
_UNSAFE_IN_FILE_NAME = re.compile(r'[<>:"/\\|?*\x00-\x1f\x7f]')
#: Longest stem of a source name; the extension comes on top.
_NAME_STEM_MAX = 120
_STAGE_COLOURS = ("#9E9E9E", "#1E88E5", "#8E24AA", "#FB8C00", "#43A047", "#616161")


def file_name(stem: str, ext: str | None = None) -> str:
    """A source name that is also a safe file name on Windows, macOS and Linux.

    Characters Windows forbids (``<>:"/\\|?*``) and control characters become
    ``-``; runs of spaces collapse; trailing dots and spaces are removed; the stem
    is cut at 120 characters; the extension, when given, is appended.

    Args:
        stem: the readable name.
        ext: the file extension without a dot (``png``), or None.

    Returns:
        The name, never empty.
    """
    cleaned = _UNSAFE_IN_FILE_NAME.sub("-", sanitise(stem))
    cleaned = " ".join(cleaned.split())[:_NAME_STEM_MAX].rstrip(". ") or "source"
    return f"{cleaned}.{ext}" if ext else cleaned


def guid(*parts: str) -> str:
    """A stable GUID for an object of the project, derived from its identity.

    Args:
        parts: what identifies the object, e.g. ``("run", run_id, "transcript")``.

    Returns:
        A lowercase UUIDv5 string; the same parts always give the same GUID.
    """
    return str(uuid.uuid5(GUID_NAMESPACE, "\x1f".join(parts)))


EXPORTER_USER_GUID = guid("user", "execution-history")


# --------------------------------------------------------------------- codebook


def stage_codes() -> list[tuple[str, str, str, str]]:
    """The pipeline stages as codes: (guid, name, colour, description), stage 0 to 5.

    Returns:
        One tuple per stage, in stage order.
    """
    return [
        (
            guid("code", "stage", str(stage)),
            f"Stage {stage}: {stage_name}",
            _STAGE_COLOURS[stage],
            _STAGE_DESCRIPTIONS[stage],
        )
        for stage, stage_name in sorted(STAGE_NAMES.items())
    ]


STAGE_GROUP_GUID = guid("code", "stages")
_STAGE_DESCRIPTIONS = {
    0: "Pipeline start: the run is created for a config and safety level.",
    1: "The child's prompt is translated, then checked against a §86a term filter;"
    " a block stops the run.",
    2: "Interception: the prompt is transformed by the config (Dada: one pass; Stille Post:"
    " chained translations, one iteration each).",
    3: "Pre-output safety: an age-level check for each output config; a block skips that"
    " output only.",
    4: "Media generation: image, audio, music, video or 3D output for each output config.",
    5: "Pipeline end.",
}


def codebook_codes(namespace: str | None = None) -> _Element:
    """The ``Codes`` element: one non-codable group holding the pipeline stages.

    Args:
        namespace: the namespace of the elements (the codebook's for a ``.qdc``), or
            None for unqualified elements placed inside a project's default namespace.

    Returns:
        The ``Codes`` element; every code has ``isCodable="false"``.
    """
    from lxml import etree

    def tag(local: str) -> str:
        return f"{{{namespace}}}{local}" if namespace else local

    codes = etree.Element(tag("Codes"))
    group = etree.SubElement(
        codes,
        tag("Code"),
        {"guid": STAGE_GROUP_GUID, "name": "Pipeline stages", "isCodable": "false"},
    )
    etree.SubElement(group, tag("Description")).text = (
        "The stages of the devserver pipeline, for orientation only (not codable): the"
        " transcripts follow this order. Create your own codes beside this group."
    )
    for code_guid, code_name, colour, text in stage_codes():
        code = etree.SubElement(
            group,
            tag("Code"),
            {"guid": code_guid, "name": code_name, "isCodable": "false", "color": colour},
        )
        etree.SubElement(code, tag("Description")).text = text
    return codes


# -------------------------------------------------------------------- variables

#: (key, name, type, description) of every variable; GUIDs derive from the key.
_VARIABLES: tuple[tuple[str, str, str, str], ...] = (
    ("case_safety_levels", "Safety level", "Text", "The participant's safety levels (; between)."),
    ("case_sessions", "Session pseudonym", "Text", "The participant's session pseudonyms."),
    ("case_configs", "Config", "Text", "Pipeline configs the participant ran."),
    ("case_runs", "Runs", "Integer", "How many runs of the participant the project holds."),
    ("run_id", "Run id", "Text", "The run's identifier."),
    ("run_participant", "Run participant", "Text", "The participant's pseudonym."),
    ("run_session", "Run session", "Text", "The session's pseudonym."),
    ("run_config", "Run config", "Text", "The pipeline config of the run."),
    ("run_safety_level", "Run safety level", "Text", "The run's age level."),
    ("run_status", "Run status", "Text", "success, partial, blocked, error, incomplete."),
    ("run_started", "Run started (UTC)", "DateTime", "When the run started."),
    ("run_ended", "Run ended (UTC)", "DateTime", "When the run ended."),
    ("run_duration_ms", "Run duration (ms)", "Float", "How long the run took in milliseconds."),
    ("run_iterations", "Interception iterations", "Integer", "Stage 2 iterations."),
    ("run_outputs", "Outputs", "Integer", "Output configs (stage 3/4 loops)."),
    ("run_blocked_outputs", "Blocked outputs", "Integer", "Outputs blocked in stage 3."),
    ("run_models", "Models", "Text", "Models and versions used (; between)."),
    ("run_software", "Software version", "Text", "Version of the pipeline software."),
    ("run_taxonomy", "Taxonomy version", "Text", "Version of the item vocabulary."),
    ("output_number", "Output number", "Integer", "The output config (loop iteration)."),
)
_VARIABLE_GUIDS = {key: guid("variable", key) for key, _n, _t, _d in _VARIABLES}
_VARIABLE_TYPES = {key: kind for key, _n, kind, _d in _VARIABLES}


def _decimal(value: float | int) -> str | None:
    # FloatValue is xsd:decimal: plain digits, no exponent, no NaN or infinity.
    try:
        number = Decimal(repr(value))
    except (InvalidOperation, ValueError):
        return None
    if not number.is_finite():
        return None
    return format(number, "f")


def _variable_value(parent: _Element, key: str, value: Any) -> None:
    """Append a VariableValue for ``key`` unless the value is unknown."""
    from lxml import etree

    if value is None or value == "":
        return
    kind = _VARIABLE_TYPES[key]
    if kind == "Float":
        text = _decimal(value)
    elif kind == "Integer":
        text = str(int(value))
    elif kind == "DateTime":
        text = utc_iso(value)
    elif kind == "Boolean":
        text = "true" if value else "false"
    else:
        text = _clean(str(value))
    if text is None:
        return
    element = etree.SubElement(parent, "VariableValue")
    etree.SubElement(element, "VariableRef", {"targetGUID": _VARIABLE_GUIDS[key]})
    etree.SubElement(element, f"{kind}Value").text = text


# ------------------------------------------------------------------------- text


def _clean(text: str) -> str:
    """Text safe for XML and for offsets: illegal characters → U+FFFD, CRLF/CR → LF."""
    return sanitise(_NEWLINES.sub("\n", text))


def _labels(item: ExecutionItem) -> str:
    """A short readable label of what an item is."""
    kind = type_name(item.item_type)
    meta = item.metadata
    langs = ""
    if isinstance(meta.get("from_lang"), str) or isinstance(meta.get("to_lang"), str):
        langs = f" ({meta.get('from_lang') or '?'} → {meta.get('to_lang') or '?'})"
    labels = {
        ItemType.USER_INPUT_TEXT: "Input (the child's prompt)",
        ItemType.USER_INPUT_IMAGE: "Input image",
        ItemType.TRANSLATION_RESULT: "Translation" + langs,
        ItemType.STAGE1_SAFETY_CHECK: "Safety check (§86a filter)",
        ItemType.STAGE1_BLOCKED: "Blocked by the §86a filter",
        ItemType.INTERCEPTION_ITERATION: f"Iteration {item.stage_iteration}" + langs,
        ItemType.INTERCEPTION_FINAL: "Result of the interception",
        ItemType.STAGE3_SAFETY_CHECK: "Age-level check",
        ItemType.STAGE3_BLOCKED: "Output blocked by the age-level check",
        ItemType.OUTPUT_FAILED: "Output failed",
        ItemType.PIPELINE_START: "Pipeline start",
        ItemType.PIPELINE_COMPLETE: "Pipeline complete",
        ItemType.PIPELINE_ERROR: "Pipeline error",
    }
    if kind in labels:
        return labels[ItemType(kind)]
    if kind.startswith("output_"):
        return "Output " + kind.removeprefix("output_")
    return kind.replace("_", " ").capitalize() + langs


def _details(item: ExecutionItem) -> str:
    """Model, backend, duration, time and parameters of an item, on one line each."""
    lines = [f"Item {item.sequence}: {type_name(item.item_type)} (stage {item.stage})"]
    if item.stage_iteration is not None:
        lines.append(f"Stage iteration: {item.stage_iteration}")
    if item.loop_iteration is not None:
        lines.append(f"Output (loop iteration): {item.loop_iteration}")
    if item.config:
        lines.append(f"Config: {item.config}")
    if item.model:
        lines.append(f"Model: {item.model}")
    if item.backend:
        lines.append(f"Backend: {item.backend}")
    if item.duration_ms is not None:
        lines.append(f"Duration: {_duration(item.duration_ms)}")
    lines.append(f"Recorded: {utc_iso(item.timestamp)}")
    if item.content_length is not None:
        lines.append(f"Text truncated by the tracker from {item.content_length} characters")
    if item.media is not None:
        media = item.media
        lines.append(f"Media: {media.path} ({media.mime_type or 'unknown type'})")
        if media.sha256:
            lines.append(f"SHA-256: {media.sha256}")
    if item.metadata:
        lines.append("Parameters: " + json_text(item.metadata))
    return _clean("\n".join(lines))


def _duration(ms: float) -> str:
    """A duration once: readable, with the exact milliseconds only when they differ."""
    readable = duration_human(ms)
    exact = f"{ms} ms"
    if not readable or readable == exact:
        return exact
    return f"{readable} ({exact})"


def _verdict_text(verdict: str | None, body: str | None) -> str | None:
    """A check's passage: the verdict, then the recorded text unless it says the same."""
    if verdict is None or body is None:
        return verdict if body is None else body
    if body.casefold() == verdict or body.casefold().startswith(verdict + ":"):
        return body
    return f"{verdict}: {body}"


def _verdict(item: ExecutionItem) -> str | None:
    if item.item_type in (ItemType.STAGE1_SAFETY_CHECK, ItemType.STAGE3_SAFETY_CHECK):
        return safety_verdict(item)  # the one wording of every format
    return None


# -------------------------------------------------------------------------- run


@dataclass
class _Transcript:
    """The transcript text being built, with the code-point offset of its end."""

    parts: list[str] = field(default_factory=list)
    length: int = 0

    def add(self, text: str) -> tuple[int, int]:
        start = self.length
        self.parts.append(text)
        self.length += len(text)
        return start, self.length

    def text(self) -> str:
        return "".join(self.parts)


@dataclass
class _Case:
    """What a participant's case collects over the runs of a batch."""

    safety_levels: dict[str, None] = field(default_factory=dict)
    sessions: dict[str, None] = field(default_factory=dict)
    configs: dict[str, None] = field(default_factory=dict)
    runs: int = 0
    sources: list[str] = field(default_factory=list)


@dataclass
class _Sections:
    """Temporary files collecting the serialised children of Sources, Notes, Links, Sets."""

    sources: IO[bytes]
    notes: IO[bytes]
    links: IO[bytes]
    sets: IO[bytes]

    def all(self) -> tuple[tuple[str, IO[bytes]], ...]:
        return (
            ("Sources", self.sources),
            ("Notes", self.notes),
            ("Links", self.links),
            ("Sets", self.sets),
        )


def _info(filename: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(filename, time.gmtime()[:6])
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    return info


def _stored(filename: str) -> zipfile.ZipInfo:
    # Images and audio are compressed already; deflating them again costs time only.
    info = _info(filename)
    info.compress_type = zipfile.ZIP_STORED
    return info


def _serialise(element: _Element) -> bytes:
    from lxml import etree

    return bytes(etree.tostring(element, encoding="utf-8", xml_declaration=False))


def _media_kind(item: ExecutionItem) -> str | None:
    """``picture``, ``audio`` or ``video`` for an item whose media a QDA tool can show."""
    if item.media is None:
        return None
    kind = type_name(item.media_type)
    mime = (item.media.mime_type or "").lower()
    if kind == MediaType.IMAGE or (not kind and mime.startswith("image/")):
        return "picture"
    if kind in (MediaType.AUDIO, MediaType.MUSIC) or (not kind and mime.startswith("audio/")):
        return "audio"
    if kind == MediaType.VIDEO or (not kind and mime.startswith("video/")):
        return "video"
    return None


def _media_extension(item: ExecutionItem, kind: str) -> str | None:
    """The file extension for an audio or video source, or None when no tool would play it."""
    assert item.media is not None
    allowed = _AUDIO_EXTENSIONS if kind == "audio" else _VIDEO_EXTENSIONS
    suffix = Path(item.media.path).suffix.lower().lstrip(".")
    if suffix in allowed:
        return suffix
    guessed = mimetypes.guess_extension(item.media.mime_type or "") or ""
    guessed = guessed.lstrip(".").lower()
    if guessed in allowed and _SAFE_EXTENSION.fullmatch(guessed):
        return guessed
    return None


class _ProjectWriter:
    """Writes runs into one qdpx zip: media and transcripts at once, project.qde at the end."""

    def __init__(self, archive: zipfile.ZipFile, sections: _Sections) -> None:
        self.archive = archive
        self.sections = sections
        self.cases: dict[str, _Case] = {}
        # config name → (source GUIDs, note GUIDs) of its runs, for the sets
        self.configs: dict[str, tuple[list[str], list[str]]] = {}
        self.seen: set[str] = set()
        self.runs = 0
        self.first_run_id: str | None = None

    # ---------------------------------------------------------------- one run

    def add_run(self, record: ExecutionRecord, media_dir: Path | None) -> None:
        """Add one run: its transcript, media sources, note, links and set."""
        from lxml import etree

        run_id = record.run_id
        if run_id in self.seen:
            # the same run twice would repeat every GUID; its data is already in
            logger.warning("qdpx batch: run %s given twice; kept once", run_id[:40])
            return
        self.seen.add(run_id)
        self.runs += 1
        if self.first_run_id is None:
            self.first_run_id = run_id

        def run_guid(*role: str) -> str:
            return guid("run", run_id, *role)

        journey = build_journey(record)
        transcript = _Transcript()
        selections: list[_Element] = []
        media_sources: list[_Element] = []
        nodes: dict[int, str] = {}  # item index → GUID of its selection or media source
        index_of = {id(item): index for index, item in enumerate(journey.items())}
        title = self._run_title(record)
        # Blocks (header, headings, items) each end with a line break and are
        # separated by one empty line.
        transcript.add(_clean(self._transcript_header(record)) + "\n")

        for section in journey.sections:
            transcript.add(f"\n== {_clean(section.title)} ==\n")
            for entry in section.entries:
                if isinstance(entry, Iteration):
                    # each item's label names its iteration; no extra heading
                    items: tuple[ExecutionItem, ...] = entry.items
                elif isinstance(entry, Output):
                    transcript.add(f"\n-- Output {entry.loop} ({entry.outcome}) --\n")
                    items = entry.items
                else:
                    items = (entry,)
                for item in items:
                    if item.item_type == ItemType.STAGE_TRANSITION:
                        continue  # the headings show the stages; the note lists it
                    index = index_of[id(item)]
                    node = self._add_item(
                        record, item, index, media_dir, transcript, selections, media_sources
                    )
                    if node is not None:
                        nodes[index] = node

        text = transcript.text()
        transcript_guid = run_guid("transcript")
        with self.archive.open(_info(f"sources/{transcript_guid}.txt"), "w") as handle:
            handle.write(text.encode("utf-8"))

        note_guid = run_guid("note")
        source = etree.Element(
            "TextSource",
            {
                "guid": transcript_guid,
                "name": _clean(title),
                "plainTextPath": f"internal://{transcript_guid}.txt",
                "creatingUser": EXPORTER_USER_GUID,
                "creationDateTime": utc_iso(record.started_at),
            },
        )
        etree.SubElement(source, "Description").text = _clean(
            f"Transcript of run {run_id}: config {record.config_name or 'unknown'},"
            f" status {type_name(record.status)}. Each passage is a selection whose description"
            " holds its model, backend, duration and parameters; the note"
            f" “Parameters and timings: {title}” lists them for the whole run."
        )
        source.extend(selections)
        # no NoteRef: an importer that meets one drops the note; the note's name
        # names the transcript instead
        self._run_variables(source, record, journey)
        self.sections.sources.write(_serialise(source))
        for media_source in media_sources:
            self.sections.sources.write(_serialise(media_source))

        source_guids = [transcript_guid] + [element.get("guid", "") for element in media_sources]
        self._note(record, note_guid, title)
        self._links(record, journey, nodes, index_of, run_guid)
        members = self.configs.setdefault(record.config_name or "", ([], []))
        members[0].extend(source_guids)
        members[1].append(note_guid)
        self._case(record, source_guids)

    def _run_title(self, record: ExecutionRecord) -> str:
        # "2026-11-30 23-33 stillepost 852c1e4a4035": readable, sortable, and a safe
        # file name (no ":"), as importers store sources under their names
        started = utc_iso(record.started_at)[:16].replace("T", " ").replace(":", "-")
        return file_name(f"{started} {record.config_name or 'run'} {record.run_id[:12]}")

    def _transcript_header(self, record: ExecutionRecord) -> str:
        lines = [
            f"Run {record.run_id}",
            f"Config: {record.config_name or 'unknown'} · safety level:"
            f" {record.safety_level or 'unknown'} · status: {type_name(record.status)}",
        ]
        if record.user_pseudonym or record.session_pseudonym:
            lines.append(
                f"Participant: {record.user_pseudonym or 'unknown'} · session:"
                f" {record.session_pseudonym or 'unknown'}"
            )
        lines.append(
            f"Started {utc_iso(record.started_at)} · ended {utc_iso(record.ended_at) or '—'}"
            f" · duration {duration_human(record.duration_ms) or '—'}"
        )
        return "\n".join(lines)

    def _add_item(
        self,
        record: ExecutionRecord,
        item: ExecutionItem,
        index: int,
        media_dir: Path | None,
        transcript: _Transcript,
        selections: list[_Element],
        media_sources: list[_Element],
    ) -> str | None:
        """Write one item into the transcript; return the GUID that stands for it in links."""
        from lxml import etree

        label = _labels(item)
        transcript.add(f"\n[{item.sequence}] {_clean(label)}\n")
        body: str | None = None
        if item.content:
            body = _clean(item.content)
        body = _verdict_text(_verdict(item), body)
        node: str | None = None
        kind = _media_kind(item)
        if kind is not None:
            media_source = self._media_source(record, item, index, kind, media_dir)
            if media_source is not None:
                media_sources.append(media_source)
                node = media_source.get("guid")
                transcript.add(_clean(f"({kind} source “{media_source.get('name')}”)\n"))
            else:
                path = item.media.path if item.media else ""
                transcript.add(_clean(f"(media file {path} not included: not found)\n"))
        elif item.media is not None:
            transcript.add(_clean(f"(media file {item.media.path}, not a QDA source type)\n"))
        if body:
            start, end = transcript.add(body)
            selection_guid = guid("run", record.run_id, "item", str(index), "selection")
            selection = etree.Element(
                "PlainTextSelection",
                {
                    "guid": selection_guid,
                    "name": _clean(f"[{item.sequence}] {label}")[:200],
                    "startPosition": str(start),
                    "endPosition": str(end),
                    "creatingUser": EXPORTER_USER_GUID,
                    "creationDateTime": utc_iso(item.timestamp),
                },
            )
            etree.SubElement(selection, "Description").text = _details(item)
            selections.append(selection)
            # a media source stands for its item; otherwise the passage does
            node = node or selection_guid
            transcript.add("\n")
        return node

    def _media_source(
        self,
        record: ExecutionRecord,
        item: ExecutionItem,
        index: int,
        kind: str,
        media_dir: Path | None,
    ) -> _Element | None:
        from lxml import etree

        assert item.media is not None
        source_guid = guid("run", record.run_id, "item", str(index), "media")
        path = resolve_media(media_dir, item.media.path)
        loop = f" output {item.loop_iteration}" if item.loop_iteration is not None else ""
        # the sequence keeps two pictures of one output apart
        stem = f"{self._run_title(record)}{loop} {kind} {item.sequence}"
        description = _details(item)
        if kind == "picture":
            image = normalise_image(path, max_px=PICTURE_MAX_PX)
            ext = "png" if image.format == "PNG" else "jpg"
            with self.archive.open(_stored(f"sources/{source_guid}.{ext}"), "w") as handle:
                handle.write(image.data)
            if image.placeholder:
                description += f"\nThe file could not be included ({image.reason}): placeholder."
            tag = "PictureSource"
        else:
            ext_or_none = _media_extension(item, kind)
            if path is None or ext_or_none is None:
                return None
            ext = ext_or_none
            try:
                file = os.fdopen(open_media(path), "rb")
            except OSError:  # gone, or swapped for a link since it was checked
                return None
            with (
                file,
                self.archive.open(
                    _stored(f"sources/{source_guid}.{ext}"), "w", force_zip64=True
                ) as handle,
            ):
                shutil.copyfileobj(file, handle, 1 << 20)
            tag = "AudioSource" if kind == "audio" else "VideoSource"
        element = etree.Element(
            tag,
            {
                "guid": source_guid,
                "name": file_name(stem, ext),
                "path": f"internal://{source_guid}.{ext}",
                "creatingUser": EXPORTER_USER_GUID,
                "creationDateTime": utc_iso(item.timestamp),
            },
        )
        etree.SubElement(element, "Description").text = _clean(description)
        _variable_value(element, "run_id", record.run_id)
        _variable_value(element, "output_number", item.loop_iteration)
        return element

    def _run_variables(self, source: _Element, record: ExecutionRecord, journey: Any) -> None:
        outputs = [output for section in journey.sections for output in section.outputs]
        iterations = [it for section in journey.sections for it in section.iterations]
        models = "; ".join(
            f"{model} {version}".strip() if version else model
            for model, version in sorted(record.model_versions.items())
        )
        _variable_value(source, "run_id", record.run_id)
        _variable_value(source, "run_participant", record.user_pseudonym)
        _variable_value(source, "run_session", record.session_pseudonym)
        _variable_value(source, "run_config", record.config_name)
        _variable_value(source, "run_safety_level", record.safety_level)
        _variable_value(source, "run_status", type_name(record.status))
        _variable_value(source, "run_started", record.started_at)
        _variable_value(source, "run_ended", record.ended_at)
        _variable_value(source, "run_duration_ms", record.duration_ms)
        _variable_value(source, "run_iterations", len(iterations))
        _variable_value(source, "run_outputs", len(outputs))
        _variable_value(source, "run_blocked_outputs", sum(1 for o in outputs if o.blocked))
        _variable_value(source, "run_models", models)
        _variable_value(source, "run_software", record.software_version)
        _variable_value(source, "run_taxonomy", record.taxonomy_version)

    def _note(self, record: ExecutionRecord, note_guid: str, title: str) -> None:
        from lxml import etree

        lines = [self._transcript_header(record), ""]
        if record.model_versions:
            lines.append("Model versions: " + json_text(record.model_versions))
        lines.append(f"Software version: {record.software_version or 'unknown'}")
        lines.append(f"Taxonomy version: {record.taxonomy_version}")
        lines.append("")
        lines.append("Stage summary:")
        for summary in sorted(record.stages, key=lambda summary: summary.stage):
            lines.append(
                f"  stage {summary.stage} {summary.name}: {type_name(summary.status)},"
                f" {summary.items} items, {summary.failures} failures, {summary.blocks} blocks,"
                f" {summary.iterations} iterations, {summary.loops} outputs,"
                f" {duration_human(summary.duration_ms) or 'duration unknown'}"
            )
        lines.append("")
        lines.append("Items (model, backend, duration, parameters):")
        for item in sorted(record.items, key=lambda item: item.sequence):
            lines.append("")
            lines.append(_details(item))
        integrity = record.integrity
        lines.append("")
        lines.append(
            "Integrity: "
            + json_text(integrity.model_dump(mode="json", exclude={"tracker_error_messages"}))
        )
        # the text as a file: importers keep a note given by plainTextPath whole, and
        # drop inline PlainTextContent
        with self.archive.open(_info(f"sources/{note_guid}.txt"), "w") as handle:
            handle.write(_clean("\n".join(lines)).encode("utf-8"))
        note = etree.Element(
            "Note",
            {
                "guid": note_guid,
                "name": _clean(f"Parameters and timings: {title}"),
                "plainTextPath": f"internal://{note_guid}.txt",
                "creatingUser": EXPORTER_USER_GUID,
                "creationDateTime": utc_iso(record.ended_at or record.started_at),
            },
        )
        self.sections.notes.write(_serialise(note))

    def _links(
        self,
        record: ExecutionRecord,
        journey: Any,
        nodes: dict[int, str],
        index_of: dict[int, int],
        run_guid: Any,
    ) -> None:
        """Links from each text to the next; outputs branch from the last text before them."""
        from lxml import etree

        pairs: list[tuple[str, str]] = []
        previous: str | None = None
        for section in journey.sections:
            if section.is_outputs:
                trunk = previous
                for entry in section.entries:
                    chain = entry.items if isinstance(entry, Output) else (entry,)
                    last = trunk
                    for item in chain:
                        node = nodes.get(index_of[id(item)])
                        if node is None:
                            continue
                        if last is not None:
                            pairs.append((last, node))
                        last = node
                continue
            for item in section.items():
                node = nodes.get(index_of[id(item)])
                if node is None:
                    continue
                if previous is not None:
                    pairs.append((previous, node))
                previous = node
        for number, (origin, target) in enumerate(pairs, start=1):
            link = etree.Element(
                "Link",
                {
                    "guid": run_guid("link", str(number)),
                    "name": "next step",
                    "direction": "OneWay",
                    "originGUID": origin,
                    "targetGUID": target,
                },
            )
            self.sections.links.write(_serialise(link))

    def _sets(self) -> None:
        """One set per config with the sources and notes of its runs (GUID lists only)."""
        from lxml import etree

        for config, (source_guids, note_guids) in self.configs.items():
            label = config or "unknown config"
            element = etree.Element(
                "Set", {"guid": guid("set", "config", config), "name": _clean(f"Config {label}")}
            )
            etree.SubElement(element, "Description").text = _clean(
                f"Transcripts, media and notes of the runs of config {label} in this project."
            )
            for source_guid in source_guids:
                etree.SubElement(element, "MemberSource", {"targetGUID": source_guid})
            for note_guid in note_guids:
                etree.SubElement(element, "MemberNote", {"targetGUID": note_guid})
            self.sections.sets.write(_serialise(element))

    def _case(self, record: ExecutionRecord, source_guids: list[str]) -> None:
        pseudonym = record.user_pseudonym
        if not pseudonym:
            return  # a run without a participant is in no case; nothing is invented
        case = self.cases.setdefault(pseudonym, _Case())
        case.runs += 1
        case.sources.extend(source_guids)
        if record.safety_level:
            case.safety_levels[record.safety_level] = None
        if record.session_pseudonym:
            case.sessions[record.session_pseudonym] = None
        if record.config_name:
            case.configs[record.config_name] = None

    # --------------------------------------------------------------- project

    def write_project(self) -> None:
        """Write ``project.qde``: head, cases and codebook, then the collected sections."""
        from lxml import etree

        if self.runs == 1 and self.first_run_id is not None:
            project_name = f"Execution history run {self.first_run_id}"
        else:
            project_name = f"Execution history: {self.runs} runs"
        now = utc_iso(datetime.now(UTC))
        head = (
            '<?xml version="1.0" encoding="utf-8"?>\n'
            f'<Project xmlns="{PROJECT_NS}" name={quoteattr(_clean(project_name))}'
            f' origin="execution-history" creatingUserGUID="{EXPORTER_USER_GUID}"'
            f' creationDateTime="{now}">'
        )
        self._sets()
        with self.archive.open(_info("project.qde"), "w", force_zip64=True) as out:
            out.write(head.encode("utf-8"))
            users = etree.Element("Users")
            etree.SubElement(
                users, "User", {"guid": EXPORTER_USER_GUID, "name": "execution-history export"}
            )
            out.write(_serialise(users))
            codebook = etree.Element("CodeBook")
            codebook.append(codebook_codes())
            out.write(_serialise(codebook))
            if self.runs:
                out.write(_serialise(self._variables()))
            if self.cases:
                out.write(_serialise(self._cases()))
            for tag, buffer in self.sections.all():
                # an empty <Sets/> (or Links, Notes…) is invalid: write the wrapper only
                # around at least one child
                if buffer.tell() == 0:
                    continue
                buffer.seek(0)
                out.write(f"<{tag}>".encode())
                shutil.copyfileobj(buffer, out, 1 << 20)
                out.write(f"</{tag}>".encode())
            project_description = etree.Element("Description")
            project_description.text = (
                "Exported from the execution history of the devserver AI-art pipeline. Each run"
                " is a transcript (text source) with its images and audio; each config's runs"
                " are a set;"
                " participants are cases named by keyed pseudonyms (no raw ids). Models,"
                " parameters and timings are in each run's note, its variables and the"
                " description of each selection. The code group 'Pipeline stages' is not"
                " codable: it only shows the order of the transcripts."
            )
            out.write(_serialise(project_description))
            out.write(b"</Project>")

    def _variables(self) -> _Element:
        from lxml import etree

        variables = etree.Element("Variables")
        for key, variable_name, kind, text in _VARIABLES:
            variable = etree.SubElement(
                variables,
                "Variable",
                {"guid": _VARIABLE_GUIDS[key], "name": variable_name, "typeOfVariable": kind},
            )
            etree.SubElement(variable, "Description").text = text
        return variables

    def _cases(self) -> _Element:
        from lxml import etree

        cases = etree.Element("Cases")
        for pseudonym, case in self.cases.items():
            element = etree.SubElement(
                cases, "Case", {"guid": guid("case", pseudonym), "name": _clean(pseudonym)}
            )
            etree.SubElement(element, "Description").text = _clean(
                f"Participant {pseudonym} (keyed pseudonym): {case.runs} run(s)."
            )
            _variable_value(element, "case_safety_levels", "; ".join(case.safety_levels))
            _variable_value(element, "case_sessions", "; ".join(case.sessions))
            _variable_value(element, "case_configs", "; ".join(case.configs))
            _variable_value(element, "case_runs", case.runs)
            for source_guid in case.sources:
                etree.SubElement(element, "SourceRef", {"targetGUID": source_guid})
        return cases


def export(record: ExecutionRecord, stream: BinaryIO, *, media_dir: Path | None = None) -> None:
    """Write one run as a REFI-QDA project (``.qdpx``).

    Args:
        record: a finished, pseudonymised record.
        stream: a writable binary stream (need not be seekable).
        media_dir: the run's media folder; images missing from it become placeholders,
            audio and video missing from it are left out (the transcript says so).
    """
    export_batch([(record, media_dir)], stream)


def export_batch(records: Iterable[tuple[ExecutionRecord, Path | None]], stream: BinaryIO) -> None:
    """Write many runs into one REFI-QDA project, streaming.

    Media and transcripts go into the zip as each run is read; the project's
    XML sections wait in temporary files until the cases (which come first in
    ``project.qde``) are known, so memory holds only each case's GUID list.
    A run given twice is written once.

    Args:
        records: pairs of a pseudonymised record and its media folder (or None).
        stream: a writable binary stream (need not be seekable).
    """
    with (
        zipfile.ZipFile(stream, "w", compression=zipfile.ZIP_DEFLATED) as archive,
        tempfile.TemporaryFile() as sources,
        tempfile.TemporaryFile() as notes,
        tempfile.TemporaryFile() as links,
        tempfile.TemporaryFile() as sets,
    ):
        writer = _ProjectWriter(archive, _Sections(sources, notes, links, sets))
        for record, media_dir in records:
            writer.add_run(record, media_dir)
        writer.write_project()
