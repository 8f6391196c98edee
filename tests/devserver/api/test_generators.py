"""Real generators through the app: per-stage backends from the config, what is recorded equals
what the fake servers received, each ComfyUI failure costs one output, progress on the live feed."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devserver.pipeline._configs import ConfigError

from ..fake_generators import FakeChat, FakeComfyUI
from ..live.test_feed import EventStream, Served, serve_app

KEY = "sk-or-v1-secret-key-for-tests"

#: Translation and interception on the chat server, a picture on ComfyUI and one drawn locally.
GENERATED = {
    "name": "generated",
    "description": "A Dada poem by a chat model, painted by ComfyUI and drawn locally.",
    "translate_to": "en",
    "interception": {"kind": "dada"},
    "backends": {"translation": "openai", "interception": "openai"},
    "outputs": [
        {"kind": "image", "name": "painted", "backend": "comfyui", "workflow": "txt2img",
         "checkpoint": "dream.safetensors", "sampler": "dpmpp_2m", "scheduler": "karras",
         "cfg": 6.5, "negative_prompt": "scary", "width": 96, "height": 64, "steps": 6},
        {"kind": "image", "name": "drawn", "width": 64, "height": 64, "steps": 3},
    ],
}  # fmt: skip


def write_config(folder: Path, config: dict[str, Any]) -> None:
    (folder / f"{config['name']}.json").write_text(json.dumps(config), encoding="utf-8")


@pytest.fixture
def generators(config_dir: Path) -> Iterator[tuple[FakeChat, FakeComfyUI]]:
    write_config(config_dir, GENERATED)
    with FakeChat(pieces=3) as chat, FakeComfyUI() as comfy:
        yield chat, comfy


def app_on(make_app: Any, chat: FakeChat, comfy: FakeComfyUI, **more: Any) -> Any:
    return make_app(
        OPENAI_BASE_URL=chat.url,
        OPENAI_MODEL="tiny-model",
        OPENAI_API_KEY=KEY,
        OPENAI_RETRIES=0,
        COMFYUI_URL=comfy.url,
        COMFYUI_RETRIES=0,
        **more,
    )


def run(client: Any, text: str = "Ein Hund spielt im Garten") -> dict[str, Any]:
    answer = client.post(
        "/api/runs?wait=true",
        json={"config": "generated", "input": text, "language": "de", "seed": 40},
    )
    assert answer.status_code == 200, answer.get_json()
    record = client.get(f"/api/runs/{answer.get_json()['run_id']}").get_json()
    assert isinstance(record, dict)
    return record


def of_type(record: dict[str, Any], item_type: str) -> list[dict[str, Any]]:
    return [i for i in record["items"] if i["item_type"] == item_type]


def test_every_recorded_parameter_equals_what_the_servers_received(
    make_app: Any, generators: tuple[FakeChat, FakeComfyUI], caplog: pytest.LogCaptureFixture
) -> None:
    chat, comfy = generators
    caplog.set_level(logging.DEBUG)
    client = app_on(make_app, chat, comfy).test_client()
    record = run(client)
    assert record["status"] == "success"
    text_items = of_type(record, "translation_result") + of_type(record, "interception_iteration")
    assert len(text_items) == len(chat.requests) == 2
    for item, sent, answer in zip(text_items, chat.requests, chat.answers, strict=True):
        meta = item["metadata"]
        assert (item["backend"], item["model"]) == ("openai", sent["model"])
        assert meta["options"] == {"seed": sent["seed"], "temperature": sent["temperature"]}
        assert meta["usage"] == FakeChat.usage  # told by the server, not estimated
        assert meta["progress_events"] == 3  # one per streamed chunk with text
        assert item["content"] == answer.strip('"')
    painted, drawn = of_type(record, "output_image")
    sent_graph = comfy.prompts[0]["prompt"]
    canonical = json.dumps(sent_graph, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    meta = painted["metadata"]
    assert meta["workflow_sha256"] == hashlib.sha256(canonical.encode()).hexdigest()
    sampler = sent_graph["3"]["inputs"]
    assert (meta["seed"], meta["steps"], meta["cfg"]) == (
        sampler["seed"], sampler["steps"], sampler["cfg"]
    )  # fmt: skip
    assert (meta["sampler"], meta["scheduler"]) == (sampler["sampler_name"], sampler["scheduler"])
    assert meta["checkpoint"] == painted["model"] == sent_graph["4"]["inputs"]["ckpt_name"]
    latent = sent_graph["5"]["inputs"]
    assert (meta["width"], meta["height"]) == (latent["width"], latent["height"])
    assert meta["negative_prompt"] == sent_graph["7"]["inputs"]["text"] == "scary"
    assert painted["content"] == sent_graph["6"]["inputs"]["text"]
    assert meta["workflow"] == "txt2img" and meta["prompt_id"] in comfy.history
    assert meta["progress_events"] == sum(comfy.progress_messages.values())
    assert painted["backend"] == "comfyui" and drawn["backend"] == "local"
    assert "progress_events" not in drawn["metadata"]  # the local generator reports none
    # the file is the one ComfyUI made, with checksum and size in the record
    media = painted["media"]
    with client.get(f"/api/runs/{record['run_id']}/media/{media['path']}") as response:
        picture = response.data
    assert picture == next(iter(comfy.images.values()))
    assert media["sha256"] == hashlib.sha256(picture).hexdigest()
    assert media["size_bytes"] == len(picture)
    assert (media["width"], media["height"]) == (96, 64)
    assert KEY not in json.dumps(record) and KEY not in caplog.text


@pytest.mark.parametrize(
    ("mode", "code"),
    [
        ("refuse", "workflow_error"),
        ("node_error", "workflow_error"),
        ("no_output", "missing_output"),
        ("no_file", "missing_output"),
        ("hang", "backend_timeout"),
    ],
)
def test_a_comfyui_failure_costs_that_output_only(
    make_app: Any, config_dir: Path, mode: str, code: str
) -> None:
    write_config(config_dir, GENERATED)
    with FakeChat() as chat, FakeComfyUI(mode) as comfy:
        client = app_on(make_app, chat, comfy, COMFYUI_TIMEOUT_S=1.0).test_client()
        record = run(client)
    assert record["status"] == "partial"
    (failed,) = of_type(record, "output_failed")
    assert failed["loop_iteration"] == 1 and failed["backend"] == "comfyui"
    assert failed["metadata"]["error_code"] == code
    # what was asked is recorded on the failure too: the same workflow hash ComfyUI got
    sent = comfy.prompts[0]["prompt"]
    canonical = json.dumps(sent, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert failed["metadata"]["workflow_sha256"] == hashlib.sha256(canonical.encode()).hexdigest()
    assert [i["metadata"]["output"] for i in of_type(record, "output_image")] == ["drawn"]
    summary = {s["stage"]: s for s in record["stages"]}
    assert summary[4]["failures"] == 1


def test_a_comfyui_that_is_down_costs_that_output_only(make_app: Any, config_dir: Path) -> None:
    from ..fakes import closed_port_url

    write_config(config_dir, GENERATED)
    with FakeChat() as chat:
        client = make_app(
            OPENAI_BASE_URL=chat.url, OPENAI_MODEL="m", COMFYUI_URL=closed_port_url(),
            COMFYUI_RETRIES=0,
        ).test_client()  # fmt: skip
        record = run(client)
    assert record["status"] == "partial"
    assert of_type(record, "output_failed")[0]["metadata"]["error_code"] == "backend_unavailable"


def test_a_config_naming_an_unconfigured_backend_stops_the_start_naming_file_and_field(
    make_app: Any, config_dir: Path
) -> None:
    write_config(config_dir, GENERATED)
    with pytest.raises(ConfigError) as caught:
        make_app(OPENAI_BASE_URL="http://127.0.0.1:9/v1", OPENAI_MODEL="m")
    message = str(caught.value)
    assert "generated.json" in message and "'outputs.0.backend'" in message
    assert "DEVSERVER_COMFYUI_URL" in message


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"workflow": "nowhere"}, "outputs.0.workflow", "no workflow 'nowhere'"),
        ({"checkpoint": None}, "outputs.0.checkpoint", "placeholder for checkpoint"),
        ({"backend": "ollama"}, "outputs.0.image.backend", "Input should be 'local' or 'comfyui'"),
        ({"backend": None}, "outputs.0.image", "only used by outputs on the comfyui backend"),
    ],
)
def test_bad_backend_fields_are_refused_at_load_naming_file_and_field(
    tmp_path: Path, change: dict[str, Any], field: str, words: str
) -> None:
    from devserver.pipeline._configs import load_config

    output = {k: v for k, v in {**GENERATED["outputs"][0], **change}.items() if v is not None}  # type: ignore[dict-item]
    path = tmp_path / "generated.json"
    write_config(tmp_path, {**GENERATED, "outputs": [output]})
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(path) in str(caught.value) and f"'{field}" in str(caught.value)
    assert words in str(caught.value)


def test_a_broken_workflow_template_is_refused_naming_the_config_and_the_template(
    tmp_path: Path,
) -> None:
    from devserver.pipeline._configs import load_config

    (tmp_path / "workflows").mkdir()
    (tmp_path / "workflows" / "mine.json").write_text(
        json.dumps({"1": {"class_type": "SaveImage", "inputs": {"seed": "{{seed}}",
                                                                "text": "{{colour}}"}}}),
        encoding="utf-8",
    )  # fmt: skip
    output = {**GENERATED["outputs"][0], "workflow": "mine"}  # type: ignore[dict-item]
    write_config(tmp_path, {**GENERATED, "outputs": [output]})
    with pytest.raises(ConfigError, match=r"outputs\.0\.workflow.*mine\.json.*unknown placeholder"):
        load_config(tmp_path / "generated.json")


# ------------------------------------------------------------------ progress on the live feed


@pytest.fixture
def gated(tmp_path: Path) -> Iterator[tuple[Served, FakeComfyUI]]:
    with FakeChat() as chat, FakeComfyUI(gate_at=4) as comfy:
        extra = {
            "OPENAI_BASE_URL": chat.url, "OPENAI_MODEL": "tiny-model", "OPENAI_API_KEY": KEY,
            "COMFYUI_URL": comfy.url, "FEED_PROGRESS_S": 0.05,
        }  # fmt: skip
        served = serve_app(tmp_path, extra, (GENERATED,))
        yield next(served), comfy
        served.close()


def test_progress_reaches_a_subscriber_while_the_step_runs_and_a_reconnect_gets_the_latest(
    gated: tuple[Served, FakeComfyUI],
) -> None:
    served, comfy = gated
    run_id = served.start("generated", "Ein Hund spielt im Garten", language="de", seed=3)
    stream = EventStream(served, run_id)
    seen: list[Any] = []
    try:
        for event in stream:
            seen.append(event)
            if event.event == "progress" and event.json.get("value") == 4:
                break
        # Held at step 4 of 6: a new subscriber gets that latest state, not the history.
        late = EventStream(served, run_id)
        late_progress = []
        for event in late:
            if event.event == "progress":
                late_progress.append(event)
                break
        late.close()
        comfy.release.set()
        seen += stream.until_end()
    finally:
        stream.close()
    progress = [e for e in seen if e.event == "progress"]
    assert all(e.id is None for e in progress)  # not items: no id, Last-Event-ID untouched
    steps = [e.json for e in progress if e.json["kind"] == "steps"]
    assert steps and steps[-1]["max"] == 6 and steps[-1]["stage"] == 4
    assert steps[-1]["loop_iteration"] == 1 and steps[-1]["output"] == "painted"
    assert [e.json["value"] for e in late_progress] == [4]
    # every progress frame came before the item of its step
    painted = next(
        i for i, e in enumerate(seen)
        if e.event == "output_image" and e.json["metadata"]["output"] == "painted"
    )  # fmt: skip
    assert max(i for i, e in enumerate(seen) if e.event == "progress") < painted
    # the record keeps the finished steps, not the progress
    status, record = served.json("GET", f"/api/runs/{run_id}")
    assert status == 200 and len(record["items"]) == len([e for e in seen if e.id is not None])


@pytest.mark.parametrize(
    ("config", "words"),
    [
        ({"OPENAI_BASE_URL": "http://127.0.0.1:9/v1"}, "DEVSERVER_OPENAI_MODEL is not"),
        ({"OPENAI_BASE_URL": "ftp://x", "OPENAI_MODEL": "m"}, "DEVSERVER_OPENAI_BASE_URL must be"),
        ({"COMFYUI_URL": "127.0.0.1:8188"}, "DEVSERVER_COMFYUI_URL must be an http(s) URL"),
        ({"BACKEND": "openai"}, "DEVSERVER_BACKEND=openai needs DEVSERVER_OPENAI_BASE_URL"),
        (
            {"OPENAI_BASE_URL": "http://h/v1", "OPENAI_MODEL": "m", "OPENAI_API_KEY": "sk bad key"},
            "DEVSERVER_OPENAI_API_KEY must be printable ASCII",
        ),
    ],
)
def test_bad_generator_settings_stop_the_start_naming_the_variable_never_the_key(
    make_app: Any, config: dict[str, str], words: str
) -> None:
    from devserver._settings import SettingsError

    with pytest.raises(SettingsError) as caught:
        make_app(**config)
    assert words in str(caught.value)
    assert "sk bad key" not in str(caught.value)
