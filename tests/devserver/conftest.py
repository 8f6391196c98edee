"""Devserver-only fixtures: an app factory with overrides, and a config dir with test configs."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from devserver import create_app
from devserver.pipeline._configs import shipped_configs_dir

#: One harmless picture and one whose prompt adds a word blocked for kids.
MIXED = {
    "name": "mixed",
    "description": "One harmless picture and one with a zombie, for partial runs.",
    "translate_to": "en",
    "interception": {"kind": "dada"},
    "outputs": [
        {"kind": "image", "name": "plain", "width": 64, "height": 64, "steps": 4},
        {
            "kind": "image",
            "name": "spooky",
            "width": 80,
            "height": 64,
            "steps": 4,
            "prompt": "{text}, with a zombie",
        },
    ],
}


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    """The shipped configs plus ``mixed``."""
    folder = tmp_path / "configs"
    shutil.copytree(shipped_configs_dir(), folder)
    (folder / "mixed.json").write_text(json.dumps(MIXED), encoding="utf-8")
    return folder


@pytest.fixture
def make_app(
    tmp_path: Path, config_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., Flask]]:
    """``make_app(**config)``: an app on a fresh data dir with the test configs; closed after."""
    import os

    for name in list(os.environ):
        if name.startswith(("DEVSERVER_", "OTEL_")) or name == "OLLAMA_HOST":
            monkeypatch.delenv(name)
    apps: list[Flask] = []

    def factory(**config: Any) -> Flask:
        base = {
            "TESTING": True,
            "DATA_DIR": str(tmp_path / f"instance{len(apps)}"),
            "CONFIG_DIR": str(config_dir),
        }
        app = create_app({**base, **config})
        apps.append(app)
        return app

    yield factory
    for app in apps:
        app.extensions["devserver"].close()
