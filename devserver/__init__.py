"""The devserver: a Flask app that runs the 4-stage pipeline with tracker hooks.

Public surface: ``create_app`` (the app factory) and the orchestrator's entry
points for code that runs a pipeline without HTTP.
"""

from __future__ import annotations

from ._app import create_app
from ._settings import SettingsError
from ._state import DevServer, get_state
from .pipeline._configs import ConfigError, PipelineConfig, load_config, load_configs
from .pipeline._orchestrator import Pipeline, RunRequest, run_pipeline

__all__ = [
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
]
