"""XML export: valid against the shipped XSD, namespaced, iterations and outputs nested."""

from __future__ import annotations

from pathlib import Path

from lxml import etree

from execution_history import ExecutionRecord, ExecutionTracker, ItemType
from exports._text import sanitise
from exports._xml import NAMESPACE, schema, schema_text
from tests.exports._support import export_bytes

NS = {"r": NAMESPACE}
ROOT = Path(__file__).resolve().parents[2]


def parse_valid(data: bytes) -> etree._Element:
    """Parse with a fresh, non-lenient parser and assert validity against the XSD."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=True)
    root = etree.fromstring(data, parser)
    schema().assertValid(root)
    return root


def test_xml_validates_and_carries_the_header(finished_record: ExecutionRecord) -> None:
    """The document validates; the header holds the run's identity in UTC."""
    root = parse_valid(export_bytes(finished_record, "xml"))
    assert root.tag == f"{{{NAMESPACE}}}record"
    assert root.findtext("r:header/r:run-id", namespaces=NS) == finished_record.run_id
    assert root.findtext("r:header/r:status", namespaces=NS) == "partial"
    assert root.findtext("r:header/r:started-at", namespaces=NS).endswith("Z")
    assert root.get("taxonomy-version") == finished_record.taxonomy_version


def test_xml_nests_iterations_and_outputs(finished_record: ExecutionRecord) -> None:
    """Stage 2 holds iteration 1..8; outputs hold output 1..3 with check and media."""
    root = parse_valid(export_bytes(finished_record, "xml"))
    iterations = root.findall("r:journey/r:stage[@n='2']/r:iteration", NS)
    assert [it.get("n") for it in iterations] == [str(n) for n in range(1, 9)]
    for iteration in iterations:
        items = iteration.findall("r:item", NS)
        assert [item.get("type") for item in items] == ["interception_iteration"]
    outputs = root.findall("r:journey/r:outputs/r:output", NS)
    assert [(o.get("loop"), o.get("outcome")) for o in outputs] == [
        ("1", "generated"),
        ("2", "blocked"),
        ("3", "generated"),
    ]
    first = [item.get("type") for item in outputs[0].findall("r:item", NS)]
    assert "stage3_safety_check" in first and "output_image" in first
    assert outputs[0].find("r:item/r:media", NS).get("path") == "output_1.png"


def test_every_item_appears_once_in_order(finished_record: ExecutionRecord) -> None:
    """All items are present exactly once and in recording order."""
    root = parse_valid(export_bytes(finished_record, "xml"))
    sequences = [int(item.get("seq")) for item in root.iter(f"{{{NAMESPACE}}}item")]
    assert sequences == [item.sequence for item in finished_record.items]


def test_metadata_is_typed_and_nested() -> None:
    """Metadata keeps JSON types and nesting; hostile keys are attributes, escaped."""
    tracker = ExecutionTracker("dada")
    metadata = {"seed": 7, "cfg": 7.5, "ok": True, "none": None, "<&key>": {"a": [1, "x"]}}
    with tracker, tracker.stage(1):
        tracker.log(ItemType.USER_INPUT_TEXT, content="]]> <b>&amp;</b>", metadata=metadata)
    root = parse_valid(export_bytes(tracker.finalize(), "xml"))
    item = root.find(".//r:item[@type='user_input_text']", NS)
    assert item.findtext("r:content", namespaces=NS) == "]]> <b>&amp;</b>"
    entries = {e.get("key"): e for e in item.findall("r:metadata/r:entry", NS)}
    assert (entries["seed"].get("type"), entries["seed"].text) == ("number", "7")
    assert (entries["cfg"].get("type"), entries["cfg"].text) == ("number", "7.5")
    assert (entries["ok"].get("type"), entries["ok"].text) == ("boolean", "true")
    assert entries["none"].get("type") == "null"
    nested = entries["<&key>"]
    assert nested.get("type") == "object"
    array = nested.find("r:entry[@key='a']", NS)
    assert array.get("type") == "array"
    assert [(e.get("type"), e.text) for e in array] == [("number", "1"), ("string", "x")]


def test_illegal_characters_are_replaced_one_for_one() -> None:
    """Control characters and non-characters become U+FFFD; CR, LF and TAB survive."""
    text = "a\x00b\x1fc\ufffed\r\ne\tf"
    tracker = ExecutionTracker("dada")
    with tracker, tracker.stage(1):
        tracker.log(ItemType.USER_INPUT_TEXT, content=text, metadata={"k\x01": "v\x02"})
    root = parse_valid(export_bytes(tracker.finalize(), "xml"))
    item = root.find(".//r:item[@type='user_input_text']", NS)
    content = item.findtext("r:content", namespaces=NS)
    assert content == sanitise(text) == "a\ufffdb\ufffdc\ufffdd\r\ne\tf"
    assert len(content) == len(text)
    entry = item.find("r:metadata/r:entry", NS)
    assert (entry.get("key"), entry.text) == ("k\ufffd", "v\ufffd")


def test_schema_ships_in_the_package_and_in_docs() -> None:
    """docs/execution-record.xsd is the same file as the packaged schema."""
    docs_copy = ROOT / "docs" / "execution-record.xsd"
    assert docs_copy.read_bytes() == schema_text()
    assert schema() is schema()  # compiled once per process
