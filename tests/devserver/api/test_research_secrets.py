"""Secrets at first start: generated once with 0600, a short token refused, usage printed."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from devserver import SettingsError, create_app

from ..checks import start_serve


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("DEVSERVER_"):
            monkeypatch.delenv(name)


def test_secrets_are_generated_once_owner_only_and_kept(tmp_path: Path) -> None:
    data_dir = tmp_path / "instance"
    app = create_app({"TESTING": True, "DATA_DIR": str(data_dir)})
    state = app.extensions["devserver"]
    token, key = state.settings.research_token, state.settings.pseudonym_key
    state.close()
    for name, value in (("research_token", token), ("pseudonym_key", key)):
        path = data_dir / name
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert path.read_text().strip() == value and len(value) >= 32
    again = create_app({"TESTING": True, "DATA_DIR": str(data_dir)})
    try:
        assert again.extensions["devserver"].settings.research_token == token
        assert again.extensions["devserver"].pseudonymiser.user("u") == state.pseudonymiser.user(
            "u"
        )
    finally:
        again.extensions["devserver"].close()


@pytest.mark.parametrize("token", ["short", "x" * 31, "a" * 40 + " b", "ü" * 40])
def test_a_weak_or_unsendable_token_is_refused_at_start(tmp_path: Path, token: str) -> None:
    with pytest.raises(SettingsError) as caught:
        create_app({"TESTING": True, "DATA_DIR": str(tmp_path), "RESEARCH_TOKEN": token})
    message = str(caught.value)
    assert "DEVSERVER_RESEARCH_TOKEN" in message
    assert token not in message  # never print the secret back


def test_a_short_token_file_is_refused_too(tmp_path: Path) -> None:
    (tmp_path / "research_token").write_text("tooshort\n")
    with pytest.raises(SettingsError, match="at least 32"):
        create_app({"TESTING": True, "DATA_DIR": str(tmp_path)})


def test_a_32_character_token_is_accepted_and_works(tmp_path: Path) -> None:
    token = "t" * 32
    app = create_app({"TESTING": True, "DATA_DIR": str(tmp_path), "RESEARCH_TOKEN": token})
    try:
        client = app.test_client()
        assert (
            client.get("/api/stats", headers={"Authorization": f"Bearer {token}"}).status_code
            == 200
        )
    finally:
        app.extensions["devserver"].close()


def test_cli_refuses_a_short_token_with_one_sentence_and_exit_2(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("devserver")
    (tmp_path / "instance").mkdir()
    env = {**os.environ, "DEVSERVER_DATA_DIR": str(tmp_path / "instance"),
           "DEVSERVER_RESEARCH_TOKEN": "short"}  # fmt: skip
    result = subprocess.run([str(script), "status"], env=env, capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("Error: the research token in DEVSERVER_RESEARCH_TOKEN")
    assert len(result.stderr.strip().splitlines()) == 1


def test_serve_prints_how_to_use_the_token(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEVSERVER_")}
    process = start_serve(env, cwd=tmp_path)
    try:
        assert process.stdout is not None
        url = process.stdout.readline().split()[-1]
        lines = [process.stdout.readline() for _ in range(3)]
        hint = next(line for line in lines if "research API:" in line)
        token_file = tmp_path / "instance" / "research_token"
        assert f'curl -H "Authorization: Bearer $(cat {token_file})" {url}api/runs' in hint
        token = token_file.read_text().strip()
        assert token not in "".join(lines)  # the secret itself is never printed
        request = urllib.request.Request(
            url + "api/runs", headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url + "api/runs", timeout=10)
        assert refused.value.code == 401
        refused.value.close()
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=60)
