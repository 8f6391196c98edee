"""RO-Crate archive: reopened with the rocrate package, checksums verified, PROV round-tripped.

Every ``hasPart`` must exist with the size and sha256 the metadata states, every
file in the zip must be listed, every reference must resolve, and each run's
PROV document must read back equal through PROV-JSON and PROV-XML.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from prov.constants import PROV_ATTR_ACTIVITY
from prov.model import ProvDerivation, ProvDocument
from rocrate.rocrate import ROCrate

import exports
from execution_history import ExecutionRecord, ExecutionTracker, Pseudonymiser
from tests.exports.test_tables import (
    HOSTILE_SETTINGS,
    LARGE_REPR,
    batch,
    hostile_records,
    make_media,
)

PSEUDONYMS = Pseudonymiser("rocrate-test-pseudonym-key-01234")
EH = "urn:execution-history:prov#"


def export_crate(record: ExecutionRecord, media_dir: Path | None) -> bytes:
    stream = io.BytesIO()
    exports.export(record, "rocrate", stream, media_dir=media_dir, pseudonymiser=PSEUDONYMS)
    return stream.getvalue()


def as_list(value: Any) -> list[Any]:
    """A JSON-LD value as a list: absent is empty, a single value is one element."""
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _references(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        if set(value) == {"@id"}:
            yield value["@id"]
        for child in value.values():
            yield from _references(child)
    elif isinstance(value, list):
        for child in value:
            yield from _references(child)


def open_crate(data: bytes, folder: Path) -> tuple[ROCrate, dict[str, dict[str, Any]]]:
    """Unzip, reopen with rocrate and check files, checksums and references."""
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = archive.namelist()
        assert len(names) == len(set(names))
        archive.extractall(folder)
    metadata = json.loads((folder / "ro-crate-metadata.json").read_text("utf-8"))
    assert metadata["@context"][0] == "https://w3id.org/ro/crate/1.1/context"
    graph = {entity["@id"]: entity for entity in metadata["@graph"]}
    assert len(graph) == len(metadata["@graph"]), "an @id is described twice"
    assert graph["ro-crate-metadata.json"]["conformsTo"] == {"@id": "https://w3id.org/ro/crate/1.1"}

    crate = ROCrate(folder)
    root = crate.root_dataset
    assert root["name"] and root["description"] and root["datePublished"]
    parts = root["hasPart"] or []
    parts = parts if isinstance(parts, list) else [parts]
    listed = set()
    for part in parts:
        path = folder / part.id
        assert path.is_file(), f"hasPart {part.id} is not in the crate"
        content = path.read_bytes()
        assert part["sha256"] == hashlib.sha256(content).hexdigest(), part.id
        assert int(part["contentSize"]) == len(content)
        assert part["encodingFormat"]
        listed.add(part.id)
    assert listed == {n for n in names if n != "ro-crate-metadata.json"}

    for reference in _references(metadata["@graph"]):
        if not reference.startswith(("http://", "https://")):
            assert reference in graph, f"reference {reference} resolves to nothing"
    for action in (e for e in graph.values() if e["@type"] == "CreateAction"):
        assert crate.get(action["@id"]) is not None
        for instrument in as_list(action.get("instrument")):
            assert graph[instrument["@id"]]["@type"] == "SoftwareApplication"
    return crate, graph


def prov_round_trips(text: str) -> ProvDocument:
    """The PROV document reads back equal through PROV-JSON and through PROV-XML."""
    document = ProvDocument.deserialize(content=text, format="json")
    again = ProvDocument.deserialize(content=document.serialize(format="json"), format="json")
    assert again == document
    xml = document.serialize(format="xml")
    assert ProvDocument.deserialize(content=xml, format="xml") == document
    return document


def _attribute(record: Any, name: str) -> Any:
    values = [v for k, v in record.attributes if str(k.uri) == EH + name]
    return values[0] if values else None


# ---------------------------------------------------------------------- tests


def test_a_stille_post_run_is_a_complete_crate(
    finished_record: ExecutionRecord, media_dir: Path, tmp_path: Path
) -> None:
    """Record, PROV and both images are listed and intact; one CreateAction per stage."""
    _crate, graph = open_crate(export_crate(finished_record, media_dir), tmp_path / "crate")
    run = finished_record.run_id
    record_file = tmp_path / "crate" / "records" / f"{run}.json"
    read_back = ExecutionRecord.model_validate_json(record_file.read_bytes())
    assert read_back == finished_record.pseudonymised(PSEUDONYMS)

    images = [e for e in graph.values() if e["@id"].startswith(f"media/{run}/")]
    assert sorted(e["sha256"] for e in images) == sorted(
        i.media.sha256 for i in finished_record.items if i.media and i.media.sha256
    )
    actions = {e["@id"]: e for e in graph.values() if e["@type"] == "CreateAction"}
    assert sorted(actions) == [f"#run-{run}-stage-{n}" for n in (1, 2, 3, 4)]
    stage4 = actions[f"#run-{run}-stage-4"]
    assert {r["@id"] for r in as_list(stage4["result"])} == {e["@id"] for e in images}
    # a single value is written as one, not as a one-element array (RO-Crate 1.1)
    assert stage4["instrument"] == {"@id": "#model-procedural-image"}
    assert graph["#model-glossary-translator"]["version"] == "1"
    assert len(actions[f"#run-{run}-stage-2"]["result"]) == 9  # 8 iterations and the final
    participant = graph[stage4["agent"]["@id"]]
    assert participant["@type"] == "Person"
    assert participant["name"] == PSEUDONYMS.user("child-42")
    assert {r["@id"] for r in graph["./"]["mentions"]} == {*actions, f"#run-{run}"}
    assert graph[f"#run-{run}"]["@type"] == "Action"


def orchestrated(config: str, media_dir: Path) -> ExecutionRecord:
    """A run made by the real orchestrator, which records what each step consumed."""
    from devserver import Pipeline, RunRequest, load_configs, run_pipeline
    from devserver.pipeline.backends import LocalBackend
    from devserver.pipeline.safety import AgeFilter, Stage1Filter

    request = RunRequest(load_configs()[config], "Ein Hund spielt im Garten", "kids", seed=3)
    tracker = ExecutionTracker(config, safety_level="kids", user_id="child-42", session_id="s")
    pipeline = Pipeline(LocalBackend(), Stage1Filter(), AgeFilter())
    run_pipeline(tracker, request, pipeline, media_dir)
    return tracker.finalize()


def derivations(document: ProvDocument) -> dict[str, list[str]]:
    """Generated entity to the entities it was derived from, read from the PROV document."""
    derived: dict[str, list[str]] = {}
    for relation in document.get_records(ProvDerivation):
        attributes = dict(relation.formal_attributes)
        generated = str(attributes[next(k for k in attributes if k.localpart == "generatedEntity")])
        used = str(attributes[next(k for k in attributes if k.localpart == "usedEntity")])
        derived.setdefault(generated, []).append(used)
    return derived


def read_prov(folder: Path, run_id: str) -> ProvDocument:
    return prov_round_trips((folder / "provenance" / f"{run_id}.prov.json").read_text("utf-8"))


def test_prov_follows_what_each_step_consumed_and_round_trips(tmp_path: Path) -> None:
    """Stille Post: final ← 8 iterations ← the prompt (not the translation), as recorded."""
    record = orchestrated("stillepost", tmp_path / "media")
    folder = tmp_path / "crate"
    _crate, graph = open_crate(export_crate(record, tmp_path / "media"), folder)
    document = read_prov(folder, record.run_id)
    entities = {str(e.identifier): e for e in document.get_records() if e.is_element()}
    derived = derivations(document)
    final = next(
        k for k, e in entities.items() if _attribute(e, "itemType") == "interception_final"
    )
    chain = [final]
    while derived.get(chain[-1]):
        (previous,) = derived[chain[-1]]
        chain.append(previous)
    kinds = [_attribute(entities[node], "itemType") for node in chain]
    assert kinds == ["interception_final"] + ["interception_iteration"] * 8 + ["user_input_text"]
    iterations = [_attribute(entities[n], "stageIteration") for n in chain[1:9]]
    assert iterations == list(range(8, 0, -1))
    # each derivation is the record's own input_sequence, nothing else
    sequence = {k: _attribute(e, "sequence") for k, e in entities.items()}
    told = {i.sequence: i.input_sequence for i in record.items if i.input_sequence}
    assert {sequence[k]: [sequence[v] for v in vs] for k, vs in derived.items()} == {
        k: [v] for k, v in told.items()
    }
    (translation,) = [
        k for k, e in entities.items() if _attribute(e, "itemType") == "translation_result"
    ]
    assert derived[translation] == [chain[-1]]
    images = [e for e in entities.values() if _attribute(e, "sha256")]
    assert len(images) == 1 and derived[str(images[0].identifier)] == [final]
    agents = [r for r in document.get_records() if r.get_type().localpart == "Agent"]
    assert PSEUDONYMS.user("child-42") in {
        str(next(iter(a.get_attribute("prov:label")))) for a in agents
    }
    activities = [r for r in document.get_records() if r.get_type().localpart == "Activity"]
    assert len(activities) == 4
    usages = [r for r in document.get_records() if r.get_type().localpart == "Usage"]
    stages = [str(dict(u.formal_attributes)[PROV_ATTR_ACTIVITY]) for u in usages]
    # stage 1 and 2 used the prompt, stage 2 its 8 steps, stages 3 and 4 the final text
    assert sorted(stages) == sorted(f"run:stage-{n}" for n in [1, 2, *[2] * 8, 3, 4])

    # the crate's stage 2 action starts from the prompt too
    run = record.run_id
    stage2 = graph[f"#run-{run}-stage-2"]
    assert graph[stage2["object"]["@id"]]["position"] == 3  # user_input_text
    stage4 = graph[f"#run-{run}-stage-4"]
    assert graph[stage4["object"]["@id"]]["position"] == 15  # interception_final


def test_without_input_sequence_nothing_is_derived(
    finished_record: ExecutionRecord, media_dir: Path, tmp_path: Path
) -> None:
    """A record that does not say what its steps consumed gets no derivation and no guess."""
    assert all(item.input_sequence is None for item in finished_record.items)
    folder = tmp_path / "crate"
    _crate, graph = open_crate(export_crate(finished_record, media_dir), folder)
    document = read_prov(folder, finished_record.run_id)
    assert derivations(document) == {}
    assert not [r for r in document.get_records() if r.get_type().localpart == "Usage"]
    run = finished_record.run_id
    assert "object" not in graph[f"#run-{run}-stage-2"]
    # the run's own input is what stage 1 starts from: the record says so by its type
    stage1 = graph[f"#run-{run}-stage-1"]
    assert graph[stage1["object"]["@id"]]["name"].endswith("user_input_text")


def test_a_reference_that_cannot_be_true_is_left_out(
    finished_record: ExecutionRecord, tmp_path: Path
) -> None:
    """input_sequence naming a later item, no item, or a shared sequence number gives nothing."""
    data = finished_record.model_dump(mode="json")
    items = data["items"]
    by_type = {item["item_type"]: item for item in items}
    by_type["translation_result"]["input_sequence"] = by_type["user_input_text"]["sequence"]
    by_type["interception_final"]["input_sequence"] = 10_000  # no such item
    by_type["stage1_safety_check"]["input_sequence"] = by_type["interception_final"]["sequence"]
    first, second = [i for i in items if i["item_type"] == "interception_iteration"][:2]
    second["input_sequence"] = first["sequence"]
    items.append({**first, "input_sequence": None})  # now two items share that sequence
    record = ExecutionRecord.model_validate(data)
    folder = tmp_path / "crate"
    open_crate(export_crate(record, None), folder)
    document = read_prov(folder, record.run_id)
    entities = {str(e.identifier): e for e in document.get_records() if e.is_element()}
    kinds = {
        _attribute(entities[k], "itemType"): [_attribute(entities[v], "itemType") for v in vs]
        for k, vs in derivations(document).items()
    }
    assert kinds == {"translation_result": ["user_input_text"]}


def test_no_raw_ids_in_any_file(finished_record: ExecutionRecord, media_dir: Path) -> None:
    """Only keyed pseudonyms reach the crate; raw user and session ids never do."""
    with zipfile.ZipFile(io.BytesIO(export_crate(finished_record, media_dir))) as archive:
        for entry in archive.namelist():
            content = archive.read(entry)
            assert b"child-42" not in content and b"class-7b" not in content


@pytest.mark.filterwarnings(LARGE_REPR)
def test_hostile_runs_make_valid_crates(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Any hostile run exports; files verify, references resolve, PROV round-trips."""
    media_dir = make_media(tmp_path_factory.mktemp("media"))
    counter = iter(range(10_000))

    @settings(HOSTILE_SETTINGS, max_examples=15)
    @given(record=hostile_records())
    def run(record: ExecutionRecord) -> None:
        folder = tmp_path_factory.getbasetemp() / f"hostile-crate-{next(counter)}"
        _crate, graph = open_crate(export_crate(record, media_dir), folder)
        for path in (folder / "provenance").iterdir():
            prov_round_trips(path.read_text("utf-8"))
        # nothing outside the media folder was copied in (../escape.png)
        escape = (media_dir.parent / "escape.png").read_bytes()
        for entity in graph.values():
            if entity["@id"].startswith("media/"):
                assert (folder / entity["@id"]).read_bytes() != escape

    run()


def test_a_batch_of_100_runs_is_one_valid_crate(tmp_path: Path) -> None:
    """100 runs: 400 files listed and intact, 7 participants described once, PROV per run."""
    runs = batch(100, tmp_path / "runs")
    stream = io.BytesIO()
    exports.export_batch([*runs, runs[0]], "rocrate", stream, pseudonymiser=PSEUDONYMS)
    _crate, graph = open_crate(stream.getvalue(), tmp_path / "crate")
    assert len(graph["./"]["hasPart"]) == 400  # record, PROV and two images per run
    assert len([e for e in graph.values() if e["@type"] == "Person"]) == 7
    assert len([e for e in graph.values() if e["@type"] == "CreateAction"]) == 400
    for path in sorted((tmp_path / "crate" / "provenance").iterdir()):
        prov_round_trips(path.read_text("utf-8"))
