"""The devserver sends each run as an OTLP trace when the OTEL_* settings ask for it.

Against a real OTLP/HTTP receiver on 127.0.0.1 (tests/otlp_receiver.py). The
collector's faults are counted in the stored record and /api/health, never
raised, and the stored record is the same as without the export.
"""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from google.protobuf.json_format import ParseDict
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from devserver import create_app
from devserver._settings import SettingsError
from tests.devserver.research_support import bearer
from tests.otlp_receiver import closed_port_endpoint, otlp_receiver

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def make_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    for name in list(os.environ):
        if name.startswith(("DEVSERVER_", "OTEL_")):
            monkeypatch.delenv(name)
    apps: list[Flask] = []

    def factory(**config: Any) -> Flask:
        app = create_app({"TESTING": True, "DATA_DIR": str(tmp_path / "instance"), **config})
        apps.append(app)
        return app

    yield factory
    for app in apps:
        app.extensions["devserver"].close()


def _run(app: Flask, text: str = "Ein Hund spielt im Garten", config: str = "stillepost") -> str:
    answer = app.test_client().post(
        "/api/runs?wait=true",
        json={"config": config, "input": text, "user_id": "child-77", "session_id": "class-3"},
    )
    assert answer.status_code == 200, answer.get_json()
    run_id: str = answer.get_json()["run_id"]
    return run_id


def _settle(app: Flask) -> None:
    """Let the sink send what waits (close drains it within its deadline)."""
    app.extensions["devserver"].telemetry.close()


def _otlp_outcome(app: Flask, run_id: str) -> dict[str, Any]:
    record = app.extensions["devserver"].store.load(run_id)
    (outcome,) = [s for s in record.integrity.sinks if s.name == "otlp"]
    return outcome.model_dump()


def test_each_run_arrives_as_one_trace_with_the_configured_headers_and_service(
    make_app: Any,
) -> None:
    with otlp_receiver() as receiver:
        app = make_app(
            OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint.removesuffix("/v1/traces"),
            OTEL_EXPORTER_OTLP_HEADERS="Authorization=Basic%20cGstbGYtMTpzay1sZi0x",
            OTEL_SERVICE_NAME="workshop-server",
        )
        run_ids = [_run(app), _run(app, config="dada")]
        _settle(app)
    traces = {span.trace_id for span in receiver.spans()}
    assert len(traces) == 2
    first = receiver.received[0]
    assert first.path == "/v1/traces"  # appended to the general endpoint, as the spec says
    assert first.headers["content-type"] == "application/x-protobuf"
    assert first.headers["authorization"] == "Basic cGstbGYtMTpzay1sZi0x"
    resource = first.request.resource_spans[0].resource
    attrs = {kv.key: kv.value.string_value for kv in resource.attributes}
    assert attrs["service.name"] == "workshop-server"
    assert attrs["service.version"].startswith("devserver")
    for run_id in run_ids:
        outcome = _otlp_outcome(app, run_id)
        assert outcome["status"] == "ok" and outcome["error"] is None
    health = app.test_client().get("/api/health").get_json()
    assert health["status"] == "ok"
    assert health["otlp"]["enabled"] is True and health["otlp"]["sent"] == 2
    assert health["otlp"]["endpoint"] == receiver.endpoint
    body = b"".join(r.body for r in receiver.received)
    assert b"child-77" not in body and b"class-3" not in body and b"Hund" not in body


@pytest.mark.parametrize("fault", ["down", "error", "slow"])
def test_a_failing_collector_is_counted_and_the_store_is_unaffected(
    make_app: Any, fault: str
) -> None:
    with otlp_receiver("slow" if fault == "slow" else "error") as receiver:
        endpoint = closed_port_endpoint() if fault == "down" else receiver.endpoint
        app = make_app(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=endpoint, OTEL_EXPORT_TIMEOUT_S=0.5)
        run_id = _run(app)
        _settle(app)
        app.extensions["devserver"].telemetry.sink._thread.join()
    client = app.test_client()
    record = client.get(f"/api/runs/{run_id}").get_json()
    assert record["status"] == "success"  # the run and its record do not care
    store = next(s for s in record["integrity"]["sinks"] if s["name"] == "store")
    assert store["status"] == "ok"
    outcome = _otlp_outcome(app, run_id)
    assert outcome["status"] in ("failed", "timeout") and outcome["error"]
    if fault == "slow":
        assert outcome["status"] == "timeout"
    health = client.get("/api/health").get_json()
    assert health["status"] == "ok"  # a trace is a copy: the record is safe
    assert health["otlp"]["failed"] == 1 and health["otlp"]["sent"] == 0
    assert health["otlp"]["last_error"]


def test_otel_sdk_disabled_turns_an_endpoint_off(make_app: Any) -> None:
    app = make_app(OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:4318", OTEL_SDK_DISABLED="TRUE")
    assert app.extensions["devserver"].telemetry.sink is None
    health = app.test_client().get("/api/health").get_json()["otlp"]
    assert health["enabled"] is False and health["endpoint"] is None


def test_bad_otel_settings_name_the_variable_but_never_the_secret(make_app: Any) -> None:
    with pytest.raises(SettingsError, match="OTEL_EXPORTER_OTLP_HEADERS") as caught:
        make_app(
            OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:4318",
            OTEL_EXPORTER_OTLP_HEADERS="Basic sk-secret-value",
        )
    assert "sk-secret" not in str(caught.value)
    with pytest.raises(SettingsError, match="OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        make_app(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT="localhost:4318")


def _reload(document: dict[str, Any]) -> ExportTraceServiceRequest:
    """The OTLP/JSON mapping, reloaded with protobuf's own parser: ids are hex in OTLP/JSON,
    so they become base64 (protobuf's JSON form of bytes) first."""

    def fix(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                k: base64.b64encode(bytes.fromhex(v)).decode()
                if k in ("traceId", "spanId", "parentSpanId")
                else fix(v)
                for k, v in node.items()
            }
        return [fix(v) for v in node] if isinstance(node, list) else node

    request = ExportTraceServiceRequest()
    ParseDict(fix(document), request)
    return request


def test_the_otlp_json_download_is_the_trace_the_sink_sent(make_app: Any) -> None:
    with otlp_receiver() as receiver:
        app = make_app(OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=receiver.endpoint)
        run_id = _run(app)
        _settle(app)
    answer = app.test_client().get(f"/api/runs/{run_id}/export/otlp-json")
    assert answer.status_code == 200 and answer.mimetype == "application/json"
    document = json.loads(answer.data)
    spans = document["resourceSpans"][0]["scopeSpans"][0]["spans"]
    assert all(len(s["traceId"]) == 32 and len(s["spanId"]) == 16 for s in spans)
    reloaded = _reload(document)
    from_file = [s for r in reloaded.resource_spans for ss in r.scope_spans for s in ss.spans]

    def key(span: Any) -> tuple[Any, ...]:
        return (span.span_id, span.parent_span_id, span.name, span.start_time_unix_nano,
                span.end_time_unix_nano, span.status.code)  # fmt: skip

    assert sorted(map(key, from_file)) == sorted(map(key, receiver.spans()))


def test_devserver_export_and_batch_export_write_otlp_json(make_app: Any, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from devserver.cli import main

    app = make_app()
    run_ids = [_run(app), _run(app, config="dada")]
    data_dir = str(app.extensions["devserver"].settings.data_dir)
    out = tmp_path / "one.otlp.json"
    runner = CliRunner()
    env = {"DEVSERVER_DATA_DIR": data_dir}
    result = runner.invoke(main, ["export", run_ids[0], "-f", "otlp-json", "-o", str(out)], env=env)
    assert result.exit_code == 0, result.output
    one = _reload(json.loads(out.read_text()))
    assert {s.trace_id for r in one.resource_spans for ss in r.scope_spans for s in ss.spans} == {
        bytes.fromhex(
            json.loads(out.read_text())["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["traceId"]
        )
    }
    answer = app.test_client().get("/api/exports?format=otlp-json", headers=bearer(app))
    assert answer.status_code == 200
    with zipfile.ZipFile(io.BytesIO(answer.data)) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".otlp.json")]
        both = _reload(json.loads(archive.read(name)))
    traces = {s.trace_id for r in both.resource_spans for ss in r.scope_spans for s in ss.spans}
    assert len(traces) == 2


def test_without_the_otel_extra_the_server_starts_and_says_why_nothing_is_sent(
    tmp_path: Path,
) -> None:
    """A plain install (no OpenTelemetry) still runs; an endpoint set anyway is reported."""
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'opentelemetry' or name.startswith('opentelemetry.'):\n"
        "            raise ModuleNotFoundError(name=name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import json, exports\n"
        "from devserver import create_app\n"
        f"app = create_app({{'TESTING': True, 'DATA_DIR': {str(tmp_path)!r},\n"
        "    'OTEL_EXPORTER_OTLP_ENDPOINT': 'http://127.0.0.1:9'})\n"
        "c = app.test_client()\n"
        "run = c.post('/api/runs?wait=true', json={'config': 'dada', 'input': 'Ein Hund'})\n"
        "health = c.get('/api/health').get_json()['otlp']\n"
        "fmt = [f.available for f in exports.formats() if f.name == 'otlp-json']\n"
        "print(json.dumps([run.status_code, health['enabled'], health['problem'], fmt]))\n"
        "app.extensions['devserver'].close()\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DEVSERVER_", "OTEL_"))}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env,
        timeout=120, check=True,
    )  # fmt: skip
    status, enabled, problem, available = json.loads(result.stdout.strip().splitlines()[-1])
    assert status == 200 and enabled is False and available == [False]
    assert "pip install 'execution-history[otel]'" in problem
