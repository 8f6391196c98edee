"""The ``devserver`` script: ``run`` prints the journey; ``serve`` needs no configuration."""

from __future__ import annotations

import os
import signal
import urllib.request
from pathlib import Path
from typing import Any

from devserver import get_state

from ..checks import start_serve


def test_run_prints_the_whole_journey_and_stores_the_record(app: Any, runner: Any) -> None:
    result = runner.invoke(["run", "stillepost", "Ein Hund spielt im Garten", "--seed", "3"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("Run ") and "stillepost, safety level kids, seed 3" in lines[0]
    for stage in (1, 2, 3, 4):
        assert any(line.startswith(f"== Stage {stage}:") for line in lines)
    steps = [line for line in lines if line.startswith("  [")]
    assert [s.split("]")[0] for s in steps] == [f"  [{i}/8" for i in range(1, 9)]
    assert "de → fr" in steps[0] and "it → de" in steps[-1]
    assert "Status: success" in lines
    run_id = next(line.split()[-1] for line in lines if line.startswith("Run id:"))
    # The command stored the record where the server reads it.
    found = get_state(app).runs.lookup(run_id)
    record = found.record() if found is not None else None
    assert record is not None and record.status == "success" and len(record.items) == 21


def test_run_says_which_steps_were_not_translated(runner: Any) -> None:
    result = runner.invoke(["run", "stillepost", "كلب يلعب في الحديقة", "--seed", "3"])
    assert result.exit_code == 0, result.output
    assert "input (ar): كلب يلعب في الحديقة" in result.output
    steps = [line for line in result.output.splitlines() if line.startswith("  [")]
    assert len(steps) == 8
    assert all("not translated (ar unsupported)" in step for step in steps)
    assert "Status: success" in result.output


def test_run_shows_a_block(runner: Any) -> None:
    result = runner.invoke(["run", "dada", "Ein Hakenkreuz", "--safety-level", "teens"])
    assert result.exit_code == 0
    assert (
        "BLOCKED: The prompt contains terms that are not allowed (§86a StGB): Hakenkreuz"
        in result.output
    )
    assert "Status: blocked" in result.output


def test_run_refuses_an_unknown_config(runner: Any) -> None:
    result = runner.invoke(["run", "nope", "Ein Hund"])
    assert result.exit_code == 2
    assert "'config' must be one of: dada, image_and_sound, stillepost, triptych" in result.output


def test_bad_setting_is_a_clean_cli_error(runner: Any) -> None:
    result = runner.invoke(["run", "dada", "Ein Hund"], env={"DEVSERVER_BACKEND": "gpt"})
    assert result.exit_code == 1
    assert (
        "Error: DEVSERVER_BACKEND must be one of local, ollama, openai, not 'gpt'" in result.output
    )


def test_serve_with_zero_configuration_answers_and_stops_on_sigint(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEVSERVER_")}
    process = start_serve(env, cwd=tmp_path)
    try:
        assert process.stdout is not None
        url = process.stdout.readline().split()[-1]
        token_line = process.stdout.readline() + process.stdout.readline()
        assert f"{tmp_path / 'instance' / 'research_token'}" in token_line
        with urllib.request.urlopen(url + "api/configs", timeout=10) as response:
            assert response.status == 200 and b"stillepost" in response.read()
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0
    assert "Stopped: every run is recorded." in output
    assert (tmp_path / "instance" / "history.sqlite3").exists()
