"""The devserver's public surface is exactly what ``__all__`` promises."""

from __future__ import annotations

import importlib

import devserver
import devserver.pipeline.backends
import devserver.pipeline.safety

#: The rooms of DESIGN.md §2, each with its own public surface.
ROOMS = ("api", "live", "pipeline", "pipeline.backends", "pipeline.safety", "research")


def test_all_lists_exactly_the_public_names() -> None:
    assert set(devserver.__all__) == {
        "ConfigError",
        "DevServer",
        "Pipeline",
        "PipelineConfig",
        "RunRequest",
        "SettingsError",
        "create_app",
        "get_state",
        "load_config",
        "load_configs",
        "run_pipeline",
    }
    rooms = [importlib.import_module(f"devserver.{room}") for room in ROOMS]
    for package in (devserver, *rooms):
        assert package.__doc__, package.__name__
        for name in package.__all__:
            assert hasattr(package, name), (package.__name__, name)
            assert not name.startswith("_")


def test_console_script_is_the_click_group() -> None:
    from importlib.metadata import entry_points

    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "devserver"]
    assert script.value == "devserver.cli:main"
    from devserver.cli import main

    assert {"serve", "run"} <= set(main.commands)
