"""The hot-path item: a frozen, slotted tuple built with one C call and appended."""

from __future__ import annotations

from typing import Any

# Field positions inside a RawItem. The tracker builds the tuple positionally;
# everything else reads it through the named properties below.
SEQUENCE, TIMESTAMP_NS, STAGE, STAGE_ITERATION, LOOP_ITERATION = 0, 1, 2, 3, 4
ITEM_TYPE, CONTENT, MEDIA_TYPE, MEDIA, MODEL, BACKEND = 5, 6, 7, 8, 9, 10
DURATION_MS, METADATA, CONFIG, EXTRA = 11, 12, 13, 14
FIELD_COUNT = 15


class RawItem(tuple[Any, ...]):
    """One recorded event, exactly as the pipeline handed it over.

    A tuple subclass so that recording costs one ``tuple.__new__`` and one
    ``list.append``: frozen (tuples are immutable), slotted (no ``__dict__``)
    and typed through its properties. Nothing is validated or converted here;
    the finaliser turns raw items into validated ``ExecutionItem`` models.
    """

    __slots__ = ()

    @property
    def sequence(self) -> int:
        return int(self[SEQUENCE])

    @property
    def timestamp_ns(self) -> int:
        return int(self[TIMESTAMP_NS])

    @property
    def stage(self) -> int:
        return int(self[STAGE])

    @property
    def stage_iteration(self) -> int | None:
        value: int | None = self[STAGE_ITERATION]
        return value

    @property
    def loop_iteration(self) -> int | None:
        value: int | None = self[LOOP_ITERATION]
        return value

    @property
    def item_type(self) -> Any:
        return self[ITEM_TYPE]


#: ``new_raw_item(RawItem, fields)`` builds an item without a Python-level ``__new__``.
new_raw_item = tuple.__new__
