"""The HTTP API through Flask's test client: runs, records, media, validation and errors."""

from __future__ import annotations

import io
import threading
from typing import Any

import pytest
from PIL import Image

from devserver import get_state

from ..checks import (
    assert_complete_has_no_iteration,
    assert_outputs_share_loop_iteration,
    assert_stille_post_journey,
    assert_transitions_exactly_at_stage_changes,
    items_of,
)
from ..fakes import BrokenBackend, GatedBackend, NoImageBackend


def start(client: Any, **body: Any) -> dict[str, Any]:
    response = client.post("/api/runs?wait=true", json=body)
    assert response.status_code == 200, response.json
    return dict(response.json)


def record_of(client: Any, run_id: str) -> dict[str, Any]:
    response = client.get(f"/api/runs/{run_id}")
    assert response.status_code == 200
    return dict(response.json)


def test_configs_are_listed_with_their_shape(client: Any) -> None:
    configs = {c["name"]: c for c in client.get("/api/configs").json["configs"]}
    assert configs["stillepost"]["iterations"] == 8
    assert configs["stillepost"]["stages"] == [1, 2, 3, 4]
    assert [o["kind"] for o in configs["image_and_sound"]["outputs"]] == ["image", "audio"]
    assert configs["dada"]["description"]


def test_stille_post_run_records_the_whole_journey(client: Any) -> None:
    answer = start(client, config="stillepost", input="Ein Hund spielt im Garten", seed=12)
    assert answer["status"] == "success"
    assert answer["summary"]["interception_final"]
    record = record_of(client, answer["run_id"])
    assert record["status"] == "success" and record["config_name"] == "stillepost"
    assert_stille_post_journey(record)
    assert_transitions_exactly_at_stage_changes(record)
    assert_outputs_share_loop_iteration(record, outputs=1)
    assert_complete_has_no_iteration(record)
    (user_input,) = items_of(record, "user_input_text")
    assert user_input["metadata"]["language"] == "de"
    assert user_input["metadata"]["language_source"] == "detected"
    assert user_input["metadata"]["language_confidence"] > 0.9
    assert user_input["metadata"]["language_detector"].startswith("py3langid ")
    (translation,) = items_of(record, "translation_result")
    assert translation["metadata"] == {"from_lang": "de", "to_lang": "en", "seed": 12}
    iterations = items_of(record, "interception_iteration")
    assert [i["metadata"]["seed"] for i in iterations] == list(range(13, 21))
    assert [s["status"] for s in record["stages"]] == ["done"] * 4


def test_every_value_passed_to_a_backend_is_on_the_item(client: Any) -> None:
    answer = start(client, config="image_and_sound", input="Ein roter Hund", seed=5)
    record = record_of(client, answer["run_id"])
    image, audio = items_of(record, "output_image")[0], items_of(record, "output_audio")[0]
    assert image["model"] == "procedural-shapes" and image["backend"] == "local"
    assert image["metadata"] == {
        "output": "picture",
        "width": 768,
        "height": 512,
        "seed": 1006,
        "steps": 40,
    }
    assert image["media"]["width"] == 768 and image["media"]["mime_type"] == "image/png"
    assert audio["metadata"] == {
        "output": "tune",
        "duration_s": 4.0,
        "sample_rate": 22050,
        "seed": 1007,
    }
    assert audio["media"]["duration_s"] == 4.0 and audio["media"]["mime_type"] == "audio/wav"
    for item in (image, audio):
        assert item["duration_ms"] > 0
        assert len(item["media"]["sha256"]) == 64 and item["media"]["size_bytes"] > 0
    assert image["loop_iteration"] == 1 and audio["loop_iteration"] == 2
    assert_outputs_share_loop_iteration(record, outputs=2)
    assert_transitions_exactly_at_stage_changes(record)
    assert "glossary-translator" in record["model_versions"]
    assert record["software_version"].startswith("devserver ")


def test_media_is_served_with_its_content_type(client: Any) -> None:
    answer = start(client, config="image_and_sound", input="Ein Hund", seed=1)
    urls = {o["item_type"]: o["url"] for o in answer["summary"]["outputs"]}
    with client.get(urls["output_image"]) as image:
        assert image.status_code == 200 and image.content_type == "image/png"
        assert image.headers["X-Content-Type-Options"] == "nosniff"
        assert image.data[:8] == b"\x89PNG\r\n\x1a\n"
    with client.get(urls["output_audio"]) as audio:
        assert audio.status_code == 200 and audio.content_type == "audio/wav"
        assert audio.data[:4] == b"RIFF"


@pytest.mark.parametrize(
    "name",
    ["..%2Fhistory.sqlite3", ".pseudonym_key", "output_1_picture.exe", "a%00.png", "missing.png"],
)
def test_media_names_are_validated_and_never_escape_the_run_folder(client: Any, name: str) -> None:
    answer = start(client, config="dada", input="Ein Hund", seed=1)
    response = client.get(f"/api/runs/{answer['run_id']}/media/{name}")
    assert response.status_code == 404
    assert response.json["error"]["code"] == "not_found"


def test_stage1_block_stops_the_run(client: Any) -> None:
    answer = start(client, config="stillepost", input="Ein H a k e n k r e u z im Garten")
    assert answer["status"] == "blocked"
    record = record_of(client, answer["run_id"])
    assert not [i for i in record["items"] if i["stage"] in (2, 3, 4)]
    (blocked,) = items_of(record, "stage1_blocked")
    assert blocked["metadata"]["matched_terms"] == ["Hakenkreuz"]
    (check,) = items_of(record, "stage1_safety_check")
    assert check["metadata"]["passed"] is False
    assert check["metadata"]["checked"] == ["original", "translated"]
    assert [s["status"] for s in record["stages"]] == ["blocked", "skipped", "skipped", "skipped"]
    assert_complete_has_no_iteration(record)


def test_one_blocked_and_one_generated_output_is_partial(make_app: Any) -> None:
    client = make_app().test_client()
    answer = start(client, config="mixed", input="Ein Hund spielt", safety_level="kids", seed=3)
    assert answer["status"] == "partial"
    record = record_of(client, answer["run_id"])
    (blocked,) = items_of(record, "stage3_blocked")
    assert blocked["loop_iteration"] == 2 and blocked["metadata"]["matched_terms"] == ["zombie"]
    (image,) = items_of(record, "output_image")
    assert image["loop_iteration"] == 1
    assert_outputs_share_loop_iteration(record, outputs=2)
    assert_transitions_exactly_at_stage_changes(record)
    assert record["stages"][2]["blocks"] == 1
    # At 'adults' (a researcher's choice in a 'kids' workshop) the same config makes both.
    token = client.application.extensions["devserver"].settings.research_token
    response = client.post(
        "/api/runs?wait=true",
        json={"config": "mixed", "input": "Ein Hund", "safety_level": "adults"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 200 and response.json["status"] == "success"


def test_failed_output_is_partial_and_the_run_goes_on(make_app: Any) -> None:
    client = make_app(BACKEND_INSTANCE=NoImageBackend(fail_widths={256})).test_client()
    answer = start(client, config="triptych", input="Ein Hund", seed=2)
    assert answer["status"] == "partial"
    record = record_of(client, answer["run_id"])
    (failed,) = items_of(record, "output_failed")
    assert failed["loop_iteration"] == 1 and failed["stage"] == 4
    assert failed["metadata"]["error_code"] == "backend_error"
    assert failed["metadata"]["width"] == 256 and failed["metadata"]["seed"] == 1003
    assert "no image model for width 256" in failed["content"]
    assert [i["loop_iteration"] for i in items_of(record, "output_image")] == [2, 3]
    assert record["stages"][3]["failures"] == 1
    assert_outputs_share_loop_iteration(record, outputs=3)


def test_backend_raising_mid_stage_ends_in_error_and_is_stored(make_app: Any) -> None:
    app = make_app(BACKEND_INSTANCE=BrokenBackend(fail_at=4))
    client = app.test_client()
    answer = start(client, config="stillepost", input="Ein Hund spielt im Garten", seed=0)
    assert answer["status"] == "error"
    stored = get_state(app).store.load(answer["run_id"])
    assert stored is not None and stored.status == "error"
    record = record_of(client, answer["run_id"])
    assert [i["stage_iteration"] for i in items_of(record, "interception_iteration")] == [1, 2, 3]
    (error,) = items_of(record, "pipeline_error")
    assert error["stage"] == 2 and error["metadata"]["exception_type"] == "RuntimeError"
    assert [s["status"] for s in record["stages"]][:2] == ["done", "failed"]
    assert not [i for i in record["items"] if i["stage"] in (3, 4)]


def test_running_run_is_readable_live(make_app: Any) -> None:
    backend = GatedBackend(gate_at=3)
    client = make_app(BACKEND_INSTANCE=backend).test_client()
    response = client.post(
        "/api/runs", json={"config": "stillepost", "input": "Ein Hund spielt im Garten", "seed": 0}
    )
    assert response.status_code == 202
    run_id = response.json["run_id"]
    assert response.headers["Location"] == f"/api/runs/{run_id}"
    assert backend.reached.wait(10)
    live = record_of(client, run_id)
    assert live["status"] == "running"
    assert [i["stage_iteration"] for i in items_of(live, "interception_iteration")] == [1, 2]
    backend.release.set()
    for _ in range(200):
        record = record_of(client, run_id)
        if record["status"] != "running":
            break
        threading.Event().wait(0.05)
    assert record["status"] == "success"
    assert_stille_post_journey(record)


def test_full_pool_answers_503_with_retry_after(make_app: Any) -> None:
    backend = GatedBackend(gate_at=1)
    client = make_app(BACKEND_INSTANCE=backend, WORKERS=1, QUEUE_SIZE=0).test_client()
    body = {"config": "stillepost", "input": "Ein Hund", "seed": 0}
    assert client.post("/api/runs", json=body).status_code == 202
    assert backend.reached.wait(10)
    refused = client.post("/api/runs", json=body)
    assert refused.status_code == 503
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.json["error"]["code"] == "unavailable"
    backend.release.set()


def test_user_and_session_ids_are_pseudonymised(app: Any, client: Any) -> None:
    answer = start(client, config="dada", input="Ein Hund", user_id="kid-42", session_id="class-7b")
    record = record_of(client, answer["run_id"])
    assert record["user_id"] is None and record["session_id"] is None
    pseudonymiser = get_state(app).pseudonymiser
    assert record["user_pseudonym"] == pseudonymiser.user("kid-42")
    assert record["session_pseudonym"] == pseudonymiser.session("class-7b")
    raw = client.get(f"/api/runs/{answer['run_id']}").get_data(as_text=True)
    assert "kid-42" not in raw and "class-7b" not in raw
    stored = get_state(app).store.load(answer["run_id"])
    assert stored is not None and stored.user_id == "kid-42"  # raw only inside the store


def test_language_given_by_the_caller_is_used_and_recorded(client: Any) -> None:
    answer = start(client, config="stillepost", input="Hund Katze", language="de", seed=4)
    record = record_of(client, answer["run_id"])
    (user_input,) = items_of(record, "user_input_text")
    assert user_input["metadata"] == {
        "language": "de",
        "language_source": "request",
        "language_confidence": None,
    }


def test_unknown_input_language_stays_none(client: Any) -> None:
    answer = start(client, config="stillepost", input="Zorblax qwertz", seed=4)
    record = record_of(client, answer["run_id"])
    (user_input,) = items_of(record, "user_input_text")
    assert user_input["metadata"]["language"] is None
    assert user_input["metadata"]["language_source"] == "detected"
    first = items_of(record, "interception_iteration")[0]
    assert first["metadata"]["from_lang"] is None  # not invented
    last = items_of(record, "interception_iteration")[-1]
    assert last["metadata"]["to_lang"] == "en"  # back to the stage-1 language, as documented


def test_image_in_the_record_is_the_file_served(client: Any) -> None:
    answer = start(client, config="dada", input="ein blauer Hund", seed=9)
    url = answer["summary"]["outputs"][0]["url"]
    with client.get(url) as response, Image.open(io.BytesIO(response.data)) as image:
        assert image.size == (512, 512)


def test_model_versions_name_exactly_the_models_the_run_called(client: Any) -> None:
    """A Stille Post record lists its translator and image model and the two filters, each
    with a version; never the Dada cut-up or the synthesiser it did not call."""
    answer = start(client, config="stillepost", input="Ein Hund spielt im Garten")
    record = record_of(client, answer["run_id"])
    used = {item["model"] for item in record["items"] if item["model"]}
    assert set(record["model_versions"]) == used
    assert {"stgb-86a-terms", "age-level-terms"} <= used
    assert all(version for version in record["model_versions"].values())
    assert record["model_versions"]["stgb-86a-terms"].startswith("sha256:")
    store_outcome = next(s for s in record["integrity"]["sinks"] if s["name"] == "store")
    assert store_outcome["status"] == "ok" and store_outcome["duration_ms"] is not None


def test_configs_list_the_stages_their_runs_pass_through(client: Any) -> None:
    """The listed stages are those a run that nothing stops records, config by config."""
    listed = {c["name"]: c["stages"] for c in client.get("/api/configs").json["configs"]}
    for name, stages in listed.items():
        answer = start(client, config=name, input="Ein Hund spielt im Garten")
        record = record_of(client, answer["run_id"])
        assert record["status"] == "success"
        seen = sorted({item["stage"] for item in record["items"]} & {1, 2, 3, 4})
        assert stages == seen, name
