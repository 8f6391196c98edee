"""Smoke tests against REAL generators, for whoever has one; skipped (never passing) otherwise.

Set one or both, then run this file:

- ``DEVSERVER_SMOKE_COMFYUI_URL=http://127.0.0.1:8188`` and
  ``DEVSERVER_SMOKE_COMFYUI_CHECKPOINT=<a checkpoint file name on that server>``;
- ``DEVSERVER_SMOKE_OPENAI_BASE_URL`` (e.g. ``http://127.0.0.1:11434/v1`` for Ollama),
  ``DEVSERVER_SMOKE_OPENAI_MODEL`` and, if the server needs one, ``DEVSERVER_SMOKE_OPENAI_API_KEY``.

pytest reports them as skipped when the variables are unset: a skip is not a pass.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image

from devserver.pipeline._configs import shipped_workflows_dir
from devserver.pipeline.backends import (
    ComfyUIBackend,
    OpenAIBackend,
    OpenAIClient,
    ProgressBoard,
    WorkflowTemplate,
)

COMFYUI = os.environ.get("DEVSERVER_SMOKE_COMFYUI_URL")
OPENAI = os.environ.get("DEVSERVER_SMOKE_OPENAI_BASE_URL")


@pytest.mark.skipif(not COMFYUI, reason="no real ComfyUI named (DEVSERVER_SMOKE_COMFYUI_URL)")
def test_a_real_comfyui_makes_a_png_of_the_asked_size_and_reports_steps(tmp_path: Path) -> None:
    checkpoint = os.environ["DEVSERVER_SMOKE_COMFYUI_CHECKPOINT"]
    template = WorkflowTemplate.load(shipped_workflows_dir() / "txt2img.json")
    workflow = template.fill(
        {"prompt": "a red dog in a garden, children's book", "negative_prompt": "", "seed": 1,
         "steps": 4, "cfg": 7.0, "sampler": "euler", "scheduler": "normal", "width": 512,
         "height": 512, "checkpoint": checkpoint}
    )  # fmt: skip
    board = ProgressBoard()
    with board.step(stage=4) as step:
        result = ComfyUIBackend(str(COMFYUI), timeout_s=600).run_workflow(
            workflow, tmp_path / "smoke.png"
        )
    with Image.open(result.path) as picture:
        assert picture.format == "PNG" and picture.size == (512, 512)
    assert step.events >= 4  # at least one report per sampler step


@pytest.mark.skipif(
    not OPENAI, reason="no real chat server named (DEVSERVER_SMOKE_OPENAI_BASE_URL)"
)
def test_a_real_chat_server_streams_a_translation(tmp_path: Path) -> None:
    client = OpenAIClient(
        str(OPENAI), api_key=os.environ.get("DEVSERVER_SMOKE_OPENAI_API_KEY"), timeout_s=120
    )
    board = ProgressBoard()
    with board.step(stage=1) as step:
        result = OpenAIBackend(client, os.environ["DEVSERVER_SMOKE_OPENAI_MODEL"]).translate(
            "Ein Hund spielt im Garten", "de", "en", seed=1
        )
    assert result.text.strip() and step.events >= 1
