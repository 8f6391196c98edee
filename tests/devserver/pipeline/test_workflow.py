"""Workflow templates: placeholders are whole values filled with typed values, the hash names
exactly the filled graph, and templates that could not be reproduced are refused."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devserver.pipeline._configs import shipped_workflows_dir
from devserver.pipeline.backends import WorkflowError, WorkflowTemplate

SHIPPED = WorkflowTemplate.load(shipped_workflows_dir() / "txt2img.json")
BASE = {"negative_prompt": "", "steps": 4, "cfg": 7.0, "sampler": "euler", "scheduler": "normal",
        "width": 64, "height": 64, "checkpoint": "c.safetensors"}  # fmt: skip


@given(prompt=st.text(max_size=200), seed=st.integers(0, 2**63 - 1))
def test_any_prompt_and_seed_reach_the_graph_unchanged_and_the_hash_names_it(
    prompt: str, seed: int
) -> None:
    filled = SHIPPED.fill({**BASE, "prompt": prompt, "seed": seed})
    assert filled.graph["6"]["inputs"]["text"] == prompt  # not spliced, not escaped twice
    assert filled.graph["3"]["inputs"]["seed"] == seed
    canonical = json.dumps(filled.graph, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert filled.sha256 == hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()
    assert SHIPPED.graph["6"]["inputs"]["text"] == "{{prompt}}"  # the template is not changed


def test_the_checkpoint_and_output_node_are_found_in_the_filled_graph() -> None:
    filled = SHIPPED.fill({**BASE, "prompt": "p", "seed": 1})
    assert filled.checkpoint == "c.safetensors" and filled.output_nodes == ("9",)


@pytest.mark.parametrize(
    ("graph", "words"),
    [
        ({"1": {"class_type": "SaveImage", "inputs": {"s": "{{seed}}"}}}, "prompt"),
        ({"1": {"class_type": "X", "inputs": {"s": "{{seed}}", "p": "{{prompt}}"}}}, "output node"),
        ({"1": {"class_type": "SaveImage", "inputs": {"p": "a {{prompt}}", "s": "{{seed}}"}}},
         "inside a longer text"),
        ({"1": {"class_type": "SaveImage", "inputs": {"p": "{{prompt}}", "s": "{{seeds}}"}}},
         "unknown placeholder"),
        ({"nodes": [], "links": []}, "API Format"),
        ([], "API-format"),
    ],
)  # fmt: skip
def test_unusable_templates_are_refused(graph: Any, words: str) -> None:
    with pytest.raises(WorkflowError, match=words):
        WorkflowTemplate.from_graph("t", graph)


@pytest.mark.parametrize(("name", "value"), [("seed", "1"), ("steps", 2.5), ("seed", True)])
def test_a_value_of_the_wrong_type_is_refused(name: str, value: Any) -> None:
    with pytest.raises(WorkflowError, match=name):
        SHIPPED.fill({**BASE, "prompt": "p", "seed": 1, name: value})
