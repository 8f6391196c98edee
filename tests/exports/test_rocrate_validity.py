"""RO-Crate as linked data: roc-validator's RO-Crate 1.1 profile and JSON-LD expansion, offline.

The published context (https://w3id.org/ro/crate/1.1/context) is served from
the copy in ``../shared/ro-crate``; every other URL, and any socket connection,
fails the test, so these checks never reach the network.
"""

from __future__ import annotations

import hashlib
import io
import json
import socket
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urljoin

import pytest
import requests
from hypothesis import given, settings
from pyld import jsonld
from requests.adapters import BaseAdapter
from rocrate_validator import services
from rocrate_validator.models import Severity, ValidationSettings
from rocrate_validator.utils.http import HttpRequester

import exports
from execution_history import ExecutionRecord, Pseudonymiser
from tests.exports.test_tables import (
    HOSTILE_SETTINGS,
    LARGE_REPR,
    batch,
    hostile_records,
    make_media,
)

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
CONTEXT_FILE = SHARED / "ro-crate" / "context-1.1.jsonld"
CONTEXT_URL = "https://w3id.org/ro/crate/1.1/context"
SHA256 = "https://w3id.org/ro/terms/workflow-run#sha256"
SCHEMA = "http://schema.org/"
#: a base for the crate's relative ids (any absolute base does; it is never fetched)
BASE = "http://crate.invalid/"
PSEUDONYMS = Pseudonymiser("rocrate-validity-pseudonym-key-1")
#: rdflib deprecates a class roc-validator still uses; not ours to fix, and harmless.
VALIDATOR_WARNINGS = pytest.mark.filterwarnings(
    "ignore:ConjunctiveGraph is deprecated:DeprecationWarning"
)
ORGANISATION = {
    "organisation": "Example Arts Education Lab",
    "organisation_url": "https://example.org/lab",
    "licence": "CC0-1.0",
}


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No socket may connect while the test runs: a fetch would fail, not pass."""

    def refuse(*_args: Any, **_kwargs: Any) -> None:
        raise OSError("tests must not reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setenv("ROCRATE_VALIDATOR_AUTO_WARM", "0")  # no profile warm-up fetches
    yield


def crate_bytes(
    records: list[tuple[ExecutionRecord, Path | None]], options: dict[str, str] | None
) -> bytes:
    stream = io.BytesIO()
    exports.export_batch(records, "rocrate", stream, pseudonymiser=PSEUDONYMS, options=options)
    return stream.getvalue()


def unzip(data: bytes, folder: Path) -> Path:
    folder.mkdir(parents=True)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        archive.extractall(folder)
    return folder


def validate(folder: Path, severity: str) -> list[str]:
    """roc-validator's ro-crate-1.1 profile at ``severity``; the issues as text."""
    context = CONTEXT_FILE.read_bytes()
    fetched: list[str] = []

    class LocalContext(BaseAdapter):
        """Serves the published context from the local file; everything else is 404."""

        def send(self, request: Any, **_kwargs: Any) -> Any:
            fetched.append(str(request.url))
            response = requests.Response()
            response.url = request.url
            response.request = request
            if str(request.url).rstrip("/") == CONTEXT_URL:
                response.status_code = 200
                response._content = context
                response.headers["Content-Type"] = "application/ld+json"
            else:
                response.status_code = 404
                response._content = b""
            return response

        def close(self) -> None:
            pass

    settings = ValidationSettings(
        rocrate_uri=str(folder),
        profile_identifier="ro-crate-1.1",
        requirement_severity=Severity[severity],
        no_cache=True,  # a plain requests session, which the adapter then serves
    )
    session = HttpRequester().session
    session.mount("https://", LocalContext())
    session.mount("http://", LocalContext())
    result = services.validate(settings)
    assert CONTEXT_URL in fetched, "the validator did not read the context at all"
    issues = [f"{issue.severity.name} {issue.message}" for issue in result.get_issues()]
    assert result.passed() == (not issues)
    return issues


def expanded(folder: Path) -> list[dict[str, Any]]:
    """The crate's metadata expanded by pyld, the published context read from the local copy."""
    context = json.loads(CONTEXT_FILE.read_text("utf-8"))

    def loader(url: str, _options: Any = None) -> dict[str, Any]:
        assert url.rstrip("/") == CONTEXT_URL, f"pyld wanted {url}"
        return {"contextUrl": None, "documentUrl": url, "document": context}

    metadata = json.loads((folder / "ro-crate-metadata.json").read_text("utf-8"))
    result: list[dict[str, Any]] = jsonld.expand(metadata, {"documentLoader": loader, "base": BASE})
    return result


# ---------------------------------------------------------------------- tests


@VALIDATOR_WARNINGS
def test_a_single_run_passes_the_ro_crate_profile_when_the_organisation_is_named(
    offline: None, finished_record: ExecutionRecord, media_dir: Path, tmp_path: Path
) -> None:
    """REQUIRED and RECOMMENDED checks of ro-crate-1.1 all pass (licence, author, publisher)."""
    stream = io.BytesIO()  # the one-run path, options through exports.export
    exports.export(
        finished_record,
        "rocrate",
        stream,
        media_dir=media_dir,
        pseudonymiser=PSEUDONYMS,
        options=ORGANISATION,
    )
    folder = unzip(stream.getvalue(), tmp_path / "c")
    assert validate(folder, "RECOMMENDED") == []
    root = next(
        e
        for e in json.loads((folder / "ro-crate-metadata.json").read_text())["@graph"]
        if e["@id"] == "./"
    )
    assert root["license"] == {"@id": "https://spdx.org/licenses/CC0-1.0"}
    assert root["author"] == root["publisher"] == {"@id": "https://example.org/lab"}


@VALIDATOR_WARNINGS
def test_orchestrated_runs_with_provenance_pass_the_ro_crate_profile(
    offline: None, tmp_path: Path
) -> None:
    """Real runs of two configs (actions with objects from input_sequence) pass too."""
    from tests.exports.test_rocrate import orchestrated

    runs = [
        (orchestrated(config, tmp_path / config), tmp_path / config)
        for config in ("stillepost", "image_and_sound")
    ]
    folder = unzip(crate_bytes(runs, ORGANISATION), tmp_path / "c")
    assert validate(folder, "RECOMMENDED") == []


@VALIDATOR_WARNINGS
def test_a_batch_passes_the_ro_crate_profile(offline: None, tmp_path: Path) -> None:
    """A batch of runs (shared participants and models) passes REQUIRED and RECOMMENDED."""
    runs = batch(6, tmp_path / "runs")
    folder = unzip(crate_bytes(runs, ORGANISATION), tmp_path / "c")
    assert validate(folder, "RECOMMENDED") == []


@VALIDATOR_WARNINGS
def test_without_options_only_the_organisations_url_is_missing(
    offline: None, finished_record: ExecutionRecord, media_dir: Path, tmp_path: Path
) -> None:
    """The defaults pass every REQUIRED check; the one RECOMMENDED gap is a URL we cannot know."""
    folder = unzip(crate_bytes([(finished_record, media_dir)], None), tmp_path / "c")
    assert validate(folder, "REQUIRED") == []
    issues = validate(folder, "RECOMMENDED")
    assert len(issues) == 1 and "organization SHOULD have a URL" in issues[0]
    graph = {
        e["@id"]: e for e in json.loads((folder / "ro-crate-metadata.json").read_text())["@graph"]
    }
    licence = graph[graph["./"]["license"]["@id"]]
    assert licence == {
        "@id": "https://spdx.org/licenses/CC-BY-4.0",
        "@type": "CreativeWork",
        "name": "CC-BY-4.0",
        "identifier": "CC-BY-4.0",
    }
    organisation = graph[graph["./"]["author"]["@id"]]
    assert graph["./"]["publisher"] == graph["./"]["author"]
    assert organisation["@type"] == "Organization" and "url" not in organisation


def test_every_checksum_survives_json_ld_expansion(tmp_path: Path) -> None:
    """Expanded with the published context, every File keeps its sha256, equal to its bytes."""
    runs = batch(3, tmp_path / "runs")
    folder = unzip(crate_bytes(runs, ORGANISATION), tmp_path / "c")
    nodes = expanded(folder)
    files = [n for n in nodes if SCHEMA + "MediaObject" in n.get("@type", [])]
    # 3 runs: record, PROV and two images each
    assert len(files) == 12
    for node in files:
        path = folder / unquote(node["@id"].removeprefix(BASE))
        assert path.is_file()
        (checksum,) = node[SHA256]
        assert checksum["@value"] == hashlib.sha256(path.read_bytes()).hexdigest()
        (size,) = node[SCHEMA + "contentSize"]
        assert int(size["@value"]) == path.stat().st_size
    root = next(n for n in nodes if n["@id"] == BASE)
    (licence,) = root[SCHEMA + "license"]
    assert licence["@id"] == "https://spdx.org/licenses/CC0-1.0"
    (author,) = root[SCHEMA + "author"]
    assert author["@id"] == "https://example.org/lab"


def test_no_term_is_dropped_by_expansion(tmp_path: Path) -> None:
    """Every key of every entity expands to an IRI: nothing the crate says is lost."""
    runs = batch(2, tmp_path / "runs")
    folder = unzip(crate_bytes(runs, ORGANISATION), tmp_path / "c")
    metadata = json.loads((folder / "ro-crate-metadata.json").read_text("utf-8"))
    by_id = {n["@id"]: n for n in expanded(folder)}
    for entity in metadata["@graph"]:
        node = by_id[urljoin(BASE, entity["@id"])]
        kept = {key for key in node if not key.startswith("@")}
        assert len(kept) == len([k for k in entity if not k.startswith("@")]), entity["@id"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"licence": " "}, "licence"),
        ({"organisation": ""}, "name"),
        ({"organisation_url": "example.org"}, "URL"),
    ],
)
def test_a_bad_option_is_refused_with_a_clear_error(
    finished_record: ExecutionRecord, options: dict[str, str], message: str
) -> None:
    """An empty licence or organisation, or a URL that is not one, fails the export clearly."""
    with pytest.raises(exports.ExportFailedError, match=message):
        crate_bytes([(finished_record, None)], options)


def test_options_other_formats_do_not_take_are_ignored(finished_record: ExecutionRecord) -> None:
    """One options mapping serves every format: json ignores the crate's licence."""
    plain, with_options = io.BytesIO(), io.BytesIO()
    exports.export(finished_record, "json", plain)
    exports.export(finished_record, "json", with_options, options={"licence": "CC0-1.0"})
    assert json.loads(plain.getvalue()) == json.loads(with_options.getvalue())


@VALIDATOR_WARNINGS
@pytest.mark.filterwarnings(LARGE_REPR)
def test_hostile_runs_pass_the_ro_crate_profile(
    offline: None, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Hostile texts, ids and media paths still give a crate passing REQUIRED and RECOMMENDED."""
    media_dir = make_media(tmp_path_factory.mktemp("media"))
    counter = iter(range(1000))

    @settings(HOSTILE_SETTINGS, max_examples=6)
    @given(record=hostile_records())
    def run(record: ExecutionRecord) -> None:
        folder = tmp_path_factory.getbasetemp() / f"hostile-valid-{next(counter)}"
        assert (
            validate(unzip(crate_bytes([(record, media_dir)], ORGANISATION), folder), "RECOMMENDED")
            == []
        )

    run()
