"""The vocabulary of a run: item types, media types, stages and run statuses."""

from __future__ import annotations

from enum import IntEnum, StrEnum

#: Bumped whenever an item type, media type or record field is added or changes meaning.
TAXONOMY_VERSION = "1.1"


class Stage(IntEnum):
    """Pipeline stages; 0 and 5 bracket the four working stages."""

    PIPELINE_START = 0
    TRANSLATION_SAFETY = 1
    INTERCEPTION = 2
    PRE_OUTPUT_SAFETY = 3
    MEDIA_GENERATION = 4
    PIPELINE_END = 5


STAGE_NAMES: dict[int, str] = {
    0: "Pipeline start",
    1: "Translation and safety",
    2: "Interception",
    3: "Pre-output safety",
    4: "Media generation",
    5: "Pipeline end",
}


class ItemType(StrEnum):
    """What an item records (DESIGN.md §3)."""

    # system
    PIPELINE_START = "pipeline_start"
    STAGE_TRANSITION = "stage_transition"
    PIPELINE_COMPLETE = "pipeline_complete"
    PIPELINE_ERROR = "pipeline_error"
    # stage 1
    USER_INPUT_TEXT = "user_input_text"
    USER_INPUT_IMAGE = "user_input_image"
    TRANSLATION_RESULT = "translation_result"
    STAGE1_SAFETY_CHECK = "stage1_safety_check"
    STAGE1_BLOCKED = "stage1_blocked"
    # stage 2
    INTERCEPTION_ITERATION = "interception_iteration"
    INTERCEPTION_FINAL = "interception_final"
    # stage 3
    STAGE3_SAFETY_CHECK = "stage3_safety_check"
    STAGE3_BLOCKED = "stage3_blocked"
    # stage 4
    OUTPUT_IMAGE = "output_image"
    OUTPUT_AUDIO = "output_audio"
    OUTPUT_MUSIC = "output_music"
    OUTPUT_VIDEO = "output_video"
    OUTPUT_3D = "output_3d"
    OUTPUT_FAILED = "output_failed"


class MediaType(StrEnum):
    """The kind of content an item carries."""

    TEXT = "text"
    IMAGE = "image"
    AUDIO = "audio"
    MUSIC = "music"
    VIDEO = "video"
    THREE_D = "3d"
    METADATA = "metadata"


class RunStatus(StrEnum):
    """How a run ended (or that it has not yet)."""

    RUNNING = "running"
    SUCCESS = "success"
    PARTIAL = "partial"  # finished, some outputs made, some blocked or failed
    # finished, but not one output made: each was blocked (stage 3) or failed (stage 4);
    # the stage summary's blocks and failures say which (taxonomy 1.1, docs/taxonomy.md)
    NO_OUTPUT = "no_output"
    BLOCKED = "blocked"  # stopped at stage 1
    ERROR = "error"
    INCOMPLETE = "incomplete"  # recovered from the journal after the process died


class StageStatus(StrEnum):
    """The state of one stage, shared by the record's summary and live progress."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    BLOCKED = "blocked"
    FAILED = "failed"
    SKIPPED = "skipped"


#: The media type an item type implies when the caller gives none.
DEFAULT_MEDIA_TYPE: dict[str, MediaType] = {
    ItemType.PIPELINE_START: MediaType.METADATA,
    ItemType.STAGE_TRANSITION: MediaType.METADATA,
    ItemType.PIPELINE_COMPLETE: MediaType.METADATA,
    ItemType.PIPELINE_ERROR: MediaType.METADATA,
    ItemType.USER_INPUT_TEXT: MediaType.TEXT,
    ItemType.USER_INPUT_IMAGE: MediaType.IMAGE,
    ItemType.TRANSLATION_RESULT: MediaType.TEXT,
    ItemType.STAGE1_SAFETY_CHECK: MediaType.METADATA,
    ItemType.STAGE1_BLOCKED: MediaType.METADATA,
    ItemType.INTERCEPTION_ITERATION: MediaType.TEXT,
    ItemType.INTERCEPTION_FINAL: MediaType.TEXT,
    ItemType.STAGE3_SAFETY_CHECK: MediaType.METADATA,
    ItemType.STAGE3_BLOCKED: MediaType.METADATA,
    ItemType.OUTPUT_IMAGE: MediaType.IMAGE,
    ItemType.OUTPUT_AUDIO: MediaType.AUDIO,
    ItemType.OUTPUT_MUSIC: MediaType.MUSIC,
    ItemType.OUTPUT_VIDEO: MediaType.VIDEO,
    ItemType.OUTPUT_3D: MediaType.THREE_D,
    ItemType.OUTPUT_FAILED: MediaType.METADATA,
}

#: Item types that produce an output's media in stage 4.
OUTPUT_ITEM_TYPES: frozenset[str] = frozenset(
    {
        ItemType.OUTPUT_IMAGE,
        ItemType.OUTPUT_AUDIO,
        ItemType.OUTPUT_MUSIC,
        ItemType.OUTPUT_VIDEO,
        ItemType.OUTPUT_3D,
    }
)
#: Item types that count as a block in the stage they were recorded in.
BLOCK_ITEM_TYPES: frozenset[str] = frozenset({ItemType.STAGE1_BLOCKED, ItemType.STAGE3_BLOCKED})
#: Item types that count as a failure in the stage they were recorded in.
FAILURE_ITEM_TYPES: frozenset[str] = frozenset({ItemType.OUTPUT_FAILED, ItemType.PIPELINE_ERROR})
