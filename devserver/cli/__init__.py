"""The ``devserver`` console script: ``serve`` the app, ``run`` one pipeline in-process.

Further commands (``status``, ``runs``, ``show``, ``export``, ``forget``,
``prune``, ``db``) attach to the ``main`` group with ``main.add_command``.
"""

from __future__ import annotations

import socket
import sys
import threading
from typing import Any

import click
from flask import Flask

from .._settings import SettingsError
from ..api._run_body import MAX_SEED
from ..pipeline._configs import ConfigError
from ..pipeline._runs import Run
from ..pipeline.safety import SAFETY_LEVELS
from ._db import register as register_db_commands
from ._journey import describe
from ._research import register as register_research_commands


def make_app(test_config: dict[str, Any] | None = None) -> Flask:
    """The app, with configuration errors turned into a clean CLI error."""
    from .._app import create_app

    try:
        return create_app(test_config)
    except (SettingsError, ConfigError) as exc:
        raise click.ClickException(str(exc)) from None


@click.group()
@click.version_option(package_name="execution-history", prog_name="devserver")
def main() -> None:
    """The devserver: a 4-stage AI-art pipeline whose every step is recorded."""


@main.command()
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    envvar="DEVSERVER_HOST",
    show_envvar=True,
    help="Interface to listen on (0.0.0.0 for every interface).",
)
@click.option(
    "--port",
    default=5000,
    show_default=True,
    type=click.IntRange(0, 65535),
    envvar="DEVSERVER_PORT",
    show_envvar=True,
    help="Port to listen on (0 picks a free one).",
)
@click.option(
    "--threads",
    default=None,
    type=click.IntRange(1, 1024),
    help="Views running at once (default: twice the run slots, at least 16; live-feed "
    "streams need none).",
)
@click.option(
    "--safety-level",
    type=click.Choice(SAFETY_LEVELS),
    default=None,
    help="The workshop's age level (default: DEVSERVER_SAFETY_LEVEL, else kids). A run may "
    "ask for a stricter one; a less protective one needs the research token.",
)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    envvar="DEVSERVER_SERVE_WORKERS",
    show_envvar=True,
    help="Server processes sharing the port, the store and the data dir (docs/deployment.md). "
    "Not DEVSERVER_WORKERS, which is how many runs one process executes at once.",
)
@click.option("--listen-fd", type=click.IntRange(0), default=None, hidden=True)
def serve(
    host: str,
    port: int,
    threads: int | None,
    safety_level: str | None,
    workers: int,
    listen_fd: int | None,
) -> None:
    """Serve the app (uvicorn, streams on its event loop) until Ctrl+C or SIGTERM.

    \b
    Configured by the environment (docs/devserver.md):
      DEVSERVER_DATA_DIR          database, media, generated secrets (./instance)
      DEVSERVER_DATABASE_URL      sqlite:///path/to/file.sqlite3 (in the data dir) or
                                  postgresql://user:password@host/db (devserver db upgrade)
      DEVSERVER_SAFETY_LEVEL      the workshop's age level (kids)
      DEVSERVER_RESEARCH_TOKEN    research access (generated into the data dir)
      DEVSERVER_PSEUDONYM_KEY     key of the pseudonyms (generated into the data dir)
      DEVSERVER_BACKEND           local or ollama (local); OLLAMA_HOST for ollama
      DEVSERVER_WORKERS, DEVSERVER_QUEUE_SIZE, DEVSERVER_MAX_BODY_BYTES,
      DEVSERVER_WAIT_TIMEOUT_S, DEVSERVER_SHUTDOWN_TIMEOUT_S
    """
    from ._serve import serve as serve_app

    if workers > 1 and listen_fd is None:
        sys.exit(_supervise(host, port, threads, safety_level, workers))
    listening = None
    if listen_fd is not None:  # a worker of ``serve --workers``: the socket is inherited
        from ._workers import end_with_supervisor

        end_with_supervisor()
        listening = socket.socket(fileno=listen_fd)
    app = make_app({"SAFETY_LEVEL": safety_level} if safety_level else None)
    try:
        clean = serve_app(app, host, port, threads, listening)
    except OSError as exc:  # e.g. the port is taken
        app.extensions["devserver"].close()
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sys.exit(0 if clean else 1)


def _supervise(
    host: str, port: int, threads: int | None, safety_level: str | None, workers: int
) -> int:
    """Bind, check the configuration once, then run ``workers`` server processes."""
    from .._state import get_state
    from ._serve import listen, print_banner, socket_url
    from ._workers import Supervisor

    # Built once and closed: a bad setting, an unreachable database or one on an unknown
    # schema stops here, not in N workers; dead processes' runs are recovered once.
    app = make_app({"SAFETY_LEVEL": safety_level} if safety_level else None)
    state = get_state(app)
    settings = state.settings
    state.close()
    try:
        listening = listen(host, port)
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    listening.set_inheritable(True)
    print_banner(settings, socket_url(listening), workers)
    return Supervisor(listening, workers, settings, threads, safety_level).run()


@main.command("run")
@click.argument("config")
@click.argument("text")
@click.option(
    "--safety-level",
    type=click.Choice(SAFETY_LEVELS),
    default=None,
    help="The age level (default: the workshop's, DEVSERVER_SAFETY_LEVEL).",
)
@click.option("--language", default=None, help="The prompt's language (detected when omitted).")
@click.option(
    "--seed",
    type=click.IntRange(0, MAX_SEED),
    default=None,
    help="Random seed (random when omitted).",
)
@click.option("--user-id", default=None, help="The person's id (stored raw, shown pseudonymised).")
@click.option(
    "--session-id", default=None, help="The workshop's id (stored raw, shown pseudonymised)."
)
@click.option(
    "--device-id", default=None, help="The device's id (stored raw, shown pseudonymised)."
)
def run_command(
    config: str,
    text: str,
    safety_level: str | None,
    language: str | None,
    seed: int | None,
    user_id: str | None,
    session_id: str | None,
    device_id: str | None,
) -> None:
    """Run CONFIG on TEXT in this process and print the journey as it happens."""
    from .._state import get_state
    from ..api._errors import ApiError
    from ..api._run_body import parse_run_body

    app = make_app()
    state = get_state(app)
    try:
        workshop = state.settings.safety_level
        body: dict[str, Any] = {
            "config": config,
            "input": text,
            "safety_level": safety_level or workshop,
        }
        if language is not None:
            body["language"] = language
        if seed is not None:
            body["seed"] = seed
        # The same checks as over HTTP: an id given here obeys the same limits.
        for name, value in (
            ("user_id", user_id),
            ("session_id", session_id),
            ("device_id", device_id),
        ):
            if value is not None:
                body[name] = value
        try:
            parsed = parse_run_body(
                body,
                state.configs,
                languages=getattr(state.backend, "languages", ()),
                max_input_chars=state.settings.max_input_chars,
            )
        except ApiError as exc:
            raise click.UsageError(exc.message) from None
        request = parsed.request
        # Whoever runs this command runs the server: any level, and the record says who chose it.
        set_by = "workshop" if request.safety_level == workshop else "command line"
        tracker = state.runs.new_tracker(
            request,
            user_id=parsed.user_id,
            session_id=parsed.session_id,
            device_id=parsed.device_id,
            level_set_by=set_by,
        )
        run = Run(tracker, request)
        iterations = request.config.interception.iterations
        click.echo(
            f"Run {run.run_id}: {config}, safety level {request.safety_level}, seed {request.seed}"
        )
        worker = threading.Thread(target=state.runs.run_inline, args=(run,), daemon=True)
        worker.start()
        printed = 0
        tracker = run.tracker
        while True:
            done = not worker.is_alive()
            live = tracker.record()
            if live is not None:
                items = live.items
                for item in items[printed:]:
                    line = describe(item, iterations)
                    if line is not None:
                        click.echo(line)
                printed = len(items)
            if done:
                break
            worker.join(0.05)
        result = run.future.result()
        record = tracker.finalize(wait=True)
        status = str(record.status) if record is not None else str(result.status)
        click.echo(f"\nStatus: {status}")
        click.echo(f"Run id: {run.run_id}")
        if state.runs.media_dir(run.run_id).is_dir():
            click.echo(f"Media:  {state.runs.media_dir(run.run_id)}")
    finally:
        state.close()
    if status == "error":
        sys.exit(1)


register_research_commands(main)
register_db_commands(main)
