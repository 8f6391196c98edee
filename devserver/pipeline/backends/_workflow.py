"""ComfyUI workflow templates: an API-format workflow with named placeholders, filled per output.

A template is a workflow as ComfyUI's "Save (API Format)" exports it (a JSON
object of nodes: ``{"3": {"class_type": "KSampler", "inputs": {…}}, …}``)
in which an input value may be a placeholder: a string that is exactly
``"{{name}}"``. Filling replaces the whole value with a typed one (an int
seed stays an int), so no text is ever spliced into JSON. The placeholders
are ``PLACEHOLDERS``; a template using another name is refused when it is
loaded, as is one without ``{{prompt}}`` and ``{{seed}}`` (a run whose prompt or
seed is not the record's could not be reproduced) or without a ``SaveImage``.

A filled workflow is hashed over its canonical JSON (sorted keys, no
blanks, UTF-8): the record's ``workflow_sha256`` names exactly what
ComfyUI was sent.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The names a template may use, and the type each value must have.
PLACEHOLDERS: dict[str, type | tuple[type, ...]] = {
    "prompt": str,
    "negative_prompt": str,
    "seed": int,
    "steps": int,
    "cfg": (int, float),
    "sampler": str,
    "scheduler": str,
    "width": int,
    "height": int,
    "checkpoint": str,
}
#: Every template must use these.
REQUIRED = ("prompt", "seed")
_PLACEHOLDER = re.compile(r"\{\{([a-z_]+)\}\}")
#: Node types whose output the backend fetches.
OUTPUT_NODES = frozenset({"SaveImage"})
_LARGEST_TEMPLATE = 1_000_000


class WorkflowError(ValueError):
    """A template that cannot be used; the message says why (the caller adds the file)."""


def canonical_json(workflow: dict[str, Any]) -> bytes:
    """The bytes that are hashed: sorted keys, no blanks, UTF-8."""
    return json.dumps(workflow, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True, slots=True)
class FilledWorkflow:
    """A workflow ready to send, and what the record says about it.

    Attributes:
        name: the template's name.
        graph: the API-format workflow with every placeholder filled.
        sha256: hex digest of ``canonical_json(graph)``.
        checkpoint: ``ckpt_name`` of its ``CheckpointLoaderSimple`` (None without one).
        output_nodes: ids of the nodes whose files are the result.
    """

    name: str
    graph: dict[str, Any]
    sha256: str
    checkpoint: str | None
    output_nodes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class WorkflowTemplate:
    """A loaded, checked template.

    Attributes:
        name: the file name without ``.json``.
        graph: the workflow with its placeholders.
        placeholders: the names it uses.
    """

    name: str
    graph: dict[str, Any]
    placeholders: frozenset[str]

    @classmethod
    def load(cls, path: Path) -> WorkflowTemplate:
        """Read and check a template file.

        Raises:
            WorkflowError: unreadable, not JSON, not an API-format workflow, an
                unknown placeholder, a required one missing, or no output node.
        """
        try:
            raw = Path(path).read_bytes()
        except OSError as exc:
            raise WorkflowError(f"cannot be read ({exc.strerror})") from None
        if len(raw) > _LARGEST_TEMPLATE:
            raise WorkflowError("is larger than 1 MB")
        try:
            graph = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise WorkflowError(f"is not valid JSON ({exc})") from None
        return cls.from_graph(Path(path).stem, graph)

    @classmethod
    def from_graph(cls, name: str, graph: Any) -> WorkflowTemplate:
        """Check an already parsed workflow (see ``load``)."""
        if not isinstance(graph, dict) or not graph:
            raise WorkflowError("is not an API-format workflow (an object of nodes)")
        for node_id, node in graph.items():
            if (
                not isinstance(node, dict)
                or not isinstance(node.get("class_type"), str)
                or not isinstance(node.get("inputs"), dict)
            ):
                raise WorkflowError(
                    f"node {node_id!r} has no 'class_type' and 'inputs' (export the workflow "
                    "with 'Save (API Format)')"
                )
        used: set[str] = set()
        _walk(graph, used)
        unknown = sorted(used - set(PLACEHOLDERS))
        if unknown:
            raise WorkflowError(
                f"unknown placeholder(s) {', '.join(unknown)}; known: {', '.join(PLACEHOLDERS)}"
            )
        missing = [name for name in REQUIRED if name not in used]
        if missing:
            raise WorkflowError(f"does not use the placeholder(s) {', '.join(missing)}")
        if not any(node["class_type"] in OUTPUT_NODES for node in graph.values()):
            raise WorkflowError(f"has no output node ({', '.join(sorted(OUTPUT_NODES))})")
        return cls(name, graph, frozenset(used))

    def fill(self, values: dict[str, Any]) -> FilledWorkflow:
        """The workflow with each placeholder replaced by ``values[name]``.

        Raises:
            WorkflowError: a placeholder without a value, or a value of the wrong type.
        """
        for name in self.placeholders:
            if name not in values:
                raise WorkflowError(f"no value for placeholder {name!r}")
            value, kind = values[name], PLACEHOLDERS[name]
            if isinstance(value, bool) or not isinstance(value, kind):
                raise WorkflowError(f"placeholder {name!r} needs a {_kind_name(kind)}")
        graph = _filled(copy.deepcopy(self.graph), values)
        checkpoint = next(
            (
                str(node["inputs"].get("ckpt_name"))
                for node in graph.values()
                if node["class_type"] == "CheckpointLoaderSimple"
                and node["inputs"].get("ckpt_name") is not None
            ),
            None,
        )
        outputs = tuple(
            node_id for node_id, node in graph.items() if node["class_type"] in OUTPUT_NODES
        )
        digest = hashlib.sha256(canonical_json(graph)).hexdigest()
        return FilledWorkflow(self.name, graph, digest, checkpoint, outputs)


def _kind_name(kind: type | tuple[type, ...]) -> str:
    return "number" if isinstance(kind, tuple) else {str: "text", int: "whole number"}[kind]


def _walk(value: Any, used: set[str]) -> None:
    if isinstance(value, dict):
        for item in value.values():
            _walk(item, used)
    elif isinstance(value, list):
        for item in value:
            _walk(item, used)
    elif isinstance(value, str):
        whole = _PLACEHOLDER.fullmatch(value)
        if whole:
            used.add(whole.group(1))
        elif _PLACEHOLDER.search(value):
            raise WorkflowError(
                f"placeholder inside a longer text ({value[:60]!r}); a placeholder must be "
                "the whole value"
            )


def _filled(value: Any, values: dict[str, Any]) -> Any:
    if isinstance(value, dict):
        return {key: _filled(item, values) for key, item in value.items()}
    if isinstance(value, list):
        return [_filled(item, values) for item in value]
    if isinstance(value, str):
        whole = _PLACEHOLDER.fullmatch(value)
        if whole:
            return values[whole.group(1)]
    return value


__all__ = [
    "PLACEHOLDERS",
    "FilledWorkflow",
    "WorkflowError",
    "WorkflowTemplate",
    "canonical_json",
]
