"""The app's resources (store, finaliser, backend, run service…), built once by ``init_app``.

They live in ``app.extensions["devserver"]`` (never on a module), are reached
through ``get_state()``, and are released in order by ``DevServer.close``:
runs first, then the live feed's streams, then the finaliser's queue, then the
journal and the store.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import weakref
from dataclasses import dataclass, field
from importlib import metadata

from flask import Flask, current_app

from execution_history import (
    Finaliser,
    LiveRunRegistry,
    Pseudonymiser,
    RecordStore,
    SchemaError,
    ShutdownReport,
    Sink,
    StoreOpenError,
    StoreSink,
    is_server_database,
    open_store,
)

from ._export_pool import ExportPool
from ._settings import Settings, SettingsError, resolve
from ._telemetry import Telemetry, make_telemetry
from .live._feed import FeedHub
from .live._notify import RunListener, RunNotifier
from .pipeline._configs import ConfigError, PipelineConfig, load_configs, shipped_configs_dir
from .pipeline._journals import ProcessJournal
from .pipeline._orchestrator import Pipeline
from .pipeline._runs import RunService
from .pipeline.backends import Backend, ComfyUIBackend, make_backend, make_comfyui
from .pipeline.safety import AgeFilter, Stage1Filter

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
    store: RecordStore
    store_sink: StoreSink
    finaliser: Finaliser
    registry: LiveRunRegistry
    journal: ProcessJournal
    pseudonymiser: Pseudonymiser
    runs: RunService
    feed: FeedHub
    #: Where batch exports run (a few dedicated threads).
    exports: ExportPool
    #: The OTLP trace export (its sink is None when it is off).
    telemetry: Telemetry
    _closed: bool = field(default=False, repr=False)
    _close_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    shutdown: ShutdownReport | None = None
    #: With PostgreSQL: the NOTIFY sender (the journal's listener) and the LISTEN thread
    #: that wakes feeds of runs other processes run (``live._notify``); None on SQLite.
    notifier: RunNotifier | None = None
    listener: RunListener | None = None

    def close(self, timeout_s: float | None = None) -> bool:
        """Finish or finalise every run, drain the finaliser, close journal and store.

        Idempotent. Returns True when every run finished by itself, the
        finaliser drained in time and every run reached the store or the
        quarantine; ``shutdown`` then says what is left and where.
        """
        with self._close_lock:
            if self._closed:
                return self.shutdown is not None and self.shutdown.clean
            self._closed = True
        timeout = self.settings.shutdown_timeout_s if timeout_s is None else timeout_s
        finished = self.runs.close(timeout)
        self.feed.close()  # open streams end now instead of waiting for their runs
        if self.listener is not None:
            self.listener.close()
        report = self.finaliser.close(timeout=max(timeout, 5.0))
        report.runs_aborted = not finished
        # After the finaliser (it hands the last runs over), before the store (the sink
        # adds its outcomes to stored records); bounded by the export deadline.
        self.telemetry.close()
        self.shutdown = report
        self.exports.close()  # before the store: an export reads from it
        self.journal.close()
        if self.notifier is not None:  # after the journal's last write
            self.notifier.close()
        self.store.close()
        return report.clean

    def health(self) -> dict[str, object]:
        """What waits where, and whether the store can be written (``/api/health``)."""
        problem = self.store.ping()
        held = len(self.finaliser.held())
        quarantined = len(self.store_sink.quarantined())
        journal = self.journal.journal
        failures = journal.write_failures if journal is not None else 0
        accepting = journal is not None
        degraded = problem is not None or held or quarantined or failures or not accepting
        return {
            "status": "degraded" if degraded else "ok",
            "runs_in_flight": self.runs.active(),
            "runs_waiting_to_be_written": self.finaliser.waiting(),
            "runs_held_in_memory": held,
            "runs_quarantined": quarantined,
            "journal_write_failures": failures,
            "accepting_runs": accepting,
            "store": {"reachable": problem is None, "problem": problem},
            "process": {"pid": os.getpid(), "worker": self.settings.worker_index},
            # Not part of "degraded": a trace is a copy; the record is safe in the store.
            "otlp": self.telemetry.health(),
        }


def open_configured_store(settings: Settings) -> RecordStore:
    """The store of ``settings``; a database this version cannot use stops the start.

    Raises:
        SettingsError: the database cannot be reached, lacks the ``postgres``
            extra, or has a schema that is missing, older or unknown to this
            version (the message says to run ``devserver db upgrade``).
    """
    try:
        return open_store(settings.database_url)
    except SchemaError as exc:
        if exc.state == "unknown":
            hint = "use the version that made it, or a newer one"
        else:
            hint = "apply the migrations first: devserver db upgrade"
        raise SettingsError(f"{exc}; {hint}") from None
    except StoreOpenError as exc:
        raise SettingsError(str(exc)) from None


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
        openai=settings.openai,
    )
    named, comfyui = _named_backends(settings, configs, backend)
    data = settings.data
    store = open_configured_store(settings)
    store_sink = StoreSink(store, data.quarantine)
    registry = LiveRunRegistry()
    shared = is_server_database(settings.database_url)
    notifier = RunNotifier(settings.database_url) if shared else None
    journal = ProcessJournal(
        data.journal,
        damaged_dir=data.damaged_journals,
        interval_s=settings.journal_interval_s,
        on_written=notifier,
    )
    journal.recover_dead(store)
    # After recovery: a whole record saved at a shutdown replaces the journal's copy.
    for folder in (store_sink.quarantine_dir, *data.last_resort_dirs):
        try:
            StoreSink(store, folder).reimport()
        except OSError as exc:  # an unreadable folder must not stop the server
            logger.error("records in %s not imported: %s", folder, exc)
    pseudonymiser = Pseudonymiser(settings.pseudonym_key)
    telemetry = make_telemetry(
        settings.otel,
        pseudonymiser=pseudonymiser,
        service_version=software_version(),
        report=store.add_sink_outcomes,
    )
    # The store first: a trace is sent only once the record is kept (DESIGN.md §6).
    sinks: list[Sink] = [store_sink]
    if telemetry.sink is not None:
        sinks.append(telemetry.sink)
    finaliser = Finaliser(
        sinks,
        processors=[journal, registry],
        last_resort_dirs=data.last_resort_dirs,
    )
    pipeline = Pipeline(
        backend=backend,
        stage1=Stage1Filter(),
        age=AgeFilter(),
        named=named,
        comfyui=comfyui,
    )
    feed = FeedHub(settings.feed)
    runs = RunService(
        pipeline=pipeline,
        data=data,
        finaliser=finaliser,
        registry=registry,
        store=store,
        store_sink=store_sink,
        journals=journal,
        workers=settings.workers,
        queue_size=settings.queue_size,
        tracking=bool(app.config.get("TRACKING", True)),
        software_version=software_version(),
        model_versions=pipeline.model_versions(),
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
        pseudonymiser=pseudonymiser,
        runs=runs,
        feed=feed,
        exports=ExportPool(settings.export_threads),
        notifier=notifier,
        listener=(
            RunListener(settings.database_url, feed.notify, feed.notify_all) if shared else None
        ),
        telemetry=telemetry,
    )
    app.extensions[EXTENSION] = state
    # A process that exits without a signal (e.g. the end of a script) still drains.
    ref = weakref.ref(state)
    atexit.register(lambda: (s := ref()) is not None and s.close())
    return state


def _named_backends(
    settings: Settings, configs: dict[str, PipelineConfig], default: Backend
) -> tuple[dict[str, Backend], ComfyUIBackend | None]:
    """The backends the configs name besides the default, each made once.

    Raises:
        ConfigError: a config names a backend this server has no settings for;
            the message names the file, the field and the variables to set.
    """
    folder = settings.config_dir or shipped_configs_dir()
    named: dict[str, Backend] = {}
    comfyui: ComfyUIBackend | None = None
    for config in configs.values():
        for where, name in config.named_backends():
            if name == default.name or name in named or (name == "comfyui" and comfyui):
                continue
            try:
                if name == "comfyui":
                    comfyui = make_comfyui(settings.comfyui)
                else:
                    named[name] = make_backend(
                        name,
                        ollama_host=settings.ollama_host,
                        ollama_model=settings.ollama_model,
                        ollama_timeout_s=settings.ollama_timeout_s,
                        ollama_retries=settings.ollama_retries,
                        openai=settings.openai,
                    )
            except ValueError as exc:
                raise ConfigError(
                    f"{folder / (config.name + '.json')}: field '{where}': {exc}"
                ) from None
    return named, comfyui


def get_state(app: Flask | None = None) -> DevServer:
    """The resources of ``app`` (the current app when None)."""
    state: DevServer = (app or current_app).extensions[EXTENSION]
    return state
