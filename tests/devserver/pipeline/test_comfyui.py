"""The comfyui backend against a fake ComfyUI on 127.0.0.1: the image, progress, every failure."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from PIL import Image

from devserver.pipeline._configs import shipped_workflows_dir
from devserver.pipeline.backends import (
    BackendBadResponse,
    BackendTimeout,
    BackendUnavailable,
    ComfyUIBackend,
    FilledWorkflow,
    MissingOutput,
    ProgressBoard,
    WorkflowFailed,
    WorkflowTemplate,
)

from ..fake_generators import FakeComfyUI
from ..fakes import closed_port_url

VALUES = {
    "prompt": "a red dog",
    "negative_prompt": "scary",
    "seed": 1234,
    "steps": 5,
    "cfg": 6.5,
    "sampler": "euler",
    "scheduler": "karras",
    "width": 96,
    "height": 64,
    "checkpoint": "dream.safetensors",
}


def filled() -> FilledWorkflow:
    return WorkflowTemplate.load(shipped_workflows_dir() / "txt2img.json").fill(VALUES)


def test_an_image_is_fetched_written_as_png_and_the_sent_workflow_is_the_hashed_one(
    tmp_path: Path,
) -> None:
    workflow = filled()
    with FakeComfyUI() as fake:
        result = ComfyUIBackend(fake.url, timeout_s=30).run_workflow(workflow, tmp_path / "a.png")
    sent = fake.prompts[0]["prompt"]
    # What ComfyUI received is, byte for byte in canonical form, what the hash names.
    canonical = json.dumps(sent, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert hashlib.sha256(canonical.encode()).hexdigest() == workflow.sha256
    assert (
        sent["3"]["inputs"]["seed"] == 1234
        and sent["4"]["inputs"]["ckpt_name"] == "dream.safetensors"
    )
    with Image.open(tmp_path / "a.png") as picture:
        assert picture.format == "PNG" and picture.size == (96, 64)
    assert (result.width, result.height) == (96, 64)
    assert result.model == "dream.safetensors" and result.backend == "comfyui"
    assert result.params["prompt_id"] in fake.history
    assert not list(tmp_path.glob("*.part"))


def test_queue_start_and_every_sampler_step_are_reported_to_the_running_step(
    tmp_path: Path,
) -> None:
    board = ProgressBoard()
    with FakeComfyUI() as fake, board.step(stage=4, loop_iteration=1) as step:
        ComfyUIBackend(fake.url, timeout_s=30).run_workflow(filled(), tmp_path / "a.png")
    # one report per status, execution_start and progress message the fake sent
    assert step.events == sum(fake.progress_messages.values()) == 2 + 1 + VALUES["steps"]
    assert board.snapshot()[1] is None  # cleared once the step is over


def test_progress_is_visible_while_the_step_runs(tmp_path: Path) -> None:
    import threading

    board = ProgressBoard()
    with FakeComfyUI(gate_at=3) as fake:
        backend = ComfyUIBackend(fake.url, timeout_s=30)

        def run() -> None:
            with board.step(stage=4, loop_iteration=2, output="big"):
                backend.run_workflow(filled(), tmp_path / "a.png")

        worker = threading.Thread(target=run)
        worker.start()
        assert fake.reached.wait(30)
        # The gate holds step 3; the worker may not have read that message yet, so
        # wait on the board's version rather than on time.
        for _ in range(3000):
            state = board.snapshot()[1]
            if state is not None and state.get("value") == 3:
                break
            threading.Event().wait(0.01)
        # the step's identity as the orchestrator gave it, and the latest report only
        assert state == {
            "stage": 4, "loop_iteration": 2, "output": "big",
            "kind": "steps", "events": 6, "value": 3, "max": 5, "node": "3",
        }  # fmt: skip
        fake.release.set()
        worker.join(30)


@pytest.mark.parametrize(
    ("mode", "error", "words"),
    [
        ("refuse", WorkflowFailed, "ckpt_name: 'sd_xl_base_1.0.safetensors' not in []"),
        ("node_error", WorkflowFailed, "node 3 (KSampler): torch.OutOfMemoryError"),
        ("no_output", MissingOutput, "without an image"),
        ("no_file", MissingOutput, "no file"),
        ("not_png", BackendBadResponse, "not a PNG"),
        ("drop", BackendUnavailable, "closed the WebSocket"),
    ],
)
def test_each_failure_is_a_typed_backend_error_and_leaves_no_file(
    tmp_path: Path, mode: str, error: type[Exception], words: str
) -> None:
    with FakeComfyUI(mode) as fake, pytest.raises(error) as caught:
        ComfyUIBackend(fake.url, timeout_s=30).run_workflow(filled(), tmp_path / "a.png")
    assert words in str(caught.value)
    assert not list(tmp_path.iterdir())


def test_a_server_that_is_down_is_unavailable_after_the_retries(tmp_path: Path) -> None:
    backend = ComfyUIBackend(closed_port_url(), timeout_s=30, retries=2, backoff_s=0.01)
    with pytest.raises(BackendUnavailable, match="after 3 attempts"):
        backend.run_workflow(filled(), tmp_path / "a.png")


def test_past_the_deadline_the_prompt_is_taken_out_of_the_queue(tmp_path: Path) -> None:
    with FakeComfyUI("hang") as fake:
        backend = ComfyUIBackend(fake.url, timeout_s=0.5)
        with pytest.raises(BackendTimeout):
            backend.run_workflow(filled(), tmp_path / "a.png")
    # the one prompt it sent, and no image came back
    assert len(fake.prompts) == 1 and len(fake.deleted) == 1 and not fake.history
