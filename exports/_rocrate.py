"""RO-Crate 1.1 archive package (zip) for depositing runs in a research repository.

Layout of the zip::

    ro-crate-metadata.json          JSON-LD, conformsTo https://w3id.org/ro/crate/1.1
    records/<run_id>.json           the canonical record (the json format)
    provenance/<run_id>.prov.json   W3C PROV-JSON of the run (``_prov``)
    media/<run_id>/<seq>-<name>     the run's media files, byte for byte as recorded

The root ``Dataset`` lists every file in ``hasPart``; each file has its
``encodingFormat``, ``contentSize`` (bytes) and ``sha256`` (of the bytes in
the zip). Each run is described by one ``CreateAction`` per stage that
recorded items, with ``agent`` (the participant's pseudonym), ``instrument``
(the models used, as ``SoftwareApplication`` with their version), ``object``
(what the stage started from) and ``result`` (what it produced: texts as
entities pointing into the record file, media as the files themselves),
``startTime``, ``endTime`` and ``actionStatus``; the root ``mentions`` every
action. Media files that are missing from the run's folder are not listed as
files (every ``hasPart`` exists); the record still names them.

The root carries a ``license`` (option ``licence``, default ``CC-BY-4.0``),
and an ``author`` and ``publisher``: the organisation responsible for the data
(options ``organisation`` and ``organisation_url``), each a contextual entity,
because a repository needs them to accept the deposit.
``sha256`` is not a term of the RO-Crate 1.1 context, so the crate's
``@context`` defines it; otherwise every JSON-LD reader would drop the checksums.

One PROV document per run keeps memory flat in a batch; agents have the same
identifiers in every document, so the documents merge into one graph.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import shutil
import tempfile
import time
import zipfile
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, BinaryIO
from urllib.parse import quote

from execution_history import STAGE_NAMES, ExecutionItem, ExecutionRecord, is_run_id, open_media

from . import _json
from ._images import resolve_media
from ._journey import type_name
from ._prov import MediaFile, build_document, carries_something, consumed, is_input
from ._text import sanitise
from ._timefmt import utc_iso

logger = logging.getLogger("exports")

name = "rocrate"
media_type = "application/zip"
extension = "crate.zip"
description = "RO-Crate 1.1 archive package (records, media, W3C PROV) for research repositories"
requires: tuple[str, ...] = ("prov",)
extra = "research"
#: Keyword options ``export`` and ``export_batch`` take (passed on by the registry).
options: tuple[str, ...] = ("licence", "organisation", "organisation_url")

#: The RO-Crate specification this package conforms to (pinned).
ROCRATE_VERSION = "1.1"
ROCRATE_CONFORMS_TO = f"https://w3id.org/ro/crate/{ROCRATE_VERSION}"
ROCRATE_CONTEXT = f"https://w3id.org/ro/crate/{ROCRATE_VERSION}/context"
PROV_JSON_SPEC = "https://www.w3.org/Submission/prov-json/"
METADATA_FILE = "ro-crate-metadata.json"
#: ``sha256`` as the Workflow Run Crate terms define it; the 1.1 context lacks it.
SHA256_TERM = "https://w3id.org/ro/terms/workflow-run#sha256"
#: The crate's ``@context``: the published 1.1 context plus the one term it lacks.
CONTEXT: list[Any] = [ROCRATE_CONTEXT, {"sha256": SHA256_TERM}]
#: The licence when the caller names none (an SPDX id or a URL).
DEFAULT_LICENCE = "CC-BY-4.0"
#: Author and publisher when the caller names none: true of every export, and
#: a visible prompt to name the project (no URL is invented for it).
DEFAULT_ORGANISATION = "The operator of the devserver instance that recorded these runs"

_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
_STATUS = {
    "done": "http://schema.org/CompletedActionStatus",
    "blocked": "http://schema.org/FailedActionStatus",
    "failed": "http://schema.org/FailedActionStatus",
    "running": "http://schema.org/ActiveActionStatus",
    "pending": "http://schema.org/PotentialActionStatus",
    "skipped": "http://schema.org/PotentialActionStatus",
}
_RUN_STATUS = {
    "success": "http://schema.org/CompletedActionStatus",
    "partial": "http://schema.org/CompletedActionStatus",
    "no_output": "http://schema.org/FailedActionStatus",
    "blocked": "http://schema.org/FailedActionStatus",
    "error": "http://schema.org/FailedActionStatus",
    "incomplete": "http://schema.org/FailedActionStatus",
    "running": "http://schema.org/ActiveActionStatus",
}


def run_folder(run_id: str) -> str:
    """The path segment naming a run inside the package.

    Args:
        run_id: the record's run id.

    Returns:
        The run id itself when it is well formed; otherwise a digest of it, so a
        hand-made record cannot place files outside its folder.
    """
    if is_run_id(run_id):
        return run_id
    return "run-" + hashlib.sha256(run_id.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _ref(identifier: str) -> dict[str, str]:
    return {"@id": identifier}


def _refs(identifiers: list[str]) -> dict[str, str] | list[dict[str, str]]:
    # RO-Crate 1.1 recommends a single value, not a one-element array.
    if len(identifiers) == 1:
        return _ref(identifiers[0])
    return [_ref(identifier) for identifier in identifiers]


def _is_url(value: str) -> bool:
    return value.startswith(("http://", "https://"))


def licence_entity(licence: str) -> dict[str, Any]:
    """The contextual entity of a licence.

    Args:
        licence: an SPDX identifier (``CC-BY-4.0``, ``CC0-1.0``) or a licence URL.

    Returns:
        A ``CreativeWork`` whose ``@id`` is the URL (SPDX ids become
        ``https://spdx.org/licenses/<id>``, as RO-Crate recommends).

    Raises:
        ValueError: when ``licence`` is empty.
    """
    licence = sanitise(licence.strip())
    if not licence:
        raise ValueError("the licence must be an SPDX identifier or a URL, not empty")
    if _is_url(licence):
        return {"@id": licence, "@type": "CreativeWork", "name": licence}
    return {
        "@id": f"https://spdx.org/licenses/{quote(licence, safe='.+-')}",
        "@type": "CreativeWork",
        "name": licence,
        "identifier": licence,
    }


def organisation_entity(name: str, url: str | None) -> dict[str, Any]:
    """The contextual entity of the crate's author and publisher: an ``Organization``.

    Args:
        name: the organisation's name.
        url: its web address (a homepage or a ROR id), or None when not known.

    Returns:
        An ``Organization`` entity, identified by its URL when there is one.

    Raises:
        ValueError: when ``name`` is empty or ``url`` is not an http(s) URL.
    """
    name = sanitise(name.strip())
    if not name:
        raise ValueError("the organisation must have a name")
    entity: dict[str, Any] = {"@id": "#organisation", "@type": "Organization", "name": name}
    if url is not None:
        url = sanitise(url.strip())
        if not _is_url(url):
            raise ValueError("the organisation's URL must begin with http:// or https://")
        entity["@id"] = url
        entity["url"] = url
    return entity


def _info(filename: str, compress: bool = True) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(filename, time.gmtime()[:6])
    info.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    info.external_attr = 0o644 << 16
    return info


class _CrateWriter:
    """Writes runs into the zip and their JSON-LD entities into a temporary file."""

    def __init__(
        self, archive: zipfile.ZipFile, graph: IO[bytes], root_entities: list[dict[str, Any]]
    ) -> None:
        self.archive = archive
        self.graph = graph
        # licence, author, publisher: checked before the first byte is written
        self.root_entities = root_entities
        self.parts: list[str] = []
        self.actions: list[str] = []
        self.shared: set[str] = set()
        self.seen: set[str] = set()
        self.runs = 0

    def entity(self, entity: dict[str, Any]) -> None:
        self.graph.write(b",\n")
        self.graph.write(json.dumps(entity, ensure_ascii=False).encode("utf-8"))

    def shared_entity(self, entity: dict[str, Any]) -> None:
        # participants and models recur across runs; the graph holds each once
        if entity["@id"] not in self.shared:
            self.shared.add(entity["@id"])
            self.entity(entity)

    def write_file(self, path: str, data: bytes, *, compress: bool = True) -> tuple[int, str]:
        with self.archive.open(_info(path, compress), "w") as handle:
            handle.write(data)
        return len(data), hashlib.sha256(data).hexdigest()

    def copy_file(self, path: str, source: Path) -> tuple[int, str] | None:
        """Copy a media file into the crate; None when it is gone or became a link."""
        digest = hashlib.sha256()
        size = 0
        try:
            file = os.fdopen(open_media(source), "rb")
        except OSError:
            return None
        with (
            file,
            self.archive.open(_info(path, compress=False), "w", force_zip64=True) as handle,
        ):
            while chunk := file.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
                handle.write(chunk)
        return size, digest.hexdigest()

    def file_entity(self, path: str, size: int, sha256: str, **properties: Any) -> None:
        self.parts.append(path)
        entity: dict[str, Any] = {"@id": path, "@type": "File"}
        entity.update(properties)
        entity["contentSize"] = str(size)
        entity["sha256"] = sha256
        self.entity(entity)

    # ---------------------------------------------------------------- one run

    def add_run(self, record: ExecutionRecord, media_dir: Path | None) -> None:
        run_id = record.run_id
        if run_id in self.seen:
            logger.warning("rocrate batch: run %s given twice; kept once", run_id[:40])
            return
        self.seen.add(run_id)
        self.runs += 1
        folder = run_folder(run_id)
        run_ref = f"#run-{folder}"
        items = sorted(record.items, key=lambda item: item.sequence)

        buffer = io.BytesIO()
        _json.export(record, buffer)
        record_path = f"records/{folder}.json"
        size, digest = self.write_file(record_path, buffer.getvalue())
        self.file_entity(
            record_path,
            size,
            digest,
            name=sanitise(f"Record of run {run_id}"),
            description="The canonical execution record (JSON), every item in order.",
            encodingFormat="application/json",
            about=_ref(run_ref),
        )

        media: dict[int, MediaFile] = {}
        item_ids: dict[int, str] = {}
        for index, item in enumerate(items):
            if not carries_something(item):
                continue
            item_ids[index] = self._item_entity(
                record, item, index, folder, record_path, media_dir, media
            )

        document = build_document(record, media)
        prov_path = f"provenance/{folder}.prov.json"
        serialised = document.serialize(format="json")
        if serialised is None:  # only None when given a destination, which we do not
            raise RuntimeError("prov returned no PROV-JSON")
        size, digest = self.write_file(prov_path, serialised.encode("utf-8"))
        self.file_entity(
            prov_path,
            size,
            digest,
            name=sanitise(f"Provenance of run {run_id}"),
            description="W3C PROV document (PROV-JSON) of the run: stages, texts, media, agents.",
            encodingFormat="application/json",
            conformsTo=_ref(PROV_JSON_SPEC),
            about=_ref(run_ref),
        )
        self._actions(record, items, item_ids, folder)
        self._run_entity(record, run_ref)

    def _run_entity(self, record: ExecutionRecord, run_ref: str) -> None:
        """The run itself: an ``Action`` that the run's files are ``about``."""
        run: dict[str, Any] = {
            "@id": run_ref,
            "@type": "Action",
            "name": sanitise(f"Run {record.run_id}"),
            "identifier": sanitise(record.run_id),
            "description": sanitise(
                f"A run of the pipeline config {record.config_name or 'unknown'} at safety"
                f" level {record.safety_level or 'unknown'}; status {type_name(record.status)}."
                f" Its stages are the actions {run_ref}-stage-1 to -4."
            ),
            "startTime": utc_iso(record.started_at),
            "actionStatus": _ref(_RUN_STATUS.get(type_name(record.status), _STATUS["done"])),
        }
        if record.ended_at is not None:
            run["endTime"] = utc_iso(record.ended_at)
        if record.user_pseudonym:
            run["agent"] = _ref(self._participant(record.user_pseudonym))
        self.actions.append(run_ref)
        self.entity(run)

    def _participant(self, pseudonym: str) -> str:
        identifier = f"#participant-{quote(sanitise(pseudonym), safe='')}"
        self.shared_entity(
            {
                "@id": identifier,
                "@type": "Person",
                "name": sanitise(pseudonym),
                "description": "A participant, named by a keyed pseudonym (not reversible).",
            }
        )
        return identifier

    def _item_entity(
        self,
        record: ExecutionRecord,
        item: ExecutionItem,
        index: int,
        folder: str,
        record_path: str,
        media_dir: Path | None,
        media: dict[int, MediaFile],
    ) -> str:
        """Write an item's media file (if any) and describe it; return its @id."""
        label = sanitise(
            f"Run {record.run_id}, item {item.sequence}: {type_name(item.item_type)}"
            + (f", iteration {item.stage_iteration}" if item.stage_iteration is not None else "")
            + (f", output {item.loop_iteration}" if item.loop_iteration is not None else "")
        )
        if item.media is not None:
            source = resolve_media(media_dir, item.media.path)
            copied = None
            if source is not None:
                safe = _UNSAFE_NAME.sub("_", Path(item.media.path).name)[:80] or "media"
                path = f"media/{folder}/{item.sequence:04d}-{safe}"
                copied = self.copy_file(path, source)
            if copied is not None:
                size, digest = copied
                mime = item.media.mime_type or "application/octet-stream"
                media[item.sequence] = MediaFile(path, item.media.mime_type, digest)
                properties: dict[str, Any] = {
                    "name": label,
                    "encodingFormat": sanitise(mime),
                    "about": _ref(f"#run-{folder}"),
                }
                if item.media.width:
                    properties["width"] = str(item.media.width)
                if item.media.height:
                    properties["height"] = str(item.media.height)
                if item.media.duration_s is not None:
                    properties["duration"] = f"PT{item.media.duration_s}S"
                self.file_entity(path, size, digest, **properties)
                return path
        identifier = f"#run-{folder}-item-{item.sequence}-{index}"
        entity: dict[str, Any] = {
            "@id": identifier,
            "@type": "CreativeWork",
            "name": label,
            "position": item.sequence,
            "isPartOf": _ref(record_path),
            "dateCreated": utc_iso(item.timestamp),
        }
        if item.content is not None:
            entity["encodingFormat"] = "text/plain"
            entity["description"] = (
                f"A text of {len(item.content)} characters; it is in the record file"
                f" under items[sequence={item.sequence}].content."
            )
        if item.media is not None:
            entity["description"] = sanitise(
                f"Media file {item.media.path} was not found in the run's media folder;"
                " the record names it with its checksum."
            )
        self.entity(entity)
        return identifier

    def _actions(
        self,
        record: ExecutionRecord,
        items: list[ExecutionItem],
        item_ids: dict[int, str],
        folder: str,
    ) -> None:
        participant: str | None = None
        if record.user_pseudonym:
            participant = self._participant(record.user_pseudonym)
        sources = consumed(items)
        summaries = {summary.stage: summary for summary in record.stages}
        stages = sorted({item.stage for item in items if carries_something(item)})
        for stage in stages:
            in_stage = [
                (index, item)
                for index, item in enumerate(items)
                if item.stage == stage and carries_something(item)
            ]
            # the run's input is what its stage starts from, never its result; what
            # else a stage started from is what its steps consumed from outside it
            given = {index for index, item in in_stage if is_input(item)}
            made = {index for index, _item in in_stage} - given
            starts = given | {sources[index] for index in made if index in sources} - made
            results = [item_ids[index] for index in sorted(made)]
            objects = [item_ids[index] for index in sorted(starts) if index in item_ids]
            instruments: list[str] = []
            for _index, item in in_stage:
                if item.model:
                    model_id = f"#model-{quote(sanitise(item.model), safe='')}"
                    if model_id not in instruments:
                        instruments.append(model_id)
                    model: dict[str, Any] = {
                        "@id": model_id,
                        "@type": "SoftwareApplication",
                        "name": sanitise(item.model),
                    }
                    version = record.model_versions.get(item.model)
                    if version:
                        model["version"] = sanitise(version)
                    self.shared_entity(model)
            action_id = f"#run-{folder}-stage-{stage}"
            action: dict[str, Any] = {
                "@id": action_id,
                "@type": "CreateAction",
                "name": sanitise(
                    f"Run {record.run_id}, stage {stage}: {STAGE_NAMES.get(stage, 'stage')}"
                ),
                "description": sanitise(
                    f"Config {record.config_name or 'unknown'}, safety level"
                    f" {record.safety_level or 'unknown'}, run status {type_name(record.status)}."
                ),
            }
            if participant is not None:
                action["agent"] = _ref(participant)
            if instruments:
                action["instrument"] = _refs(instruments)
            if objects:
                action["object"] = _refs(objects)
            if results:
                action["result"] = _refs(results)
            summary = summaries.get(stage)
            if summary is not None:
                if summary.started_at is not None:
                    action["startTime"] = utc_iso(summary.started_at)
                if summary.ended_at is not None:
                    action["endTime"] = utc_iso(summary.ended_at)
                status = _STATUS.get(type_name(summary.status))
                if status:
                    action["actionStatus"] = _ref(status)
            self.actions.append(action_id)
            self.entity(action)

    # ------------------------------------------------------------ the crate

    def write_metadata(self) -> None:
        now = utc_iso(datetime.now(UTC))
        descriptor = {
            "@id": METADATA_FILE,
            "@type": "CreativeWork",
            "conformsTo": _ref(ROCRATE_CONFORMS_TO),
            "about": _ref("./"),
        }
        root = {
            "@id": "./",
            "@type": "Dataset",
            "name": f"Execution history: {self.runs} run{'s' if self.runs != 1 else ''}",
            "description": (
                "Runs of the devserver AI-art pipeline for children, recorded step by step:"
                " the canonical JSON record of each run, its media files and a W3C PROV"
                " document. People appear only as keyed pseudonyms."
            ),
            "datePublished": now,
            "license": _ref(self.root_entities[0]["@id"]),
            "author": _ref(self.root_entities[1]["@id"]),
            "publisher": _ref(self.root_entities[1]["@id"]),
            "hasPart": [_ref(part) for part in self.parts],
            "mentions": [_ref(action) for action in self.actions],
        }
        with self.archive.open(_info(METADATA_FILE), "w", force_zip64=True) as out:
            context = json.dumps(CONTEXT).encode("utf-8")
            out.write(b'{\n"@context": ' + context + b',\n"@graph": [\n')
            out.write(json.dumps(descriptor, ensure_ascii=False).encode("utf-8"))
            out.write(b",\n")
            out.write(json.dumps(root, ensure_ascii=False).encode("utf-8"))
            for entity in self.root_entities:
                out.write(b",\n")
                out.write(json.dumps(entity, ensure_ascii=False).encode("utf-8"))
            self.graph.seek(0)
            shutil.copyfileobj(self.graph, out, 1 << 20)
            out.write(b"\n]\n}\n")


def export(
    record: ExecutionRecord,
    stream: BinaryIO,
    *,
    media_dir: Path | None = None,
    licence: str = DEFAULT_LICENCE,
    organisation: str = DEFAULT_ORGANISATION,
    organisation_url: str | None = None,
) -> None:
    """Write one run as an RO-Crate zip.

    Args:
        record: a finished, pseudonymised record.
        stream: a writable binary stream (need not be seekable).
        media_dir: the run's media folder; its files are copied byte for byte.
        licence: the data's licence, an SPDX identifier or a URL.
        organisation: the name of the organisation responsible for the data,
            the crate's author and publisher.
        organisation_url: its web address or ROR id; None when not known.

    Raises:
        ValueError: when the record holds a value strict JSON cannot express,
            or an option's value is empty or not a URL where one is needed.
    """
    export_batch(
        [(record, media_dir)],
        stream,
        licence=licence,
        organisation=organisation,
        organisation_url=organisation_url,
    )


def export_batch(
    records: Iterable[tuple[ExecutionRecord, Path | None]],
    stream: BinaryIO,
    *,
    licence: str = DEFAULT_LICENCE,
    organisation: str = DEFAULT_ORGANISATION,
    organisation_url: str | None = None,
) -> None:
    """Write many runs into one RO-Crate zip, streaming.

    Files go into the zip as each run is read; the JSON-LD entities wait in a
    temporary file and ``ro-crate-metadata.json`` is written last. A run given
    twice is written once.

    Args:
        records: pairs of a pseudonymised record and its media folder (or None).
        stream: a writable binary stream (need not be seekable).
        licence: as for ``export``.
        organisation: as for ``export``.
        organisation_url: as for ``export``.

    Raises:
        ValueError: when a record holds a value strict JSON cannot express,
            or an option's value is empty or not a URL where one is needed.
    """
    root_entities = [licence_entity(licence), organisation_entity(organisation, organisation_url)]
    with (
        zipfile.ZipFile(stream, "w", compression=zipfile.ZIP_DEFLATED) as archive,
        tempfile.TemporaryFile() as graph,
    ):
        writer = _CrateWriter(archive, graph, root_entities)
        for record, media_dir in records:
            writer.add_run(record, media_dir)
        writer.write_metadata()
