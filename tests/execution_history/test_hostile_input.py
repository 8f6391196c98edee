"""Hostile metadata and text: the run finishes, the record is strict JSON, changes are counted."""

from __future__ import annotations

import datetime as dt
import json
import math
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from execution_history import ExecutionRecord, ExecutionTracker, ItemType


def strict_loads(text: str) -> object:
    def refuse(name: str) -> object:
        raise ValueError(f"non-standard JSON literal {name}")

    return json.loads(text, parse_constant=refuse)


def record_with(content: object = None, metadata: object = None) -> ExecutionRecord:
    with ExecutionTracker("x") as tracker, tracker.stage(1):
        tracker.log(ItemType.USER_INPUT_TEXT, content, metadata=metadata)  # type: ignore[arg-type]
    return tracker.finalize()


class BadRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")


def test_metadata_json_cannot_hold_is_coerced_and_counted() -> None:
    cyclic: dict[str, object] = {"name": "loop"}
    cyclic["self"] = cyclic
    deep: object = "bottom"
    for _ in range(100):
        deep = {"d": deep}
    metadata = {
        "bytes": b"\x00\xff",
        "big_bytes": b"x" * 10_000,
        "set": {3, 1, 2},
        "when": dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
        "price": Decimal("1.10"),
        "nan": math.nan,
        "inf": math.inf,
        "ninf": -math.inf,
        "bad": BadRepr(),
        "cyclic": cyclic,
        "deep": deep,
        7: "int key",
    }
    record = record_with("ok", metadata)
    text = record.model_dump_json()
    strict_loads(text)  # no NaN / Infinity literals
    item = next(i for i in record.items if i.item_type == ItemType.USER_INPUT_TEXT)
    meta = item.metadata
    assert meta["bytes"] == {"$base64": "AP8="}
    assert meta["big_bytes"] == {"$bytes": 10_000}
    assert meta["set"] == [1, 2, 3]
    assert meta["when"] == "2026-01-02T03:04:05+00:00"
    assert meta["price"] == "1.10"
    assert (meta["nan"], meta["inf"], meta["ninf"]) == ("NaN", "Infinity", "-Infinity")
    assert meta["bad"] == "<unrepresentable BadRepr>"
    assert meta["cyclic"]["self"] == "<cycle>"
    assert meta["7"] == "int key"
    depth, node = 0, meta["deep"]
    while isinstance(node, dict):
        node, depth = node["d"], depth + 1
    assert node == "<nesting too deep>" and depth < 100
    integrity = record.integrity
    assert integrity.values_coerced >= 10
    assert integrity.fields_truncated >= 2  # the cycle and the deep nesting


def test_text_is_kept_faithfully_where_legal_and_replaced_one_for_one_where_not() -> None:
    text = "a\x00b\x07c\u202eשלום 你好 😀👩‍👩‍👧 \ud800x\udfffy"
    record = record_with(text)
    item = next(i for i in record.items if i.item_type == ItemType.USER_INPUT_TEXT)
    assert item.content is not None and len(item.content) == len(text)
    assert item.content == text.replace("\ud800", "\ufffd").replace("\udfff", "\ufffd")
    assert record.integrity.characters_replaced == 2
    reloaded = ExecutionRecord.model_validate_json(record.model_dump_json())
    assert reloaded.items[2].content == item.content


def test_ten_megabyte_string_is_truncated_and_counted() -> None:
    record = record_with("x" * 10_000_000)
    item = next(i for i in record.items if i.item_type == ItemType.USER_INPUT_TEXT)
    assert item.content is not None and len(item.content) == 1_000_000
    assert item.content_length == 10_000_000
    assert record.integrity.fields_truncated == 1


json_like = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(st.characters(codec=None, min_codepoint=0, max_codepoint=0x10FFFF))
    | st.binary(max_size=64)
    | st.datetimes()
    | st.decimals(allow_nan=True),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=5) | st.integers(), children, max_size=4)
        | st.frozensets(st.integers(), max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    content=st.text(st.characters(min_codepoint=0, max_codepoint=0x10FFFF)) | json_like,
    metadata=st.dictionaries(st.text(max_size=8), json_like, max_size=5) | json_like,
)
def test_any_input_gives_a_strict_json_record_that_reloads(
    content: object, metadata: object
) -> None:
    record = record_with(content, metadata)
    assert record.status == "success"
    text = record.model_dump_json()
    strict_loads(text)
    text.encode("utf-8")  # no lone surrogate survives
    assert ExecutionRecord.model_validate_json(text) == record
