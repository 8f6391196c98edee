"""REFI-QDA project: what a QDA tool's importer keeps (notes as files, safe names, few sets).

Pinned from what QualCoder 4.0's importer was seen to drop: inline note text and
notes referred to by ``NoteRef``; media named without an extension or with ``:``;
one ``Set`` per run (one attribute column each). Every project is reopened with
lxml and validated against the REFI-QDA schema (``open_project``).
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

import exports
from execution_history import ExecutionRecord, ExecutionTracker, ItemType
from tests.exports.test_qdpx import (
    PSEUDONYMS,
    Q,
    _schema,
    assert_safe_file_name,
    check_contents,
    export_qdpx,
    open_project,
    skip_if_not_validated,
)
from tests.exports.test_tables import make_media


@pytest.fixture(scope="module")
def project_schema() -> etree.XMLSchema | None:
    """Project.xsd from the shared folder (as in test_qdpx.py; a failure under CI when absent)."""
    return _schema("Project.xsd")


DURATION = re.compile(r"Duration: ([^\n(]+?) \(([^)\n]+)\)")


def orchestrated(config: str, text: str, media_dir: Path, user: str = "child-1") -> ExecutionRecord:
    """A run of a shipped config through the real orchestrator (real texts and media)."""
    from devserver import Pipeline, RunRequest, load_configs, run_pipeline
    from devserver.pipeline.backends import LocalBackend
    from devserver.pipeline.safety import AgeFilter, Stage1Filter

    tracker = ExecutionTracker(config, safety_level="kids", user_id=user, session_id="s")
    request = RunRequest(load_configs()[config], text, "kids", seed=2)
    run_pipeline(tracker, request, Pipeline(LocalBackend(), Stage1Filter(), AgeFilter()), media_dir)
    return tracker.finalize()


def test_each_run_note_is_a_file_with_the_whole_text(
    finished_record: ExecutionRecord, media_dir: Path, project_schema: etree.XMLSchema | None
) -> None:
    """The note is given by plainTextPath (no inline text, no NoteRef) and lists every item."""
    project = open_project(export_qdpx(finished_record, media_dir), project_schema)
    (note,) = project.all("Note")
    assert note.find("q:PlainTextContent", Q) is None
    assert not project.all("NoteRef")
    text = project.files["sources/" + note.get("plainTextPath", "").removeprefix("internal://")]
    note_text = text.decode("utf-8")
    for item in finished_record.items:
        assert f"Item {item.sequence}: {item.item_type.value}" in note_text
    assert "Stage summary:" in note_text and "Integrity:" in note_text
    (source,) = project.all("TextSource")
    assert note.get("name", "").removeprefix("Parameters and timings: ") == source.get("name")
    skip_if_not_validated(project_schema)


def test_media_are_named_with_their_extension_and_no_colon(
    tmp_path: Path, project_schema: etree.XMLSchema | None
) -> None:
    """A picture is '<date> <HH-MM> <config> <run> output 1 picture <seq>.png', audio '.wav'."""
    record = orchestrated("image_and_sound", "Ein Hund", tmp_path / "media")
    project = open_project(export_qdpx(record, tmp_path / "media"), project_schema)
    names = [s.get("name", "") for s in project.all("PictureSource") + project.all("AudioSource")]
    assert names and all(":" not in name for name in names)
    (picture,) = project.all("PictureSource")
    pattern = (
        r"\d{4}-\d\d-\d\d \d\d-\d\d image_and_sound "
        + record.run_id[:12]
        + r" output \d+ picture \d+\.png"
    )
    assert re.fullmatch(pattern, picture.get("name", "")), picture.get("name")
    for audio in project.all("AudioSource"):
        assert audio.get("name", "").endswith(".wav")
    skip_if_not_validated(project_schema)


@settings(max_examples=25, deadline=None)
@given(
    config=st.text(
        st.one_of(st.sampled_from('<>:"/\\|?*. \x00\x1f\x7f\ud800😀'), st.characters()),
        min_size=1,
        max_size=200,
    )
)
def test_hostile_config_names_give_safe_source_names(config: str) -> None:
    """Whatever the config is called, every source name is a safe file name."""
    media = Path(__file__).parent / "__qdpx_never_written__"  # no files: placeholders
    tracker = ExecutionTracker(config, user_id="u")
    with tracker:
        with tracker.stage(1):
            tracker.log_user_input("x")
        with tracker.loop_iteration(1), tracker.stage(4):
            tracker.log_output(ItemType.OUTPUT_IMAGE, {"path": "a.png", "mime_type": "image/png"})
    record = tracker.finalize()
    project = open_project(export_qdpx(record, media), None)
    for tag in ("TextSource", "PictureSource"):
        for source in project.all(tag):
            assert_safe_file_name(source.get("name", ""))
    assert not media.exists()


def test_runs_are_grouped_by_config_not_one_set_per_run(
    tmp_path: Path, project_schema: etree.XMLSchema | None
) -> None:
    """Six runs of two configs: two sets with all their runs' sources and notes."""
    runs = []
    for index, config in enumerate(["stillepost", "dada"] * 3):
        media = tmp_path / f"run{index}"
        runs.append((orchestrated(config, "Ein Hund", media, f"child-{index % 2}"), media))
    stream = io.BytesIO()
    exports.export_batch(runs, "qdpx", stream, pseudonymiser=PSEUDONYMS)
    project = open_project(stream.getvalue(), project_schema)
    check_contents(project, [record for record, _ in runs])
    sets = {s.get("name"): s for s in project.all("Set")}
    assert sorted(sets) == ["Config dada", "Config stillepost"]
    sources = {
        s.get("guid"): s for s in project.root.iter() if s.get("plainTextPath") or s.get("path")
    }
    for name, element in sets.items():
        members = [m.get("targetGUID") for m in element.findall("q:MemberSource", Q)]
        notes = element.findall("q:MemberNote", Q)
        assert len(notes) == 3  # one per run of that config
        transcripts = [g for g in members if sources[g].tag.endswith("TextSource")]
        assert len(transcripts) == 3
        config = name.removeprefix("Config ")
        for guid in transcripts:
            values = {
                v.findtext("q:TextValue", namespaces=Q)
                for v in sources[guid].findall("q:VariableValue", Q)
            }
            assert config in values  # run facts travel as variables of the transcript
    skip_if_not_validated(project_schema)


@pytest.mark.parametrize("config", ["stillepost", "image_and_sound"])
def test_no_value_is_said_twice(config: str, tmp_path: Path) -> None:
    """No 'Duration: 0.094 ms (0.094 ms)' and no 'passed: passed' anywhere in the project."""
    record = orchestrated(config, "Ein Hund spielt", tmp_path / "media")
    project = open_project(export_qdpx(record, tmp_path / "media"), None)
    texts = [data.decode("utf-8") for n, data in project.files.items() if n.endswith(".txt")]
    texts += [d.text or "" for d in project.all("Description")]
    checked = 0
    for text in texts:
        assert "passed: passed" not in text
        for readable, exact in DURATION.findall(text):
            assert readable != exact, text
        checked += len(re.findall(r"Duration: ", text))
    assert checked > 0  # durations are there, once each
    (transcript,) = project.transcripts.values()
    assert "\npassed\n" in transcript  # the verdict is still shown, once


def test_a_media_folder_with_hostile_files_keeps_names_safe(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Media paths with ../ and odd names still give safe, extension-bearing source names."""
    media = make_media(tmp_path_factory.mktemp("media"))
    tracker = ExecutionTracker('a:b<c>"d"', user_id="u", media_dir=media)
    with tracker:
        with tracker.stage(1):
            tracker.log_user_input("x")
        for loop, path in enumerate(["good.png", "../escape.png", "photo.webp"], start=1):
            with tracker.loop_iteration(loop), tracker.stage(4):
                tracker.log_output(ItemType.OUTPUT_IMAGE, {"path": path})
    record = tracker.finalize()
    project = open_project(export_qdpx(record, media), None)
    pictures = project.all("PictureSource")
    assert len(pictures) == 3
    for picture in pictures:
        assert_safe_file_name(picture.get("name", ""))
        assert picture.get("name", "").endswith((".png", ".jpg"))
