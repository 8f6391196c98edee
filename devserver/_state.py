"""The app's resources (store, finaliser, backend, run service…), built once by ``init_app``.

They live in ``app.extensions["devserver"]`` (never on a module), are reached
through ``get_state()``, and are released in order by ``DevServer.close``:
runs first, then the finaliser's queue, then the journal and the store.
"""

from __future__ import annotations

import atexit
import logging
import threading
import weakref
from dataclasses import dataclass, field
from importlib import metadata

from flask import Flask, current_app

from execution_history import (
    Finaliser,
    LiveRunRegistry,
    Pseudonymiser,
    SQLiteRecordStore,
    StoreSink,
)

from ._configs import PipelineConfig, load_configs
from ._journals import ProcessJournal
from ._orchestrator import Pipeline
from ._runs import RunService
from ._settings import Settings, resolve
from .backends import Backend, make_backend
from .safety import AgeFilter, Stage1Filter

logger = logging.getLogger("devserver")

EXTENSION = "devserver"


def software_version() -> str:
    """This software's name and version, for every record."""
    try:
        return f"devserver {metadata.version('execution-history')}"
    except metadata.PackageNotFoundError:  # running from a source tree without install
        return "devserver (not installed)"


@dataclass
class DevServer:
    """Everything a request or a command needs; one per app."""

    settings: Settings
    configs: dict[str, PipelineConfig]
    backend: Backend
    store: SQLiteRecordStore
    store_sink: StoreSink
    finaliser: Finaliser
    registry: LiveRunRegistry
    journal: ProcessJournal
    pseudonymiser: Pseudonymiser
    runs: RunService
    _closed: bool = field(default=False, repr=False)
    _close_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def close(self, timeout_s: float | None = None) -> bool:
        """Finish or finalise every run, drain the finaliser, close journal and store.

        Idempotent. Returns True when every run finished by itself and the
        finaliser drained in time.
        """
        with self._close_lock:
            if self._closed:
                return True
            self._closed = True
        timeout = self.settings.shutdown_timeout_s if timeout_s is None else timeout_s
        finished = self.runs.close(timeout)
        drained = self.finaliser.close(timeout=max(timeout, 5.0))
        self.journal.close()
        self.store.close()
        return finished and drained


def init_app(app: Flask) -> DevServer:
    """Build the app's resources from ``app.config`` and register them.

    Also recovers runs left by dead processes (``incomplete`` records) and
    re-imports quarantined records, before any new run starts.

    Raises:
        SettingsError, ConfigError: bad configuration (named in the message).
    """
    settings = resolve(app.config)
    configs = load_configs(settings.config_dir)
    backend: Backend = app.config.get("BACKEND_INSTANCE") or make_backend(
        settings.backend,
        ollama_host=settings.ollama_host,
        ollama_model=settings.ollama_model,
        ollama_timeout_s=settings.ollama_timeout_s,
        ollama_retries=settings.ollama_retries,
    )
    store = SQLiteRecordStore(settings.database_path)
    store_sink = StoreSink(store, settings.data_dir / "quarantine")
    registry = LiveRunRegistry()
    journal = ProcessJournal(settings.data_dir / "journal")
    journal.recover_dead(store)
    store_sink.reimport()
    finaliser = Finaliser(
        [store_sink],
        journal=journal.journal,
        registry=registry,
        capture_store=store if settings.build_on_read else None,
        idle_build_s=settings.idle_build_s,
    )
    pipeline = Pipeline(backend=backend, stage1=Stage1Filter(), age=AgeFilter())
    runs = RunService(
        pipeline=pipeline,
        media_root=settings.media_root,
        finaliser=finaliser,
        registry=registry,
        store=store,
        workers=settings.workers,
        queue_size=settings.queue_size,
        tracking=bool(app.config.get("TRACKING", True)),
        software_version=software_version(),
        model_versions=backend.model_versions(),
    )
    state = DevServer(
        settings=settings,
        configs=configs,
        backend=backend,
        store=store,
        store_sink=store_sink,
        finaliser=finaliser,
        registry=registry,
        journal=journal,
        pseudonymiser=Pseudonymiser(settings.pseudonym_key),
        runs=runs,
    )
    app.extensions[EXTENSION] = state
    # A process that exits without a signal (e.g. the end of a script) still drains.
    ref = weakref.ref(state)
    atexit.register(lambda: (s := ref()) is not None and s.close())
    return state


def get_state(app: Flask | None = None) -> DevServer:
    """The resources of ``app`` (the current app when None)."""
    state: DevServer = (app or current_app).extensions[EXTENSION]
    return state
