"""The pipeline: configs, the four stages with their tracker hooks, backends, safety filters,
and the run service that starts runs and finds them, live or stored, by one lookup."""

from __future__ import annotations

from ._configs import ConfigError, PipelineConfig, load_config, load_configs, shipped_configs_dir
from ._journals import ProcessJournal
from ._language import warm_up as warm_up_language
from ._media_names import MEDIA_NAME, MEDIA_TYPES, media_name
from ._orchestrator import Pipeline, RunRequest, run_pipeline
from ._runs import FoundRun, Run, RunResult, RunService, ServiceUnavailable

__all__ = [
    "MEDIA_NAME",
    "MEDIA_TYPES",
    "ConfigError",
    "FoundRun",
    "Pipeline",
    "PipelineConfig",
    "ProcessJournal",
    "Run",
    "RunRequest",
    "RunResult",
    "RunService",
    "ServiceUnavailable",
    "load_config",
    "load_configs",
    "media_name",
    "run_pipeline",
    "shipped_configs_dir",
    "warm_up_language",
]
