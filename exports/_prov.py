"""W3C PROV of one run (``prov`` package): stages as activities, texts and media as entities.

The document of a run holds:

- an entity for each item that carries something (a text, a media file, a
  safety verdict, a failure), with its sequence, stage, iterations, item type
  and, for media, the path inside the crate, MIME type and SHA-256;
- an activity for each stage that recorded items, with its start and end;
- an agent for the participant (``prov:Person``, named by keyed pseudonym) and
  one for each model (``prov:SoftwareAgent``, with its version when known);
- ``wasGeneratedBy`` (item → its stage), ``wasAssociatedWith`` (stage →
  models), ``wasAttributedTo`` (input → participant, item → model);
- ``wasDerivedFrom`` (item → the item whose content its step consumed) and
  ``used`` (stage → that item), read from each item's ``input_sequence`` as the
  pipeline recorded it. Nothing is inferred from the order of items: an item
  without ``input_sequence`` (a record made before format 1.2, a system item)
  has no derivation, and its stage no ``used`` for it.

Identifiers are stable and global: the participant and model agents have the
same qualified names in every run's document, so documents can be merged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from execution_history import STAGE_NAMES, ExecutionItem, ExecutionRecord, ItemType

from ._journey import type_name
from ._text import sanitise

if TYPE_CHECKING:
    from prov.model import ProvDocument

#: The vocabulary of this exporter's PROV attributes and types.
EH_URI = "urn:execution-history:prov#"
#: Item types that carry nothing of their own: the structure shows them.
SKIPPED_TYPES = frozenset(
    {ItemType.STAGE_TRANSITION, ItemType.PIPELINE_START, ItemType.PIPELINE_COMPLETE}
)


@dataclass(frozen=True, slots=True)
class MediaFile:
    """Where a run's media file sits inside the package.

    Attributes:
        path: the path inside the archive (``media/<run>/…``).
        mime_type: its MIME type, when known.
        sha256: the hex SHA-256 of the bytes written.
    """

    path: str
    mime_type: str | None
    sha256: str


def _local(value: str) -> str:
    # Qualified names must stay parseable in PROV-JSON, PROV-XML and PROV-N:
    # percent-encode everything outside unreserved ASCII.
    return quote(sanitise(value), safe="")


def item_kind(item: ExecutionItem) -> str:
    """The PROV type name of an item's entity: Text, Image, Audio, Video, Model3D, Verdict …

    Args:
        item: any item.

    Returns:
        A local name in the ``eh`` vocabulary.
    """
    if item.item_type in (ItemType.STAGE1_SAFETY_CHECK, ItemType.STAGE3_SAFETY_CHECK):
        return "SafetyVerdict"
    if item.item_type in (ItemType.STAGE1_BLOCKED, ItemType.STAGE3_BLOCKED):
        return "Block"
    if item.item_type in (ItemType.OUTPUT_FAILED, ItemType.PIPELINE_ERROR):
        return "Failure"
    kinds = {
        "text": "Text",
        "image": "Image",
        "audio": "Audio",
        "music": "Music",
        "video": "Video",
        "3d": "Model3D",
        "metadata": "Metadata",
    }
    return kinds.get(type_name(item.media_type), "Item")


def carries_something(item: ExecutionItem) -> bool:
    """Whether an item becomes an entity (everything except structure markers).

    Args:
        item: any item.

    Returns:
        False for stage transitions and pipeline start and completion.
    """
    return item.item_type not in SKIPPED_TYPES


def is_input(item: ExecutionItem) -> bool:
    """Whether an item is what the run was given (the child's text or picture).

    Args:
        item: any item.

    Returns:
        True for ``user_input_text`` and ``user_input_image``.
    """
    return item.item_type in (ItemType.USER_INPUT_TEXT, ItemType.USER_INPUT_IMAGE)


def consumed(items: Sequence[ExecutionItem]) -> dict[int, int]:
    """Which item each step consumed, by position in ``items``, as the record tells it.

    The source of an item is the item whose sequence number is its
    ``input_sequence``. It is left out (never guessed) when ``input_sequence``
    is None, names no item, names an item recorded at or after the step (a
    step consumes what came before it), names a sequence number that two items
    share (a hand-made record), or either item is a structure marker.

    Args:
        items: the record's items in recording order.

    Returns:
        Position of a consuming item to the position of the item it consumed.
    """
    position: dict[int, int] = {}
    shared: set[int] = set()
    for index, item in enumerate(items):
        if item.sequence in position:
            shared.add(item.sequence)
        position[item.sequence] = index
    sources: dict[int, int] = {}
    for index, item in enumerate(items):
        wanted = item.input_sequence
        if wanted is None or wanted in shared or wanted >= item.sequence:
            continue
        source = position.get(wanted)
        if source is None or not (carries_something(item) and carries_something(items[source])):
            continue
        sources[index] = source
    return sources


def build_document(record: ExecutionRecord, media: Mapping[int, MediaFile]) -> ProvDocument:
    """The PROV document of one (pseudonymised) run.

    Args:
        record: the record.
        media: item sequence number to where its media file sits in the package;
            media missing from the package are described by the record alone.

    Returns:
        A ``prov.model.ProvDocument`` ready to serialise as PROV-JSON or PROV-XML.
    """
    from prov.model import PROV_LABEL, PROV_TYPE, ProvDocument

    document = ProvDocument()
    eh = document.add_namespace("eh", EH_URI)
    run = document.add_namespace("run", f"urn:execution-history:run:{_local(record.run_id)}:")
    participant_ns = document.add_namespace("participant", "urn:execution-history:participant:")
    model_ns = document.add_namespace("model", "urn:execution-history:model:")
    prov_person = document.valid_qualified_name("prov:Person")
    prov_software = document.valid_qualified_name("prov:SoftwareAgent")

    participant = None
    if record.user_pseudonym:
        participant = document.agent(
            participant_ns[_local(record.user_pseudonym)],
            {
                PROV_TYPE: prov_person,
                PROV_LABEL: sanitise(record.user_pseudonym),
                eh["pseudonymous"]: True,
            },
        )

    models: dict[str, Any] = {}

    def model_agent(model_name: str) -> Any:
        if model_name not in models:
            attributes: dict[Any, Any] = {
                PROV_TYPE: prov_software,
                PROV_LABEL: sanitise(model_name),
            }
            version = record.model_versions.get(model_name)
            if version:
                attributes[eh["version"]] = sanitise(version)
            models[model_name] = document.agent(model_ns[_local(model_name)], attributes)
        return models[model_name]

    summaries = {summary.stage: summary for summary in record.stages}
    activities: dict[int, Any] = {}
    items = sorted(record.items, key=lambda item: item.sequence)
    for stage in sorted({item.stage for item in items if carries_something(item)}):
        summary = summaries.get(stage)
        attributes: dict[Any, Any] = {
            PROV_TYPE: eh["Stage"],
            PROV_LABEL: f"Stage {stage}: {STAGE_NAMES.get(stage, 'stage')}",
            eh["stage"]: stage,
        }
        if summary is not None:
            attributes[eh["status"]] = type_name(summary.status)
        activities[stage] = document.activity(
            run[f"stage-{stage}"],
            summary.started_at if summary else None,
            summary.ended_at if summary else None,
            attributes,
        )

    entities: dict[int, Any] = {}
    for index, item in enumerate(items):
        if not carries_something(item):
            continue
        attributes = {
            PROV_TYPE: eh[item_kind(item)],
            PROV_LABEL: sanitise(f"{type_name(item.item_type)} (item {item.sequence})"),
            eh["sequence"]: item.sequence,
            eh["stage"]: item.stage,
            eh["itemType"]: sanitise(type_name(item.item_type)),
        }
        if item.stage_iteration is not None:
            attributes[eh["stageIteration"]] = item.stage_iteration
        if item.loop_iteration is not None:
            attributes[eh["loopIteration"]] = item.loop_iteration
        if item.content is not None:
            attributes[eh["characters"]] = len(item.content)
        placed = media.get(item.sequence)
        if placed is not None:
            attributes[eh["path"]] = placed.path
            attributes[eh["sha256"]] = placed.sha256
            if placed.mime_type:
                attributes[eh["mimeType"]] = sanitise(placed.mime_type)
        elif item.media is not None:
            attributes[eh["missingMedia"]] = sanitise(item.media.path)
        # the index keeps two items with the same sequence (a hand-made record) apart
        entity = document.entity(run[f"item-{item.sequence}-{index}"], attributes)
        entities[index] = entity
        activity = activities.get(item.stage)
        given = is_input(item)
        if activity is not None and not given:
            document.wasGeneratedBy(entity, activity, item.timestamp)
        if given and participant is not None:
            document.wasAttributedTo(entity, participant)
        if item.model:
            agent = model_agent(item.model)
            document.wasAttributedTo(entity, agent)
            if activity is not None:
                document.wasAssociatedWith(activity, agent)

    # what each step consumed, as recorded: the stage used it, the item derives from it
    used: set[tuple[int, int]] = set()
    for index, source in consumed(items).items():
        document.wasDerivedFrom(entities[index], entities[source])
        stage = items[index].stage
        if (stage, source) not in used and stage in activities:
            used.add((stage, source))
            document.used(activities[stage], entities[source])
    return document
