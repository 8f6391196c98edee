"""REFI-QDA project (qdpx) and codebook (qdc): valid against the shared XSDs and what they miss.

The schemas stay in ``../shared/refi-qda/`` (outside the project): when that
folder is absent the schema tests skip and say so; with ``CI=true`` they fail.
The other checks (SOURCE.md: GUIDs unique and resolving, ``internal://`` paths
one-to-one with zip entries, plain text given one way, selection offsets in
code points, pictures really PNG/JPEG, the order of Project's children, no
empty wrapper element) run everywhere.
"""

from __future__ import annotations

import io
import os
import re
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import given
from lxml import etree

import exports
from execution_history import ExecutionRecord, ExecutionTracker, ItemType, Pseudonymiser
from tests.exports.test_tables import (
    HOSTILE_SETTINGS,
    LARGE_REPR,
    batch,
    hostile_records,
    make_media,
)
from tests.records import STILLE_POST_TEXTS, write_wav

PSEUDONYMS = Pseudonymiser("qdpx-test-pseudonym-key-0123456")
NS = "urn:QDA-XML:project:1.0"
CODEBOOK_NS = "urn:QDA-XML:codebook:1.0"
Q = {"q": NS}
SCHEMA_DIR = Path(__file__).resolve().parents[3] / "shared" / "refi-qda"
PROJECT_ORDER = [
    "Users",
    "CodeBook",
    "Variables",
    "Cases",
    "Sources",
    "Notes",
    "Links",
    "Sets",
    "Graphs",
    "Description",
    "NoteRef",
]
GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
REFERENCE_ATTRIBUTES = ("targetGUID", "originGUID", "creatingUser", "creatingUserGUID")


def _schema(filename: str) -> etree.XMLSchema | None:
    path = SCHEMA_DIR / filename
    if path.is_file():
        return etree.XMLSchema(etree.parse(str(path)))
    if os.environ.get("CI") == "true":
        pytest.fail(
            f"REFI-QDA schema {filename} not found in {SCHEMA_DIR}; it is required under CI"
        )
    return None


def skip_if_not_validated(*schemas: etree.XMLSchema | None) -> None:
    """End a schema test as skipped (after its other checks ran) when a schema is absent."""
    if any(schema is None for schema in schemas):
        pytest.skip(
            f"REFI-QDA schemas not found in {SCHEMA_DIR} (the shared folder outside the"
            " project): schema validation skipped, the other checks of this test passed"
        )


@pytest.fixture(scope="module")
def project_schema() -> etree.XMLSchema | None:
    """Project.xsd from the shared folder; None locally when absent, a failure under CI."""
    return _schema("Project.xsd")


@pytest.fixture(scope="module")
def codebook_schema() -> etree.XMLSchema | None:
    """Codebook.xsd from the shared folder; None locally when absent, a failure under CI."""
    return _schema("Codebook.xsd")


def expected_text(text: str) -> str:
    """A record's text as the transcript must hold it: CRLF/CR → LF, XML-illegal → U+FFFD."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return "".join(
        "\ufffd"
        if (ord(c) < 0x20 and c not in "\t\n") or 0xD800 <= ord(c) <= 0xDFFF or c in "\ufffe\uffff"
        else c
        for c in text
    )


@dataclass
class Project:
    """A reopened qdpx: the parsed project and the zip's source files."""

    root: etree._Element
    files: dict[str, bytes]
    transcripts: dict[str, str] = field(default_factory=dict)

    def all(self, tag: str) -> list[etree._Element]:
        return list(self.root.iter(f"{{{NS}}}{tag}"))


def open_project(data: bytes, schema: etree.XMLSchema | None) -> Project:
    """Unzip, parse and check a qdpx against everything SOURCE.md lists."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = archive.namelist()
        assert len(names) == len(set(names)), "duplicate zip entries"
        assert "project.qde" in names
        files = {n: archive.read(n) for n in names}
    for entry in names:
        assert entry == "project.qde" or entry.startswith("sources/"), entry
    qde = files["project.qde"]
    assert not qde.startswith(b"\xef\xbb\xbf"), "project.qde must have no BOM"
    root = etree.fromstring(qde, etree.XMLParser(resolve_entities=False, huge_tree=True))
    assert root.tag == f"{{{NS}}}Project"
    if schema is not None:
        schema.assertValid(root)
    project = Project(root, files)

    # children of Project in the strict order, none repeated, no empty wrappers
    order = [etree.QName(child).localname for child in root]
    assert order == sorted(order, key=PROJECT_ORDER.index)
    assert len([o for o in order if o != "NoteRef"]) == len({o for o in order if o != "NoteRef"})
    for wrapper in ("Users", "Variables", "Cases", "Sources", "Notes", "Links", "Sets", "Graphs"):
        for element in project.all(wrapper):
            assert len(element), f"empty <{wrapper}/>"

    # GUIDs unique, every reference resolves
    guids = [el.get("guid") for el in root.iter() if el.get("guid") is not None]
    duplicates = [g for g, n in Counter(guids).items() if n > 1]
    assert not duplicates, f"duplicate GUIDs {duplicates[:3]}"
    known = set(guids)
    for element in root.iter():
        for attribute in REFERENCE_ATTRIBUTES:
            value = element.get(attribute)
            if value is not None:
                assert GUID.fullmatch(value)
                assert value in known, f"{attribute}={value} on {element.tag} resolves to nothing"

    # internal:// paths ↔ entries under sources/, one to one
    referenced: list[str] = []
    for element in root.iter():
        for attribute in ("path", "currentPath", "plainTextPath", "richTextPath"):
            value = element.get(attribute)
            if value is not None:
                assert value.startswith("internal://"), value
                referenced.append("sources/" + value.removeprefix("internal://"))
    assert len(referenced) == len(set(referenced))
    assert set(referenced) == {n for n in names if n != "project.qde"}
    for entry in referenced:
        stem = entry.removeprefix("sources/").rsplit(".", 1)[0]
        assert GUID.fullmatch(stem) and entry == entry.lower()

    # plain text one way only (notes are text sources too); selections inside the text,
    # counted in code points
    for source in project.all("TextSource") + project.all("Note"):
        inline = source.find("q:PlainTextContent", Q)
        path = source.get("plainTextPath")
        assert (inline is None) != (path is None), "PlainTextContent xor plainTextPath"
        if path is not None:
            raw = files["sources/" + path.removeprefix("internal://")]
            assert not raw.startswith(b"\xef\xbb\xbf")
            text = raw.decode("utf-8")
        else:
            assert inline is not None
            text = inline.text or ""
        if source.tag == f"{{{NS}}}TextSource":
            project.transcripts[source.get("guid", "")] = text
        for selection in source.findall("q:PlainTextSelection", Q):
            start = int(selection.get("startPosition", "-1"))
            end = int(selection.get("endPosition", "-1"))
            assert 0 <= start <= end <= len(text)

    # pictures are really PNG or JPEG, named for what they are
    for picture in project.all("PictureSource"):
        entry = "sources/" + picture.get("path", "").removeprefix("internal://")
        data_ = files[entry]
        if entry.endswith(".png"):
            assert data_.startswith(b"\x89PNG\r\n\x1a\n")
        else:
            assert entry.endswith((".jpg", ".jpeg")) and data_.startswith(b"\xff\xd8\xff")
        from PIL import Image

        with Image.open(io.BytesIO(data_)) as image:
            image.verify()
    return project


def selected_texts(project: Project) -> list[str]:
    """The text of every selection, in document order."""
    texts = []
    for source in project.all("TextSource"):
        text = project.transcripts[source.get("guid", "")]
        for selection in source.findall("q:PlainTextSelection", Q):
            start = int(selection.get("startPosition", "0"))
            end = int(selection.get("endPosition", "0"))
            texts.append(text[start:end])
    return texts


def check_contents(project: Project, records: list[ExecutionRecord]) -> None:
    """Every text of every record is a selection of its transcript, exactly."""
    selections = Counter(selected_texts(project))
    for record in records:
        for item in record.items:
            if item.content:
                wanted = expected_text(item.content)
                assert selections[wanted] or any(wanted in s for s in selections), (
                    f"item {item.sequence} text missing"
                )
    assert len(project.all("TextSource")) == len({r.run_id for r in records})
    # one set per config, never one per run (an importer makes a column of each set)
    assert len(project.all("Set")) == len({r.config_name for r in records})
    # notes are files and nothing refers to them by NoteRef (an importer drops those)
    assert not project.all("NoteRef")
    for note in project.all("Note"):
        assert note.get("plainTextPath") and note.find("q:PlainTextContent", Q) is None
    # every source name is a safe file name; media names end in their file's extension
    for tag in ("TextSource", "PictureSource", "AudioSource", "VideoSource"):
        for source in project.all(tag):
            assert_safe_file_name(source.get("name", ""))
            if tag != "TextSource":
                extension = source.get("path", "").rsplit(".", 1)[1]
                assert source.get("name", "").endswith("." + extension)


WINDOWS_UNSAFE = re.compile(r'[<>:"/\\|?*\x00-\x1f\x7f]')


def assert_safe_file_name(name: str) -> None:
    """A name Windows, macOS and Linux accept as a file name, as the importer uses it."""
    assert name and not WINDOWS_UNSAFE.search(name), repr(name)
    assert not name.endswith((".", " ")), repr(name)
    assert len(name) <= 130, repr(name)


def export_qdpx(record: ExecutionRecord, media_dir: Path | None) -> bytes:
    stream = io.BytesIO()
    exports.export(record, "qdpx", stream, media_dir=media_dir, pseudonymiser=PSEUDONYMS)
    return stream.getvalue()


# ---------------------------------------------------------------------- tests


def test_a_stille_post_run_is_a_valid_project(
    finished_record: ExecutionRecord, media_dir: Path, project_schema: etree.XMLSchema | None
) -> None:
    """Schema-valid; one transcript, two pictures, a case, a set, links along the chain."""
    project = open_project(export_qdpx(finished_record, media_dir), project_schema)
    check_contents(project, [finished_record])
    assert len(project.all("PictureSource")) == 2
    (case,) = project.all("Case")
    assert case.get("name") == PSEUDONYMS.user("child-42")
    assert len(case.findall("q:SourceRef", Q)) == 3
    values = {v.findtext("q:TextValue", namespaces=Q) for v in case.findall("q:VariableValue", Q)}
    assert {"kids", "stillepost", PSEUDONYMS.session("class-7b")} <= values
    (set_,) = project.all("Set")
    assert set_.get("name") == "Config stillepost"
    assert len(set_.findall("q:MemberSource", Q)) == 3 and set_.find("q:MemberNote", Q) is not None
    skip_if_not_validated(project_schema)


def test_links_follow_the_chain_from_input_through_each_iteration_to_the_outputs(
    finished_record: ExecutionRecord, media_dir: Path
) -> None:
    """Following the links from the input passes translation, 8 iterations, final, outputs."""
    project = open_project(export_qdpx(finished_record, media_dir), None)
    (source,) = project.all("TextSource")
    text = project.transcripts[source.get("guid", "")]
    by_guid = {
        s.get("guid"): text[int(s.get("startPosition", 0)) : int(s.get("endPosition", 0))]
        for s in source.findall("q:PlainTextSelection", Q)
    }
    pictures = {p.get("guid") for p in project.all("PictureSource")}
    following: dict[str, list[str]] = {}
    for link in project.all("Link"):
        assert link.get("direction") == "OneWay"
        following.setdefault(link.get("originGUID", ""), []).append(link.get("targetGUID", ""))
    start = next(g for g, t in by_guid.items() if t == "Ein Hund spielt im Garten")
    chain = [by_guid[start]]
    node = start
    while len(following.get(node, [])) == 1:
        node = following[node][0]
        chain.append(by_guid.get(node, "<media>"))
    assert chain[:3] == ["Ein Hund spielt im Garten", "A dog plays in the garden", "passed"]
    assert chain[3:11] == STILLE_POST_TEXTS
    # the final text branches to the three outputs' verdicts, two of which lead to a picture
    final = node
    branches = following[final]
    assert [by_guid[b] for b in branches] == ["passed", "not suitable for kids", "passed"]
    assert {t for b in branches for t in following.get(b, [])} == pictures


def test_guids_are_stable_across_exports(finished_record: ExecutionRecord, media_dir: Path) -> None:
    """The same run exported twice has the same GUIDs and the same source files."""
    first = open_project(export_qdpx(finished_record, media_dir), None)
    second = open_project(export_qdpx(finished_record, media_dir), None)
    guids = [
        sorted(el.get("guid", "") for el in p.root.iter() if el.get("guid"))
        for p in (first, second)
    ]
    assert guids[0] == guids[1]
    assert first.files.keys() == second.files.keys()
    assert {k: v for k, v in first.files.items() if k != "project.qde"} == {
        k: v for k, v in second.files.items() if k != "project.qde"
    }


def test_no_raw_ids_in_any_file(finished_record: ExecutionRecord, media_dir: Path) -> None:
    """Only keyed pseudonyms reach the project; raw user and session ids never do."""
    data = export_qdpx(finished_record, media_dir)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for entry in archive.namelist():
            content = archive.read(entry)
            assert b"child-42" not in content and b"class-7b" not in content


def test_the_codebook_is_a_clean_non_codable_stage_group(
    finished_record: ExecutionRecord,
    media_dir: Path,
    project_schema: etree.XMLSchema | None,
    codebook_schema: etree.XMLSchema | None,
) -> None:
    """qdc validates against Codebook.xsd and holds the project's stage codes, none codable."""
    stream = io.BytesIO()
    exports.export(finished_record, "qdc", stream)
    data = stream.getvalue()
    assert not data.startswith(b"\xef\xbb\xbf")
    codebook = etree.fromstring(data)
    if codebook_schema is not None:
        codebook_schema.assertValid(codebook)
    assert codebook.tag == f"{{{CODEBOOK_NS}}}CodeBook"
    codes = list(codebook.iter(f"{{{CODEBOOK_NS}}}Code"))
    assert len(codes) == 7  # the group and stages 0 to 5
    assert {c.get("isCodable") for c in codes} == {"false"}
    project = open_project(export_qdpx(finished_record, media_dir), project_schema)
    assert {c.get("guid") for c in project.all("Code")} == {c.get("guid") for c in codes}
    skip_if_not_validated(project_schema, codebook_schema)


def test_audio_becomes_an_audio_source_and_missing_images_a_placeholder(
    tmp_path: Path, project_schema: etree.XMLSchema | None
) -> None:
    """A WAV output is an AudioSource with its bytes; a missing image a PNG placeholder."""
    media = tmp_path / "media"
    write_wav(media / "song.wav")
    tracker = ExecutionTracker("music", safety_level="teens", user_id="u", media_dir=media)
    with tracker:
        with tracker.stage(1):
            tracker.log_user_input("a song\r\nabout cats")
        with tracker.loop_iteration(1), tracker.stage(4):
            tracker.log_output(
                ItemType.OUTPUT_MUSIC, {"path": "song.wav", "mime_type": "audio/wav"}
            )
        with tracker.loop_iteration(2), tracker.stage(4):
            tracker.log_output(ItemType.OUTPUT_IMAGE, {"path": "gone.png"})
        with tracker.loop_iteration(3), tracker.stage(4):
            tracker.log_output(ItemType.OUTPUT_AUDIO, {"path": "gone.wav"})
    record = tracker.finalize()
    project = open_project(export_qdpx(record, media), project_schema)
    check_contents(project, [record])
    (audio,) = project.all("AudioSource")
    entry = "sources/" + audio.get("path", "").removeprefix("internal://")
    assert entry.endswith(".wav") and project.files[entry] == (media / "song.wav").read_bytes()
    (picture,) = project.all("PictureSource")
    assert "placeholder" in (picture.findtext("q:Description", namespaces=Q) or "")
    (text,) = project.transcripts.values()
    assert "a song\nabout cats" in text and "gone.wav not included" in text
    skip_if_not_validated(project_schema)


@pytest.mark.filterwarnings(LARGE_REPR)
def test_hostile_runs_make_valid_projects(
    tmp_path_factory: pytest.TempPathFactory, project_schema: etree.XMLSchema | None
) -> None:
    """Any hostile run (100,000 characters, surrogates, controls, RTL …) exports and checks out."""
    media_dir = make_media(tmp_path_factory.mktemp("media"))

    @HOSTILE_SETTINGS
    @given(record=hostile_records())
    def run(record: ExecutionRecord) -> None:
        project = open_project(export_qdpx(record, media_dir), project_schema)
        check_contents(project, [record])

    run()
    skip_if_not_validated(project_schema)


def test_a_batch_of_100_runs_is_one_valid_project(
    tmp_path: Path, project_schema: etree.XMLSchema | None
) -> None:
    """100 runs of 7 participants: 7 cases, 100 transcripts and sets, a run given twice once."""
    runs = batch(100, tmp_path)
    stream = io.BytesIO()
    exports.export_batch([*runs, runs[0]], "qdpx", stream, pseudonymiser=PSEUDONYMS)
    project = open_project(stream.getvalue(), project_schema)
    check_contents(project, [record for record, _ in runs])
    cases = project.all("Case")
    assert len(cases) == 7
    assert sum(len(c.findall("q:SourceRef", Q)) for c in cases) == 300
    assert len(project.all("PictureSource")) == 200
    skip_if_not_validated(project_schema)
